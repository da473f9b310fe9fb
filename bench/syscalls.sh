#!/usr/bin/env bash
# Kernel work per request, side by side: for each target, under one
# scenario's load from bench/run.sh's setup (proxy on CPU 1, wrk and the
# upstreams on CPU 0), counts the system calls made on the proxy's core
# (perf stat; root or perf_event_paranoid <= -1), the loopback TCP segments
# (/proc/net/snmp, all of them), page faults and context switches on the
# proxy's core, and the proxy's user and system CPU time, each per request,
# and the upstream connections it has open. README, Performance, shows what
# it found.
#
#   bench/syscalls.sh [--scenario a|b|c|d] [--targets sluice,nginx,haproxy] [--seconds 5]
#                     [--forwarded-headers]
#
# Forwarding headers as in bench/run.sh: none by default, the four with
# --forwarded-headers (bench/forwarding.sh).
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/targets.sh"

SCEN=a
TARGETS=sluice,nginx,haproxy
SECS=5
while [ $# -gt 0 ]; do
  case $1 in
    --scenario) SCEN=$2; shift ;;
    --forwarded-headers) FORWARDED=1 ;;
    --scenario=*) SCEN=${1#*=} ;;
    --targets) TARGETS=$2; shift ;;
    --targets=*) TARGETS=${1#*=} ;;
    --seconds) SECS=$2; shift ;;
    --seconds=*) SECS=${1#*=} ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
  shift
done
[[ $SECS =~ ^[1-9][0-9]*$ ]] || die "--seconds must be a positive integer"
[[ $SCEN =~ ^[abcd]$ ]] || die "unknown scenario '$SCEN' (a, b, c or d)"
read -r CONNS URLPATH POST <<<"$(scenario_params "$SCEN")"
IFS=, read -r -a TARGET_LIST <<<"$TARGETS"
for t in "${TARGET_LIST[@]}"; do
  case $t in
    sluice|nginx|haproxy|caddy) ;;
    *) die "unknown target '$t' (sluice, nginx, haproxy or caddy)" ;;
  esac
done

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
command -v wrk >/dev/null || die "wrk is required"
command -v nginx >/dev/null || die "nginx is required for the upstreams"
command -v perf >/dev/null || die "perf is required (Debian: linux-perf)"
perf stat -e syscalls:sys_enter_read -C "$PROXY_CPU" -- true >/dev/null 2>&1 ||
  die "perf cannot trace system calls here (run as root, or perf_event_paranoid <= -1)"
if [[ ,$TARGETS, == *,sluice,* ]]; then
  need_sluice
fi

D="$WORK_DIR/syscalls"
begin_work "$D"
check_ports_free "$PROXY_PORT" "$UP1_PORT" "$UP2_PORT" "$ADMIN_PORT"
start_upstreams "$D"

CALLS="read write readv writev recvfrom sendto recvmsg sendmsg epoll_wait epoll_pwait getsockopt setsockopt futex nanosleep sched_yield"
EVENTS=$(for c in $CALLS; do printf 'syscalls:sys_enter_%s,' "$c"; done)
# Software events beside them: a page fault or a context switch per
# request would be kernel time that no system call count shows.
EVENTS="${EVENTS%,},page-faults,context-switches"

# snmp_out_segs: TCP segments sent by the whole host so far.
snmp_out_segs() { awk '/^Tcp:/ && $2 ~ /^[0-9]/ { print $12 }' /proc/net/snmp; }

# user_sys_ticks PID...: summed utime and stime (clock ticks).
user_sys_ticks() {
  local p files=()
  for p in "$@"; do files+=("/proc/$p/stat"); done
  awk '{ sub(/^.*\) /, ""); u += $12; s += $13 } END { print u + 0, s + 0 }' "${files[@]}" 2>/dev/null
}

log "scenario $SCEN ($CONNS conns, $URLPATH): ${SECS} s per target after 2 s of load"
printf '\n== per request, scenario %s (system calls on the proxy core; segments: all loopback TCP)\n' "$SCEN"
for t in "${TARGET_LIST[@]}"; do
  start_target "$t" "$D/$t" || { warn "$t did not start"; continue; }
  BENCH_POST_BYTES=$POST taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$((SECS + 4))"s \
    -s "$BENCH_DIR/lua/bench.lua" "http://127.0.0.1:$T_PORT$URLPATH" >"$D/$t.wrk" 2>&1 &
  wpid=$!
  STARTED_PIDS+=("$wpid")
  sleep 2
  mapfile -t pids < <(proc_tree "$T_PID")
  read -r -a ua <<<"$(upstream_stats)"
  t0=$(date +%s.%N)
  read -r u0 s0 <<<"$(user_sys_ticks "${pids[@]}")"
  g0=$(snmp_out_segs)
  perf stat -x, -C "$PROXY_CPU" -e "$EVENTS" -- sleep "$SECS" 2>"$D/$t.perf.csv"
  # Upstream connections open at the end of the window (more sockets in
  # turn is more kernel memory touched per request).
  upconns='?'
  if command -v ss >/dev/null; then
    upconns=$(ss -Htn state established "( dport = :$UP1_PORT or dport = :$UP2_PORT )" | wc -l)
  fi
  g1=$(snmp_out_segs)
  read -r u1 s1 <<<"$(user_sys_ticks "${pids[@]}")"
  t1=$(date +%s.%N)
  read -r -a ub <<<"$(upstream_stats)"
  wait "$wpid"
  stop_pid "$T_PID" 5 "$T_STOPSIG"
  # The upstream count spans a little more than perf's window (the time
  # perf takes to start and stop): scale it to perf's SECS seconds. Each
  # upstream_stats call is itself one request per upstream.
  reqs=$(awk -v n="$(( ub[0] + ub[2] - ua[0] - ua[2] - 2 ))" -v a="$t0" -v b="$t1" -v s="$SECS" \
    'BEGIN { printf "%d", n * s / (b - a) }')
  [ "$reqs" -gt 0 ] || { warn "$t: no requests counted"; continue; }
  hz=$(getconf CLK_TCK)
  printf '%s: %s requests in %s s, %s upstream connections open\n' "$t" "$reqs" "$SECS" "$upconns"
  awk -F, -v n="$reqs" '$1 + 0 > 0 { c = $3; sub("syscalls:sys_enter_", "", c); printf "  %-12s %6.2f\n", c, $1 / n }' "$D/$t.perf.csv"
  awk -v n="$reqs" -v g="$((g1 - g0))" -v u="$((u1 - u0))" -v s="$((s1 - s0))" -v hz="$hz" -v secs="$SECS" -v a="$t0" -v b="$t1" \
    'BEGIN { r = n * (b - a) / secs;
             printf "  %-12s %6.2f\n  %-12s %6.1f\n  %-12s %6.1f\n", "segments", g / r, "user µs", u * 1e6 / hz / r, "system µs", s * 1e6 / hz / r }'
done
