#!/usr/bin/env bash
# Multi-core scaling: sluice (GOMAXPROCS=N), nginx (N workers) and HAProxy
# (nbthread N) on N dedicated cores, with wrk and the two nginx upstreams on
# other cores; by default 256 keep-alive connections, GET 1 KiB (scenario b
# of bench/run.sh; --scenario picks another: a 64 connections GET 1 KiB,
# c 64 connections GET 64 KiB, d 64 connections POST 16 KiB).
# Made for a many-core machine (16+ cores); prints a markdown table. The
# proxy's cores are 0..N-1, and their hyperthread siblings stay idle.
#
#   bench/scale.sh [--cores "1 2 4 8"] [--rounds 2] [--duration 5] [--bindir DIR] [--out FILE]
#                  [--scenario b]
#                  [--targets "sluice nginx haproxy"] [--pprof DIR]
#                  [--forwarded-headers]
#
# Targets: sluice, sluice-base, sluice-rp, sluice-w, sluice-w-base, nginx, haproxy
# (default "sluice nginx haproxy").
#
# --pprof DIR saves a CPU profile of the sluice target (one process,
# GOMAXPROCS=N) over the first DURATION-1 seconds of each measured run, as
# DIR/sluice-N-ROUND.pprof.
#
# sluice-rp is N sluice processes, one per core with GOMAXPROCS=1, sharing
# the port through listen_reuseport (as nginx runs N workers). sluice-w is
# `sluice -workers N`; sluice-base and sluice-w-base are sluice and
# sluice-w with the binary named by SCALE_BASE_BIN (an older build, to
# compare two commits in one run).
#
# By default no proxy sets forwarding headers; --forwarded-headers makes
# all three set the four sluice sets by default, as bench/run.sh
# --forwarded-headers does (see bench/forwarding.sh).
#
# --bindir holds wrk, nginx and haproxy plus lib/ with their shared
# libraries and the dynamic loader (for machines without the packages; see
# bench/README.md); without it the tools come from PATH.
set -uo pipefail
CORES="1 2 4 8"; ROUNDS=2; DUR=5; BINDIR=""; OUT=""; TARGETS="sluice nginx haproxy"; PPROF_DIR=""; SCEN=b; FORWARDED=0
while [ $# -gt 0 ]; do
  case $1 in
    --cores) CORES=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --duration) DUR=$2; shift ;;
    --bindir) BINDIR=$2; shift ;;
    --out) OUT=$2; shift ;;
    --targets) TARGETS=$2; shift ;;
    --pprof) PPROF_DIR=$2; shift ;;
    --scenario) SCEN=$2; shift ;;
    --forwarded-headers) FORWARDED=1 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
case $SCEN in # connections, path, POST body bytes, description
  a) CONNS=64 URLPATH=/1k POST=0 SCEN_TEXT="64 keep-alive connections, GET 1 KiB" ;;
  b) CONNS=256 URLPATH=/1k POST=0 SCEN_TEXT="256 keep-alive connections, GET 1 KiB" ;;
  c) CONNS=64 URLPATH=/64k POST=0 SCEN_TEXT="64 keep-alive connections, GET 64 KiB" ;;
  d) CONNS=64 URLPATH=/post POST=16384 SCEN_TEXT="64 keep-alive connections, POST 16 KiB" ;;
  *) echo "unknown scenario $SCEN (a, b, c or d)" >&2; exit 2 ;;
