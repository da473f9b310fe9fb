# Shared helpers for bench/run.sh, bench/profile.sh and bench/syscalls.sh. Source it; do not run it.
# Everything listens on 127.0.0.1 only; every process started here is recorded
# in STARTED_PIDS and stopped by bench_cleanup (installed as an EXIT trap).

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT_DIR=$(cd "$BENCH_DIR/.." && pwd)
WORK_DIR="$BENCH_DIR/work"

PORT_BASE=${BENCH_PORT_BASE:-28100}  # below the ephemeral range (32768+)
PROXY_PORT=$((PORT_BASE + 0))
UP1_PORT=$((PORT_BASE + 1))
UP2_PORT=$((PORT_BASE + 2))
ADMIN_PORT=$((PORT_BASE + 10))
PPROF_PORT=$((PORT_BASE + 11))
LOAD_CPU=${BENCH_LOAD_CPU:-0}    # wrk and the upstreams
PROXY_CPU=${BENCH_PROXY_CPU:-1}  # the proxy under test

# shellcheck source=bench/nginx.sh
source "$BENCH_DIR/nginx.sh"
# shellcheck source=bench/forwarding.sh
source "$BENCH_DIR/forwarding.sh"

STARTED_PIDS=()
UPSTREAM_PIDS=()

log()  { printf '%s bench: %s\n' "$(date +%T)" "$*" >&2; }
warn() { printf '%s bench: WARNING: %s\n' "$(date +%T)" "$*" >&2; }
die()  { printf '%s bench: ERROR: %s\n' "$(date +%T)" "$*" >&2; exit 1; }

# ---------------------------------------------------------------- packages

