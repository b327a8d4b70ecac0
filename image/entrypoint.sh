#!/bin/bash
# Runs the agent (default: claude; any command given to the container instead) in the tmux
# session "agent" and keeps the container up while it runs, so an operator can attach:
#   docker exec -it CONTAINER tmux attach -t agent
# SIGTERM (docker stop) is forwarded to the agent's process group (SIGHUP follows after
# QMS_AGENT_STOP_GRACE seconds, default 5); the container exits with the agent's exit status.
# When the agent ends, the last screen of its pane goes to the container's log (docker logs).
set -u

session=${QMS_AGENT_SESSION:-agent}
status_file=/run/qms-agent.status
screen_file=/run/qms-agent.screen

if [ "${1:-}" = "--in-session" ]; then
    # Inside the tmux pane: run the agent, then record how it ended. The trap only keeps this
    # shell alive until the agent has handled the signal; the agent itself gets the default.
    shift
    trap : TERM HUP INT
    "$@"
    code=$?
    # The pane as the agent left it (and what scrolled or was cleared off it just before), as
    # plain text for the log: why it ended, even when it ended at once.
    tmux capture-pane -p -J -S -"${QMS_AGENT_LOG_LINES:-60}" -t "${TMUX_PANE:-}" >"$screen_file" 2>/dev/null
    echo "$code" >"$status_file"
    exit 0
fi

[ "$#" -gt 0 ] || set -- claude
rm -f "$status_file" "$screen_file"
tmux new-session -d -s "$session" -- "$0" --in-session "$@" || exit 1
# The pane's shell leads its own session and process group: signals go to the whole group.
group=$(tmux display-message -p -t "$session" '#{pane_pid}' 2>/dev/null)  # empty if already over

grace=${QMS_AGENT_STOP_GRACE:-5}
stop_at=""
stop() {
    stop_at=$SECONDS
    [ -z "$group" ] || kill -TERM -- "-$group" 2>/dev/null
}
trap stop TERM INT

while [ ! -e "$status_file" ] && tmux has-session -t "$session" 2>/dev/null; do
    if [ -n "$stop_at" ] && [ $((SECONDS - stop_at)) -ge "$grace" ]; then
        kill -HUP -- "-$group" 2>/dev/null  # the agent ignored SIGTERM: hang it up
        stop_at=""
    fi
    sleep 1 &
    wait $!
done
for _ in 1 2 3 4 5 6 7 8 9 10; do  # the pane's shell may still be writing the status
    [ -e "$status_file" ] && break
    sleep 0.1
done
status=$(cat "$status_file" 2>/dev/null || echo 1)
tmux kill-server 2>/dev/null
if [ -s "$screen_file" ]; then
    echo "qms-agent: ${1##*/} exited with status $status; its last screen:"
    sed -e 's/[[:space:]]*$//' -e '/./,$!d' -e :a -e '/^\n*$/{$d;N;ba' -e '}' "$screen_file"  # without blank lines around it
else
    echo "qms-agent: ${1##*/} exited with status $status"
fi
exit "$status"
