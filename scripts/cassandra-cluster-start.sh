#!/usr/bin/env bash
# Start a local three-node Apache Cassandra 5.0 cluster on loopback addresses,
# one node at a time, each through scripts/cassandra-start.sh (same jars, same
# JVM options) with a configuration of its own.
#
# Nodes listen on 127.0.0.2, 127.0.0.3 and 127.0.0.4 by default (every 127.x
# address routes to `lo` on Linux): 127.0.0.1 is left to the single dev node
# of scripts/cassandra-start.sh, whose ports 7000 and 9042 they would collide
# with. Each node owns one token, fixed in advance (initial_token), and
# auto_bootstrap is off: a fresh cluster has nothing to stream, so a node joins
# in seconds instead of minutes. Hinted handoff is on, so a node that was down
# for less than max_hint_window gets the writes it missed.
#
# Connect with RECEIPTS_CASSANDRA_CONTACT_POINTS=127.0.0.2:9042,127.0.0.3:9042,127.0.0.4:9042
# and a keyspace at RF 3, e.g.
# RECEIPTS_CASSANDRA_REPLICATION="{'class': 'NetworkTopologyStrategy', 'datacenter1': 3}".
#
# On this machine kind (2 cores) the three nodes answer CQL about 35 s after
# the start, one ring of three tokens (test/cassandra-cluster-faults.test.ts).
#
# `--node N` (re)starts node N alone with the configuration written before,
# e.g. after it was killed: the others are left as they are.
#
# Environment overrides:
#   CASSANDRA_CLUSTER_DIR      folder of the cluster: node<N>/{conf,data,logs} (default: <repo>/cassandra/cluster)
#   CASSANDRA_CLUSTER_ADDRESSES three addresses, space separated (default: 127.0.0.2 127.0.0.3 127.0.0.4)
#   CASSANDRA_HEAP             per node (default here: 512M); CASSANDRA_HEAP_MIN (default here: 256M)
#   CASSANDRA_RING_DELAY_MS    per node (default here: 30000): a node that restarts first asks
#                              the seed about the ring, and gives up after this long (the dev
#                              node's 100 ms made a restart on a loaded machine fail in 3 s)
#   CASSANDRA_UNSAFE_SYSTEM    per node (default here: false): the system tables are durable, so
#                              a node killed with -9 comes back knowing every keyspace (with the
#                              dev node's `true`, a killed node forgot the test keyspace made
#                              seconds before and failed every write to it)
#   CASSANDRA_CLUSTER_DRY_RUN  1: write the configurations, start nothing
#   and everything scripts/cassandra-start.sh reads (CASSANDRA_JAVA, CASSANDRA_START_TIMEOUT, ...)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CASS_HOME="$(cd "$SCRIPT_DIR/.." && pwd)/cassandra"
DIR="${CASSANDRA_CLUSTER_DIR:-$CASS_HOME/cluster}"
read -r -a ADDRESSES <<<"${CASSANDRA_CLUSTER_ADDRESSES:-127.0.0.2 127.0.0.3 127.0.0.4}"
# Murmur3 tokens spaced evenly over the ring: -2^63 + k * 2^64 / 3.
TOKENS=(-9223372036854775808 -3074457345618258603 3074457345618258602)

log() { printf '[cassandra-cluster-start] %s\n' "$*"; }

[ "${#ADDRESSES[@]}" -eq 3 ] || { log "need three addresses, have: ${ADDRESSES[*]}"; exit 1; }

ONLY=""
if [ "${1:-}" = --node ]; then
  ONLY="${2:-}"
  [[ "$ONLY" =~ ^[123]$ ]] || { log "--node takes 1, 2 or 3, not '${ONLY}'"; exit 1; }
fi

for i in 0 1 2; do
  node="$DIR/node$((i + 1))"
  mkdir -p "$node/conf" "$node/data" "$node/logs"
  cp "$CASS_HOME/conf/logback.xml" "$node/conf/"
  # The dev node's configuration, with this node's addresses, the first node as seed, a fixed
  # token, no bootstrap streaming and hinted handoff on.
  sed -e "s/^cluster_name: .*/cluster_name: 'readreceipts-cluster'/" \
      -e "s/- seeds: .*/- seeds: \"${ADDRESSES[0]}:7000\"/" \
      -e "s/^listen_address: .*/listen_address: ${ADDRESSES[$i]}/" \
      -e "s/^rpc_address: .*/rpc_address: ${ADDRESSES[$i]}/" \
      -e "s/^hinted_handoff_enabled: .*/hinted_handoff_enabled: true/" \
      -e "s/^commitlog_total_space: .*/commitlog_total_space: 256MiB/" \
      "$CASS_HOME/conf/cassandra.yaml" >"$node/conf/cassandra.yaml"
  {
    echo
    echo "# --- written by scripts/cassandra-cluster-start.sh for node $((i + 1)) ---"
    echo "initial_token: ${TOKENS[$i]}"
    echo "auto_bootstrap: false"
    echo "max_hint_window: 1h"
  } >>"$node/conf/cassandra.yaml"
done

if [ "${CASSANDRA_CLUSTER_DRY_RUN:-0}" = 1 ]; then
  log "dry run: configurations written under $DIR"
  exit 0
fi

# One at a time, the seed first: each call returns once its node answers CQL.
for i in 0 1 2; do
  [ -z "$ONLY" ] || [ "$ONLY" = $((i + 1)) ] || continue
  node="$DIR/node$((i + 1))"
  log "starting node $((i + 1)) on ${ADDRESSES[$i]}"
  CASSANDRA_CONF_DIR="$node/conf" CASSANDRA_DATA_DIR="$node/data" CASSANDRA_LOG_DIR="$node/logs" \
    CASSANDRA_CQL_HOST="${ADDRESSES[$i]}" CASSANDRA_HEAP="${CASSANDRA_HEAP:-512M}" \
    CASSANDRA_HEAP_MIN="${CASSANDRA_HEAP_MIN:-256M}" \
    CASSANDRA_RING_DELAY_MS="${CASSANDRA_RING_DELAY_MS:-30000}" \
    CASSANDRA_UNSAFE_SYSTEM="${CASSANDRA_UNSAFE_SYSTEM:-false}" "$SCRIPT_DIR/cassandra-start.sh"
done
if [ -z "$ONLY" ]; then log "three nodes answer CQL: ${ADDRESSES[*]} (port 9042)"; fi
