#!/usr/bin/env bash
# Install (if missing) and start the services the `redis` profile and the tests use, bound to 127.0.0.1:
#   - Redis (Debian's package) on $REDIS_PORT;
#   - Apache Kafka, one KRaft node (broker + controller) on $KAFKA_PORT (controller on $KAFKA_CONTROLLER_PORT),
#     its jars collected from Maven Central by Maven (scripts/kafka/pom.xml) into $STATE/kafka/lib once per version,
#     its data in $STATE/kafka/data;
#   - Spark's Kafka connector for the installed pyspark, with the dependencies pyspark lacks, in $STATE/spark-jars
#     (give them to Spark as `spark.jars`);
#   - PostgreSQL (the server binaries on PATH or Debian's, else Debian's `postgresql`) on $POSTGRES_PORT, the Dagster
#     instance's storage (DAGSTER_POSTGRES_URL; see propensity_assets/instance.py), its data in $STATE/postgres.
# Idempotent: `up` twice is fine; `down` stops only what `up` started (by pid file: SIGTERM, wait, then SIGKILL).
# KAFKA_BOOTSTRAP_SERVERS set to anything but the local broker's address means "use that cluster": no local broker.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE="${PROPENSITY_SERVICES_HOME:-$PWD/var/services}"
VENV="${VENV:-.venv}"
REDIS_PORT="${REDIS_PORT:-6379}"
KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-120}"
KAFKA_HOME="$STATE/kafka"
SPARK_JARS_DIR="$STATE/spark-jars"
MVN_TIMEOUT="${MVN_TIMEOUT:-1200}"
POSTGRES_PORT="${POSTGRES_PORT:-5432}"
POSTGRES_USER="${POSTGRES_USER:-propensity}"
POSTGRES_PASSWORD="${POSTGRES_PASSWORD:-propensity}"  # a local server bound to 127.0.0.1, for tests and make dev
POSTGRES_DB="${POSTGRES_DB:-dagster}"
mkdir -p "$STATE/redis"

# Is $1 a live (not zombie) process whose command line contains $2?
pid_alive() {
  local cmd
  [ -n "$1" ] && cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline") && [[ $cmd == *"$2"* ]]
}

# Does anything accept TCP connections on 127.0.0.1:$1?
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# stop_pidfile NAME PIDFILE CMDLINE_PATTERN TIMEOUT_S: SIGTERM the process the pid file names, wait, then SIGKILL.
stop_pidfile() {
  local name=$1 pidfile=$2 pattern=$3 timeout=$4 pid
  if [ ! -f "$pidfile" ]; then echo "$name: not started by us"; return; fi
  pid=$(cat "$pidfile")
  if ! pid_alive "$pid" "$pattern"; then
    rm -f "$pidfile"; echo "$name: not running (stale pid file removed)"; return
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((timeout * 10))); do
    pid_alive "$pid" "$pattern" || { rm -f "$pidfile"; echo "$name: stopped"; return; }
    sleep 0.1
  done
  echo "$name: still running ${timeout} s after SIGTERM; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do pid_alive "$pid" "$pattern" || break; sleep 0.1; done
  rm -f "$pidfile"
  echo "$name: killed"
}

apt_install() {  # apt_install COMMAND PACKAGE
  command -v "$1" >/dev/null && return
  echo "installing $2 from Debian packages"
  if [ "$(id -u)" -ne 0 ]; then echo "$1 is missing and installing it needs root: sudo apt-get install $2"; exit 1; fi
  timeout 300 apt-get update -qq
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq "$2" >/dev/null
}

# ---------------------------------------------------------------- Redis
redis_up() {
  apt_install redis-server redis-server
  if redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    echo "redis: already up on 127.0.0.1:$REDIS_PORT"; return
  fi
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$STATE/redis" --daemonize yes \
    --pidfile "$STATE/redis/redis.pid" --logfile "$STATE/redis/redis.log" --save "" --appendonly no 9>&-
  for _ in $(seq 1 50); do
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && { echo "redis: up on 127.0.0.1:$REDIS_PORT"; return; }
    sleep 0.1
  done
  echo "redis did not answer on 127.0.0.1:$REDIS_PORT within 5 s; see $STATE/redis/redis.log"; exit 1
}

redis_down() {
  stop_pidfile redis "$STATE/redis/redis.pid" redis-server 10
}