esac
if [ "$FORWARDED" = 1 ]; then SCEN_TEXT="$SCEN_TEXT; every proxy sets the four forwarding headers"
else SCEN_TEXT="$SCEN_TEXT; no proxy sets forwarding headers"; fi
# shellcheck source=bench/nginx.sh
source "$ROOT/bench/nginx.sh"
# shellcheck source=bench/forwarding.sh
source "$ROOT/bench/forwarding.sh"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
W=$(mktemp -d /tmp/sluice-scale.XXXXXX)
NCPU=$(nproc)
MAXN=$(echo "$CORES" | tr ' ' '\n' | sort -n | tail -1)
# expand_cpus LIST: "0-2,8" -> "0 1 2 8"
expand_cpus() {
  local part out=()
  for part in ${1//,/ }; do
    if [[ $part == *-* ]]; then out+=($(seq "${part%-*}" "${part#*-}")); else out+=("$part"); fi
  done
  echo "${out[@]}"
}
# The hyperthread siblings of the proxy's cores stay idle: a sibling
# running wrk or an upstream takes half the core's execution units, which
# moved single rounds by up to 1.5x on a lent machine (session 9).
declare -A BUSY=()
for ((i = 0; i < MAXN; i++)); do
  BUSY[$i]=1
  for s in $(expand_cpus "$(cat "/sys/devices/system/cpu/cpu$i/topology/thread_siblings_list" 2>/dev/null || echo "$i")"); do
    BUSY[$s]=1
  done
done
FREE=()
for ((i = 0; i < NCPU; i++)); do [ -z "${BUSY[$i]:-}" ] && FREE+=("$i"); done
IDLE_SIBLINGS=$(( ${#BUSY[@]} - MAXN ))
if [ "${#FREE[@]}" -ge 5 ]; then
  # Free cores: the last four run the upstreams, the rest wrk.
  UP_CPUS=$(IFS=,; echo "${FREE[*]: -4}")
  WRK_CPUS=$(IFS=,; echo "${FREE[*]:0:${#FREE[@]}-4}")
  # wrk gives each thread connections/threads, rounded down: a power of
  # two divides 64 and 256 (11 threads opened 55 and 253; found by review).
  WRK_THREADS=1
  while [ $((WRK_THREADS * 2)) -le $(( ${#FREE[@]} - 4 )) ]; do WRK_THREADS=$((WRK_THREADS * 2)); done
  PLACEMENT="proxy on cores 0..N-1 ($IDLE_SIBLINGS hyperthread siblings of cores 0-$((MAXN - 1)) left idle), wrk on CPUs $WRK_CPUS, upstreams on $UP_CPUS"
  echo "$PLACEMENT" >&2
elif [ "$NCPU" -gt "$MAXN" ]; then
  # A small machine (a smoke test, not a measurement): share the rest.
  echo "warning: only $NCPU cores; load and upstreams share cores $MAXN-$((NCPU - 1))" >&2
  UP_CPUS="$MAXN-$((NCPU - 1))"; WRK_CPUS=$UP_CPUS; WRK_THREADS=1
else
  echo "need more than $MAXN cores, have $NCPU" >&2; exit 1
fi
PIDS=()
PROXY_PID=
cleanup() {
  for p in "${PIDS[@]}" $PROXY_PID; do kill "$p" 2>/dev/null; done
  [ -n "$PROXY_PID" ] && pkill -P "$PROXY_PID" 2>/dev/null
  wait 2>/dev/null; rm -rf "$W"
}
trap cleanup EXIT

if [ -n "$BINDIR" ]; then
  # Wrappers that run each carried tool through the carried loader.
  BINDIR=$(cd "$BINDIR" && pwd)
  mkdir -p "$W/bin"
  for tool in wrk nginx haproxy; do
    printf '#!/bin/sh\nexec "%s/lib/ld-linux-x86-64.so.2" --library-path "%s/lib" "%s/%s" "$@"\n' \
      "$BINDIR" "$BINDIR" "$BINDIR" "$tool" >"$W/bin/$tool"
    chmod +x "$W/bin/$tool"
  done
  PATH=$W/bin:$PATH
fi

# http_ok PORT: one GET answered 200 (bash only: the target machine may
# lack curl).
http_ok() {
  # In a subshell: a failed exec redirection would end the script itself.
  (
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3
    IFS= read -r -t 2 line <&3
    [[ $line == "HTTP/1.1 200"* ]]
  ) 2>/dev/null
}

BODY=$(head -c 1024 /dev/zero | tr '\0' 'a')
for n in 1 2; do
  d=$W/up$n; mkdir -p "$d/tmp" "$d/www"
  head -c 65536 /dev/zero | tr '\0' 'b' >"$d/www/64k"
  cat >"$d/nginx.conf" <<C
user root;
worker_processes 2;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 8192; }
http {
$(nginx_http_common "$d")
  server {
    listen 127.0.0.1:2820$n backlog=8192 reuseport;
    add_header X-Backend up$n always;
    sendfile on;
    tcp_nopush on;
    open_file_cache max=16 inactive=300s;
    location = /64k { root $d/www; }
    location / { return 200 "$BODY"; }
  }
}
C
  taskset -c "$UP_CPUS" nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf" >/dev/null 2>&1 &
  PIDS+=($!)
done
for n in 1 2; do
  for _ in $(seq 1 50); do http_ok "2820$n" && break; sleep 0.1; done
  http_ok "2820$n" || { echo "upstream $n did not start: $(cat "$W/up$n/error.log")" >&2; exit 1; }; done

go_bin=$ROOT/bench/work/sluice
[ -x "$go_bin" ] || (cd "$ROOT" && go build -o "$go_bin" ./cmd/sluice) || exit 1

cpu_ticks() { # utime+stime of a process tree, in clock ticks
  local t=0 p
  for p in $(pgrep -P "$1") "$1"; do
    [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo $t
}

sluice_conf() { # sluice_conf ADMIN_PORT REUSEPORT: the sluice config of every sluice target
  cat <<C
listen: 127.0.0.1:28200
listen_reuseport: $2
admin: { listen: 127.0.0.1:$1 }
watch_config: false
routes: [{ pool: up }]
pools:
  up:
    algorithm: round_robin
    backends: [{ address: 127.0.0.1:28201 }, { address: 127.0.0.1:28202 }]
log: { level: warn, format: json }
$(sluice_forwarding)
C
}

# start_proxy TARGET N DIR: starts the target as this shell's child (not
# in a command substitution, whose child nobody waits for: found by
# review), its pid in PROXY_PID.
start_proxy() {
  local t=$1 n=$2 d=$3 cpus="0-$(( $2 - 1 ))"
  mkdir -p "$d/tmp"
  case $t in
    sluice|sluice-base)
      local bin=$go_bin pprof=()
      [ "$t" = sluice-base ] && bin=${SCALE_BASE_BIN:?sluice-base needs SCALE_BASE_BIN}
      sluice_conf 28210 false >"$d/sluice.yaml"
      [ -n "$PPROF_DIR" ] && [ "$t" = sluice ] && pprof=(-pprof 127.0.0.1:28290)
      GOMAXPROCS=$n taskset -c "$cpus" "$bin" -config "$d/sluice.yaml" "${pprof[@]}" >"$d/out.log" 2>&1 &
      PROXY_PID=$! ;;
    sluice-w|sluice-w-base)
      local bin=$go_bin
      [ "$t" = sluice-w-base ] && bin=${SCALE_BASE_BIN:?sluice-w-base needs SCALE_BASE_BIN}
      sluice_conf 28230 false >"$d/sluice.yaml"
      taskset -c "$cpus" "$bin" -config "$d/sluice.yaml" -workers "$n" >"$d/out.log" 2>&1 &
      PROXY_PID=$! ;;
    sluice-rp)
      # One parent shell, so that the CPU of all N processes is summed.
      (
        for i in $(seq 0 $((n - 1))); do
          sluice_conf $((28220 + i)) true >"$d/sluice-$i.yaml"
          GOMAXPROCS=1 taskset -c "$i" "$go_bin" -config "$d/sluice-$i.yaml" >"$d/out-$i.log" 2>&1 &
        done
        wait
      ) >/dev/null 2>&1 &
      PROXY_PID=$! ;;
    nginx)
      cat >"$d/nginx.conf" <<C
user root;
worker_processes $n;
worker_cpu_affinity auto;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 8192; }
http {
$(nginx_http_common "$d")
  client_body_buffer_size 64k;
$(nginx_proxy_buffers)
$(nginx_forwarded_map)
  upstream up { server 127.0.0.1:28201; server 127.0.0.1:28202; keepalive 256; keepalive_requests 100000000; }
  server {
    listen 127.0.0.1:28200 backlog=8192 reuseport;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
$(nginx_forwarded_headers)
    }
  }
}
C
      taskset -c "$cpus" nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf" >/dev/null 2>&1 &
      PROXY_PID=$! ;;
    haproxy)
      cat >"$d/haproxy.cfg" <<C
global
  nbthread $n
  cpu-map auto:1/1-$n 0-$((n - 1))
  maxconn 8000
defaults
  mode http
  maxconn 8000
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend fe
  bind 127.0.0.1:28200
  default_backend up
backend up
  balance roundrobin
$(haproxy_forwarded_headers)
  server up1 127.0.0.1:28201
  server up2 127.0.0.1:28202
C
      taskset -c "$cpus" haproxy -db -f "$d/haproxy.cfg" >/dev/null 2>&1 &
      PROXY_PID=$! ;;
  esac
}

printf 'target,cores,round,rps,p99_ms,cpu_us_per_req\n' >"$W/raw.csv"
for round in $(seq 1 "$ROUNDS"); do
  for n in $CORES; do
    for t in $TARGETS; do
      d=$W/$t-$n-$round
      start_proxy "$t" "$n" "$d"
      pid=$PROXY_PID
      up=0
      for _ in $(seq 1 50); do http_ok 28200 && { up=1; break; }; sleep 0.1; done
      if [ "$up" = 0 ] || ! kill -0 "$pid" 2>/dev/null; then
        # A proxy that never answered gives no figure, not wrk's zero
        # (found by review: the 0 went into the median).
        echo "warning: round $round cores $n $t: the proxy did not start; no figures" >&2
        kill "$pid" 2>/dev/null; pkill -P "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; PROXY_PID=
        printf '%s,%s,%s,nan,nan,nan\n' "$t" "$n" "$round" >>"$W/raw.csv"
        continue
      fi
      BENCH_POST_BYTES=$POST taskset -c "$WRK_CPUS" wrk -t"$WRK_THREADS" -c"$CONNS" -d1s \
        -s "$ROOT/bench/lua/bench.lua" "http://127.0.0.1:28200$URLPATH" >/dev/null 2>&1
      c0=$(cpu_ticks "$pid")
      prof=""
      if [ -n "$PPROF_DIR" ] && [ "$t" = sluice ]; then
        mkdir -p "$PPROF_DIR"
        python3 -c 'import sys, urllib.request
sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1], timeout=60).read())' \
          "http://127.0.0.1:28290/debug/pprof/profile?seconds=$((DUR > 2 ? DUR - 1 : 1))" \
          >"$PPROF_DIR/sluice-$n-$round.pprof" &
        prof=$!
      fi
      BENCH_POST_BYTES=$POST taskset -c "$WRK_CPUS" wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DUR}s" --latency \
        -s "$ROOT/bench/lua/bench.lua" "http://127.0.0.1:28200$URLPATH" >"$d.wrk" 2>&1
      c1=$(cpu_ticks "$pid")
      [ -n "$prof" ] && wait "$prof"
      kill "$pid" 2>/dev/null; pkill -P "$pid" 2>/dev/null; pkill -f "$d/" 2>/dev/null; wait "$pid" 2>/dev/null
      PROXY_PID=
      sleep 0.3
      reqs=$(awk '/requests in/{print $1}' "$d.wrk")
      rps=$(awk '/Requests\/sec/{print $2}' "$d.wrk")
      p99=$(awk '$1=="99%"{v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}' "$d.wrk")
      hz=$(getconf CLK_TCK)
      cpu=$(awk -v c=$((c1 - c0)) -v r="${reqs:-0}" -v hz="$hz" 'BEGIN { if (r > 0) printf "%.2f", c / hz * 1e6 / r; else print "nan" }')
      # Answers other than 2xx/3xx, or socket errors, make the round's
      # figures meaningless (found by review: 502s were counted as
      # requests served).
      errs=$(awk '/Non-2xx or 3xx responses:/ {e += $NF} /Socket errors:/ {for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) e += $i} END {print e + 0}' "$d.wrk")
      if [ "$errs" != 0 ] || [ -z "$reqs" ]; then
        echo "warning: round $round cores $n $t: $errs errors or no result from wrk; no figures" >&2
        rps=nan p99=nan cpu=nan
      fi
      printf '%s,%s,%s,%s,%s,%s\n' "$t" "$n" "$round" "${rps:-0}" "${p99:-nan}" "$cpu" >>"$W/raw.csv"
      dist=$(awk '$1 ~ /^(50|75|90|99)%$/ {printf " p%s %s", substr($1, 1, length($1) - 1), $2}' "$d.wrk")
      echo "round $round cores $n $t: rps ${rps:-0} p99 ${p99:-?} ms cpu ${cpu} us/req;${dist}" >&2
    done
  done