# ensure_packages installs, from the configured Debian repositories only, the
# tools that are missing. A package with no install candidate is reported
# and left out; the caller checks `command -v` before using the tool.
ensure_packages() {
  local want=() cmd pkg
  for pair in wrk:wrk nginx:nginx haproxy:haproxy caddy:caddy curl:curl taskset:util-linux ss:iproute2 pgrep:procps; do
    cmd=${pair%%:*}; pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || want+=("$pkg")
  done
  if ! /usr/bin/python3 -c 'import matplotlib' >/dev/null 2>&1; then
    want+=(python3-matplotlib)
  fi
  [ ${#want[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    warn "missing packages (${want[*]}) and cannot apt-get install them (need root on Debian)"
    return 0
  fi
  local avail=() p cand
  for p in "${want[@]}"; do
    cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/{print $2}')
    if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
      apt-get update -qq >/dev/null 2>&1 || true
      cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/{print $2}')
    fi
    if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
      warn "Debian package '$p' has no install candidate here; its target is skipped"
    else
      avail+=("$p")
    fi
  done
  [ ${#avail[@]} -eq 0 ] && return 0
  log "apt-get install ${avail[*]}"
  # Keep the packages' system services from starting (they would take :80).
  local made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${avail[@]}" >&2 ||
    warn "apt-get install failed"
  [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  return 0
}

# ---------------------------------------------------------------- processes

port_busy() { [ -n "$(ss -Htln "( sport = :$1 )" 2>/dev/null)" ]; }

check_ports_free() {
  local p
  for p in "$@"; do
    port_busy "$p" && die "port 127.0.0.1:$p is in use (set BENCH_PORT_BASE to move the benchmark's ports)"
  done
  return 0
}

# wait_http URL SECONDS: until URL answers with any HTTP status.
wait_http() {
  local url=$1 deadline=$((SECONDS + ${2:-10}))
  while [ $SECONDS -lt $deadline ]; do
    curl -s -o /dev/null --max-time 1 "$url" && return 0
    sleep 0.05
  done
  return 1
}

# proc_tree PID: PID and all its descendants, one per line.
proc_tree() {
  local p=$1 c
  [ -d "/proc/$p" ] || return 0
  echo "$p"
  for c in $(pgrep -P "$p" 2>/dev/null); do proc_tree "$c"; done
}

# cpu_ticks PID...: summed utime+stime (clock ticks) of the processes.
cpu_ticks() {
  [ $# -eq 0 ] && { echo 0; return; }
  local files=() p
  for p in "$@"; do files+=("/proc/$p/stat"); done
  awk '{ sub(/^.*\) /, ""); s += $12 + $13 } END { print s + 0 }' "${files[@]}" 2>/dev/null
}

# hwm_kb PID...: summed VmHWM (peak resident set, KiB) of the processes.
hwm_kb() {
  [ $# -eq 0 ] && { echo 0; return; }
  local files=() p
  for p in "$@"; do files+=("/proc/$p/status"); done
  awk '/^VmHWM:/ { s += $2 } END { print s + 0 }' "${files[@]}" 2>/dev/null
}

# cpu_stat N: jiffies of CPU N from /proc/stat as
# "task irq steal idle total": task = user+nice+system (time charged to
# processes), irq = irq+softirq, idle = idle+iowait.
cpu_stat() {
  awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= 9; i++) t += $i;
    print $2 + $3 + $4, $7 + $8, $9, $5 + $6, t }' /proc/stat
}

# host_busy SECONDS: busy fraction of the busiest CPU over a short sample,
# to tell whether something else is running on the machine.
host_busy() {
  local a b
  a=$(awk '/^cpu[0-9]/{print $1, $5 + $6, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
  sleep "$1"
  b=$(awk '/^cpu[0-9]/{print $1, $5 + $6, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
  paste -d' ' <(echo "$a") <(echo "$b") |
    awk '{t = $6 - $3; if (t > 0) { x = 1 - ($5 - $2) / t; if (x > m) m = x } } END { printf "%.2f", m }'
}

# stop_pid PID [GRACE_S [SIGNAL]]: SIGNAL (default TERM), wait, then SIGKILL; sets STOP_RC to the
# exit status. Call it directly, not in $(...): it must reap its own child.
stop_pid() {
  local pid=$1 grace=${2:-10} sig=${3:-TERM} i
  if kill -0 "$pid" 2>/dev/null; then
    kill -"$sig" "$pid" 2>/dev/null
    for ((i = 0; i < grace * 20; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
      warn "pid $pid ignored SIG$sig for ${grace}s; killing it"
      kill -KILL "$pid" 2>/dev/null
    fi
  fi
  wait "$pid" 2>/dev/null
  STOP_RC=$?
  local -a keep=()
  for i in "${STARTED_PIDS[@]}"; do [ "$i" != "$pid" ] && keep+=("$i"); done
  STARTED_PIDS=("${keep[@]}")
}

bench_cleanup() {
  local p
  for p in "${STARTED_PIDS[@]}"; do
    kill -TERM "$p" 2>/dev/null
  done
  sleep 0.3
  for p in "${STARTED_PIDS[@]}"; do
    kill -0 "$p" 2>/dev/null && sleep 1 && kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  STARTED_PIDS=()
}

# ---------------------------------------------------------------- upstreams

# write_upstream_conf DIR NAME PORT: an nginx instance (own prefix, one
# worker, no access log) serving /1k, /64k and POST /post with X-Backend: NAME
# and stub_status on /bench-status (its counters tell requests and new
# connections per upstream).
write_upstream_conf() {
  local d=$1 name=$2 port=$3
  mkdir -p "$d/www" "$d/tmp"
  head -c 1024 /dev/zero | tr '\0' 'a' >"$d/www/1k"
  head -c 65536 /dev/zero | tr '\0' 'b' >"$d/www/64k"
  local body1k
  body1k=$(cat "$d/www/1k")
  cat >"$d/nginx.conf" <<EOF
$(nginx_main "$d")
http {
$(nginx_http_common "$d")
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  open_file_cache max=16 inactive=300s;
  server {
    listen 127.0.0.1:$port backlog=4096;
    add_header X-Backend $name always;
    location = /1k   { return 200 "$body1k"; }
    location = /post { return 200 "$body1k"; }
    location = /64k  { root $d/www; }
    location = /bench-status { stub_status; }
  }
}
EOF
}

# start_upstreams DIR: starts up1 and up2 on LOAD_CPU.
start_upstreams() {
  local base=$1 n port
  for n in 1 2; do
    port=$((PORT_BASE + n))
    write_upstream_conf "$base/up$n" "up$n" "$port"
    taskset -c "$LOAD_CPU" nginx -p "$base/up$n" -e "$base/up$n/error.log" -c "$base/up$n/nginx.conf" \
      >"$base/up$n/stdout.log" 2>&1 &
    STARTED_PIDS+=($!)
    UPSTREAM_PIDS+=($!)
    wait_http "http://127.0.0.1:$port/1k" 10 || die "upstream up$n did not start: $(tail -n 3 "$base/up$n/error.log" 2>/dev/null)"
  done
  local b
  b=$(curl -s -D - -o /dev/null "http://127.0.0.1:$UP1_PORT/64k" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-backend"{print $2}')
  [ "$b" = up1 ] || die "upstream up1 does not answer X-Backend: up1 (got '$b')"
}

# upstream_stats: "req1 acc1 req2 acc2" from both upstreams' stub_status
# (each read counts itself as one request and one accept). Each upstream
# is read on its own: a failed read gives "0 0" in its own place (one curl
# for both put up2's counters in up1's place when up1's read failed:
# found by review).
upstream_stats() {
  local port v=()
  for port in "$UP1_PORT" "$UP2_PORT"; do
    v+=($(curl -s --max-time 2 "http://127.0.0.1:$port/bench-status" |
      awk '/^ *[0-9]+ +[0-9]+ +[0-9]+ *$/ { v = $3 " " $1 } END { print (v == "" ? "0 0" : v) }'))
  done
  echo "${v[*]}"
}

# run_wrk CONNS PATH POST_BYTES SECONDS PORT LOGFILE
run_wrk() {
  BENCH_POST_BYTES=$3 taskset -c "$LOAD_CPU" wrk -t1 -c"$1" -d"$4"s --timeout 5s --latency \
    -s "$BENCH_DIR/lua/bench.lua" "http://127.0.0.1:$5$2" >"$6" 2>&1
}

# ---------------------------------------------------------------- sluice

write_sluice_conf() {
  local f=$1
  cat >"$f" <<EOF
listen: 127.0.0.1:$PROXY_PORT
admin: { listen: 127.0.0.1:$ADMIN_PORT }
routes:
  - match: { path_prefix: / }
    pool: up
pools:
  up:
    algorithm: round_robin
    backends:
      - { address: 127.0.0.1:$UP1_PORT }
      - { address: 127.0.0.1:$UP2_PORT }
access_log: { enabled: false }
log: { level: warn, format: json }
$(sluice_forwarding)
EOF
}

build_sluice() {
  mkdir -p "$WORK_DIR"
  (cd "$ROOT_DIR" && go build -o "$WORK_DIR/sluice" ./cmd/sluice) >"$WORK_DIR/sluice-build.log" 2>&1
}

# need_sluice: build_sluice, or stop with the build's last lines.
need_sluice() {
  build_sluice || die "go build ./cmd/sluice failed: $(tail -n 5 "$WORK_DIR/sluice-build.log")"
}

# begin_work DIR: DIR emptied for this script's files, and the traps that
# stop whatever the script starts when it exits or is interrupted.
begin_work() {
  rm -rf "$1"
  mkdir -p "$1"
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}
