#!/usr/bin/env bash
# Start a local single-node Apache Cassandra 5.0 (no Docker) for dev/CI.
#
# Idempotent:
#   * if something already answers CQL on 127.0.0.1:9042 -> leave it alone, exit 0
#   * if the node from our pid file is still booting     -> just wait for it
#   * otherwise fetch jars (Maven Central) if needed, start CassandraDaemon in
#     the background and wait until the native protocol answers.
#
# Environment overrides:
#   CASSANDRA_DATA_DIR       storage root (default: <repo>/cassandra/data)
#   CASSANDRA_HEAP           max JVM heap, -Xmx (default: 1G)
#   CASSANDRA_HEAP_MIN       initial heap, -Xms (default: 256M). Cassandra mlockall()s
#                            the committed heap at boot when running as root, so
#                            -Xms is resident from the start; keep it small for a
#                            lean test node, or set it to CASSANDRA_HEAP for
#                            production-like behaviour.
#   CASSANDRA_LOG_DIR        logs + pid file (default: <repo>/cassandra/logs)
#   CASSANDRA_CONF_DIR       cassandra.yaml + logback.xml (default: <repo>/cassandra/conf)
#   CASSANDRA_CQL_HOST       address whose CQL port tells that the node is up (default:
#                            127.0.0.1); scripts/cassandra-cluster-start.sh sets both
#   CASSANDRA_START_TIMEOUT  seconds to wait for CQL (default: 180)
#   CASSANDRA_RING_DELAY_MS  how long a node waits to hear its peers (default: 100, for a node
#                            alone; a node of a cluster must outwait its seed's first answer)
#   CASSANDRA_UNSAFE_SYSTEM  true (default): system tables skip the commit log, for a fast
#                            disposable node; false for a node that must survive kill -9 (a
#                            killed node forgot the schema of keyspaces made just before)
#   CASSANDRA_JMX_PORT       enable local-only JMX on this port (default: off)
#   CASSANDRA_JAVA           java binary (default: first Java 17 among $JAVA_HOME,
#                            java on PATH, /usr/lib/jvm/*17*)
#   CASSANDRA_JVM_OPTS       extra JVM options appended last
#   MAVEN_OPTS               passed through to mvn (e.g. -Dmaven.repo.local=...)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
CASS_HOME="$REPO_ROOT/cassandra"
CONF_DIR="${CASSANDRA_CONF_DIR:-$CASS_HOME/conf}"
LIB_DIR="$CASS_HOME/lib"
LOG_DIR="${CASSANDRA_LOG_DIR:-$CASS_HOME/logs}"
DATA_DIR="${CASSANDRA_DATA_DIR:-$CASS_HOME/data}"
HEAP="${CASSANDRA_HEAP:-1G}"
HEAP_MIN="${CASSANDRA_HEAP_MIN:-256M}"
TIMEOUT="${CASSANDRA_START_TIMEOUT:-180}"
PID_FILE="$LOG_DIR/cassandra.pid"
CQL_HOST="${CASSANDRA_CQL_HOST:-127.0.0.1}"
CQL_PORT=9042

log() { printf '[cassandra-start] %s\n' "$*"; }
die() { printf '[cassandra-start] ERROR: %s\n' "$*" >&2; exit 1; }

# Real native-protocol check: send a CQL v4 OPTIONS frame and expect a
# SUPPORTED response (response version byte 0x84, opcode 0x06).
cql_ready() {
  timeout 3 bash -c '
    exec 3<>"/dev/tcp/$0/$1" || exit 1
    printf "\x04\x00\x00\x00\x05\x00\x00\x00\x00" >&3
    hdr="$(head -c 5 <&3 | od -An -tx1 | tr -d " \n")"
    [ "${hdr:0:2}" = "84" ] && [ "${hdr:8:2}" = "06" ]
  ' "$CQL_HOST" "$CQL_PORT" 2>/dev/null
}

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

show_log_tail() {
  for f in "$LOG_DIR/system.log" "$LOG_DIR/stdout.log"; do
    if [ -s "$f" ]; then
      echo "----- last 60 lines of $f -----" >&2
      tail -n 60 "$f" >&2
    fi
  done
}

wait_for_cql() {
  local pid="$1" start="$2" now
  while :; do
    if cql_ready; then
      now=$(date +%s)
      log "CQL is up on $CQL_HOST:$CQL_PORT (pid $pid, $((now - start))s)"
      return 0
    fi
    if ! pid_alive "$pid"; then
      show_log_tail
      rm -f "$PID_FILE"
      die "Cassandra (pid $pid) exited before CQL came up; logs in $LOG_DIR"
    fi
    now=$(date +%s)
    if [ $((now - start)) -ge "$TIMEOUT" ]; then
      show_log_tail
      log "timed out after ${TIMEOUT}s; stopping pid $pid"
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 20); do pid_alive "$pid" || break; sleep 1; done
      kill -KILL "$pid" 2>/dev/null || true
      rm -f "$PID_FILE"
      die "CQL did not come up on $CQL_HOST:$CQL_PORT within ${TIMEOUT}s"
    fi
    sleep 1
  done
}

