#!/usr/bin/env bash
# Paired A/B: two proxies on the same core at the same time, each under its
# own wrk, so that both meet the same machine. On a VM whose core speed
# moves by tens of percent from one second to the next (session 13's VM:
# the same loop took 0.30-0.52 s), back-to-back runs (bench/run.sh) cannot
# tell a 5% change from noise in a dozen rounds; running the two side by
# side can. Each proxy's CPU time is read from /proc/PID/task/*/schedstat
# (nanoseconds, not 10 ms ticks) over the measured window and divided by
# the responses its wrk completed. Each round starts both afresh, the
# first alternating.
#
#   bench/pair.sh [--scenario a|b|c|d] [--targets sluice-base,sluice]
#                 [--rounds 10] [--duration 3] [--warmup 1]
#
# Targets as in bench/run.sh (BENCH_BASE_BIN names sluice-base's binary).
# The two share the proxy core, so each gets about half of it and batches
# more work per wake-up than alone: the ratio compares the two, it is not
# bench/run.sh's per-core figure. Forwarding headers: none, as in run.sh.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/targets.sh"

SCEN=a
TARGETS=sluice-base,sluice
ROUNDS=10
DURATION=3
WARMUP=1
while [ $# -gt 0 ]; do
  case $1 in
    --scenario) SCEN=$2; shift ;;
    --targets) TARGETS=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --warmup) WARMUP=$2; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
  shift
done
[[ $SCEN =~ ^[abcd]$ ]] || die "unknown scenario '$SCEN' (a, b, c or d)"
for v in ROUNDS DURATION; do [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "--${v,,} must be a positive integer"; done
[[ $WARMUP =~ ^[0-9]+$ ]] || die "--warmup must be a whole number"
IFS=, read -r -a PAIR <<<"$TARGETS"
[ "${#PAIR[@]}" -eq 2 ] || die "--targets names two targets"
for t in "${PAIR[@]}"; do
  case $t in
    sluice|sluice-base|nginx|haproxy|caddy) ;;
    *) die "unknown target '$t' (sluice, sluice-base, nginx, haproxy or caddy)" ;;
  esac
  [ "$t" = sluice-base ] && { [ -x "${BENCH_BASE_BIN:-}" ] || die "sluice-base needs BENCH_BASE_BIN"; }
done
read -r CONNS URLPATH POST <<<"$(scenario_params "$SCEN")"
FORWARDED=0

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
command -v wrk >/dev/null || die "wrk is required"
command -v nginx >/dev/null || die "nginx is required for the upstreams"
if [[ ,$TARGETS, == *,sluice,* ]]; then
  need_sluice
fi

D="$WORK_DIR/pair"
begin_work "$D"
# Each target's proxy and admin ports: the first run.sh's, the second its own.
PORTS=("$PROXY_PORT" "$((PORT_BASE + 3))")
ADMINS=("$ADMIN_PORT" "$((PORT_BASE + 12))")
check_ports_free "${PORTS[@]}" "${ADMINS[@]}" "$UP1_PORT" "$UP2_PORT"
start_upstreams "$D"

