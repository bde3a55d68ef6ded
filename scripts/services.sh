#!/usr/bin/env bash
# Start/stop the REAL backing services socd's integration and e2e tests run against:
#   * Mosquitto      (Debian package `mosquitto`, own instance, loopback only)
#   * Elasticsearch  (8.19.x single node, Maven Central integ-test-zip, run as user socd-es)
#   * Prometheus     (Debian package `prometheus`, own instance, loopback only)
#   * Kafka          (Apache Kafka 4.x KRaft single node, kafka_2.13 jars from Maven Central)
#
# Usage:
#   bash scripts/services.sh up       start whatever is not running+healthy, print the env
#   bash scripts/services.sh down     stop everything started from this state dir
#   bash scripts/services.sh status   show each service; exit 0 only when all are healthy
#   bash scripts/services.sh env      print <statedir>/services.env (exit 1 when not up)
#   bash scripts/services.sh fetch    install packages, download ES and Kafka; start nothing
#   bash scripts/services.sh clean    down, then delete the state dir (data, logs, targets, rules)
#
# Environment:
#   SOCD_SERVICES_DIR  state dir (default /tmp/socd-services): pid files, logs, data, services.env
#   SOCD_CACHE         download/unpack cache (default $HOME/.cache/socd); kept by down/clean
#   SOCD_ES_VERSION    Elasticsearch version (default 8.19.3)
#   SOCD_ES_USER       unprivileged user Elasticsearch runs as when we are root (default socd-es)
#   SOCD_ES_HEAP       heap size (default 512m)
#   SOCD_ES_WAIT       seconds to wait for cluster health yellow (default 120)
#   SOCD_KAFKA_VERSION Apache Kafka version (default 4.1.1)
#   SOCD_KAFKA_HEAP    broker heap size (default 512m)
#   SOCD_KAFKA_WAIT    seconds to wait for the broker to answer (default 90)
#   SOCD_MQTT_PORT, SOCD_ES_PORT, SOCD_ES_TRANSPORT_PORT, SOCD_PROMETHEUS_PORT,
#   SOCD_KAFKA_PORT, SOCD_KAFKA_CONTROLLER_PORT, SOCD_KAFKA_SASL_PORT, SOCD_KAFKA_TLS_PORT
#                      preferred ports (defaults 18830, 19200, 19300, 19090, 19092, 19093,
#                      19094, 19095); a busy preferred port is replaced by a free one picked
#                      at random.
#   M2_REPO            Maven local repository (default $HOME/.m2/repository)
#
# After `up`, <statedir>/services.env (shell KEY=VALUE) and <statedir>/services.json hold the
# endpoints; the same KEY=VALUE lines are printed on stdout (progress goes to stderr), so
#   eval "$(bash scripts/services.sh up)"
# works too. Any failure exits non-zero with a message: tests must fail, never skip.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
TEMPLATE_DIR="$REPO_ROOT/deploy/dev"

STATE_DIR="${SOCD_SERVICES_DIR:-/tmp/socd-services}"
CACHE_DIR="${SOCD_CACHE:-$HOME/.cache/socd}"
ES_VERSION="${SOCD_ES_VERSION:-8.19.3}"
ES_USER="${SOCD_ES_USER:-socd-es}"
ES_HEAP="${SOCD_ES_HEAP:-512m}"
ES_WAIT="${SOCD_ES_WAIT:-120}"
M2_REPO="${M2_REPO:-$HOME/.m2/repository}"
ES_GROUP_ID="org.elasticsearch.distribution.integ-test-zip"
ES_ARTIFACT="$ES_GROUP_ID:elasticsearch:$ES_VERSION:zip"
ES_ZIP="$M2_REPO/${ES_GROUP_ID//.//}/elasticsearch/$ES_VERSION/elasticsearch-$ES_VERSION.zip"
ES_DIST="$CACHE_DIR/elasticsearch-$ES_VERSION"
KAFKA_VERSION="${SOCD_KAFKA_VERSION:-4.1.1}"
KAFKA_LOG4J_VERSION=2.24.3   # log4j-slf4j-impl: the binding the broker's log4j2 needs
KAFKA_HEAP="${SOCD_KAFKA_HEAP:-512m}"
KAFKA_WAIT="${SOCD_KAFKA_WAIT:-90}"
KAFKA_DIST="$CACHE_DIR/kafka-$KAFKA_VERSION"

HOST=127.0.0.1
MQTT_DIR="$STATE_DIR/mosquitto"
PROM_DIR="$STATE_DIR/prometheus"
KAFKA_DIR="$STATE_DIR/kafka"
ES_LINK="$STATE_DIR/elasticsearch"   # a dir, or a symlink to ES_RUN when STATE_DIR is private

T0=$SECONDS
log() { printf '[services %3ds] %s\n' "$((SECONDS - T0))" "$*" >&2; }
die() {
    printf '\n[services] ERROR: %s\n' "$*" >&2
    printf '[services] ERROR: services are NOT available; tests that need them must fail.\n\n' >&2
    exit 1
}
is_root() { [ "$(id -u)" -eq 0 ]; }

# ---------------------------------------------------------------- packages ----
POLICY_RC=/usr/sbin/policy-rc.d
POLICY_RC_OURS=0
restore_policy_rc() {
    if [ "$POLICY_RC_OURS" = 1 ]; then rm -f "$POLICY_RC"; POLICY_RC_OURS=0; fi
}
trap restore_policy_rc EXIT

apt_lists_empty() {
    ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null
}