T0=$(date +%s)

# 1. Already running? --------------------------------------------------------
if cql_ready; then
  log "something already answers CQL on $CQL_HOST:$CQL_PORT; leaving it alone"
  exit 0
fi

mkdir -p "$LOG_DIR" "$DATA_DIR/triggers"

# Serialise concurrent invocations (two JVMs on one data dir would be bad).
# fd 9 is closed for the java child below so the lock dies with this script.
exec 9>"$LOG_DIR/.start.lock"
if ! flock -w "$TIMEOUT" 9; then die "could not get $LOG_DIR/.start.lock"; fi
if cql_ready; then
  log "CQL came up on $CQL_HOST:$CQL_PORT while waiting for the start lock"
  exit 0
fi

if [ -f "$PID_FILE" ]; then
  OLD_PID="$(cat "$PID_FILE" 2>/dev/null || true)"
  if pid_alive "$OLD_PID" && grep -q CassandraDaemon "/proc/$OLD_PID/cmdline" 2>/dev/null; then
    log "Cassandra (pid $OLD_PID) is already starting; waiting for CQL"
    wait_for_cql "$OLD_PID" "$T0"
    exit 0
  fi
  rm -f "$PID_FILE"
fi

# 2. Jars from Maven Central -----------------------------------------------
# lib/.complete records the pom checksum of the last successful copy, so an
# interrupted download or a version bump in pom.xml triggers a fresh fetch.
POM_SUM="$(sha256sum "$CASS_HOME/pom.xml" | cut -d' ' -f1)"
if [ "$(cat "$LIB_DIR/.complete" 2>/dev/null || true)" != "$POM_SUM" ]; then
  command -v mvn >/dev/null || die "mvn not found (needed to fetch Cassandra jars)"
  log "fetching Cassandra jars from Maven Central into $LIB_DIR"
  rm -rf "$LIB_DIR"
  if ! mvn -B -Dstyle.color=never -f "$CASS_HOME/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$LIB_DIR" >"$LOG_DIR/mvn.log" 2>&1; then
    tail -n 40 "$LOG_DIR/mvn.log" >&2
    rm -rf "$LIB_DIR"
    die "mvn dependency:copy-dependencies failed (full output: $LOG_DIR/mvn.log)"
  fi
  echo "$POM_SUM" > "$LIB_DIR/.complete"
  log "jars fetched ($(ls "$LIB_DIR"/*.jar | wc -l) files, $(( $(date +%s) - T0 ))s)"
fi

JAMM_JAR="$(ls "$LIB_DIR"/jamm-*.jar 2>/dev/null | head -n1 || true)"
[ -n "$JAMM_JAR" ] || die "jamm jar missing from $LIB_DIR (delete it and retry)"

# 3. Java --------------------------------------------------------------------
# Cassandra 5.0 runs on Java 17 (or 11). Prefer CASSANDRA_JAVA, then
# $JAVA_HOME, then java on PATH, then any installed JDK 17, and take the first
# one that is actually 17 (11 as a last resort).
java_major() { "$1" -version 2>&1 | sed -n 's/.* version "\([0-9]*\).*/\1/p' | head -n1; }
JAVA=""
if [ -n "${CASSANDRA_JAVA:-}" ]; then
  JAVA="$CASSANDRA_JAVA"
else
  CANDIDATES=()
  [ -n "${JAVA_HOME:-}" ] && CANDIDATES+=("$JAVA_HOME/bin/java")
  command -v java >/dev/null && CANDIDATES+=("$(command -v java)")
  for j in /usr/lib/jvm/*17*/bin/java /usr/lib/jvm/*11*/bin/java; do
    [ -x "$j" ] && CANDIDATES+=("$j")
  done
  for want in 17 11; do
    for j in "${CANDIDATES[@]}"; do
      if [ -x "$j" ] && [ "$(java_major "$j")" = "$want" ]; then JAVA="$j"; break 2; fi
    done
  done
fi
[ -n "$JAVA" ] || die "no Java 17 (or 11) found; set CASSANDRA_JAVA or JAVA_HOME"
JAVA_MAJOR="$(java_major "$JAVA")"
case "$JAVA_MAJOR" in
  17) ;;
  11) log "warning: using Java 11 ($JAVA); these options are tuned for Java 17" ;;
  *)  die "Cassandra 5.0 needs Java 17 (or 11); $JAVA is Java '${JAVA_MAJOR}'" ;;
esac

# 4. JVM options ---------------------------------------------------------
# JVM size string (e.g. 512M, 2G, 1048576k) -> MiB, to keep -Xms <= -Xmx.
to_mib() {
  local v="$1" n
  n="${v%[kKmMgG]}"
  case "$v" in
    *[kK]) echo $(( n / 1024 )) ;;
    *[mM]) echo "$n" ;;
    *[gG]) echo $(( n * 1024 )) ;;
    *)     echo $(( n / 1048576 )) ;;
  esac
}
for h in "$HEAP" "$HEAP_MIN"; do
  [[ "$h" =~ ^[0-9]+[kKmMgG]?$ ]] || die "bad heap size '$h' (use e.g. 512M or 1G)"