# ---------------------------------------------------------------- Kafka
java_and_maven() {
  command -v java >/dev/null || { echo "Java 17+ is required for Kafka and Spark: apt-get install openjdk-17-jre-headless"; exit 1; }
  apt_install mvn maven
}

# mvn_copy POM OUTPUT_DIR LOG -Dprop=value...: copy a pom's runtime dependencies (from Maven Central) into OUTPUT_DIR.
mvn_copy() {
  local pom=$1 out=$2 log=$3; shift 3
  rm -rf "$out"
  timeout "$MVN_TIMEOUT" mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$out" "$@" >"$log" 2>&1
}

kafka_fetch() {
  local lib="$KAFKA_HOME/lib" t0=$SECONDS
  if [ -f "$lib/.version" ] && [ "$(cat "$lib/.version")" = "$KAFKA_VERSION" ]; then return; fi
  java_and_maven
  echo "kafka: fetching Apache Kafka $KAFKA_VERSION (Scala 2.13) from Maven Central into $lib (once per version)"
  if ! mvn_copy scripts/kafka/pom.xml "$KAFKA_HOME/lib.tmp" "$KAFKA_HOME/mvn.log" -Dkafka.version="$KAFKA_VERSION"; then
    tail -n 20 "$KAFKA_HOME/mvn.log"
    echo "kafka: Maven could not fetch Kafka $KAFKA_VERSION; full output in $KAFKA_HOME/mvn.log"; exit 1
  fi
  rm -rf "$lib"
  mv "$KAFKA_HOME/lib.tmp" "$lib"
  echo "$KAFKA_VERSION" >"$lib/.version"
  echo "kafka: fetched $(ls "$lib"/*.jar | wc -l) jars ($(du -sh "$lib" | cut -f1)) in $((SECONDS - t0)) s"
}

kafka_java() {  # java with the broker's classpath and logging, then the arguments
  java -Dlog4j2.configurationFile="file:$KAFKA_HOME/log4j2.properties" -Dkafka.logs.dir="$KAFKA_HOME" \
    -cp "$KAFKA_HOME/lib/*" "$@"
}

kafka_configure() {
  mkdir -p "$KAFKA_HOME/data"
  sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" -e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
    -e "s|@DATA_DIR@|$KAFKA_HOME/data|g" scripts/kafka/server.properties >"$KAFKA_HOME/server.properties"
  cp scripts/kafka/log4j2.properties "$KAFKA_HOME/log4j2.properties"
  [ -f "$KAFKA_HOME/data/meta.properties" ] && return
  # First start on this data directory: format the KRaft storage with a new cluster id.
  local quick=(-Xmx256m -XX:TieredStopAtLevel=1) id
  id=$(kafka_java "${quick[@]}" kafka.tools.StorageTool random-uuid | tail -n 1) && [ -n "$id" ] ||
    { echo "kafka: \`java -cp '$KAFKA_HOME/lib/*' kafka.tools.StorageTool random-uuid\` failed"; exit 1; }
  kafka_java "${quick[@]}" kafka.tools.StorageTool format -t "$id" -c "$KAFKA_HOME/server.properties" \
    >"$KAFKA_HOME/format.log" 2>&1 || { tail -n 20 "$KAFKA_HOME/format.log"; echo "kafka: formatting $KAFKA_HOME/data failed"; exit 1; }
  echo "kafka: formatted $KAFKA_HOME/data (cluster id $id)"
}

kafka_wait() {  # kafka_wait PID: until the broker serves metadata, the process exits, or the timeout
  local pid=$1 rc=0
  python3 scripts/kafka/probe.py --port "$KAFKA_PORT" --wait "$KAFKA_START_TIMEOUT" --pid "$pid" || rc=$?
  [ "$rc" -eq 0 ] && return
  if [ -s "$KAFKA_HOME/kafka.out" ]; then echo "--- $KAFKA_HOME/kafka.out:"; tail -n 15 "$KAFKA_HOME/kafka.out"; fi
  if grep -qE "ERROR|FATAL" "$KAFKA_HOME/kafka.log" 2>/dev/null; then
    echo "--- errors in $KAFKA_HOME/kafka.log:"; grep -E "ERROR|FATAL" "$KAFKA_HOME/kafka.log" | tail -n 15
  fi
  if [ "$rc" -eq 3 ]; then
    rm -f "$KAFKA_HOME/kafka.pid"
    echo "kafka: the broker exited while starting; see $KAFKA_HOME/kafka.log and $KAFKA_HOME/kafka.out"
  else
    echo "kafka: no answer on 127.0.0.1:$KAFKA_PORT within $KAFKA_START_TIMEOUT s (still running as pid $pid:" \
      "\`make services\` waits for it again, \`make services-down\` stops it); see $KAFKA_HOME/kafka.log"
  fi
  exit 1
}

