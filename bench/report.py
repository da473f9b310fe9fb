#!/usr/bin/python3
"""Summarise one bench/run.sh run: markdown table, raw CSV/JSON and a PNG chart.

Reads RUN_DIR/meta.json and RUN_DIR/runs.jsonl (one JSON object per target,
scenario and round) and writes OUT_DIR/<date>.{md,csv,json,png} and
OUT_DIR/latest.png. The markdown is also printed on stdout.
Standard library only, plus matplotlib for the chart (skipped if absent).
"""

import argparse
import csv
import json
import math
import os
import shutil
import statistics
import sys

SCENARIO_TITLES = {
    "a": "64 connections, GET 1 KiB",
    "b": "256 connections, GET 1 KiB",
    "c": "64 connections, GET 64 KiB",
    "d": "64 connections, POST 16 KiB -> 1 KiB",
}
REFS = ("nginx", "haproxy")
SAT = 0.95  # a core busier than this counts as saturated


def derive(run):
    """Adds the per-run figures computed from the raw counters."""
    w = run.get("wrk", {})
    req = w.get("requests", 0)
    dur = w.get("duration_us", 0) / 1e6
    run["requests"] = req
    if req > 0:
        run["rps"] = req / dur if dur > 0 else 0.0
        run["p50_ms"] = w.get("lat_p50_us", 0) / 1000
        run["p99_ms"] = w.get("lat_p99_us", 0) / 1000
    else:
        # No result from wrk: no figures, rather than zeros that a median
        # takes for the best round (found by review).
        run["rps"] = run["p50_ms"] = run["p99_ms"] = None
    run["errors"] = sum(w.get(k, 0) for k in
                        ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
    if run["errors"] and req > 0:
        # A run with errors (non-2xx answers included) is not the same work:
        # a proxy answering cheap 502s looked 8x cheaper than nginx and
        # counted in the medians (found by review). Checks still list it.
        run["rps"] = run["p50_ms"] = run["p99_ms"] = None
    lc, pc = run["load_cpu"], run["proxy_cpu"]  # task irq steal idle total (jiffies)
    tck = run["clk_tck"]
    run["load_cpu_busy"] = 1 - lc[3] / lc[4] if lc[4] else 0.0
    run["proxy_cpu_busy"] = 1 - pc[3] / pc[4] if pc[4] else 0.0
    # CPU time on the two cores that was neither the proxy's, the
    # upstreams' nor wrk's: other work sharing the machine. A process's
    # utime+stime holds the softirq time spent on its behalf, which
    # /proc/stat files under irq and softirq, so those count on the cores'
    # side too (left out, they hid up to a third of a core of other load;
    # found by review).
    known = (run["proxy_cpu_ticks"] + run["upstream_cpu_ticks"] + run.get("ksoftirqd_ticks", 0)
             + run["wrk_cpu_s"] * tck)
    busy = lc[0] + lc[1] + pc[0] + pc[1]
    run["other_load"] = max(0.0, busy - known) / lc[4] if lc[4] else 0.0
    run["steal"] = (lc[2] + pc[2]) / lc[4] if lc[4] else 0.0
    proxied = run["target"] != "direct"
    if proxied and req > 0 and not run["errors"]:
        run["cpu_us_per_req"] = run["proxy_cpu_ticks"] * 1e6 / run["clk_tck"] / req
        run["rss_mib"] = run["proxy_hwm_kb"] / 1024
    else:
        run["cpu_us_per_req"] = None
        run["rss_mib"] = None
    return run


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio_rounds(runs, sc, target, ref, key):
    """target/ref in each round where both were measured, in round order."""
    by_round = {}
    for r in runs:
        if r["scenario"] == sc and r.get("ok"):
            by_round.setdefault(r["round"], {})[r["target"]] = r.get(key)
    rs = []
    for _, vals in sorted(by_round.items()):
        a, b = vals.get(target), vals.get(ref)
        if a is not None and b:
            rs.append(a / b)
    return rs


def ratio_median(runs, sc, target, ref, key):
    """Median over rounds of target/ref, both measured in the same round."""
    return med(ratio_rounds(runs, sc, target, ref, key))


def median_interval(xs, confidence=0.95):
    """A distribution-free interval for the median of what xs sample: the
    order statistics x(k) and x(n+1-k), k the largest for which the
    chance that fewer than k of n draws fall below the median is at most
    (1 - confidence) / 2. None when n is too small for that confidence."""
    xs = sorted(xs)
    n = len(xs)
    tail = (1 - confidence) / 2
    k, below = 0, 0.0
    while k < n // 2:
        below += math.comb(n, k) / 2 ** n  # P(exactly k draws below)
        if below > tail:
            break
        k += 1
    if k == 0:
        return None
    return xs[k - 1], xs[n - k]


def ratio_confidence(runs, meta, refs):
    """Markdown: how far each sluice ratio's median can be trusted."""
    targets = [t for t in meta["targets"] if t.startswith("sluice")]
    pairs = [(t, ref) for t in targets for ref in refs]
    if "sluice" in targets and "sluice-base" in targets:
        pairs.append(("sluice", "sluice-base"))
    if not pairs:
        return []
    out = ["## How sure the CPU ratios are\n",
           "Per round, CPU µs/req of the first ÷ the second; the median, a 95% interval for it that "
           "assumes nothing about the distribution (order statistics: needs 6 rounds or more), and "
           "in how many rounds the first was below 1. An interval that spans 1 does not tell the "
           "two apart.\n",
           "| scenario | ratio | median | 95% interval | rounds below 1 | per round |",
           "|---|---|---:|---:|---:|---|"]
    for sc in meta["scenarios"]:
        for t, ref in pairs:
            rs = ratio_rounds(runs, sc, t, ref, "cpu_us_per_req")
            if not rs:
                continue
            iv = median_interval(rs)
            out.append(f"| {sc} | {t} ÷ {ref} | {med(rs):.2f} | "
                       f"{'–' if iv is None else f'{iv[0]:.2f}–{iv[1]:.2f}'} | "
                       f"{sum(x < 1 for x in rs)} of {len(rs)} | {' '.join(f'{x:.2f}' for x in rs)} |")
    out.append("")
    return out


def fmt_num(v, digits):
    if v is None:
        return "–"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def cell(runs, sc, t, key, digits, refs):
    v = med([r.get(key) for r in runs if r["scenario"] == sc and r["target"] == t and r.get("ok")])
    s = fmt_num(v, digits)
    if v is None or not refs:
        return s
    rs = []
    for ref in refs:
        x = ratio_median(runs, sc, t, ref, key)
        rs.append("–" if x is None else f"{x:.2f}")
    return f"{s} ({' / '.join(rs)})"


def checks(runs, sc, t):
    """Split, reuse, saturation and error checks for one target and scenario."""
    rr = [r for r in runs if r["scenario"] == sc and r["target"] == t and r.get("ok")]
    notes = []
    failed = [r for r in runs if r["scenario"] == sc and r["target"] == t and not r.get("ok")]
    if failed:
        notes.append(f"{t}/{sc}: failed to start in {len(failed)} round(s)")
    if not rr:
        return "–", "–", "–", "–", "–", None, notes
    u1 = sum(max(r["up1_requests"], 0) for r in rr)
    u2 = sum(max(r["up2_requests"], 0) for r in rr)
    share = u1 / (u1 + u2) if u1 + u2 else 0
    split = f"{100 * share:.0f}/{100 - 100 * share:.0f}"
    if t != "direct":
        # Each round on its own: 100/0 then 0/100 sums to 50/50 (found by
        # review).
        skewed = [r["round"] for r in rr
                  if not 0.45 <= max(r["up1_requests"], 0) / max(max(r["up1_requests"], 0) + max(r["up2_requests"], 0), 1) <= 0.55]
        if not 0.45 <= share <= 0.55 or skewed:
            split += " ⚠"
            notes.append(f"{t}/{sc}: upstream split {split} is not round robin"
                         + (f" (rounds {skewed})" if skewed else ""))
        bad = [r["sanity_backends"] for r in rr if r["sanity_backends"] != "up1/up2"]
        if bad:
            notes.append(f"{t}/{sc}: sanity requests saw X-Backend {bad[0]!r}, want up1/up2")
    worst = max(rr, key=lambda r: r["up_new_conns"] / max(r["requests"], 1))
    new, req = worst["up_new_conns"], worst["requests"]
    openc = med([r["up_conns_midrun"] for r in rr])
    conns = f"{new:,} ({100 * new / req if req else 0:.1f}%) / {fmt_num(openc, 0)}"
    if t != "direct" and req and new > 0.10 * req:
        conns += " ⚠"
        notes.append(f"{t}/{sc}: {new:,} new upstream connections for {req:,} requests "
                     f"(round {worst['round']}): little keep-alive reuse")
    lb = [r["load_cpu_busy"] for r in rr]
    pb = [r["proxy_cpu_busy"] for r in rr]
    nsat = sum(1 for x in lb if x >= SAT)
    load = f"{100 * med(lb):.0f}%" + (f" sat {nsat}/{len(lb)}" if nsat else "")
    load += f" / {100 * med(pb):.0f}%"
    other = max(r["other_load"] for r in rr)
    steal = max(r["steal"] for r in rr)
    prox = f"{100 * other:.0f}%"
    if steal >= 0.01:
        prox += f" +{100 * steal:.0f}% steal"
    if other > 0.05 or steal > 0.05:
        prox += " ⚠"
    errs = sum(r["errors"] for r in rr)
    codes = sorted({r["exit_code"] for r in rr if r["exit_code"] != 0})
    err = f"{errs:,}"
    if errs:
        notes.append(f"{t}/{sc}: {errs:,} wrk errors (connect/read/write/non-2xx/timeout)")
    if codes:
        err += f", exit {codes}"
        notes.append(f"{t}/{sc}: exit status {codes} after SIGTERM, want 0")
    zero = [r["round"] for r in rr if r["requests"] == 0]
    if zero:
        notes.append(f"{t}/{sc}: no responses at all in round(s) {zero} (see the wrk log)")
    rps = [r["rps"] for r in rr if r["rps"] is not None]
    spread = (max(rps) - min(rps)) / med(rps) if len(rps) > 1 and med(rps) else None
    return split, conns, load, prox, err, spread, notes


# What each run's proxies do with forwarding headers (bench/forwarding.sh).
# Runs recorded before the field existed (before 95881f2) had sluice set
# its four always, nginx and HAProxy only with --forwarded-headers, which
# their meta does not say.
FORWARDING_TEXT = {
    None: "sluice sets X-Forwarded-For/-Proto/-Host and X-Request-Id, nginx and HAProxy "
          "the same only if the run had --forwarded-headers (not recorded)",
    False: "no forwarding headers set (Caddy and httputil set theirs)",
    True: "sluice, nginx and HAProxy all set X-Forwarded-For/-Proto/-Host and X-Request-Id "
          "(Caddy the X-Forwarded ones, httputil X-Forwarded-For)",
}


def markdown(meta, runs):
    targets = meta["targets"]
    refs = [x for x in REFS if x in targets]
    out = []
    quick = " (quick)" if meta.get("quick") else ""
    out.append(f"# sluice side-by-side benchmark — {meta['date']}{quick}\n")
    v = meta["versions"]
    out.append(
        f"{meta['cpu_model']}, {meta['nproc']} CPUs, Linux {meta['kernel']}. "
        f"Proxy pinned to CPU {meta['proxy_cpu']}; wrk (1 thread) and both upstreams "
        f"(nginx `return 200`, one worker each) pinned to CPU {meta['load_cpu']}. "
        f"Every proxy: one worker/thread/GOMAXPROCS=1, round robin over 2 upstreams, "
        f"upstream keep-alive, no access log, "
        f"{FORWARDING_TEXT[meta.get('forwarded_headers')]}. "
        f"{meta['rounds']} interleaved round(s) of {meta['duration_s']} s "
        f"(+{meta['warmup_s']} s warmup) per target and scenario; medians.\n")
    out.append(
        f"Versions: sluice {v.get('sluice') or '?'}, {v.get('nginx', '')}, "
        f"{v.get('haproxy', '')}, caddy {v.get('caddy') or 'n/a'}, {v.get('wrk', '')}, "
        f"{v.get('go', '')}.\n")
    if meta.get("preflight_busy", 0) > 0.10:
        out.append(f"⚠ Before the run the busiest CPU was {100 * meta['preflight_busy']:.0f}% busy "
                   "with other work: figures are noisy.\n")
    if meta.get("skipped"):
        out.append("Skipped: " + "; ".join(meta["skipped"]) + ".\n")

    # Headline: req/s and CPU µs/req per target and scenario.
    scs = meta["scenarios"]
    hdr = "| target | " + " | ".join(f"{s}: req/s | {s}: CPU µs/req" for s in scs) + " |"
    out.append("## Summary (medians)\n")
    out.append(hdr)
    out.append("|---|" + "---:|---:|" * len(scs))
    for t in targets:
        cells = []
        for s in scs:
            cells.append(cell(runs, s, t, "rps", 0, []))
            cells.append(cell(runs, s, t, "cpu_us_per_req", 2, []))
        out.append(f"| {t} | " + " | ".join(cells) + " |")
    out.append("")

    ref_txt = " / ".join(f"÷{x}" for x in refs) if refs else "no reference target measured"
    all_notes = []
    for s in scs:
        out.append(f"## Scenario {s}: {SCENARIO_TITLES[s]}\n")
        out.append(f"In parentheses: value {ref_txt}, each ratio taken within one round, "
                   "median over rounds (req/s: higher is better; the rest: lower is better).\n")
        out.append("| target | req/s | p50 ms | p99 ms | CPU µs/req | peak RSS MiB | "
                   "req/s spread | up1/up2 % | upstream conns new (% of req) / open | "
                   f"busy CPU{meta['load_cpu']} load / CPU{meta['proxy_cpu']} proxy | other load | errors |")
        out.append("|---|---:|---:|---:|---:|---:|---:|:---:|---:|---:|---:|---:|")
        for t in targets:
            split, conns, load, prox, err, spread, notes = checks(runs, s, t)
            all_notes += notes
            row = [
                t,
                cell(runs, s, t, "rps", 0, refs),
                cell(runs, s, t, "p50_ms", 3, refs),
                cell(runs, s, t, "p99_ms", 3, refs),
                cell(runs, s, t, "cpu_us_per_req", 2, refs),
                cell(runs, s, t, "rss_mib", 1, refs),
                "–" if spread is None else f"{100 * spread:.1f}%",
                split, conns, load, prox, err,
            ]
            out.append("| " + " | ".join(row) + " |")
        out.append("")

    out += ratio_confidence(runs, meta, refs)
    out.append("## How to read this\n")
    out.append(
        "- **req/s** is bounded by whichever core saturates first. When the load core "
        f"(CPU{meta['load_cpu']}: wrk + upstreams) shows `sat` and the proxy core is not near "
        "100%, the figure measures the load generator, not the proxy; compare **CPU µs/req**.\n"
        "- **CPU µs/req** = utime+stime of all the proxy's processes during the measured "
        "window ÷ responses wrk completed (kernel networking done in other contexts is not "
        "charged; 10 ms tick resolution).\n"
        "- **peak RSS** = VmHWM summed over the proxy's processes at the end of the run.\n"
        "- **up1/up2 %** = requests each upstream's stub_status counted in the window; "
        "**upstream conns new / open** = connections the upstreams accepted during the "
        "window (worst round, and as % of its requests; near 0 means keep-alive reuse) / "
        "established connections towards them sampled mid-run (for `direct`, wrk's own).\n"
        "- **busy** = 1 − idle share of each core during the window; `sat` marks rounds where "
        "the load core was ≥95% busy. **other load** = CPU time on the two cores, irq and softirq "
        "included, not charged to the proxy, upstreams, wrk and ksoftirqd (max over rounds, % of one core; "
        "plus hypervisor steal): anything above a few % means the machine was shared.\n"
        "- **req/s spread** = (max − min) ÷ median over rounds.\n")
    ok = [r for r in runs if r.get("ok")]
    busy = [r for r in ok if r["other_load"] > 0.05 or r["steal"] > 0.05]
    if busy:
        worst = max(busy, key=lambda r: r["other_load"] + r["steal"])
        all_notes.insert(0, (
            f"other processes were using the machine in {len(busy)} of {len(ok)} runs "
            f"(median {100 * med([r['other_load'] for r in busy]):.0f}%, max "
            f"{100 * (worst['other_load'] + worst['steal']):.0f}% of a core): absolute figures are "
            "disturbed and noisy; rerun on an idle machine. Same-round ratios suffer less."))
    if all_notes:
        out.append("## Warnings\n")
        out += [f"- {n}" for n in all_notes]
        out.append("")
    return "\n".join(out) + "\n"


COLORS = {"direct": "#9e9e9e", "sluice": "#d62728", "sluice-log": "#ff9896", "sluice-base": "#e377c2", "nginx": "#2ca02c",
          "haproxy": "#1f77b4", "caddy": "#9467bd", "httputil": "#ff7f0e"}


def chart(meta, runs, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report: matplotlib missing (apt-get install python3-matplotlib); no PNG",
              file=sys.stderr)
        return False
    scs = meta["scenarios"]
    targets = meta["targets"]
    fig, axes = plt.subplots(2, len(scs), figsize=(max(4.2 * len(scs), 7) + 0.6, 7.4), squeeze=False)
    for j, s in enumerate(scs):
        for i, (key, label) in enumerate((("rps", "requests/s"), ("cpu_us_per_req", "proxy CPU µs/request"))):
            ax = axes[i][j]
            vals, lo, hi = [], [], []
            for t in targets:
                xs = [r[key] for r in runs if r["scenario"] == s and r["target"] == t
                      and r.get("ok") and r.get(key) is not None]
                m = statistics.median(xs) if xs else 0.0
                vals.append(m)
                lo.append(m - min(xs) if xs else 0.0)
                hi.append(max(xs) - m if xs else 0.0)
            x = range(len(targets))
            bars = ax.bar(x, vals, yerr=[lo, hi], capsize=3,
                          color=[COLORS.get(n, "#777777") for n in targets])
            for b, v, t in zip(bars, vals, targets):
                if v:
                    txt = f"{v / 1000:.1f}k" if key == "rps" else f"{v:.1f}"
                elif key == "cpu_us_per_req" and t == "direct":
                    txt = "no proxy"
                else:
                    txt = "n/a"
                ax.annotate(txt, (b.get_x() + b.get_width() / 2, b.get_height()),
                            ha="center", va="bottom", fontsize=7, xytext=(0, 2),
                            textcoords="offset points")
            names = targets
            ax.set_xticks(list(x))
            ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
            ax.tick_params(axis="y", labelsize=8)
            ax.grid(axis="y", alpha=0.3)
            if i == 0:
                ax.set_title(f"{s}: {SCENARIO_TITLES[s]}", fontsize=9)
            if j == 0:
                ax.set_ylabel(label)
    ok = [r for r in runs if r.get("ok")]
    noisy = sum(1 for r in ok if r["other_load"] > 0.05 or r["steal"] > 0.05)
    warn = (f"\nWARNING: other processes shared the machine in {noisy} of {len(ok)} runs; "
            "figures are noisy") if noisy > len(ok) / 4 else ""
    fig.suptitle(f"sluice side-by-side benchmark {meta['date']}: medians of {meta['rounds']} "
                 f"round(s), whiskers = min..max\nproxy on 1 core, load on another "
                 f"({meta['cpu_model']}, {meta['nproc']} CPUs){warn}", fontsize=10,
                 color="#b00000" if warn else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--out-dir", required=True)
    a = ap.parse_args()
    with open(os.path.join(a.run_dir, "meta.json")) as f:
        meta = json.load(f)
    runs = []
    with open(os.path.join(a.run_dir, "runs.jsonl")) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                runs.append(derive(r) if r.get("ok") else r)

    os.makedirs(a.out_dir, exist_ok=True)
    # The date and commit name the files, so a second run on the same day
    # of another commit does not overwrite the first (found by review).
    name = meta["date"] + (f"-{meta['versions']['sluice']}" if meta.get("versions", {}).get("sluice") else "")
    base = os.path.join(a.out_dir, name)
    md = markdown(meta, runs)
    with open(base + ".md", "w") as f:
        f.write(md)

    cols = ["round", "scenario", "target", "ok", "conns", "path", "post_bytes", "requests",
            "rps", "p50_ms", "p99_ms", "cpu_us_per_req", "rss_mib", "errors",
            "proxy_cpu_ticks", "clk_tck", "proxy_hwm_kb", "proxy_procs", "up1_requests",
            "up2_requests", "up_new_conns", "up_conns_midrun", "load_cpu_busy",
            "proxy_cpu_busy", "upstream_cpu_ticks", "ksoftirqd_ticks", "wrk_cpu_s", "other_load", "steal",
            "sanity_backends", "exit_code"]
    with open(base + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in runs:
            w.writerow(r)
    with open(base + ".json", "w") as f:
        json.dump({"meta": meta, "runs": runs}, f, indent=1)

    if chart(meta, runs, base + ".png"):
        shutil.copyfile(base + ".png", os.path.join(a.out_dir, "latest.png"))
    sys.stdout.write(md)
    print(f"\nwritten: {base}.md .csv .json .png (and latest.png); raw run in {a.run_dir}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
