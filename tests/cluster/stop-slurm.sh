#!/usr/bin/env bash
# Stop the daemons start-slurm.sh started (by pid, newest first), nothing else.
set -u
STATE=${SLURM_TEST_STATE:-/tmp/unetflow-slurm}
[ -f "$STATE/pids" ] || exit 0
for pid in $(tac "$STATE/pids"); do
  kill "$pid" 2>/dev/null || true
done
for pid in $(cat "$STATE/pids"); do
  for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null || true
done
: > "$STATE/pids"
# put back the configuration start-slurm.sh replaced, or remove the one it wrote
if [ -f "$STATE/etc-slurm-ours" ]; then
  for conf in slurm.conf slurmdbd.conf gres.conf; do
    if [ -f "$STATE/etc-slurm-saved/$conf" ]; then
      cp -p "$STATE/etc-slurm-saved/$conf" "/etc/slurm/$conf"
    else
      rm -f "/etc/slurm/$conf"
    fi
  done
  rm -f "$STATE/etc-slurm-ours"
fi