# run_ns PID...: nanoseconds on a CPU of all threads of the processes.
run_ns() {
  local p files=()
  for p in "$@"; do files+=(/proc/"$p"/task/*/schedstat); done
  awk '{ s += $1 } END { printf "%.0f", s }' "${files[@]}" 2>/dev/null
}

# requests LOG: responses wrk completed, from bench.lua's summary line.
requests() {
  sed -n 's/^BENCHJSON //p' "$1" | tail -n 1 | awk -F'[:,]' '{ for (i = 1; i < NF; i++) if ($i ~ /"requests"/) print $(i + 1) }'
}

# wrk_errors LOG: the connect, read, write, status and timeout errors of
# a wrk run (bench.lua's BENCHJSON line): requests answered with an error
# or lost are no measure of the proxy (found by review).
wrk_errors() {
  sed -n 's/^BENCHJSON //p' "$1" | tail -n 1 |
    awk -F'[:,}]' '{ for (i = 1; i < NF; i++) if ($i ~ /"err_/) e += $(i + 1) } END { print e + 0 }'
}

log "scenario $SCEN ($CONNS conns, $URLPATH): ${PAIR[0]} on :${PORTS[0]} and ${PAIR[1]} on :${PORTS[1]}, both on CPU $PROXY_CPU; $ROUNDS rounds of ${DURATION} s"
RATIOS=()
for ((r = 1; r <= ROUNDS; r++)); do
  order=(0 1)
  ((r % 2 == 0)) && order=(1 0)
  pids=(0 0)
  ok=1
  for i in "${order[@]}"; do
    PROXY_PORT=${PORTS[$i]} ADMIN_PORT=${ADMINS[$i]}
    if ! start_target "${PAIR[$i]}" "$D/r$r-$i"; then ok=0; break; fi
    pids[i]=$T_PID
  done
  if [ "$ok" = 0 ]; then
    for i in 0 1; do [ "${pids[$i]}" != 0 ] && stop_pid "${pids[$i]}" 10; done
    die "round $r: ${PAIR[$i]} did not start"
  fi
  if [ "$WARMUP" -gt 0 ]; then
    w=()
    for i in 0 1; do run_wrk "$CONNS" "$URLPATH" "$POST" "$WARMUP" "${PORTS[$i]}" "$D/r$r-$i.warmup.log" & w+=($!); done
    wait "${w[@]}"
  fi
  trees=()
  for i in 0 1; do trees[i]=$(proc_tree "${pids[$i]}" | paste -sd' ' -); done
  # shellcheck disable=SC2086
  a0=$(run_ns ${trees[0]}) b0=$(run_ns ${trees[1]})
  w=()
  for i in 0 1; do run_wrk "$CONNS" "$URLPATH" "$POST" "$DURATION" "${PORTS[$i]}" "$D/r$r-$i.wrk.log" & w+=($!); done
  wait "${w[@]}"
  # shellcheck disable=SC2086
  a1=$(run_ns ${trees[0]}) b1=$(run_ns ${trees[1]})
  for i in 0 1; do
    stop_pid "${pids[$i]}" 10 "$([ "${PAIR[$i]}" = haproxy ] && echo USR1 || echo TERM)"
  done
  qa=$(requests "$D/r$r-0.wrk.log") qb=$(requests "$D/r$r-1.wrk.log")
  if [ -z "$qa" ] || [ -z "$qb" ] || [ "$qa" -eq 0 ] || [ "$qb" -eq 0 ]; then
    die "round $r: a wrk produced no result (see $D)"
  fi
  ea=$(wrk_errors "$D/r$r-0.wrk.log") eb=$(wrk_errors "$D/r$r-1.wrk.log")
  if [ "$ea" != 0 ] || [ "$eb" != 0 ]; then
    die "round $r: wrk saw errors (${PAIR[0]} $ea, ${PAIR[1]} $eb; see $D)"
  fi
  line=$(awk -v a=$((a1 - a0)) -v b=$((b1 - b0)) -v qa="$qa" -v qb="$qb" \
    'BEGIN { ua = a / qa / 1000; ub = b / qb / 1000; printf "%.3f %.3f %d %d %.4f", ua, ub, qa, qb, ub / ua }')
  read -r ua ub _ _ ratio <<<"$line"
  RATIOS+=("$ratio")
  log "round $r: ${PAIR[0]} $ua µs/req ($qa req), ${PAIR[1]} $ub µs/req ($qb req): ${PAIR[1]} ÷ ${PAIR[0]} $ratio"
done

printf '%s\n' "${RATIOS[@]}" | /usr/bin/python3 -c '
import sys
sys.path.insert(0, sys.argv[1])
from report import median_interval
rs = [float(x) for x in sys.stdin.read().split()]
s = sorted(rs)
n = len(s)
med = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
iv = median_interval(rs)
ivs = "%.3f-%.3f" % iv if iv else "- (needs 6 rounds or more)"
print("\n%s / %s CPU per request, scenario %s: median %.3f, 95%% interval %s, below 1 in %d of %d rounds" % (
    sys.argv[3], sys.argv[2], sys.argv[4], med, ivs, sum(r < 1 for r in rs), n))
print("per round: " + " ".join("%.3f" % r for r in rs))
' "$BENCH_DIR" "${PAIR[0]}" "${PAIR[1]}" "$SCEN"
