#!/usr/bin/env bash
# Stop the nodes started by scripts/cassandra-cluster-start.sh, each through
# scripts/cassandra-stop.sh and its own pid file: nothing else is touched.
#
# Environment overrides:
#   CASSANDRA_CLUSTER_DIR  must match the one used for start (default: <repo>/cassandra/cluster)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${CASSANDRA_CLUSTER_DIR:-$(cd "$SCRIPT_DIR/.." && pwd)/cassandra/cluster}"

shopt -s nullglob
for node in "$DIR"/node*/; do
  CASSANDRA_LOG_DIR="${node}logs" "$SCRIPT_DIR/cassandra-stop.sh"
done
