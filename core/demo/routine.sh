#!/bin/sh
# A demo agent's day: scripted, randomised QMS work over MCP through the gateway, and the hook and
# telemetry events Claude Code would send about it. One log line per step (docker logs, `l`).
# Runs as a container's command (busybox sh + wget) or, without an engine, as a host process (any
# POSIX sh; QMS_DEMO_POSTER names a poster command that takes URL BODY and prints the reply).
# Every failure is logged and the routine carries on: a gateway restart or a refused call is a step.
#
# Environment: QMS_USER (the agent), QMS_PANEL_MCP_URL (its MCP URL), QMS_PANEL_HOOKS_URL and
# OTEL_EXPORTER_OTLP_ENDPOINT (empty: no telemetry), QMS_DEMO_ROLE (worker | drifter | reviewer |
# rogue: a drifter is a worker that starts by leaving a document checked out and going quiet),
# QMS_DEMO_WORKSPACE (the agent's workspace folder), QMS_DEMO_QUIET (seconds a left checkout stays),
# QMS_DEMO_PARENT (a host routine ends when that process is gone).

agent="${QMS_USER:-claude}"
role="${QMS_DEMO_ROLE:-${1:-worker}}"
mcp="${QMS_PANEL_MCP_URL:-http://host.docker.internal:8000/mcp}"
hooks="${QMS_PANEL_HOOKS_URL:-}"
otlp="${OTEL_EXPORTER_OTLP_ENDPOINT:-}"
ws="${QMS_DEMO_WORKSPACE:-/pipe-dream/.claude/users/$agent/workspace}"
quiet="${QMS_DEMO_QUIET:-45}"
mode="${QMS_DEMO_MODE:-container}"
session="demo-$agent-$(date +%s)"
id=0
mine=""

nap() { sleep "$1" & wait $!; }  # a pause a signal can end

say() { echo "$(date -u +%H:%M:%S) $agent: $*"; }

rand() {  # rand N: 0..N-1
  n=$(od -An -N2 -tu2 /dev/urandom 2>/dev/null | tr -d ' \n')
  echo $(( ${n:-$$} % $1 ))
}

post() {  # post URL BODY: the reply's body on stdout; status 1 when there is none
  if [ -n "${QMS_DEMO_POSTER:-}" ]; then
    $QMS_DEMO_POSTER "$1" "$2"
  else
    # busybox wget's own -T crashes on a chunked reply here: timeout(1) bounds it instead
    timeout 20 wget -q -O - --header "Content-Type: application/json" \
      --header "Accept: application/json, text/event-stream" --post-data "$2" "$1" 2>/dev/null
  fi
}

reply_text() {  # the tool result's text (or the error's message) from a JSON-RPC reply, one line
  sed -n 's/.*"text":"\([^"]*\)".*/\1/p; s/.*"message":"\([^"]*\)".*/ERROR \1/p' | head -n 1 | sed 's/\\n.*//' | cut -c1-160
}

call() {  # call TOOL USER 'json-arguments-without-user': sets $out, status 0 when it went through
  id=$((id + 1))
  body="{\"jsonrpc\":\"2.0\",\"id\":$id,\"method\":\"tools/call\",\"params\":{\"name\":\"$1\",\"arguments\":{\"user\":\"$2\"${3:+,$3}}}}"
  raw=$(post "$mcp" "$body")
  out=$(printf '%s' "$raw" | reply_text)
  hook "{\"hook_event_name\":\"PostToolUse\",\"session_id\":\"$session\",\"tool_name\":\"mcp__qms__$1\",\"tool_input\":{\"user\":\"$2\"${3:+,$3}}}"
  case "$raw" in
    '') say "$1 -> no reply (gateway unreachable?); carrying on"; return 1 ;;
    *'"isError":true'*|*'"error":'*) say "$1 -> refused: $out"; return 1 ;;
  esac
  say "$1 -> ${out:-ok}"
}

hook() {  # a Claude Code hook event's JSON to the receiver
  [ -n "$hooks" ] && post "$hooks" "$1" >/dev/null 2>&1
  return 0
}

api_request() {  # an OTLP/HTTP JSON log record shaped as Claude Code's claude_code.api_request
  [ -n "$otlp" ] || return 0
  input=$((800 + $(rand 4000))); output=$((100 + $(rand 900))); ms=$((600 + $(rand 3000)))
  cost=$(( (input * 3 + output * 15) / 100 ))  # in 1/10000 dollars: $3 and $15 a million
  now="$(date +%s)000000000"
  attr() { printf '{"key":"%s","value":{"stringValue":"%s"}}' "$1" "$2"; }
  record="{\"timeUnixNano\":\"$now\",\"body\":{\"stringValue\":\"claude_code.api_request\"},\"attributes\":[$(attr event.name api_request),$(attr model claude-sonnet-4-5),$(attr input_tokens $input),$(attr output_tokens $output),$(attr cost_usd "0.$(printf '%04d' $cost)"),$(attr duration_ms $ms)]}"
  post "$otlp/v1/logs" "{\"resourceLogs\":[{\"resource\":{\"attributes\":[$(attr service.name claude-code)]},\"scopeLogs\":[{\"scope\":{\"name\":\"com.anthropic.claude_code\"},\"logRecords\":[$record]}]}]}" >/dev/null 2>&1
  return 0
}

