#!/usr/bin/env bash
# Stop the local Cassandra node started by scripts/cassandra-start.sh.
# Uses the pid file in the log dir; exits 0 if the node is not running.
#
# Environment overrides:
#   CASSANDRA_LOG_DIR       must match the one used for start (default: <repo>/cassandra/logs)
#   CASSANDRA_STOP_TIMEOUT  seconds to wait after SIGTERM before SIGKILL (default: 60)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CASS_HOME="$(cd "$SCRIPT_DIR/.." && pwd)/cassandra"
LOG_DIR="${CASSANDRA_LOG_DIR:-$CASS_HOME/logs}"
PID_FILE="$LOG_DIR/cassandra.pid"
STOP_TIMEOUT="${CASSANDRA_STOP_TIMEOUT:-60}"

log() { printf '[cassandra-stop] %s\n' "$*"; }

if [ ! -f "$PID_FILE" ]; then
  log "no pid file ($PID_FILE); not running"
  exit 0
fi

PID="$(cat "$PID_FILE" 2>/dev/null || true)"
if [ -z "$PID" ] || ! kill -0 "$PID" 2>/dev/null; then
  log "pid ${PID:-?} is not running; removing stale pid file"
  rm -f "$PID_FILE"
  exit 0
fi
if ! grep -q CassandraDaemon "/proc/$PID/cmdline" 2>/dev/null; then
  log "pid $PID is not a Cassandra process (stale pid file); removing it"
  rm -f "$PID_FILE"
  exit 0
fi

# SIGTERM runs Cassandra's shutdown hook (drains: flushes memtables, closes
# the commit log) so the next start does not have to replay anything.
log "stopping Cassandra pid $PID"
kill -TERM "$PID" 2>/dev/null || true
START=$(date +%s)
while kill -0 "$PID" 2>/dev/null; do
  if [ $(( $(date +%s) - START )) -ge "$STOP_TIMEOUT" ]; then
    log "still running after ${STOP_TIMEOUT}s; sending SIGKILL"
    kill -KILL "$PID" 2>/dev/null || true
    sleep 1
    break
  fi
  sleep 0.5
done
rm -f "$PID_FILE"
log "stopped ($(( $(date +%s) - START ))s)"
