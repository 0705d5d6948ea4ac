#!/usr/bin/env bash
# Start a local Redis Cluster: three masters and three replicas, on loopback.
#
# Each node is `redis-server --cluster-enabled yes` with its own folder under
# REDIS_CLUSTER_DIR (node config, log, pid file); the cluster is formed once with
# `redis-cli --cluster create --cluster-replicas 1`, and the script returns when
# every node says `cluster_state:ok`. Run it again after a node died: it restarts
# only the nodes whose pid file names no live redis-server, and they rejoin the
# cluster from their node config (a former master comes back as a replica).
#
# Prints the nodes as RECEIPTS_REDIS_CLUSTER_NODES wants them, and writes the
# same line to $REDIS_CLUSTER_DIR/nodes.
#
# Environment overrides:
#   REDIS_CLUSTER_DIR              folder of this cluster (default: <repo>/redis-cluster)
#   REDIS_CLUSTER_PORTS            six ports, space separated (default: the ports of an
#                                  earlier start, else six free ones from 7001 up)
#   REDIS_CLUSTER_NODE_TIMEOUT_MS  cluster-node-timeout: how long a silent master stays
#                                  master before its replica takes over (default: 2000)
#   REDIS_CLUSTER_START_TIMEOUT    seconds to wait for the nodes and cluster_state:ok (default: 30)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${REDIS_CLUSTER_DIR:-$(cd "$SCRIPT_DIR/.." && pwd)/redis-cluster}"
NODE_TIMEOUT="${REDIS_CLUSTER_NODE_TIMEOUT_MS:-2000}"
TIMEOUT="${REDIS_CLUSTER_START_TIMEOUT:-30}"
HOST=127.0.0.1

log() { printf '[redis-cluster-start] %s\n' "$*" >&2; }

port_free() { ! (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

mkdir -p "$DIR"
if [ -n "${REDIS_CLUSTER_PORTS:-}" ]; then
  read -r -a PORTS <<<"$REDIS_CLUSTER_PORTS"
elif [ -f "$DIR/ports" ]; then
  read -r -a PORTS <"$DIR/ports"
else
  PORTS=()
  candidate=7001
  while [ "${#PORTS[@]}" -lt 6 ] && [ "$candidate" -lt 7200 ]; do
    if port_free "$candidate" && port_free $((candidate + 10000)); then PORTS+=("$candidate"); fi
    candidate=$((candidate + 1))
  done
fi
if [ "${#PORTS[@]}" -ne 6 ]; then
  log "need six ports, have: ${PORTS[*]:-none}"
  exit 1
fi
echo "${PORTS[*]}" >"$DIR/ports"

running() {
  local pid
  pid="$(cat "$DIR/$1/redis.pid" 2>/dev/null || true)"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q redis-server "/proc/$pid/cmdline" 2>/dev/null
}

for port in "${PORTS[@]}"; do
  node="$DIR/$port"
  mkdir -p "$node"
  if running "$port"; then continue; fi
  log "starting node $HOST:$port"
  # No persistence: a restarted node comes back empty and resyncs from its master.
  redis-server --port "$port" --bind "$HOST" --daemonize yes \
    --dir "$node" --pidfile "$node/redis.pid" --logfile "$node/redis.log" \
    --cluster-enabled yes --cluster-config-file nodes.conf \
    --cluster-node-timeout "$NODE_TIMEOUT" \
    --save "" --appendonly no
done

deadline=$(($(date +%s) + TIMEOUT))
for port in "${PORTS[@]}"; do
  until timeout 2 redis-cli -h "$HOST" -p "$port" ping >/dev/null 2>&1; do
    # A node that could not bind its port (or its bus port) aborts at once: say so, not hang.
    if grep -q "aborting" "$DIR/$port/redis.log" 2>/dev/null || [ "$(date +%s)" -ge "$deadline" ]; then
      log "node $port did not start (from $DIR/$port/redis.log):"
      tail -n 3 "$DIR/$port/redis.log" >&2 2>/dev/null || true
      exit 1
    fi
    sleep 0.1
  done
done

# Formed already when the first node knows the others (a restart of some nodes).
known="$(redis-cli -h "$HOST" -p "${PORTS[0]}" cluster info | tr -d '\r' | sed -n 's/^cluster_known_nodes://p')"
if [ "${known:-1}" -lt 6 ]; then
  log "creating the cluster"
  addresses=()
  for port in "${PORTS[@]}"; do addresses+=("$HOST:$port"); done
  redis-cli --cluster create "${addresses[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/create.log"
fi

for port in "${PORTS[@]}"; do
  until redis-cli -h "$HOST" -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "node $port not cluster_state:ok after ${TIMEOUT}s (see $DIR/$port/redis.log)"
      exit 1
    fi
    sleep 0.2
  done
done

# A replica that has not synced with its master yet would refuse to take over from it.
for port in "${PORTS[@]}"; do
  until ! redis-cli -h "$HOST" -p "$port" info replication | grep -q '^role:slave' ||
    redis-cli -h "$HOST" -p "$port" info replication | grep -q '^master_link_status:up'; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "replica $port has not synced with its master after ${TIMEOUT}s"
      exit 1
    fi
    sleep 0.2
  done
done

nodes="$(printf "$HOST:%s," "${PORTS[@]}")"
echo "${nodes%,}" >"$DIR/nodes"
log "cluster ok"
echo "${nodes%,}"