think() {  # the model at work: an API request and a pause of a few seconds
  api_request
  nap $((2 + $(rand 4)))
}

edit() {  # edit the workspace copy of $1
  copy="$ws/$1.md"
  if [ -f "$copy" ] && printf '\n<!-- %s: edited by %s at %s -->\n' "$1" "$agent" "$(date -u +%H:%M:%S)" >> "$copy" 2>/dev/null; then
    say "edited $copy"
  else
    say "could not edit $copy"
  fi
}

new_document() {  # create a CR (left checked out to us), edit it; $doc is its id
  doc=""
  call qms_create "$agent" "\"doc_type\":\"CR\",\"title\":\"Demo change $(rand 1000) by $agent\"" || return 1
  doc=$(printf '%s' "$out" | grep -o 'CR-[0-9]*' | head -n 1)
  [ -n "$doc" ] && mine="$mine $doc"
  think
  [ -n "$doc" ] && edit "$doc"
}

revise() {  # check one of ours out, edit it, check it in
  set -- $mine
  [ $# -gt 0 ] || return 0
  shift $(rand $#)
  call qms_checkout "$agent" "\"doc_id\":\"$1\"" || return 0
  think
  edit "$1"
  call qms_checkin "$agent" "\"doc_id\":\"$1\""
}

misbehave() {  # what the rogue does now and then: act as another agent (0), write where it may not (1)
  case ${1:-$(rand 2)} in
    0) say "trying to act as claude (the gateway should refuse)"; call qms_inbox claude ;;
    1) if ( : > /pipe-dream/rogue-was-here ) 2>/dev/null; then
         say "wrote /pipe-dream/rogue-was-here: /pipe-dream is NOT read-only"
       else
         say "tried to write /pipe-dream: refused (read-only)"
       fi ;;
  esac
}

go_quiet() {  # leave $doc checked out and go quiet: the panel sees it turn stale
  [ -n "$doc" ] || return 0
  say "leaving $doc checked out and going quiet for ${quiet}s"
  hook "{\"hook_event_name\":\"Stop\",\"session_id\":\"$session\",\"stop_hook_active\":false}"
  nap "$quiet"
}

trap 'say "stopping"; exit 0' TERM INT HUP
say "starting ($role, $mode) against $mcp"
hook "{\"hook_event_name\":\"SessionStart\",\"session_id\":\"$session\",\"source\":\"startup\",\"cwd\":\"/projects\"}"
case "$role" in worker|drifter)  # pick up where the last session left off: check in what the workspace holds
  for copy in "$ws"/*.md; do
    [ -f "$copy" ] || continue
    left=${copy##*/}; left=${left%.md}
    say "found $left in the workspace from an earlier session"
    call qms_checkin "$agent" "\"doc_id\":\"$left\""
  done ;;
esac
round=0
while :; do
  if [ -n "${QMS_DEMO_PARENT:-}" ] && ! kill -0 "$QMS_DEMO_PARENT" 2>/dev/null; then
    say "the demo that started me is gone; stopping"; exit 0
  fi
  round=$((round + 1))
  call qms_inbox "$agent"
  think
  case "$role" in
    reviewer|rogue)
      call qms_status "$agent" '"doc_id":"CR-002"'
      think
      call qms_read "$agent" '"doc_id":"SOP-002"'
      if [ "$role" = rogue ] && [ $round -eq 1 ]; then misbehave 0; misbehave 1
      elif [ "$role" = rogue ] && [ $(rand 3) -eq 0 ]; then misbehave
      fi ;;
    *)
      if [ "$role" = drifter ] && [ $round -eq 1 ]; then
        new_document && go_quiet && call qms_checkin "$agent" "\"doc_id\":\"$doc\""
        continue
      fi
      if [ $(rand 4) -eq 0 ]; then
        hook "{\"hook_event_name\":\"Notification\",\"session_id\":\"$session\",\"notification_type\":\"permission_prompt\",\"message\":\"Claude needs your permission to use Bash\"}"
        say "waiting for permission to run Bash (pretend)"
        nap $((4 + $(rand 4)))
      fi
      new_document && { call qms_checkin "$agent" "\"doc_id\":\"$doc\"" || true; }
      think
      revise
      if [ $((round % 3)) -eq 0 ] && new_document; then go_quiet; call qms_checkin "$agent" "\"doc_id\":\"$doc\""; fi ;;
  esac
  hook "{\"hook_event_name\":\"Stop\",\"session_id\":\"$session\",\"stop_hook_active\":false}"
  nap $((3 + $(rand 5)))
done
