# Shared helpers for ops/up, ops/down, ops/test and ops/bench. Source it; do not run it.
# shellcheck shell=bash

MB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Installs redis-server and mariadb-server with apt when missing (root), or says how.
ensure_packages() {
  local missing=() want
  # Extra needs as command=package, e.g. chromedriver=chromium-driver (ops/test's browser).
  for want in "$@"; do
    command -v "${want%%=*}" >/dev/null || missing+=("${want#*=}")
  done
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v redis-cli >/dev/null || missing+=(redis-tools)
  command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
  command -v mariadb >/dev/null || missing+=(mariadb-client)
  command -v curl >/dev/null || missing+=(curl)
  command -v python3 >/dev/null || missing+=(python3)
  command -v shellcheck >/dev/null || missing+=(shellcheck)
  [ -x /usr/bin/time ] || missing+=(time)
  command -v cargo >/dev/null || die "cargo is missing: install Rust (rustup) first"
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    die "missing packages; run: sudo apt-get update && sudo apt-get install -y ${missing[*]}"
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Debian's packages start system services; ours run privately, so keep theirs off while
  # installing, and put back whatever policy the machine had, even if apt fails.
  local policy=/usr/sbin/policy-rc.d saved=""
  if [ -e "$policy" ]; then saved="$(mktemp)"; cp -p "$policy" "$saved"; fi
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
  local rc=0
  apt-get install -y -qq "${missing[@]}" >/dev/null || rc=$?
  if [ -n "$saved" ]; then mv "$saved" "$policy"; else rm -f "$policy"; fi
  [ "$rc" -eq 0 ] || die "apt-get install ${missing[*]} failed"
}

# Stops with a clear message when the installed Redis is older than the 6.2 mb needs
# (XAUTOCLAIM); the services refuse to start on such a server too.
require_redis_version() {
  local v
  v="$(redis-server --version | sed -n 's/.* v=\([0-9][0-9.]*\).*/\1/p')"
  [ -n "$v" ] || die "cannot read the version of redis-server"
  local major="${v%%.*}" rest="${v#*.}"
  local minor="${rest%%.*}"
  if [ "$major" -lt 6 ] || { [ "$major" -eq 6 ] && [ "$minor" -lt 2 ]; }; then
    die "redis-server $v is too old: mb needs Redis 6.2 or newer (XAUTOCLAIM); install a newer redis-server"
  fi
}

# wait_ready URL CA CERT KEY SECONDS WHAT: waits until GET URL answers 200 over mTLS.
wait_ready() {
  local i code=000
  for ((i = 0; i < $5 * 10; i++)); do
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --cacert "$2" --cert "$3" --key "$4" "$1" || true)"
    [ "$code" = 200 ] && return 0
    sleep 0.1
  done
  die "$6 is not ready after $5 s (last answer: $code); see .local/logs/"
}

# ensure_cargo_tools TOOL...: installs cargo subcommands that are missing (once; later runs
# find them in ~/.cargo/bin).
ensure_cargo_tools() {
  local t
  for t in "$@"; do
    if ! cargo "${t#cargo-}" --version >/dev/null 2>&1; then
      log "installing $t (once)"
      cargo install --locked --quiet "$t"
    fi
  done
}

# The RustSec advisory database for `cargo deny --offline`: refreshed from the bundle beside
# the project when it is there, else the copy a previous run installed.
ensure_advisory_db() {
  local tool="$MB_ROOT/../shared/tools/advisory-db"
  if [ -x "$tool" ]; then
    "$tool" >/dev/null
  elif ! ls -d "${CARGO_HOME:-$HOME/.cargo}"/advisory-dbs/advisory-db-* >/dev/null 2>&1; then
    die "no RustSec advisory database for cargo deny: run ../shared/tools/advisory-db (beside the project) once"
  fi
}

mariadbd_bin() { command -v mariadbd || echo /usr/sbin/mariadbd; }

