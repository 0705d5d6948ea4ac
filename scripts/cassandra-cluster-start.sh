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
# NOT YET RUN on this machine (three JVMs booting take minutes of CPU, and the
# machine was shared when this was written): the generated configurations were
# checked with CASSANDRA_CLUSTER_DRY_RUN=1 only.
#
# Environment overrides:
#   CASSANDRA_CLUSTER_DIR      folder of the cluster: node<N>/{conf,data,logs} (default: <repo>/cassandra/cluster)
#   CASSANDRA_CLUSTER_ADDRESSES three addresses, space separated (default: 127.0.0.2 127.0.0.3 127.0.0.4)
#   CASSANDRA_HEAP             per node (default here: 512M); CASSANDRA_HEAP_MIN (default here: 256M)
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
  node="$DIR/node$((i + 1))"
  log "starting node $((i + 1)) on ${ADDRESSES[$i]}"
  CASSANDRA_CONF_DIR="$node/conf" CASSANDRA_DATA_DIR="$node/data" CASSANDRA_LOG_DIR="$node/logs" \
    CASSANDRA_CQL_HOST="${ADDRESSES[$i]}" CASSANDRA_HEAP="${CASSANDRA_HEAP:-512M}" \
    CASSANDRA_HEAP_MIN="${CASSANDRA_HEAP_MIN:-256M}" "$SCRIPT_DIR/cassandra-start.sh"
done
log "three nodes answer CQL: ${ADDRESSES[*]} (port 9042)"