# apt_install PKG... : install Debian packages without letting apt start their system
# services (we run our own instances; the Debian ones would grab 1883/9090).
apt_install() {
    is_root || die "need root to apt-get install $*; install them by hand or run as root"
    command -v apt-get >/dev/null || die "apt-get not found; cannot install $*"
    log "installing Debian packages: $*"
    if [ ! -e "$POLICY_RC" ]; then
        printf '#!/bin/sh\n# temporary, from socd scripts/services.sh\nexit 101\n' >"$POLICY_RC"
        chmod 755 "$POLICY_RC"
        POLICY_RC_OURS=1
    fi
    # crowdsec's postinst registers with the online Central API (and fails offline)
    # unless this file exists first (its README.Debian); the peer benchmark runs a
    # private Local API instead.
    if [[ " $* " == *" crowdsec "* ]] && [ ! -e /etc/crowdsec/online_api_credentials.yaml ]; then
        mkdir -p /etc/crowdsec
        printf '# no thanks: socd test machine (scripts/services.sh)\n' \
            >/etc/crowdsec/online_api_credentials.yaml
    fi
    export DEBIAN_FRONTEND=noninteractive
    local opts=(-y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    if apt_lists_empty; then
        apt-get update -q >&2 || die "apt-get update failed"
    fi
    if ! apt-get install "${opts[@]}" "$@" >&2; then
        log "apt-get install failed; running apt-get update and retrying"
        apt-get update -q >&2 || die "apt-get update failed"
        apt-get install "${opts[@]}" "$@" >&2 || die "apt-get install $* failed"
    fi
    restore_policy_rc
}

# need_cmd CMD PKG : make sure CMD exists (looking in sbin too), installing PKG if not.
need_cmd() {
    local cmd=$1 pkg=$2
    find_cmd "$cmd" >/dev/null && return 0
    apt_install "$pkg"
    find_cmd "$cmd" >/dev/null || die "$cmd still missing after installing $pkg"
}
find_cmd() {
    local c
    c=$(command -v "$1" 2>/dev/null) && { echo "$c"; return 0; }
    for d in /usr/sbin /sbin /usr/local/sbin; do
        [ -x "$d/$1" ] && { echo "$d/$1"; return 0; }
    done
    return 1
}

# ----------------------------------------------------------------- helpers ----
# port_free PORT : true when nothing listens on 127.0.0.1:PORT and we could bind it.
port_free() {
    local port=$1
    if command -v python3 >/dev/null; then
        python3 - "$port" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
    else
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 1; fi
        return 0
    fi
}

random_free_port() {
    if command -v python3 >/dev/null; then
        python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
    else
        local p i
        for i in $(seq 1 200); do
            p=$((20000 + RANDOM % 10000))
            port_free "$p" && { echo "$p"; return 0; }
        done
        return 1
    fi
}

TAKEN_PORTS=" "
# choose_port VAR PREFERRED... : set VAR to the first free candidate (the default, then the
# port used last time), else to a random free port. Never hands out a port twice per run.
choose_port() {
    local var=$1 p i
    shift
    for p in "$@"; do
        [ -n "$p" ] || continue
        case "$TAKEN_PORTS" in *" $p "*) continue ;; esac
        if port_free "$p"; then
            TAKEN_PORTS="$TAKEN_PORTS$p "
            printf -v "$var" '%s' "$p"
            return 0
        fi
    done
    for i in 1 2 3 4 5 6 7 8 9 10; do
        p=$(random_free_port) || break
        case "$TAKEN_PORTS" in *" $p "*) continue ;; esac
        TAKEN_PORTS="$TAKEN_PORTS$p "
        printf -v "$var" '%s' "$p"
        return 0
    done
    die "could not find a free loopback port"
}

read_file() { if [ -f "$1" ]; then cat "$1" 2>/dev/null || true; fi; }

# pid_alive PIDFILE MARKER : true when the pid in PIDFILE runs and its command line
# contains MARKER (guards against a recycled pid from a crashed earlier run).
pid_alive() {
    local pidfile=$1 marker=$2 pid
    pid=$(read_file "$pidfile" | tr -dc '0-9')
    [ -n "$pid" ] || return 1
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker"
}

