#!/usr/bin/env bash
# Stop the Redis Cluster started by scripts/redis-cluster-start.sh: only the
# redis-server processes named by its pid files, nothing else.
#
# Environment overrides:
#   REDIS_CLUSTER_DIR   must match the one used for start (default: <repo>/redis-cluster)
#   REDIS_CLUSTER_WIPE  1 to also delete the folder (node configs, logs)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${REDIS_CLUSTER_DIR:-$(cd "$SCRIPT_DIR/.." && pwd)/redis-cluster}"

log() { printf '[redis-cluster-stop] %s\n' "$*" >&2; }

shopt -s nullglob
for pid_file in "$DIR"/*/redis.pid; do
  pid="$(cat "$pid_file" 2>/dev/null || true)"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q redis-server "/proc/$pid/cmdline" 2>/dev/null; then
    # A paused node (SIGSTOP) would never act on SIGTERM.
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    log "stopped $(basename "$(dirname "$pid_file")") (pid $pid)"
  fi
  rm -f "$pid_file"
done
if [ "${REDIS_CLUSTER_WIPE:-0}" = 1 ]; then rm -rf "$DIR"; fi