done

cat "$W/raw.csv"
python3 - "$W/raw.csv" "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" "$SCEN" "$SCEN_TEXT" "${PLACEMENT:-proxy on cores 0..N-1; load and upstreams share the rest}" <<'PY' | tee "${OUT:-/dev/null}"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
targets = list(dict.fromkeys(r["target"] for r in rows))
def med(t, n, k):
    v = [float(r[k]) for r in rows if r["target"] == t and r["cores"] == n and r[k] not in ("nan", "")]
    return statistics.median(v) if v else float("nan")
cores = sorted({r["cores"] for r in rows}, key=int)
print(f"# sluice multi-core scaling ({sys.argv[2]} cores: {sys.argv[3]})\n")
print(f"Scenario {sys.argv[4]} ({sys.argv[5]}); {sys.argv[6]}; medians of rounds.")
print("sluice-rp: N sluice processes, one per core, GOMAXPROCS=1, sharing the port with SO_REUSEPORT.\n")
for title, key, fmt in (("req/s", "rps", "{:,.0f}"), ("proxy CPU µs/req", "cpu_us_per_req", "{:.1f}"), ("p99 ms", "p99_ms", "{:.2f}")):
    print(f"**{title}**\n")
    print("| cores | " + " | ".join(targets) + " |")
    print("|---:|" + "---:|" * len(targets))
    for n in cores:
        print(f"| {n} | " + " | ".join(fmt.format(med(t, n, key)) for t in targets) + " |")
    print()
PY
