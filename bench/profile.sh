#!/usr/bin/env bash
# Profiles sluice under bench/run.sh's load (scenario a by default): starts the
# two nginx upstreams and sluice -pprof, drives wrk at it, and fetches a CPU
# profile and an allocation profile taken over the same window into bench/work/.
#
#   bench/profile.sh [--seconds 10] [--scenario a|b|c|d] [--forwarded-headers]
#   go tool pprof -http 127.0.0.1:8000 bench/work/sluice bench/work/cpu.prof
#
# sluice sets no forwarding headers, as in bench/run.sh, unless
# --forwarded-headers (bench/forwarding.sh).
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECS=10
SCEN=a
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) SECS=$2; shift ;;
    --seconds=*) SECS=${1#*=} ;;
    --scenario) SCEN=$2; shift ;;
    --forwarded-headers) FORWARDED=1 ;;
    --scenario=*) SCEN=${1#*=} ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
  shift
done
[[ $SECS =~ ^[1-9][0-9]*$ ]] || die "--seconds must be a positive integer"
case $SCEN in
  a) CONNS=64 URLPATH=/1k POST=0 ;;
  b) CONNS=256 URLPATH=/1k POST=0 ;;
  c) CONNS=64 URLPATH=/64k POST=0 ;;
  d) CONNS=64 URLPATH=/post POST=16384 ;;
  *) die "unknown scenario '$SCEN' (a, b, c or d)" ;;
esac

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
ensure_packages
command -v wrk >/dev/null || die "wrk is required"
command -v nginx >/dev/null || die "nginx is required for the upstreams"
need_sluice

D="$WORK_DIR/profile"
begin_work "$D"
check_ports_free "$PROXY_PORT" "$UP1_PORT" "$UP2_PORT" "$ADMIN_PORT" "$PPROF_PORT"
start_upstreams "$D"

write_sluice_conf "$D/sluice.yaml"
GOMAXPROCS=1 taskset -c "$PROXY_CPU" "$WORK_DIR/sluice" -config "$D/sluice.yaml" \
  -pprof "127.0.0.1:$PPROF_PORT" >"$D/sluice.log" 2>&1 &
SPID=$!
STARTED_PIDS+=("$SPID")
wait_http "http://127.0.0.1:$PROXY_PORT/1k" 15 || die "sluice did not start: $(tail -n 5 "$D/sluice.log")"
wait_http "http://127.0.0.1:$PPROF_PORT/debug/pprof/" 5 ||
  die "sluice does not serve pprof on 127.0.0.1:$PPROF_PORT (is -pprof implemented?)"

PP="http://127.0.0.1:$PPROF_PORT/debug/pprof"
log "load: scenario $SCEN ($CONNS conns, $URLPATH) for $((SECS + 4)) s; profiling ${SECS} s after a 2 s warmup"
BENCH_POST_BYTES=$POST taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$((SECS + 4))"s --latency \
  -s "$BENCH_DIR/lua/bench.lua" "http://127.0.0.1:$PROXY_PORT$URLPATH" >"$D/wrk.log" 2>&1 &
WPID=$!
STARTED_PIDS+=("$WPID")
sleep 2
rm -f "$WORK_DIR/cpu.prof" "$WORK_DIR/allocs.prof"
curl -s --max-time $((SECS + 10)) -o "$WORK_DIR/cpu.prof" "$PP/profile?seconds=$SECS" &
C1=$!
curl -s --max-time $((SECS + 10)) -o "$WORK_DIR/allocs.prof" "$PP/allocs?seconds=$SECS" &
C2=$!
# Syscalls per request over the same window, where perf may trace them
# (root, or perf_event_paranoid <= -1): the count that showed the empty
# reads Go's netpoller makes (see README, Performance).
SYSCALLS=""
read -r -a ua <<<"$(upstream_stats)"
if command -v perf >/dev/null &&
  perf stat -e syscalls:sys_enter_recvfrom -p "$SPID" -- true >/dev/null 2>&1; then
  # netconn reads with recvfrom (flags 0) and checks an idle upstream
  # connection with recvfrom(MSG_PEEK|MSG_DONTWAIT); the filtered exit
  # counts the calls that found nothing (EAGAIN), nearly every idle check
  # among them: Go reads before it waits, and the rest are what that costs.
  perf stat -x, -e syscalls:sys_enter_recvfrom --filter 'flags == 0' \
    -e syscalls:sys_enter_recvfrom --filter 'flags != 0' \
    -e syscalls:sys_exit_recvfrom --filter 'ret == -11' \
    -e syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg,syscalls:sys_enter_epoll_pwait \
    -p "$SPID" -- sleep "$SECS" 2>"$D/perf-stat.csv"
  read -r -a ub <<<"$(upstream_stats)"
  SYSCALLS=$D/perf-stat.csv
fi
wait "$C1" || warn "fetching the CPU profile failed"
wait "$C2" || warn "fetching the allocs profile failed"
wait "$WPID"
grep -E 'Requests/sec|requests in|Latency  |99%' "$D/wrk.log" >&2
if [ -n "$SYSCALLS" ]; then
  # Each upstream_stats call counts as one request per upstream.
  reqs=$(( ub[0] + ub[2] - ua[0] - ua[2] - 2 ))
  echo "== syscalls per request over ${SECS} s ($reqs requests; perf stat -p sluice)"
  awk -F, -v n="$reqs" 'BEGIN { split("recvfrom (reads)|recvfrom (idle checks)|  of both, EAGAIN", label, "|") }
    $3 ~ /^syscalls:sys_(enter|exit)_/ && n > 0 {
    name = (++i in label) ? label[i] : $3; sub("syscalls:sys_enter_", "", name)
    printf "  %-22s %6.2f\n", name, $1 / n }' "$SYSCALLS"
  echo
else
  log "perf cannot trace syscalls here (not root?): no syscall counts"
fi

for f in cpu allocs; do
  [ -s "$WORK_DIR/$f.prof" ] || die "$WORK_DIR/$f.prof is empty"
done
echo "== CPU profile ($SECS s under load): go tool pprof -top bench/work/sluice bench/work/cpu.prof"
go tool pprof -top -nodecount=35 "$WORK_DIR/sluice" "$WORK_DIR/cpu.prof" 2>/dev/null
echo
echo "== allocations in the same window, by bytes: go tool pprof -top -sample_index=alloc_space ..."
go tool pprof -top -nodecount=25 -sample_index=alloc_space "$WORK_DIR/sluice" "$WORK_DIR/allocs.prof" 2>/dev/null
echo
echo "== allocations in the same window, by count: -sample_index=alloc_objects"
go tool pprof -top -nodecount=25 -sample_index=alloc_objects "$WORK_DIR/sluice" "$WORK_DIR/allocs.prof" 2>/dev/null
log "profiles: $WORK_DIR/cpu.prof $WORK_DIR/allocs.prof (binary $WORK_DIR/sluice)"