done
if [ "$(to_mib "$HEAP_MIN")" -gt "$(to_mib "$HEAP")" ]; then HEAP_MIN="$HEAP"; fi

JVM_OPTS=(
  -Xms"$HEAP_MIN" -Xmx"$HEAP"
  -Xss256k
  -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1
  -XX:MaxGCPauseMillis=300
  -XX:+UseThreadPriorities
  -XX:+PerfDisableSharedMem
  -XX:+ExitOnOutOfMemoryError
  -ea -da:net.openhft...
  -Djava.net.preferIPv4Stack=true
  -Djdk.attach.allowAttachSelf=true
  # Java 17 module access Cassandra 5.0 (and chronicle/netty/jamm) rely on
  --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
  --add-exports java.base/jdk.internal.ref=ALL-UNNAMED
  --add-exports java.base/sun.nio.ch=ALL-UNNAMED
  --add-exports java.base/java.lang.ref=ALL-UNNAMED
  --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
  --add-exports java.sql/java.sql=ALL-UNNAMED
  --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
  --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
  --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
  --add-opens java.base/java.lang=ALL-UNNAMED
  --add-opens java.base/java.lang.module=ALL-UNNAMED
  --add-opens java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens java.base/java.io=ALL-UNNAMED
  --add-opens java.base/java.nio=ALL-UNNAMED
  --add-opens java.base/java.util=ALL-UNNAMED
  --add-opens java.base/java.util.concurrent=ALL-UNNAMED
  --add-opens java.base/java.util.concurrent.atomic=ALL-UNNAMED
  --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
  --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
  --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
  --add-opens java.base/jdk.internal.math=ALL-UNNAMED
  --add-opens java.base/jdk.internal.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
  --add-opens java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
  --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
  # netty on Java 9+
  -Dio.netty.tryReflectionSetAccessible=true
  -Dio.netty.allocator.useCacheForAllThreads=true
  -Dio.netty.allocator.maxOrder=11
  # object sizing agent used by memtables
  -javaagent:"$JAMM_JAR"
  # configuration, storage and logs
  -Dcassandra.config="file://$CONF_DIR/cassandra.yaml"
  -Dcassandra.storagedir="$DATA_DIR"
  -Dcassandra.logdir="$LOG_DIR"
  -Dlogback.configurationFile="$CONF_DIR/logback.xml"
  -Dcassandra-foreground=yes
  # fast single-node boot for tests
  -Dcassandra.skip_wait_for_gossip_to_settle=0
  -Dcassandra.ring_delay_ms="${CASSANDRA_RING_DELAY_MS:-100}"
  -Dcassandra.superuser_setup_delay_ms=0
  -Dcassandra.unsafesystem="${CASSANDRA_UNSAFE_SYSTEM:-true}"
  -Dcassandra.shutdown_announce_in_ms=0
  -Dcassandra.triggers_dir="$DATA_DIR/triggers"
)
# Cassandra installs a SecurityManager (UDF sandbox). Java 17 permits that
# (with a deprecation warning); say so explicitly since newer JDKs default to
# "disallow". Java 11 does not understand the value "allow".
if [ "$JAVA_MAJOR" -ge 17 ]; then JVM_OPTS+=(-Djava.security.manager=allow); fi
if [ -n "${CASSANDRA_JMX_PORT:-}" ]; then
  JVM_OPTS+=(-Dcassandra.jmx.local.port="$CASSANDRA_JMX_PORT"
             -Dcom.sun.management.jmxremote.authenticate=false)
fi
if [ -n "${CASSANDRA_JVM_OPTS:-}" ]; then
  # shellcheck disable=SC2206
  JVM_OPTS+=($CASSANDRA_JVM_OPTS)
fi

# 5. Launch ------------------------------------------------------------------
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-4}"
{
  echo
  echo "===== $(date -u +%Y-%m-%dT%H:%M:%SZ) starting Cassandra (heap $HEAP_MIN..$HEAP, data $DATA_DIR) ====="
} >> "$LOG_DIR/stdout.log"

cd "$CASS_HOME"
# setsid: own session, so the node outlives this script and the caller's
# terminal/process group (Ctrl-C in the caller doesn't reach it).
setsid "$JAVA" "${JVM_OPTS[@]}" \
  -cp "$CONF_DIR:$LIB_DIR/*" \
  org.apache.cassandra.service.CassandraDaemon \
  </dev/null >>"$LOG_DIR/stdout.log" 2>&1 9>&- &
PID=$!
echo "$PID" > "$PID_FILE"
log "started Cassandra pid $PID (heap $HEAP_MIN..$HEAP, data $DATA_DIR, logs $LOG_DIR); waiting for CQL (timeout ${TIMEOUT}s)"

wait_for_cql "$PID" "$T0"