kafka_up() {
  local here="127.0.0.1:$KAFKA_PORT" pid="" rc=0 t0=$SECONDS
  case "${KAFKA_BOOTSTRAP_SERVERS:-$here}" in
    "$here" | "localhost:$KAFKA_PORT") ;;
    *) echo "kafka: KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS; not starting a local broker"; return ;;
  esac
  mkdir -p "$KAFKA_HOME"
  [ -f "$KAFKA_HOME/kafka.pid" ] && pid=$(cat "$KAFKA_HOME/kafka.pid")
  if pid_alive "$pid" kafka.Kafka; then
    kafka_wait "$pid"
    echo "kafka: already up on $here (pid $pid, Kafka $(cat "$KAFKA_HOME/lib/.version" 2>/dev/null))"
    [ "$(cat "$KAFKA_HOME/lib/.version" 2>/dev/null)" = "$KAFKA_VERSION" ] ||
      echo "kafka: KAFKA_VERSION=$KAFKA_VERSION asked for; \`make services-down\` first to switch"
    return
  fi
  rm -f "$KAFKA_HOME/kafka.pid"
  python3 scripts/kafka/probe.py --port "$KAFKA_PORT" 2>/dev/null || rc=$?
  case $rc in
    0) echo "kafka: a broker not started by us already answers on $here; using it"; return ;;
    2) echo "kafka: 127.0.0.1:$KAFKA_PORT is taken by something that is not Kafka; set KAFKA_PORT"; exit 1 ;;
  esac
  for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    if port_open "$port"; then
      echo "kafka: 127.0.0.1:$port is in use and no ready Kafka broker answers on $here;" \
        "free it or set KAFKA_PORT / KAFKA_CONTROLLER_PORT"; exit 1
    fi
  done
  kafka_fetch
  kafka_configure
  # A new session (setsid), so that the broker outlives this shell and a Ctrl-C in it; bash writes its own pid, then
  # becomes java (exec), so the pid file names the broker itself.
  # shellcheck disable=SC2016
  KAFKA_HOME="$KAFKA_HOME" KAFKA_HEAP_OPTS="$KAFKA_HEAP_OPTS" setsid bash -c '
    echo $$ >"$KAFKA_HOME/kafka.pid"
    exec java $KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="file:$KAFKA_HOME/log4j2.properties" -Dkafka.logs.dir="$KAFKA_HOME" \
      -cp "$KAFKA_HOME/lib/*" kafka.Kafka "$KAFKA_HOME/server.properties"' \
    </dev/null >"$KAFKA_HOME/kafka.out" 2>&1 9>&- &
  for _ in $(seq 1 50); do [ -s "$KAFKA_HOME/kafka.pid" ] && break; sleep 0.1; done
  pid=$(cat "$KAFKA_HOME/kafka.pid" 2>/dev/null || true)
  [ -n "$pid" ] || { echo "kafka: the broker did not start; see $KAFKA_HOME/kafka.out"; exit 1; }
  kafka_wait "$pid"
  echo "kafka: up on $here (Kafka $KAFKA_VERSION, KRaft, pid $pid, $((SECONDS - t0)) s; log $KAFKA_HOME/kafka.log)"
}

kafka_down() {
  stop_pidfile kafka "$KAFKA_HOME/kafka.pid" kafka.Kafka "${KAFKA_STOP_TIMEOUT:-60}"
}