# A free TCP port on 127.0.0.1, below the ephemeral range so no outgoing connection takes it
# before the service binds it.
free_port() {
  python3 -c '
import random, socket
for _ in range(1000):
    p = random.randint(10000, 32000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        s.close()
'
}

wait_port() { # host port seconds what
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  die "$4 did not start listening on $1:$2 within $3 s"
}

# start_redis DIR PORT: a private Redis with redis/redis.conf, data in DIR.
start_redis() {
  mkdir -p "$1"
  redis-server "$MB_ROOT/redis/redis.conf" --port "$2" --dir "$1" --daemonize yes \
    --pidfile "$1/redis.pid" --logfile "$1/redis.log"
  wait_port 127.0.0.1 "$2" 20 redis
}

# start_redis_cluster DIR PORT...: six nodes (redis.conf + redis/cluster/cluster.conf) with data
# in DIR/node-PORT, made into a cluster of 3 masters with one replica each; waits until every
# master has its replica online (a 202 waits for one with redis_wait_replicas). Prints the
# services' redis_url. Stop the nodes with stop_pidfile DIR/node-*/redis.pid.
start_redis_cluster() {
  local dir="$1" p i ok
  shift
  [ "$#" -eq 6 ] || die "start_redis_cluster needs six ports"
  local seeds=() addrs=()
  for p in "$@"; do
    mkdir -p "$dir/node-$p"
    # The bus port is kept: the other nodes' nodes.conf know the node by it.
    [ -s "$dir/node-$p/cluster-port" ] || free_port >"$dir/node-$p/cluster-port"
    redis-server "$MB_ROOT/redis/redis.conf" --include "$MB_ROOT/redis/cluster/cluster.conf" \
      --port "$p" --cluster-port "$(cat "$dir/node-$p/cluster-port")" --dir "$dir/node-$p" --daemonize yes \
      --pidfile "$dir/node-$p/redis.pid" --logfile "$dir/node-$p/redis.log"
    wait_port 127.0.0.1 "$p" 20 "redis node $p"
    addrs+=("127.0.0.1:$p")
    seeds+=("127.0.0.1:$p")
  done
  # An existing cluster (a restart) keeps its nodes.conf; only a new one is created.
  if [[ "$(redis-cli -p "$1" CLUSTER INFO)" != *cluster_known_nodes:6* ]]; then
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 ||
      { cat "$dir/create.log" >&2; die "redis-cli --cluster create failed"; }
  fi
  for ((i = 0; i < 600; i++)); do
    ok=0
    for p in "$@"; do
      local info
      info="$(redis-cli -p "$p" INFO replication 2>/dev/null; redis-cli -p "$p" CLUSTER INFO 2>/dev/null)"
      case "$info" in *cluster_state:ok*) ;; *) continue ;; esac
      case "$info" in
        *role:master*) case "$info" in *slave0:*state=online*) ok=$((ok + 1)) ;; esac ;;
        *) ok=$((ok + 1)) ;;
      esac
    done
    [ "$ok" -eq 6 ] && break
    sleep 0.1
  done
  [ "$ok" -eq 6 ] || die "the redis cluster in $dir did not become ready (see $dir/node-*/redis.log)"
  local IFS=,
  echo "redis+cluster://${seeds[*]}"
}

# start_mariadb DIR PORT: a private MariaDB with data in DIR/data (initialised on first use).
# MB_MYSQL_BINLOG=1: with a binary log (--server-id=1 --log-bin=mysql-bin --binlog-format=ROW),
# which a read replica (ops/replica) needs; off by default, so the benchmark pays for none.
# MB_MYSQL_BUFFER_POOL (default 1G) and MB_MYSQL_LOG_FILE (default 512M): InnoDB's buffer pool
# and redo log. With 256M the list indexes of a million rows no longer fit and MariaDB spent
# 30 instead of 25 µs a row (ops/bench --batch 100 --messages 1000000). Durability settings are
# MariaDB's defaults (innodb_flush_log_at_trx_commit=1: a commit is on disk when answered).
start_mariadb() {
  local dir="$1" port="$2" user binlog=()
  user="$(id -un)"
  if [ "${MB_MYSQL_BINLOG:-0}" = 1 ]; then
    binlog=(--server-id=1 --log-bin=mysql-bin --binlog-format=ROW)
  fi
  mkdir -p "$dir"
  if [ ! -d "$dir/data/mysql" ]; then
    mariadb-install-db --no-defaults --datadir="$dir/data" --user="$user" \
      --auth-root-authentication-method=socket --skip-test-db >"$dir/install.log" 2>&1 ||
      { cat "$dir/install.log" >&2; die "mariadb-install-db failed"; }
  fi
  "$(mariadbd_bin)" --no-defaults --datadir="$dir/data" --port="$port" --bind-address=127.0.0.1 \
    --socket="$dir/mysqld.sock" --pid-file="$dir/mysqld.pid" --log-error="$dir/mysqld.log" \
    --user="$user" --skip-name-resolve --innodb-buffer-pool-size="${MB_MYSQL_BUFFER_POOL:-1G}" \
    --innodb-log-file-size="${MB_MYSQL_LOG_FILE:-512M}" --max-connections=500 --character-set-server=utf8mb4 \
    ${binlog[@]+"${binlog[@]}"} >/dev/null 2>&1 &
  local i
  for ((i = 0; i < 300; i++)); do
    [ -S "$dir/mysqld.sock" ] && mariadb --no-defaults -u"$user" --socket="$dir/mysqld.sock" -e 'SELECT 1' >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  tail -20 "$dir/mysqld.log" >&2
  die "mariadb did not start"
}

# mysql_root DIR SQL: run SQL as the database's superuser over the socket (socket auth maps the
# OS user that ran mariadb-install-db, root or not).
mysql_root() { mariadb --no-defaults -u"$(id -un)" --socket="$1/mysqld.sock" -e "$2"; }

# stop_pidfile FILE NAME: SIGTERM, wait up to 30 s, then SIGKILL.
stop_pidfile() {
  local f="$1" pid i
  [ -f "$f" ] || return 0
  pid="$(cat "$f")"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$2 did not stop in 30 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$f"
}

random_secret() { head -c 24 /dev/urandom | base64 | tr -d '/+=' ; }
