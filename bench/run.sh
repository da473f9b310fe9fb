#!/usr/bin/env bash
# Side-by-side benchmark of sluice against nginx, HAProxy, Caddy and Go's
# httputil.ReverseProxy (issue 3). See bench/README.md for method and caveats.
#
#   bench/run.sh                 full run: all targets, scenarios a-d, 3 rounds
#   bench/run.sh --quick         scenario a, one round (edit-measure loop)
#   bench/run.sh --targets sluice,nginx --scenarios a,c --rounds 5 --duration 8
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/targets.sh"

ALL_TARGETS="direct,sluice,nginx,haproxy,caddy,httputil"
# Extra targets, run only when named: sluice-base is another sluice binary
# (BENCH_BASE_BIN, e.g. built from the previous commit) measured in the same
# rounds, for before/after ratios of one change; sluice-log is sluice with the access
# log on (to a file), to measure what logging every request costs.
EXTRA_TARGETS="sluice-base,sluice-log"
TARGETS=$ALL_TARGETS
SCENARIOS="a,b,c,d"
ROUNDS=3
DURATION=5
WARMUP=1
QUICK=0
OUT_DIR=""
INSTALL=1
FORWARDED=0

usage() {
  cat <<EOF
usage: bench/run.sh [--quick] [--targets LIST] [--scenarios LIST] [--rounds N]
                    [--duration S] [--warmup S] [--out DIR] [--no-install]
                    [--forwarded-headers]
  --quick        scenario a, 1 round; results go to bench/work/results unless --out
  --targets      comma list from: $ALL_TARGETS   (default: all)
  --scenarios    comma list from: a,b,c,d                 (default: all)
                 a: 64 conns 1 KiB   b: 256 conns 1 KiB
                 c: 64 conns 64 KiB  d: 64 conns POST 16 KiB -> 1 KiB
  --rounds N     interleaved rounds, medians reported  (default: $ROUNDS; quick: 1)
  --duration S   measured seconds per target/scenario  (default: $DURATION)
  --warmup S     unmeasured seconds before each one    (default: $WARMUP)
  --out DIR      where the .md/.csv/.json/.png go      (default: bench/results)
  --no-install   do not apt-get install missing tools
  --forwarded-headers  sluice, nginx and HAProxy all set the forwarding
                 headers sluice sets by default (X-Forwarded-For appended,
                 X-Forwarded-Proto and -Host, X-Request-Id when absent);
                 without it none of them sets any. Caddy sets the
                 X-Forwarded ones either way, Go httputil X-Forwarded-For
Environment: BENCH_PORT_BASE (default 28100), BENCH_LOAD_CPU (0), BENCH_PROXY_CPU (1).
EOF
}

rounds_set=0 scen_set=0
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --targets) TARGETS=$2; shift ;;
    --targets=*) TARGETS=${1#*=} ;;
    --scenarios) SCENARIOS=$2; scen_set=1; shift ;;
    --scenarios=*) SCENARIOS=${1#*=}; scen_set=1 ;;
    --rounds) ROUNDS=$2; rounds_set=1; shift ;;
    --rounds=*) ROUNDS=${1#*=}; rounds_set=1 ;;
    --duration) DURATION=$2; shift ;;
    --duration=*) DURATION=${1#*=} ;;
    --warmup) WARMUP=$2; shift ;;
    --warmup=*) WARMUP=${1#*=} ;;
    --out) OUT_DIR=$2; shift ;;
    --out=*) OUT_DIR=${1#*=} ;;
    --no-install) INSTALL=0 ;;
    --forwarded-headers) FORWARDED=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done
if [ $QUICK = 1 ]; then
  [ $scen_set = 0 ] && SCENARIOS=a
  [ $rounds_set = 0 ] && ROUNDS=1
  [ -z "$OUT_DIR" ] && OUT_DIR="$WORK_DIR/results"
fi
[ -z "$OUT_DIR" ] && OUT_DIR="$BENCH_DIR/results"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer"
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "--duration must be a positive integer"
[[ $WARMUP =~ ^[0-9]+$ ]] || die "--warmup must be a non-negative integer"

IFS=, read -r -a TARGET_LIST <<<"$TARGETS"
IFS=, read -r -a SCENARIO_LIST <<<"$SCENARIOS"
for t in "${TARGET_LIST[@]}"; do
  [[ ,$ALL_TARGETS,$EXTRA_TARGETS, == *",$t,"* ]] || die "unknown target '$t' (known: $ALL_TARGETS,$EXTRA_TARGETS)"
