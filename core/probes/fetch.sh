# The doctor's handshake with curl or wget, run as: sh -c "$(fetch.sh)" sh TIMEOUT TOOL MODE BODY ACCEPT
# with the URL as the first line of standard input (never in this exec's argv: the engine records
# that). MODE is "sse" (wait for the endpoint event) or "post" (an initialize, wait for its result).
# Prints one line: QMSPROBE outcome=ok|fail|timeout [status=N] ms=N [rc=N] [err=text].
#
# The fetch runs in the background writing to a temporary file while the shell polls it, so the
# probe ends as soon as the handshake is seen (an SSE stream never ends by itself) and always by
# its deadline (docker cannot kill an exec'd process). Without a writable $TMPDIR it reads the
# fetch through a pipe under timeout(1) instead, which always lasts the full timeout on SSE.
# curl reads the URL from its config on stdin (so it is not in curl's argv either); busybox wget
# has no such option and takes it as an argument (seen only inside the container, which has the
# same URL in its MCP config anyway).
IFS= read -r u
t=$1; tool=$2; mode=$3; body=$4; accept=$5
now() { n=$(date +%s%N 2>/dev/null); case "$n" in *N*|'') read up rest < /proc/uptime; echo $(( ${up%.*}${up#*.} * 10 ));; *) echo $(( n / 1000000 ));; esac; }
if [ "$tool" = curl ]; then
  feed() { printf 'url = "%s"\n' "$u"; }
  if [ "$mode" = sse ]; then set -- curl -K - -sS -f -N -m "$t" -H 'Accept: text/event-stream'
  else set -- curl -K - -sS -f -N -m "$t" -H 'Content-Type: application/json' -H "Accept: $accept" --data-binary "$body"; fi
else
  feed() { :; }
  if [ "$mode" = sse ]; then set -- wget -q -O - --header 'Accept: text/event-stream' "$u"
  else set -- wget -q -O - --header 'Content-Type: application/json' --header "Accept: $accept" --post-data "$body" "$u"; fi
fi
t0=$(now); end=$(( t0 + t * 1000 ))
out=${TMPDIR:-/tmp}/.qmsprobe.$$; err=$out.err
if ! ( : > "$out" && : > "$err" ) 2>/dev/null; then  # a subshell: a failed redirection ends a shell
  feed | timeout "$t" "$@" 2>&1 | { ev=; txt=; while IFS= read -r line; do
      case "$mode:$line" in
        sse:event:*endpoint*) ev=1;;
        sse:data:*) if [ -n "$ev" ]; then echo "QMSPROBE outcome=ok status=200 ms=$(( $(now) - t0 ))"; exit 0; fi;;
        post:*'"result"'*) echo "QMSPROBE outcome=ok status=200 ms=$(( $(now) - t0 ))"; exit 0;;
      esac
      txt="$txt $line"
    done
    if [ -z "$txt" ]; then echo "QMSPROBE outcome=timeout ms=$(( $(now) - t0 ))"; else echo "QMSPROBE outcome=fail ms=$(( $(now) - t0 )) err=$txt"; fi
    exit 1; }
  exit $?
fi
feed | "$@" > "$out" 2> "$err" &
pid=$!
seen() { if [ "$mode" = sse ]; then grep -q '^event: *endpoint' "$out" && grep -q '^data:' "$out"; else grep -q '"result"' "$out"; fi; }
finish() { rm -f "$out" "$err"; exit "$1"; }
while :; do
  if seen; then ms=$(( $(now) - t0 )); kill $pid 2>/dev/null; echo "QMSPROBE outcome=ok status=200 ms=$ms"; finish 0; fi
  if ! kill -0 $pid 2>/dev/null; then
    wait $pid; rc=$?; ms=$(( $(now) - t0 ))
    if seen; then echo "QMSPROBE outcome=ok status=200 ms=$ms"; finish 0; fi
    echo "QMSPROBE outcome=fail rc=$rc ms=$ms err=$(tr '\n' ' ' < "$err") $(head -c 200 "$out" | tr '\n' ' ')"; finish 1
  fi
  if [ "$(now)" -ge "$end" ]; then kill $pid 2>/dev/null; echo "QMSPROBE outcome=timeout ms=$(( $(now) - t0 ))"; finish 1; fi
  sleep 0.02 2>/dev/null || sleep 1
done