# proc_running PID : alive and not a zombie (used right after a launch, before exec).
proc_running() {
    kill -0 "$1" 2>/dev/null || return 1
    [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

# pids_matching STRING EXE : pids of processes running program EXE (basename) whose
# command line contains STRING.
pids_matching() {
    local needle=$1 exe=$2 d pid pexe
    for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        [ "$pid" = "$$" ] && continue
        pexe=$(readlink "$d/exe" 2>/dev/null) || continue
        [ "${pexe##*/}" = "$exe" ] || continue
        if tr '\0' ' ' <"$d/cmdline" 2>/dev/null | grep -qF -- "$needle"; then echo "$pid"; fi
    done
}

# stop_pid PID NAME TIMEOUT : TERM, wait up to TIMEOUT s, then KILL.
stop_pid() {
    local pid=$1 name=$2 timeout=$3 i
    kill -0 "$pid" 2>/dev/null || return 0
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        # a zombie child of ours counts as gone
        [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && return 0
        sleep 0.1
    done
    log "$name (pid $pid) ignored TERM for ${timeout}s; sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    die "could not stop $name (pid $pid)"
}

sed_escape() { printf '%s' "$1" | sed -e 's/[\\|&]/\\&/g'; }

# render TEMPLATE OUT KEY=VALUE... : substitute @KEY@ placeholders.
render() {
    local tpl=$1 out=$2 kv k v args=()
    shift 2
    [ -f "$tpl" ] || die "template $tpl is missing"
    for kv in "$@"; do
        k=${kv%%=*}
        v=${kv#*=}
        args+=(-e "s|@${k}@|$(sed_escape "$v")|g")
    done
    sed "${args[@]}" "$tpl" >"$out.tmp"
    if grep -qE '@[A-Z_]+@' "$out.tmp"; then
        die "unsubstituted placeholder in $out: $(grep -oE '@[A-Z_]+@' "$out.tmp" | sort -u | tr '\n' ' ')"
    fi
    mv -f "$out.tmp" "$out"
}

http_ok() { curl -fsS --noproxy '*' --max-time "${2:-5}" -o /dev/null "$1" 2>/dev/null; }

# can_access USER DIR : true when USER can write DIR (checks the whole path).
can_access() {
    local user=$1 dir=$2
    if command -v setpriv >/dev/null; then
        setpriv --reuid="$user" --regid="$(id -g "$user")" --clear-groups test -w "$dir" -a -x "$dir" 2>/dev/null
    else
        runuser -u "$user" -- test -w "$dir" -a -x "$dir" 2>/dev/null
    fi
}

# run_as USER CMD... (root only)
run_as() {
    local user=$1
    shift
    if command -v setpriv >/dev/null; then
        setpriv --reuid="$user" --regid="$(id -g "$user")" --clear-groups "$@"
    else
        runuser -u "$user" -- "$@"
    fi
}

tail_log() {
    local f=$1 n=${2:-50}
    if [ -f "$f" ]; then
        printf '\n----- last %s lines of %s -----\n' "$n" "$f" >&2
        tail -n "$n" "$f" >&2 || true
        printf -- '----- end of %s -----\n' "$f" >&2
    fi
}

# -------------------------------------------------------------- mosquitto ----
MQTT_PORT=""
mqtt_ready() {
    local port=$1
    timeout 10 mosquitto_pub -h "$HOST" -p "$port" -i "socd-services-probe-$$" \
        -t socd/_services/probe -m ping -q 1 >/dev/null 2>&1
}

mosquitto_up() {
    local bin pidfile=$MQTT_DIR/mosquitto.pid conf=$MQTT_DIR/mosquitto.conf
    need_cmd mosquitto mosquitto
    need_cmd mosquitto_pub mosquitto-clients
    need_cmd mosquitto_sub mosquitto-clients
    bin=$(find_cmd mosquitto)
    mkdir -p "$MQTT_DIR/data"

    if pid_alive "$pidfile" "$conf"; then
        MQTT_PORT=$(read_file "$MQTT_DIR/port")
        if [ -n "$MQTT_PORT" ] && mqtt_ready "$MQTT_PORT"; then
            log "mosquitto already running (pid $(cat "$pidfile"), port $MQTT_PORT)"
            TAKEN_PORTS="$TAKEN_PORTS$MQTT_PORT "
            return 0
        fi
        log "mosquitto running but not answering; restarting it"
        mosquitto_down
    fi
    stop_strays "$conf" mosquitto

    choose_port MQTT_PORT "${SOCD_MQTT_PORT:-18830}" "$(read_file "$MQTT_DIR/port")"
    local user=root
    if is_root && id mosquitto >/dev/null 2>&1; then
        chown -R mosquitto: "$MQTT_DIR/data"
        if can_access mosquitto "$MQTT_DIR/data"; then user=mosquitto; fi
    elif ! is_root; then
        user=$(id -un)
    fi
    render "$TEMPLATE_DIR/mosquitto.conf.in" "$conf" \
        MQTT_PORT="$MQTT_PORT" MQTT_DATA_DIR="$MQTT_DIR/data" MQTT_USER="$user"

    log "starting mosquitto on $HOST:$MQTT_PORT (user $user)"
    printf '\n===== %s start =====\n' "$(date -Is)" >>"$MQTT_DIR/mosquitto.log"
    ({ ulimit -n 65535 || true; } 2>/dev/null
        exec setsid "$bin" -c "$conf" </dev/null >>"$MQTT_DIR/mosquitto.log" 2>&1 9>&-) &
    local pid=$!
    echo "$pid" >"$pidfile"
    echo "$MQTT_PORT" >"$MQTT_DIR/port"

    local i
    for ((i = 0; i < 100; i++)); do
        proc_running "$pid" || { tail_log "$MQTT_DIR/mosquitto.log"; die "mosquitto exited during startup"; }
        mqtt_ready "$MQTT_PORT" && { log "mosquitto ready"; return 0; }
        sleep 0.2
    done
    tail_log "$MQTT_DIR/mosquitto.log"
    die "mosquitto did not accept a QoS 1 publish on $HOST:$MQTT_PORT within 20s"
}

mosquitto_down() {
    local pidfile=$MQTT_DIR/mosquitto.pid
    if pid_alive "$pidfile" "$MQTT_DIR/mosquitto.conf"; then
        stop_pid "$(cat "$pidfile")" mosquitto 15
    fi
    rm -f "$pidfile"
    stop_strays "$MQTT_DIR/mosquitto.conf" mosquitto
}

# stop_strays MARKER NAME EXE : processes of ours whose pid file was lost (crashed run).
stop_strays() {
    local marker=$1 name=$2 exe=${3:-$2} pid
    for pid in $(pids_matching "$marker" "$exe"); do
        log "found stray $name process $pid (no valid pid file)"
        stop_pid "$pid" "$name" 30
    done
}

# ------------------------------------------------------------- prometheus ----
PROM_PORT=""
prometheus_up() {
    local bin pidfile=$PROM_DIR/prometheus.pid conf=$PROM_DIR/prometheus.yml
    need_cmd prometheus prometheus
    bin=$(find_cmd prometheus)
    mkdir -p "$PROM_DIR/data" "$PROM_DIR/targets" "$PROM_DIR/rules"

    if pid_alive "$pidfile" "--config.file=$conf"; then
        PROM_PORT=$(read_file "$PROM_DIR/port")
        if [ -n "$PROM_PORT" ] && http_ok "http://$HOST:$PROM_PORT/-/ready"; then
            log "prometheus already running (pid $(cat "$pidfile"), port $PROM_PORT)"
            TAKEN_PORTS="$TAKEN_PORTS$PROM_PORT "
            return 0
        fi
        log "prometheus running but not ready; restarting it"
        prometheus_down
    fi
    stop_strays "--config.file=$conf" prometheus

    choose_port PROM_PORT "${SOCD_PROMETHEUS_PORT:-19090}" "$(read_file "$PROM_DIR/port")"
    render "$TEMPLATE_DIR/prometheus.yml.in" "$conf" \
        PROM_TARGETS_DIR="$PROM_DIR/targets" PROM_RULES_DIR="$PROM_DIR/rules"
    if command -v promtool >/dev/null; then
        if ! promtool check config "$conf" >"$PROM_DIR/promtool.out" 2>&1; then
            cat "$PROM_DIR/promtool.out" >&2
            die "prometheus config $conf (or a rule file in $PROM_DIR/rules) is invalid; fix it or run: bash scripts/services.sh clean"
        fi
    fi

    log "starting prometheus on $HOST:$PROM_PORT"
    printf '\n===== %s start =====\n' "$(date -Is)" >>"$PROM_DIR/prometheus.log"
    (cd "$PROM_DIR" && exec setsid "$bin" \
        "--config.file=$conf" \
        "--web.listen-address=$HOST:$PROM_PORT" \
        "--storage.tsdb.path=$PROM_DIR/data" \
        --storage.tsdb.retention.time=2d \
        --web.enable-lifecycle \
        --web.enable-admin-api \
        --log.level=info \
        </dev/null >>"$PROM_DIR/prometheus.log" 2>&1 9>&-) &
    local pid=$!
    echo "$pid" >"$pidfile"
    echo "$PROM_PORT" >"$PROM_DIR/port"

    local i
    for ((i = 0; i < 300; i++)); do
        proc_running "$pid" || { tail_log "$PROM_DIR/prometheus.log"; die "prometheus exited during startup"; }
        http_ok "http://$HOST:$PROM_PORT/-/ready" && { log "prometheus ready"; return 0; }
        sleep 0.2
    done
    tail_log "$PROM_DIR/prometheus.log"
    die "prometheus /-/ready did not answer on $HOST:$PROM_PORT within 60s"
}

prometheus_down() {
    local pidfile=$PROM_DIR/prometheus.pid
    if pid_alive "$pidfile" "--config.file=$PROM_DIR/prometheus.yml"; then
        stop_pid "$(cat "$pidfile")" prometheus 20
    fi
    rm -f "$pidfile"
    stop_strays "--config.file=$PROM_DIR/prometheus.yml" prometheus
}

# ---------------------------------------------------------- elasticsearch ----
ES_PORT=""
ES_TRANSPORT_PORT=""
ES_RUN=""          # writable run dir (config, data, logs, tmp, pid) owned by ES_USER
ES_HOME=""         # distribution dir ES runs from (the cache, or a hardlink mirror of it)
ES_JAVA_HOME=""

java_major() {
    "$1" -XshowSettings:properties -version 2>&1 |
        sed -n 's/^ *java\.specification\.version = \([0-9.]*\).*/\1/p' | head -n1 | sed 's/^1\.//; s/\..*//'
}

ensure_java() {
    local java major
    java=$(command -v java 2>/dev/null || true)
    if [ -n "$java" ]; then
        major=$(java_major "$java" || true)
        if [ -n "$major" ] && [ "$major" -ge 17 ]; then
            ES_JAVA_HOME=$(dirname "$(dirname "$(readlink -f "$java")")")
            return 0
        fi
        log "java on PATH is version '${major:-unknown}', Elasticsearch $ES_VERSION needs >= 17"
    fi
    local candidate
    if ! compgen -G '/usr/lib/jvm/java-17-openjdk-*/bin/java' >/dev/null; then
        apt_install openjdk-17-jre-headless
    fi
    for candidate in /usr/lib/jvm/java-17-openjdk-*/bin/java; do
        if [ -x "$candidate" ]; then
            ES_JAVA_HOME=$(dirname "$(dirname "$(readlink -f "$candidate")")")
            return 0
        fi
    done
    die "no Java 17 runtime found even after installing openjdk-17-jre-headless"
}

es_fetch() {
    need_cmd unzip unzip
    need_cmd curl curl
    ensure_java
    if [ -x "$ES_DIST/bin/elasticsearch" ] && [ -f "$ES_DIST/.socd-unpacked" ]; then
        return 0
    fi
    for _ in 1 2; do
        if [ ! -s "$ES_ZIP" ]; then
            need_cmd mvn maven
            log "downloading $ES_ARTIFACT from Maven Central"
            mvn -B -q -Dstyle.color=never -Dmaven.repo.local="$M2_REPO" \
                org.apache.maven.plugins:maven-dependency-plugin:3.6.1:get \
                -Dartifact="$ES_ARTIFACT" -Dtransitive=false >&2 ||
                die "mvn could not download $ES_ARTIFACT"
            [ -s "$ES_ZIP" ] || die "mvn finished but $ES_ZIP is missing"
        fi
        log "unpacking $(basename "$ES_ZIP") into $ES_DIST"
        mkdir -p "$CACHE_DIR"
        local tmp
        tmp=$(mktemp -d "$CACHE_DIR/.unpack.XXXXXX")
        if unzip -q "$ES_ZIP" -d "$tmp" && [ -x "$tmp/elasticsearch-$ES_VERSION/bin/elasticsearch" ]; then
            rm -rf "$ES_DIST"
            touch "$tmp/elasticsearch-$ES_VERSION/.socd-unpacked"
            mv "$tmp/elasticsearch-$ES_VERSION" "$ES_DIST"
            rm -rf "$tmp"
            return 0
        fi
        rm -rf "$tmp"
        log "$ES_ZIP is corrupt; deleting it and downloading again"
        rm -f "$ES_ZIP"
    done
    die "could not unpack Elasticsearch $ES_VERSION"
}

ensure_es_user() {
    is_root || return 0
    if ! id "$ES_USER" >/dev/null 2>&1; then
        log "creating system user $ES_USER"
        useradd -r -U -M -d /nonexistent -s /usr/sbin/nologin -c "socd dev Elasticsearch" "$ES_USER" ||
            die "useradd $ES_USER failed"
    fi
}

# Decide where the node's writable files live and where it runs from, so that user
# ES_USER can reach both even if STATE_DIR or CACHE_DIR sit in a 0700 directory.
es_layout() {
    local owner
    if is_root; then owner=$ES_USER; else owner=$(id -un); fi
    if [ -L "$ES_LINK" ]; then
        ES_RUN=$(readlink -f "$ES_LINK")
    else
        ES_RUN=$ES_LINK
    fi
    mkdir -p "$ES_RUN"
    if is_root; then
        chown "$owner:" "$ES_RUN"
        if ! can_access "$owner" "$ES_RUN"; then
            # STATE_DIR is private (e.g. a pytest tmp dir): run from a dir in /tmp instead.
            local alt
            alt="/tmp/socd-es-$(printf '%s' "$STATE_DIR" | cksum | cut -d' ' -f1)"
            log "$owner cannot reach $ES_RUN; using $alt (symlinked from $ES_LINK)"
            [ -L "$ES_LINK" ] || rm -rf "$ES_LINK"
            mkdir -p "$alt"
            chmod 755 "$alt"
            chown "$owner:" "$alt"
            ln -sfn "$alt" "$ES_LINK"
            ES_RUN=$alt
            can_access "$owner" "$ES_RUN" || die "$owner cannot write $ES_RUN"
        fi
    fi
    mkdir -p "$ES_RUN/data" "$ES_RUN/logs" "$ES_RUN/tmp" "$ES_RUN/config"

    ES_HOME=$ES_DIST
    if is_root && ! run_as "$owner" test -r "$ES_DIST/lib/elasticsearch-$ES_VERSION.jar" 2>/dev/null; then
        # e.g. the cache is under /root (0700). Mirror it with hard links (cheap), or copy.
        ES_HOME=$ES_RUN/home-$ES_VERSION
        if [ ! -f "$ES_HOME/.socd-unpacked" ] || [ "$ES_HOME/.socd-unpacked" -ot "$ES_DIST/.socd-unpacked" ]; then
            log "mirroring $ES_DIST to $ES_HOME ($owner cannot read the cache)"
            rm -rf "$ES_HOME" "$ES_HOME.tmp"
            cp -al "$ES_DIST" "$ES_HOME.tmp" 2>/dev/null || { rm -rf "$ES_HOME.tmp"; cp -a "$ES_DIST" "$ES_HOME.tmp"; }
            mv "$ES_HOME.tmp" "$ES_HOME"
        fi
        run_as "$owner" test -r "$ES_HOME/lib/elasticsearch-$ES_VERSION.jar" ||
            die "$owner cannot read the Elasticsearch distribution at $ES_HOME"
    fi
}

# The server JVM's command line carries ES_TMPDIR (not the config path): identify it by that.
es_pid_marker() { printf '%s' "-Djava.io.tmpdir=$ES_RUN/tmp"; }

es_ready() {
    curl -fsS --noproxy '*' --max-time "$(($2 + 5))" -o /dev/null \
        "http://$HOST:$1/_cluster/health?wait_for_status=yellow&timeout=${2}s" 2>/dev/null
}

# The integ-test-zip has no rest-root module, so GET / and HEAD / answer 405: ask the node.
es_version_of() {
    curl -fsS --noproxy '*' --max-time 5 "http://$HOST:$1/_nodes/_local?filter_path=nodes.*.version" 2>/dev/null |
        sed -n 's/.*"version"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' || true
}

es_fail() {
    tail_log "$ES_RUN/logs/socd-dev.log" 50
    tail_log "$ES_RUN/launcher.log" 30
    die "$*"
}

elasticsearch_up() {
    es_fetch
    ensure_es_user
    es_layout
    local pidfile=$ES_RUN/elasticsearch.pid marker
    marker=$(es_pid_marker)

    if pid_alive "$pidfile" "$marker"; then
        ES_PORT=$(read_file "$ES_RUN/port")
        if [ -n "$ES_PORT" ] && es_ready "$ES_PORT" 30; then
            log "elasticsearch already running (pid $(cat "$pidfile"), port $ES_PORT)"
            TAKEN_PORTS="$TAKEN_PORTS$ES_PORT $(read_file "$ES_RUN/transport_port") "
            return 0
        fi
        log "elasticsearch running but not healthy; restarting it"
        elasticsearch_down
    fi
    stop_strays "$marker" elasticsearch java
    rm -f "$pidfile"

    if is_root; then
        local mmc
        mmc=$(cat /proc/sys/vm/max_map_count 2>/dev/null || echo 0)
        if [ "$mmc" -lt 262144 ]; then
            # Not enforced for a loopback single-node dev cluster, but mmap-heavy tests need it.
            sysctl -qw vm.max_map_count=262144 2>/dev/null ||
                log "note: could not raise vm.max_map_count from $mmc (fine for a small dev node)"
        fi
    fi

    choose_port ES_PORT "${SOCD_ES_PORT:-19200}" "$(read_file "$ES_RUN/port")"
    choose_port ES_TRANSPORT_PORT "${SOCD_ES_TRANSPORT_PORT:-19300}" "$(read_file "$ES_RUN/transport_port")"

    # Config dir (ES_PATH_CONF): the distribution's files plus our elasticsearch.yml. The
    # server runs with path.logs as working directory, where jvm.options puts gc.log,
    # hs_err files and heap dumps.
    local conf=$ES_RUN/config
    cp -f "$ES_HOME/config/log4j2.properties" "$ES_HOME/config/jvm.options" \
        "$ES_HOME/config/roles.yml" "$ES_HOME/config/role_mapping.yml" \
        "$ES_HOME/config/users" "$ES_HOME/config/users_roles" "$conf/"
    mkdir -p "$conf/jvm.options.d"
    render "$TEMPLATE_DIR/elasticsearch.yml.in" "$conf/elasticsearch.yml" \
        ES_HTTP_PORT="$ES_PORT" ES_TRANSPORT_PORT="$ES_TRANSPORT_PORT" \
        ES_DATA_DIR="$ES_RUN/data" ES_LOG_DIR="$ES_RUN/logs"
    echo "$ES_PORT" >"$ES_RUN/port"
    echo "$ES_TRANSPORT_PORT" >"$ES_RUN/transport_port"

    local owner
    if is_root; then
        owner=$ES_USER
        chown -R "$ES_USER:" "$ES_RUN/config" "$ES_RUN/data" "$ES_RUN/logs" "$ES_RUN/tmp"
        chown "$ES_USER:" "$ES_RUN" "$ES_RUN/port" "$ES_RUN/transport_port"
    else
        owner=$(id -un)
    fi

    log "starting elasticsearch $ES_VERSION on $HOST:$ES_PORT (transport $ES_TRANSPORT_PORT, user $owner, java $ES_JAVA_HOME)"
    printf '\n===== %s start =====\n' "$(date -Is)" >>"$ES_RUN/launcher.log"
    [ -f "$ES_RUN/launcher.log" ] && is_root && chown "$ES_USER:" "$ES_RUN/launcher.log"
    local envv=(env -i
        "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
        "HOME=$ES_RUN" "LANG=C.UTF-8"
        "ES_JAVA_HOME=$ES_JAVA_HOME"
        "ES_PATH_CONF=$conf"
        "ES_TMPDIR=$ES_RUN/tmp"
        "ES_JAVA_OPTS=-Xms$ES_HEAP -Xmx$ES_HEAP")
    local rc=0
    if is_root; then
        (cd "$ES_RUN" && { ulimit -n 65535 || true; } 2>/dev/null; exec timeout 180 setsid setpriv --reuid="$ES_USER" --regid="$(id -g "$ES_USER")" --clear-groups \
            "${envv[@]}" "$ES_HOME/bin/elasticsearch" -d -p "$pidfile" \
            </dev/null >>"$ES_RUN/launcher.log" 2>&1 9>&-) || rc=$?
    else
        (cd "$ES_RUN" && { ulimit -n 65535 || true; } 2>/dev/null; exec timeout 180 setsid "${envv[@]}" "$ES_HOME/bin/elasticsearch" -d -p "$pidfile" \
            </dev/null >>"$ES_RUN/launcher.log" 2>&1 9>&-) || rc=$?
    fi
    [ "$rc" -eq 0 ] || es_fail "elasticsearch launcher exited with status $rc"

    log "waiting up to ${ES_WAIT}s for cluster health yellow"
    local deadline=$((SECONDS + ES_WAIT))
    while :; do
        pid_alive "$pidfile" "$marker" || es_fail "elasticsearch process died during startup"
        if es_ready "$ES_PORT" 2; then
            log "elasticsearch ready"
            return 0
        fi
        [ "$SECONDS" -lt "$deadline" ] || es_fail "elasticsearch not yellow on $HOST:$ES_PORT after ${ES_WAIT}s"
        sleep 1
    done
}

elasticsearch_down() {
    [ -e "$ES_LINK" ] || return 0
    if [ -L "$ES_LINK" ]; then ES_RUN=$(readlink -f "$ES_LINK"); else ES_RUN=$ES_LINK; fi
    local pidfile=$ES_RUN/elasticsearch.pid marker
    marker=$(es_pid_marker)
    if pid_alive "$pidfile" "$marker"; then
        stop_pid "$(tr -dc '0-9' <"$pidfile")" elasticsearch 60
    fi
    rm -f "$pidfile"
    stop_strays "$marker" elasticsearch java
}

# ------------------------------------------------------------------ kafka ----
# Apache Kafka 4.x, KRaft mode, one combined broker+controller node, from Maven Central:
# org.apache.kafka:kafka_2.13 and its runtime dependencies copied into
# $SOCD_CACHE/kafka-<version>/libs by `mvn dependency:copy-dependencies` (no tarball).
# Listeners: PLAINTEXT (KAFKA_BOOTSTRAP), SASL_PLAINTEXT (KAFKA_SASL_BOOTSTRAP, PLAIN and
# SCRAM-SHA-256/512 for user KAFKA_SASL_USER) and SASL_SSL (KAFKA_TLS_BOOTSTRAP, server
# certificate from a test CA, KAFKA_TLS_CA).
KAFKA_PORT=""
KAFKA_SASL_PORT=""
KAFKA_TLS_PORT=""
KAFKA_CONTROLLER_PORT=""
KAFKA_SASL_USER=socd
KAFKA_SASL_PASSWORD=""

kafka_fetch() {
    ensure_java
    local jar="$KAFKA_DIST/libs/kafka_2.13-$KAFKA_VERSION.jar"
    if [ -s "$jar" ] && [ -f "$KAFKA_DIST/.socd-complete" ]; then return 0; fi
    need_cmd mvn maven
    log "downloading Apache Kafka $KAFKA_VERSION (kafka_2.13 + runtime deps) from Maven Central"
    mkdir -p "$CACHE_DIR"
    local tmp
    tmp=$(mktemp -d "$CACHE_DIR/.kafka.XXXXXX")
    # A throw-away POM naming the broker jar and the slf4j binding its log4j2 needs.
    cat >"$tmp/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>socd.dev</groupId><artifactId>kafka-broker</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>$KAFKA_LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
POM
    if ! (cd "$tmp" && mvn -B -q -Dstyle.color=never -Dmaven.repo.local="$M2_REPO" \
            org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$tmp/libs" >&2); then
        rm -rf "$tmp"
        die "mvn could not download org.apache.kafka:kafka_2.13:$KAFKA_VERSION and its dependencies"
    fi
    [ -s "$tmp/libs/kafka_2.13-$KAFKA_VERSION.jar" ] || { rm -rf "$tmp"; die "mvn finished but the kafka_2.13 jar is missing"; }
    rm -rf "$KAFKA_DIST"
    mkdir -p "$KAFKA_DIST"
    mv "$tmp/libs" "$KAFKA_DIST/libs"
    rm -rf "$tmp"
    touch "$KAFKA_DIST/.socd-complete"
}

kafka_java() { "$ES_JAVA_HOME/bin/java" -cp "$KAFKA_DIST/libs/*" "$@"; }

# kafka_ready PORT : the broker answers a metadata request (a raw ApiVersions probe would
# pass before the controller elected itself; the Python client is what the tests use).
kafka_ready() {
    local py=$REPO_ROOT/.venv/bin/python
    if [ -x "$py" ] && "$py" -c 'import confluent_kafka' 2>/dev/null; then
        timeout 20 "$py" - "$HOST:$1" <<'PY' >/dev/null 2>&1
import sys
from confluent_kafka.admin import AdminClient
md = AdminClient({"bootstrap.servers": sys.argv[1]}).list_topics(timeout=5)
sys.exit(0 if md.brokers and md.controller_id >= 0 else 1)
PY
    else
        grep -q 'Kafka Server started' "$KAFKA_DIR/kafka.log" 2>/dev/null &&
            (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
    fi
}

# kafka_tls : a test CA and a server certificate for 127.0.0.1/localhost (PEM, as the
# broker's PEM key store reads them); made once per state dir.
kafka_tls() {
    local d=$KAFKA_DIR/tls
    [ -s "$d/server.pem" ] && [ -s "$d/ca.pem" ] && return 0
    need_cmd openssl openssl
    mkdir -p "$d"
    (
        cd "$d"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=socd dev Kafka test CA" \
            -keyout ca.key -out ca.pem 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
            -keyout server.key -out server.csr 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
            -extfile san.ext -out server.crt 2>/dev/null
        # PKCS#8 key then the certificate chain: the broker's PEM key store format.
        openssl pkcs8 -topk8 -nocrypt -in server.key -out server.p8
        cat server.p8 server.crt ca.pem >server.pem
        rm -f server.csr san.ext server.p8 ca.srl
    ) || die "could not create the Kafka test CA and server certificate in $d"
}

kafka_fail() {
    tail_log "$KAFKA_DIR/kafka.log" 60
    die "$*"
}

kafka_up() {
    ensure_java
    kafka_fetch
    local pidfile=$KAFKA_DIR/kafka.pid conf=$KAFKA_DIR/server.properties
    mkdir -p "$KAFKA_DIR"

    if pid_alive "$pidfile" "$conf"; then
        KAFKA_PORT=$(read_file "$KAFKA_DIR/port")
        if [ -n "$KAFKA_PORT" ] && kafka_ready "$KAFKA_PORT"; then
            log "kafka already running (pid $(cat "$pidfile"), port $KAFKA_PORT)"
            KAFKA_SASL_PORT=$(read_file "$KAFKA_DIR/sasl_port")
            KAFKA_TLS_PORT=$(read_file "$KAFKA_DIR/tls_port")
            KAFKA_CONTROLLER_PORT=$(read_file "$KAFKA_DIR/controller_port")
            KAFKA_SASL_PASSWORD=$(read_file "$KAFKA_DIR/sasl_password")
            TAKEN_PORTS="$TAKEN_PORTS$KAFKA_PORT $KAFKA_SASL_PORT $KAFKA_TLS_PORT $KAFKA_CONTROLLER_PORT "
            return 0
        fi
        log "kafka running but not answering; restarting it"
        kafka_down
    fi
    stop_strays "$conf" kafka java
    rm -f "$pidfile"

    choose_port KAFKA_PORT "${SOCD_KAFKA_PORT:-19092}" "$(read_file "$KAFKA_DIR/port")"
    choose_port KAFKA_SASL_PORT "${SOCD_KAFKA_SASL_PORT:-19094}" "$(read_file "$KAFKA_DIR/sasl_port")"
    choose_port KAFKA_TLS_PORT "${SOCD_KAFKA_TLS_PORT:-19095}" "$(read_file "$KAFKA_DIR/tls_port")"
    choose_port KAFKA_CONTROLLER_PORT "${SOCD_KAFKA_CONTROLLER_PORT:-19093}" "$(read_file "$KAFKA_DIR/controller_port")"
    echo "$KAFKA_PORT" >"$KAFKA_DIR/port"
    echo "$KAFKA_SASL_PORT" >"$KAFKA_DIR/sasl_port"
    echo "$KAFKA_TLS_PORT" >"$KAFKA_DIR/tls_port"
    echo "$KAFKA_CONTROLLER_PORT" >"$KAFKA_DIR/controller_port"

    KAFKA_SASL_PASSWORD=$(read_file "$KAFKA_DIR/sasl_password")
    if [ -z "$KAFKA_SASL_PASSWORD" ]; then
        KAFKA_SASL_PASSWORD="dev-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
        (umask 077 && printf '%s\n' "$KAFKA_SASL_PASSWORD" >"$KAFKA_DIR/sasl_password")
    fi
    kafka_tls
    render "$TEMPLATE_DIR/kafka.properties.in" "$conf" \
        KAFKA_PORT="$KAFKA_PORT" KAFKA_SASL_PORT="$KAFKA_SASL_PORT" \
        KAFKA_TLS_PORT="$KAFKA_TLS_PORT" KAFKA_CONTROLLER_PORT="$KAFKA_CONTROLLER_PORT" \
        KAFKA_SASL_USER="$KAFKA_SASL_USER" KAFKA_SASL_PASSWORD="$KAFKA_SASL_PASSWORD" \
        KAFKA_TLS_DIR="$KAFKA_DIR/tls" KAFKA_DATA_DIR="$KAFKA_DIR/data"
    chmod 600 "$conf"
    render "$TEMPLATE_DIR/kafka-log4j2.yaml.in" "$KAFKA_DIR/log4j2.yaml" KAFKA_LOG="$KAFKA_DIR/kafka.log"

    # A scratch broker for tests and benchmarks: every start begins with empty storage.
    # The tests' topics (uuid-named) would otherwise pile up from run to run and session
    # to session; at some 16,000 partitions the broker's 512 MB heap ran out mid-run.
    rm -rf "$KAFKA_DIR/data"
    # KRaft needs its storage formatted (cluster id, SCRAM users in the metadata log).
    if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
        local cid
        cid=$(kafka_java kafka.tools.StorageTool random-uuid 2>>"$KAFKA_DIR/kafka.log") ||
            kafka_fail "kafka StorageTool random-uuid failed"
        log "formatting kafka storage (cluster $cid)"
        mkdir -p "$KAFKA_DIR/data"
        kafka_java -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.yaml" kafka.tools.StorageTool format \
            -t "$cid" -c "$conf" \
            --add-scram "SCRAM-SHA-256=[name=$KAFKA_SASL_USER,password=$KAFKA_SASL_PASSWORD]" \
            --add-scram "SCRAM-SHA-512=[name=$KAFKA_SASL_USER,password=$KAFKA_SASL_PASSWORD]" \
            >>"$KAFKA_DIR/kafka.log" 2>&1 || kafka_fail "kafka StorageTool format failed"
    fi

    log "starting kafka $KAFKA_VERSION on $HOST:$KAFKA_PORT (SASL $KAFKA_SASL_PORT, TLS $KAFKA_TLS_PORT, controller $KAFKA_CONTROLLER_PORT)"
    printf '\n===== %s start =====\n' "$(date -Is)" >>"$KAFKA_DIR/kafka.log"
    (cd "$KAFKA_DIR" && { ulimit -n 65535 || true; } 2>/dev/null
        exec setsid "$ES_JAVA_HOME/bin/java" "-Xms$KAFKA_HEAP" "-Xmx$KAFKA_HEAP" \
            -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
            -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.yaml" \
            -cp "$KAFKA_DIST/libs/*" kafka.Kafka "$conf" \
            </dev/null >>"$KAFKA_DIR/kafka.log" 2>&1 9>&-) &
    local pid=$!
    echo "$pid" >"$pidfile"

    local deadline=$((SECONDS + KAFKA_WAIT))
    while :; do
        proc_running "$pid" || kafka_fail "kafka exited during startup"
        kafka_ready "$KAFKA_PORT" && { log "kafka ready"; return 0; }
        [ "$SECONDS" -lt "$deadline" ] || kafka_fail "kafka did not answer on $HOST:$KAFKA_PORT within ${KAFKA_WAIT}s"
        sleep 0.5
    done
}

kafka_down() {
    local pidfile=$KAFKA_DIR/kafka.pid
    if pid_alive "$pidfile" "$KAFKA_DIR/server.properties"; then
        stop_pid "$(cat "$pidfile")" kafka 60
    fi
    rm -f "$pidfile"
    stop_strays "$KAFKA_DIR/server.properties" kafka java
}

# ------------------------------------------------------------------ output ----
env_line() {
    local k=$1 v=$2
    if [[ "$v" =~ ^[A-Za-z0-9_./:@%+,=-]*$ ]]; then
        printf '%s=%s\n' "$k" "$v"
    else
        printf '%s=%q\n' "$k" "$v"
    fi
}
json_str() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    printf '"%s"' "$s"
}

write_env() {
    local es_version
    es_version=$(es_version_of "$ES_PORT")
    [ -n "$es_version" ] || die "could not read the version from $HOST:$ES_PORT"
    local -a kv=(
        SOCD_SERVICES_DIR "$STATE_DIR"
        MQTT_HOST "$HOST"
        MQTT_PORT "$MQTT_PORT"
        MQTT_URL "mqtt://$HOST:$MQTT_PORT"
        MQTT_LOG "$MQTT_DIR/mosquitto.log"
        ES_HOST "$HOST"
        ES_PORT "$ES_PORT"
        ES_URL "http://$HOST:$ES_PORT"
        ES_VERSION "$es_version"
        ES_LOG "$ES_RUN/logs/socd-dev.log"
        PROMETHEUS_HOST "$HOST"
        PROMETHEUS_PORT "$PROM_PORT"
        PROMETHEUS_URL "http://$HOST:$PROM_PORT"
        PROMETHEUS_CONFIG "$PROM_DIR/prometheus.yml"
        PROMETHEUS_TARGETS_DIR "$PROM_DIR/targets"
        PROMETHEUS_RULES_DIR "$PROM_DIR/rules"
        PROMETHEUS_LOG "$PROM_DIR/prometheus.log"
        KAFKA_BOOTSTRAP "$HOST:$KAFKA_PORT"
        KAFKA_SASL_BOOTSTRAP "$HOST:$KAFKA_SASL_PORT"
        KAFKA_TLS_BOOTSTRAP "$HOST:$KAFKA_TLS_PORT"
        KAFKA_TLS_CA "$KAFKA_DIR/tls/ca.pem"
        KAFKA_SASL_USER "$KAFKA_SASL_USER"
        KAFKA_SASL_PASSWORD "$KAFKA_SASL_PASSWORD"
        KAFKA_VERSION "$KAFKA_VERSION"
        KAFKA_JAVA "$ES_JAVA_HOME/bin/java"
        KAFKA_CLASSPATH "$KAFKA_DIST/libs/*"
        KAFKA_LOG "$KAFKA_DIR/kafka.log"
    )
    local i envtmp=$STATE_DIR/services.env.tmp jsontmp=$STATE_DIR/services.json.tmp
    {
        echo "# written by scripts/services.sh up at $(date -Is); removed by down"
        for ((i = 0; i < ${#kv[@]}; i += 2)); do env_line "${kv[i]}" "${kv[i + 1]}"; done
    } >"$envtmp"
    {
        echo "{"
        for ((i = 0; i < ${#kv[@]}; i += 2)); do
            printf '  %s: ' "$(json_str "${kv[i]}")"
            case "${kv[i]}" in
                *_PORT) printf '%s' "${kv[i + 1]}" ;;
                *) json_str "${kv[i + 1]}" ;;
            esac
            [ $((i + 2)) -lt ${#kv[@]} ] && printf ','
            printf '\n'
        done
        echo "}"
    } >"$jsontmp"
    chmod 644 "$envtmp" "$jsontmp"
    mv -f "$envtmp" "$STATE_DIR/services.env"
    mv -f "$jsontmp" "$STATE_DIR/services.json"
}

# ---------------------------------------------------------------- commands ----
lock_state() {
    mkdir -p "$STATE_DIR"
    chmod 755 "$STATE_DIR" 2>/dev/null || true
    exec 9>"$STATE_DIR/.lock"
    flock -w 900 9 || die "another services.sh holds $STATE_DIR/.lock"
}

# test_packages : the extra Debian packages listed in deploy/dev/apt-packages.txt.
test_packages() {
    local list="$TEMPLATE_DIR/apt-packages.txt" cmd pkg missing=()
    [ -f "$list" ] || return 0
    while read -r cmd pkg; do
        case "$cmd" in ''|'#'*) continue ;; esac
        if [ "$cmd" = "-" ]; then
            dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" \
                || missing+=("$pkg")
        elif ! find_cmd "$cmd" >/dev/null; then
            missing+=("$pkg")
        fi
    done <"$list"
    if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
}

cmd_up() {
    need_cmd curl curl
    need_cmd flock util-linux
    test_packages
    lock_state
    local t
    t=$SECONDS; mosquitto_up;     log "mosquitto step took $((SECONDS - t))s"
    t=$SECONDS; prometheus_up;    log "prometheus step took $((SECONDS - t))s"
    t=$SECONDS; elasticsearch_up; log "elasticsearch step took $((SECONDS - t))s"
    t=$SECONDS; kafka_up;         log "kafka step took $((SECONDS - t))s"
    write_env
    log "all services up in $((SECONDS - T0))s; env in $STATE_DIR/services.env and services.json"
    grep -v '^#' "$STATE_DIR/services.env"
}

cmd_down() {
    if [ ! -d "$STATE_DIR" ]; then log "nothing to stop ($STATE_DIR does not exist)"; return 0; fi
    lock_state
    rm -f "$STATE_DIR/services.env" "$STATE_DIR/services.json"
    kafka_down
    elasticsearch_down
    prometheus_down
    mosquitto_down
    log "all services stopped"
}

cmd_status() {
    local ok=0 pid port
    if pid_alive "$MQTT_DIR/mosquitto.pid" "$MQTT_DIR/mosquitto.conf"; then
        port=$(read_file "$MQTT_DIR/port"); pid=$(cat "$MQTT_DIR/mosquitto.pid")
        if command -v mosquitto_pub >/dev/null && mqtt_ready "$port"; then
            echo "mosquitto:     running  pid $pid  mqtt://$HOST:$port  healthy"
        else
            echo "mosquitto:     running  pid $pid  mqtt://$HOST:$port  NOT ANSWERING"; ok=1
        fi
    else
        echo "mosquitto:     stopped"; ok=1
    fi
    if pid_alive "$PROM_DIR/prometheus.pid" "--config.file=$PROM_DIR/prometheus.yml"; then
        port=$(read_file "$PROM_DIR/port"); pid=$(cat "$PROM_DIR/prometheus.pid")
        if http_ok "http://$HOST:$port/-/ready"; then
            echo "prometheus:    running  pid $pid  http://$HOST:$port  ready"
        else
            echo "prometheus:    running  pid $pid  http://$HOST:$port  NOT READY"; ok=1
        fi
    else
        echo "prometheus:    stopped"; ok=1
    fi
    if [ -L "$ES_LINK" ]; then ES_RUN=$(readlink -f "$ES_LINK"); else ES_RUN=$ES_LINK; fi
    if pid_alive "$ES_RUN/elasticsearch.pid" "$(es_pid_marker)"; then
        port=$(read_file "$ES_RUN/port"); pid=$(tr -dc '0-9' <"$ES_RUN/elasticsearch.pid")
        local health
        health=$(curl -fsS --noproxy '*' --max-time 5 "http://$HOST:$port/_cluster/health" 2>/dev/null |
            sed -n 's/.*"status":"\([a-z]*\)".*/\1/p' || true)
        case "$health" in
            green | yellow) echo "elasticsearch: running  pid $pid  http://$HOST:$port  $health ($(es_version_of "$port"))" ;;
            *) echo "elasticsearch: running  pid $pid  http://$HOST:$port  NOT HEALTHY (${health:-no answer})"; ok=1 ;;
        esac
    else
        echo "elasticsearch: stopped"; ok=1
    fi
    if pid_alive "$KAFKA_DIR/kafka.pid" "$KAFKA_DIR/server.properties"; then
        port=$(read_file "$KAFKA_DIR/port"); pid=$(cat "$KAFKA_DIR/kafka.pid")
        if kafka_ready "$port"; then
            echo "kafka:         running  pid $pid  $HOST:$port  ready"
        else
            echo "kafka:         running  pid $pid  $HOST:$port  NOT ANSWERING"; ok=1
        fi
    else
        echo "kafka:         stopped"; ok=1
    fi
    if [ "$ok" -eq 0 ] && [ -f "$STATE_DIR/services.env" ]; then
        echo "env: $STATE_DIR/services.env"
    fi
    return "$ok"
}

cmd_env() {
    [ -f "$STATE_DIR/services.env" ] || die "$STATE_DIR/services.env missing: run bash scripts/services.sh up"
    grep -v '^#' "$STATE_DIR/services.env"
}

cmd_fetch() {
    need_cmd mosquitto mosquitto
    need_cmd mosquitto_pub mosquitto-clients
    need_cmd prometheus prometheus
    es_fetch
    ensure_es_user
    kafka_fetch
    echo "$ES_DIST"
    echo "$KAFKA_DIST"
}

cmd_clean() {
    cmd_down
    local alt=""
    [ -L "$ES_LINK" ] && alt=$(readlink -f "$ES_LINK")
    case "$STATE_DIR" in
        / | "" | "$HOME" | /tmp | /root) die "refusing to delete state dir '$STATE_DIR'" ;;
    esac
    rm -rf "$STATE_DIR"
    case "$alt" in /tmp/socd-es-*) rm -rf "$alt" ;; esac
    log "removed $STATE_DIR (cache $CACHE_DIR kept)"
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    fetch) cmd_fetch ;;
    clean) cmd_clean ;;
    *)
        echo "usage: bash scripts/services.sh up|down|status|env|fetch|clean" >&2
        exit 2
        ;;
esac