done
for s in "${SCENARIO_LIST[@]}"; do
  [[ $s =~ ^[abcd]$ ]] || die "unknown scenario '$s' (known: a,b,c,d)"
done

# ---------------------------------------------------------------- setup

[ "$(nproc)" -ge 2 ] || warn "fewer than 2 CPUs: proxy and load cannot be pinned apart"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

[ $INSTALL = 1 ] && ensure_packages
command -v wrk >/dev/null || die "wrk is required (apt-get install wrk)"
command -v nginx >/dev/null || die "nginx is required for the upstreams (apt-get install nginx)"
# Without pgrep a proxy's worker processes go uncounted and nginx reads as
# its master alone, about 0 µs per request, with no error (found by review).
command -v pgrep >/dev/null || die "pgrep is required to count every process of a proxy (apt-get install procps)"
[ -x /usr/bin/python3 ] || die "/usr/bin/python3 is required for the report"

STAMP=$(date +%Y%m%d-%H%M%S)
RUN_DIR="$WORK_DIR/run-$STAMP"
mkdir -p "$RUN_DIR" "$OUT_DIR"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

SKIPPED=()   # "target: reason"
ACTIVE=()
for t in "${TARGET_LIST[@]}"; do
  case $t in
    nginx|haproxy|caddy)
      if command -v "$t" >/dev/null; then ACTIVE+=("$t"); else
        SKIPPED+=("$t: not installed (no Debian package available?)"); warn "skipping $t: not installed"; fi ;;
    httputil)
      if (cd "$ROOT_DIR" && go build -o "$WORK_DIR/httputilproxy" ./bench/httputilproxy) >"$RUN_DIR/httputil-build.log" 2>&1; then
        ACTIVE+=("$t"); else SKIPPED+=("httputil: build failed"); warn "skipping httputil: $(tail -n 3 "$RUN_DIR/httputil-build.log")"; fi ;;
    sluice|sluice-log)
      if build_sluice; then
        write_sluice_conf "$RUN_DIR/sluice-check.yaml"
        if "$WORK_DIR/sluice" -check -config "$RUN_DIR/sluice-check.yaml" >"$RUN_DIR/sluice-check.log" 2>&1; then
          ACTIVE+=("$t")
        else
          SKIPPED+=("sluice: -check rejected the benchmark config"); warn "skipping sluice: -check failed: $(tail -n 3 "$RUN_DIR/sluice-check.log")"
        fi
      else
        # sluice is what the run is for: stop, rather than spend the whole
        # run measuring the others (found by review).
        die "go build ./cmd/sluice failed: $(tail -n 3 "$WORK_DIR/sluice-build.log")"
      fi ;;
    sluice-base)
      if [ -x "${BENCH_BASE_BIN:-}" ]; then ACTIVE+=("$t"); else
        SKIPPED+=("sluice-base: BENCH_BASE_BIN is not an executable"); warn "skipping sluice-base: set BENCH_BASE_BIN"; fi ;;
    direct) ACTIVE+=("$t") ;;
  esac