# ---------------------------------------------------------------- PostgreSQL
pg_bin() {  # the directory holding initdb and pg_ctl: PATH, else Debian's layout, else install Debian's postgresql
  local found
  found=$(command -v pg_ctl 2>/dev/null || true)
  [ -n "$found" ] || found=$(ls /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$found" ]; then
    apt_install /usr/lib/postgresql/15/bin/pg_ctl postgresql >&2
    found=$(ls /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -n 1)
  fi
  dirname "$(readlink -f "$found")"
}

# The server refuses to run as root: as root, it runs as the `postgres` system user (created if missing), and its
# data lives where that user can reach (the state directory if every parent lets it through, else /var/tmp).
pg_user() {
  if [ "$(id -u)" -ne 0 ]; then id -un; return; fi
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  echo postgres
}

pg_data_dir() {
  local dir="$STATE/postgres" user=$1 path
  if [ "$user" = "$(id -un)" ]; then echo "$dir"; return; fi
  path=$dir
  while [ "$path" != "/" ]; do
    path=$(dirname "$path")
    (cd / && runuser -u "$user" -- test -x "$path") || { echo "/var/tmp/propensity-postgres-$(echo "$STATE" | sha256sum | cut -c1-12)"; return; }
  done
  echo "$dir"
}

pg_as() {  # pg_as USER COMMAND...: run a server binary as USER (from /: USER may not enter the working directory)
  local user=$1; shift
  if [ "$user" = "$(id -un)" ]; then "$@"; else (cd / && runuser -u "$user" -- "$@"); fi
}

pg_database() {  # pg_database BIN: create $POSTGRES_DB when the server lacks it
  local bin=$1
  if ! PGPASSWORD="$POSTGRES_PASSWORD" "$bin/psql" -h 127.0.0.1 -p "$POSTGRES_PORT" -U "$POSTGRES_USER" -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = '$POSTGRES_DB'" | grep -q 1; then
    PGPASSWORD="$POSTGRES_PASSWORD" "$bin/createdb" -h 127.0.0.1 -p "$POSTGRES_PORT" -U "$POSTGRES_USER" "$POSTGRES_DB"
  fi
}

postgres_up() {
  local bin user dir url
  bin=$(pg_bin); user=$(pg_user); dir=$(pg_data_dir "$user")
  url="postgresql+psycopg2://$POSTGRES_USER:$POSTGRES_PASSWORD@127.0.0.1:$POSTGRES_PORT/$POSTGRES_DB"
  if pg_as "$user" "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    echo "postgres: already up on 127.0.0.1:$POSTGRES_PORT ($dir/data)"; return
  fi
  if port_open "$POSTGRES_PORT"; then
    # As for Redis and Kafka: a server another checkout started is used when it takes our role and password.
    if PGPASSWORD="$POSTGRES_PASSWORD" PGCONNECT_TIMEOUT=5 "$bin/psql" -h 127.0.0.1 -p "$POSTGRES_PORT" \
      -U "$POSTGRES_USER" -d postgres -tAc "SELECT 1" >/dev/null 2>&1; then
      pg_database "$bin"
      echo "postgres: a server not started by us answers on 127.0.0.1:$POSTGRES_PORT and takes role $POSTGRES_USER; using it"
      return
    fi
    echo "postgres: 127.0.0.1:$POSTGRES_PORT is in use by a server that refuses role $POSTGRES_USER; free it or set POSTGRES_PORT"
    exit 1
  fi
  mkdir -p "$dir"; [ "$user" = "$(id -un)" ] || chown "$user" "$dir"; chmod 700 "$dir"
  echo "$dir" >"$STATE/postgres.dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    printf '%s\n' "$POSTGRES_PASSWORD" >"$dir/pwfile"; [ "$user" = "$(id -un)" ] || chown "$user" "$dir/pwfile"
    pg_as "$user" "$bin/initdb" -D "$dir/data" -U "$POSTGRES_USER" --pwfile="$dir/pwfile" --auth-host=scram-sha-256 \
      --auth-local=trust -E UTF8 --no-instructions >"$dir/initdb.log" 2>&1 ||
      { tail -n 20 "$dir/initdb.log"; echo "postgres: initdb failed; see $dir/initdb.log"; exit 1; }
    rm -f "$dir/pwfile"
  fi
  pg_as "$user" "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $POSTGRES_PORT -k $dir" start >/dev/null 9>&- ||
    { tail -n 20 "$dir/postgres.log"; echo "postgres: did not start; see $dir/postgres.log"; exit 1; }
  pg_database "$bin"
  echo "postgres: up on 127.0.0.1:$POSTGRES_PORT (PostgreSQL $("$bin/postgres" --version | awk '{print $3}'), data in $dir); DAGSTER_POSTGRES_URL=${url/:$POSTGRES_PASSWORD@/:***@}"
}

postgres_down() {
  local dir bin user
  [ -f "$STATE/postgres.dir" ] || { echo "postgres: not started by us"; return; }
  dir=$(cat "$STATE/postgres.dir"); bin=$(pg_bin); user=$(pg_user)
  if pg_as "$user" "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    pg_as "$user" "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null && echo "postgres: stopped"
  else
    echo "postgres: not running"
  fi
}

# ---------------------------------------------------------------- Spark's Kafka connector
# The connector matching the installed pyspark (same version, or the newest patch release of the same minor that
# Maven Central serves), with its dependencies, less every artifact pyspark/jars already has.
spark_jars() {
  local pyjars core scala pv v t0=$SECONDS
  pyjars=$(ls -d "$VENV"/lib/python3*/site-packages/pyspark/jars 2>/dev/null | head -n 1 || true)
  core=$(ls "$pyjars"/spark-core_*.jar 2>/dev/null | head -n 1 || true)
  if [ -z "$core" ]; then
    echo "spark: no pyspark in $VENV (make install); Spark's Kafka connector not fetched"; return
  fi
  core=$(basename "$core" .jar)   # spark-core_2.13-4.2.1
  scala=${core#spark-core_}; scala=${scala%%-*}
  pv=${core##*-}
  if [ -f "$SPARK_JARS_DIR/.version" ] && [ "$(head -n 1 "$SPARK_JARS_DIR/.version")" = "pyspark $pv" ]; then
    echo "spark: Kafka connector for pyspark $pv in $SPARK_JARS_DIR ($(spark_jars_list))"; return
  fi
  java_and_maven
  echo "spark: fetching Spark's Kafka connector for pyspark $pv (Scala $scala) from Maven Central into $SPARK_JARS_DIR"
  local major_minor=${pv%.*} patch=${pv##*.} found=""
  [[ $patch =~ ^[0-9]+$ ]] || patch=0
  for ((p = patch; p >= 0; p--)); do
    v="$major_minor.$p"
    if mvn_copy scripts/kafka/spark-connector-pom.xml "$STATE/spark-jars.tmp" "$STATE/spark-jars.mvn.log" \
      -Dspark.kafka.version="$v" -Dscala.binary.version="$scala"; then
      found=$v; break
    fi
    echo "spark: Maven Central does not serve spark-sql-kafka-0-10_$scala:$v; trying the patch release before it"
  done
  if [ -z "$found" ]; then
    tail -n 20 "$STATE/spark-jars.mvn.log"
    echo "spark: Maven could not fetch spark-sql-kafka-0-10_$scala for Spark $major_minor; see $STATE/spark-jars.mvn.log"
    exit 1
  fi
  # Artifact name of a jar file: the file name up to "-<digit>" (spark-core_2.13-4.2.1.jar -> spark-core_2.13).
  local shipped jar
  shipped=$(ls "$pyjars" | sed -E 's/-[0-9].*\.jar$//')
  for jar in "$STATE/spark-jars.tmp"/*.jar; do
    if grep -qxF -- "$(basename "$jar" | sed -E 's/-[0-9].*\.jar$//')" <<<"$shipped"; then rm -f "$jar"; fi
  done
  rm -rf "$SPARK_JARS_DIR"
  mv "$STATE/spark-jars.tmp" "$SPARK_JARS_DIR"
  printf 'pyspark %s\nspark-sql-kafka-0-10_%s %s\n' "$pv" "$scala" "$found" >"$SPARK_JARS_DIR/.version"
  echo "spark: Kafka connector $found for pyspark $pv in $SPARK_JARS_DIR, $((SECONDS - t0)) s ($(spark_jars_list))"
}

spark_jars_list() {
  local names; names=$(cd "$SPARK_JARS_DIR" && ls *.jar | paste -sd, -)
  echo "spark.jars: $names"
}

# One `up` or `down` at a time per state directory (two `make test` in one tree). The servers must not inherit fd 9.
exec 9>"$STATE/.lock"
flock -w 900 9 || { echo "another scripts/services.sh holds $STATE/.lock"; exit 1; }

case "${1:-up}" in
  up) redis_up; kafka_up; spark_jars; postgres_up ;;
  down) postgres_down; kafka_down; redis_down ;;
  *) echo "usage: $0 up|down"; exit 2 ;;
esac