done
[ ${#ACTIVE[@]} -gt 0 ] || die "no target can run"

check_ports_free "$PROXY_PORT" "$UP1_PORT" "$UP2_PORT" "$ADMIN_PORT"
IDLE_BUSY=$(host_busy 2)
if awk -v b="$IDLE_BUSY" 'BEGIN{exit !(b > 0.10)}'; then
  warn "before the run, the busiest CPU was $(awk -v b="$IDLE_BUSY" 'BEGIN{printf "%.0f", b*100}')% busy with other work: results will be noisy"
fi
start_upstreams "$RUN_DIR"
log "upstreams up1=:$UP1_PORT up2=:$UP2_PORT on CPU $LOAD_CPU; proxies on :$PROXY_PORT on CPU $PROXY_CPU"

# ---------------------------------------------------------------- targets

# Kernel threads that run network softirqs when they pile up: their time is
# networking done for the benchmark, not foreign load.
mapfile -t KSOFTIRQD_PIDS < <(pgrep '^ksoftirqd/')

RAW="$RUN_DIR/runs.jsonl"
: >"$RAW"

# measure ROUND SCENARIO TARGET
measure() {
  local round=$1 sc=$2 name=$3 d="$RUN_DIR/r$1-$2-$3"
  local conns path post
  read -r conns path post <<<"$(scenario_params "$sc")"
  if ! start_target "$name" "$d"; then
    printf '{"round":%d,"scenario":"%s","target":"%s","ok":false,"reason":"start failed"}\n' \
      "$round" "$sc" "$name" >>"$RAW"
    return
  fi

  # Sanity: four plain requests must see both backends' X-Backend header.
  local seen
  local u="http://127.0.0.1:$T_PORT/1k"
  seen=$(curl -s --max-time 2 -D - -o /dev/null "$u" "$u" "$u" "$u" |
    awk -F': *' 'tolower($1) == "x-backend" { sub(/\r$/, "", $2); print $2 }' | sort -u | paste -sd/ -)

  [ "$WARMUP" -gt 0 ] && run_wrk "$conns" "$path" "$post" "$WARMUP" "$T_PORT" "$d.warmup.log"

  local pids=() t0 t1 ut0 ut1 k0 k1 upids=() p
  [ -n "$T_PID" ] && mapfile -t pids < <(proc_tree "$T_PID")
  for p in "${UPSTREAM_PIDS[@]}"; do mapfile -t -O "${#upids[@]}" upids < <(proc_tree "$p"); done
  local -a ua ub c0a c1a c0b c1b
  read -r -a ua <<<"$(upstream_stats)"
  read -r -a c0a <<<"$(cpu_stat "$LOAD_CPU")"
  read -r -a c1a <<<"$(cpu_stat "$PROXY_CPU")"
  t0=$(cpu_ticks "${pids[@]}")
  ut0=$(cpu_ticks "${upids[@]}")
  k0=$(cpu_ticks "${KSOFTIRQD_PIDS[@]}")

  # One mid-run sample of established connections towards the upstreams.
  (sleep "$(awk -v d="$DURATION" 'BEGIN{print d/2}')"
   ss -Htn state established "( dport = :$UP1_PORT or dport = :$UP2_PORT )" 2>/dev/null | wc -l >"$d.ss") &
  local sspid=$!
  local TIMEFORMAT='%3U %3S'
  { time run_wrk "$conns" "$path" "$post" "$DURATION" "$T_PORT" "$d.wrk.log"; } 2>"$d.time"
  wait "$sspid" 2>/dev/null

  t1=$(cpu_ticks "${pids[@]}")
  ut1=$(cpu_ticks "${upids[@]}")
  k1=$(cpu_ticks "${KSOFTIRQD_PIDS[@]}")
  read -r -a c0b <<<"$(cpu_stat "$LOAD_CPU")"
  read -r -a c1b <<<"$(cpu_stat "$PROXY_CPU")"
  read -r -a ub <<<"$(upstream_stats)"
  local hwm=0 nprocs=${#pids[@]}
  if [ -n "$T_PID" ]; then
    mapfile -t pids < <(proc_tree "$T_PID")
    hwm=$(hwm_kb "${pids[@]}")
  fi
  local rc=0
  if [ -n "$T_PID" ]; then stop_pid "$T_PID" 10 "$T_STOPSIG"; rc=$STOP_RC; fi

  local wj wrk_cpu
  wj=$(sed -n 's/^BENCHJSON //p' "$d.wrk.log" | tail -n 1)
  if [ -z "$wj" ]; then
    warn "$name/$sc: wrk produced no result: $(tail -n 3 "$d.wrk.log" | tr '\n' ' ')"
    wj='{"requests":0}'
  fi
  wrk_cpu=$(awk 'NF == 2 {printf "%.3f", $1 + $2}' "$d.time")
  # Each stub_status read counts itself once (one request, one connection).
  {
    printf '{"round":%d,"scenario":"%s","target":"%s","ok":true,"conns":%d,"path":"%s","post_bytes":%d,' \
      "$round" "$sc" "$name" "$conns" "$path" "$post"
    printf '"wrk":%s,"proxy_cpu_ticks":%d,"clk_tck":%d,"proxy_hwm_kb":%d,"proxy_procs":%d,' \
      "$wj" "$((t1 - t0))" "$(getconf CLK_TCK)" "$hwm" "$nprocs"
    printf '"upstream_cpu_ticks":%d,"ksoftirqd_ticks":%d,"wrk_cpu_s":%s,' \
      "$((ut1 - ut0))" "$((k1 - k0))" "${wrk_cpu:-0}"
    printf '"up1_requests":%d,"up2_requests":%d,"up_new_conns":%d,"up_conns_midrun":%d,' \
      "$((ub[0] - ua[0] - 1))" "$((ub[2] - ua[2] - 1))" \
      "$((ub[1] - ua[1] - 1 + ub[3] - ua[3] - 1))" "$(cat "$d.ss" 2>/dev/null || echo -1)"
    # cpu_stat deltas: task irq steal idle total
    printf '"load_cpu":[%d,%d,%d,%d,%d],"proxy_cpu":[%d,%d,%d,%d,%d],' \
      "$((c0b[0] - c0a[0]))" "$((c0b[1] - c0a[1]))" "$((c0b[2] - c0a[2]))" "$((c0b[3] - c0a[3]))" "$((c0b[4] - c0a[4]))" \
      "$((c1b[0] - c1a[0]))" "$((c1b[1] - c1a[1]))" "$((c1b[2] - c1a[2]))" "$((c1b[3] - c1a[3]))" "$((c1b[4] - c1a[4]))"
    printf '"sanity_backends":"%s","exit_code":%d}\n' "$seen" "$rc"
  } >>"$RAW"

  local rps
  rps=$(printf '%s' "$wj" | awk -F'[:,]' '{for (i = 1; i < NF; i++) { if ($i ~ /"requests"/) q = $(i+1); if ($i ~ /"duration_us"/) u = $(i+1) }}
    END { if (u > 0) printf "%.0f", q / u * 1e6 }')
  log "round $round scenario $sc $(printf '%-8s' "$name") $(printf '%8s' "${rps:-?}") req/s  proxy cpu ticks $((t1 - t0))  backends [$seen]  exit $rc"
}

# ---------------------------------------------------------------- meta

ver() { "$@" 2>&1 | head -1 | tr -d '"\\'; }
{
  printf '{"date":"%s","stamp":"%s","quick":%s,"rounds":%d,"duration_s":%d,"warmup_s":%d,' \
    "$(date +%F)" "$STAMP" "$([ $QUICK = 1 ] && echo true || echo false)" "$ROUNDS" "$DURATION" "$WARMUP"
  printf '"targets":[%s],"scenarios":[%s],' \
    "$(printf '"%s",' "${ACTIVE[@]}" | sed 's/,$//')" "$(printf '"%s",' "${SCENARIO_LIST[@]}" | sed 's/,$//')"
  printf '"forwarded_headers":%s,' "$([ "$FORWARDED" = 1 ] && echo true || echo false)"
  printf '"skipped":[%s],' "$( [ ${#SKIPPED[@]} -gt 0 ] && printf '"%s",' "${SKIPPED[@]}" | sed 's/,$//')"
  printf '"preflight_busy":%s,"load_cpu":%d,"proxy_cpu":%d,"cpu_model":"%s","nproc":%d,"kernel":"%s",' \
    "$IDLE_BUSY" "$LOAD_CPU" "$PROXY_CPU" "$(lscpu 2>/dev/null | awk -F: '/Model name/{gsub(/^ +/,"",$2); print $2; exit}')" \
    "$(nproc)" "$(uname -r)"
  printf '"versions":{"nginx":"%s","haproxy":"%s","caddy":"%s","wrk":"%s","go":"%s","sluice":"%s"}}\n' \
    "$(ver nginx -v)" "$(ver haproxy -v)" "$(command -v caddy >/dev/null && ver caddy version)" \
    "$(ver wrk -v)" "$(ver go version)" \
    "$(cd "$ROOT_DIR" && git rev-parse --short HEAD 2>/dev/null)$(cd "$ROOT_DIR" && [ -n "$(GIT_OPTIONAL_LOCKS=0 git status --porcelain 2>/dev/null)" ] && echo '+dirty')"
} >"$RUN_DIR/meta.json"

# ---------------------------------------------------------------- run

total=$((ROUNDS * ${#SCENARIO_LIST[@]} * ${#ACTIVE[@]}))
log "targets: ${ACTIVE[*]}; scenarios: ${SCENARIO_LIST[*]}; $ROUNDS round(s) of ${DURATION}s (+${WARMUP}s warmup) -> $total runs, about $((total * (DURATION + WARMUP + 1) / 60 + 1)) min"
for ((r = 1; r <= ROUNDS; r++)); do
  # The order of the targets turns by one each round, so that whatever
  # running first or after a given target does to a run is not always
  # charged to the same target (found by review).
  n=${#ACTIVE[@]}; k=$(( (r - 1) % n ))
  ORDER=("${ACTIVE[@]:k}" "${ACTIVE[@]:0:k}")
  for sc in "${SCENARIO_LIST[@]}"; do
    for t in "${ORDER[@]}"; do
      measure "$r" "$sc" "$t"
    done
  done
done

bench_cleanup
trap - EXIT

/usr/bin/python3 "$BENCH_DIR/report.py" --run-dir "$RUN_DIR" --out-dir "$OUT_DIR"
