#!/usr/bin/env python3
"""The load harness's reports (loadtest/harness.sh): one Markdown file per scenario, and the
rate sweep's table and plot (latency against offered rate, SVG), from wrk's and oha's results
and the service's /metrics scraped before and after each run. Standard library only.

    report.py scenario DIR     DIR holds run.json (wrk's done()), wrk.txt, settings.txt,
                               before.prom / after.prom, server.txt (CPU seconds, RSS)
    report.py sweep DIR        DIR holds rate-<N>-<target>.json (oha --json) and settings.txt
"""

import json
import os
import re
import sys


def samples(path):
    """name{labels} -> value of a Prometheus text exposition."""
    found = {}
    if not os.path.exists(path):
        return found
    for line in open(path):
        if not line.strip() or line.startswith("#"):
            continue
        series, _, value = line.rstrip("\n").rpartition(" ")
        try:
            found[series] = float(value)
        except ValueError:
            pass
    return found


def delta(before, after, prefix):
    """Increase of every series of metric `prefix`, by its label text."""
    out = {}
    for series, value in after.items():
        if series.split("{")[0] == prefix:
            labels = series[len(prefix):]
            out[labels] = value - before.get(series, 0.0)
    return out


def label(labels, name):
    match = re.search(name + r'="([^"]*)"', labels)
    return match.group(1) if match else ""


def read_settings(directory):
    path = os.path.join(directory, "settings.txt")
    return open(path).read().strip() if os.path.exists(path) else ""


def scenario(directory):
    run = json.load(open(os.path.join(directory, "run.json")))
    name = os.path.basename(directory.rstrip("/"))
    seconds = run["duration_us"] / 1e6
    errors = {k[len("errors_"):]: v for k, v in run.items() if k.startswith("errors_") and v}
    before = samples(os.path.join(directory, "before.prom"))
    after = samples(os.path.join(directory, "after.prom"))
    server = {}
    server_file = os.path.join(directory, "server.txt")
    if os.path.exists(server_file):
        for line in open(server_file):
            key, _, value = line.partition("=")
            server[key.strip()] = float(value)
    lines = [f"# Load test: {name}", "", read_settings(directory), ""]
    lines += [
        "| requests | seconds | req/s | p50 | p90 | p99 | p99.9 | max |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {run['requests']:,} | {seconds:.1f} | {run['requests'] / seconds:,.0f} | "
        f"{run['p50_us'] / 1000:.2f} ms | {run['p90_us'] / 1000:.2f} ms | "
        f"{run['p99_us'] / 1000:.2f} ms | {run['p999_us'] / 1000:.2f} ms | "
        f"{run['max_us'] / 1000:.2f} ms |",
        "",
        "Latency is wrk's (closed loop: each connection sends when its last answer came).",
        "",
    ]
    lines.append("**Errors by kind (wrk)**: " + (
        ", ".join(f"{k} {v:,}" for k, v in errors.items()) if errors else "none") + ".")
    requests = delta(before, after, "http_server_requests_total")
    if sum(requests.values()) > 0:
        by_class = {}
        for labels, value in requests.items():
            cls = label(labels, "http_response_status_class")
            by_class[cls] = by_class.get(cls, 0) + value
        limited = sum(v for l, v in delta(before, after, "shortener_rate_limit_decisions_total").items()
                      if label(l, "decision") == "limited")
        lines += ["", "**Answers by class (the service's metrics)**: " + ", ".join(
            f"{cls} {int(v):,}" for cls, v in sorted(by_class.items()) if v) +
            f"; of them 429 (rate limited) {int(limited):,}."]
        tiers = delta(before, after, "shortener_link_resolutions_total")
        total = sum(tiers.values())
        if total:
            lines += ["", "**Where redirects were answered** (`shortener_link_resolutions_total`):", "",
                      "| outcome | resolutions | share |", "| --- | ---: | ---: |"]
            for labels, value in sorted(tiers.items(), key=lambda kv: -kv[1]):
                if value:
                    lines.append(f"| {label(labels, 'outcome')} | {int(value):,} | {value / total:.1%} |")
    else:
        lines += ["", "(The reference server exports no metrics.)"]
    if server:
        lines += ["", f"**Server**: {server.get('cpu_seconds', 0):.1f} s of CPU over the run "
                      f"({server.get('cpu_seconds', 0) / seconds:.2f} cores), RSS "
                      f"{server.get('rss_bytes', 0) / 2**20:,.1f} MiB at the end."]
    open(os.path.join(directory, "report.md"), "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


def oha_point(path):
    data = json.load(open(path))
    summary = data.get("summary", {})
    pct = data.get("latencyPercentiles", {})
    statuses = data.get("statusCodeDistribution", {})
    # Requests still in flight when the run's time ran out are not failures of the server.
    errors = sum(count for kind, count in data.get("errorDistribution", {}).items()
                 if kind != "aborted due to deadline")
    ok = sum(v for k, v in statuses.items() if str(k).startswith(("2", "3")))
    total = sum(statuses.values()) + errors
    return {
        "rps": summary.get("requestsPerSec", 0.0),
        "p50": (pct.get("p50") or 0) * 1000,
        "p99": (pct.get("p99") or 0) * 1000,
        "p999": (pct.get("p99.9") or 0) * 1000,
        "errors": total - ok,
        "total": total,
    }


def sweep(directory):
    points = {}
    for file in os.listdir(directory):
        match = re.match(r"rate-(\d+)-(\w+)\.json$", file)
        if match:
            rate, target = int(match.group(1)), match.group(2)
            points.setdefault(target, []).append((rate, oha_point(os.path.join(directory, file))))
    for target in points:
        points[target].sort()
    lines = ["# Load test: rate sweep (open loop)", "", read_settings(directory), "",
             "oha sends at each fixed rate for the run's length and measures every request from "
             "the time it was meant to be sent (`--latency-correction`), so a server that falls "
             "behind is charged for the wait: no coordinated omission. The knee is the last rate "
             "whose p99 stays under 5 ms with under 0.1 % errors (requests still in flight when "
             "a run's time ran out are not counted as errors).", ""]
    for target, series in sorted(points.items()):
        knee = None
        lines += [f"## {target}", "", "| offered req/s | achieved req/s | p50 ms | p99 ms | p99.9 ms | errors |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: |"]
        for rate, point in series:
            ok = point["p99"] < 5.0 and point["errors"] <= 0.001 * max(point["total"], 1)
            if ok:
                knee = rate
            lines.append(f"| {rate:,} | {point['rps']:,.0f} | {point['p50']:.2f} | {point['p99']:.2f} | "
                         f"{point['p999']:.2f} | {point['errors']:,} |")
        lines += ["", f"Knee: {knee:,} req/s." if knee else "Knee: below the lowest rate tried.", ""]
    if points:
        write_svg(os.path.join(directory, "latency.svg"), points)
        lines += ["![p99 latency against offered rate](latency.svg)", ""]
    open(os.path.join(directory, "report.md"), "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


def write_svg(path, points):
    """p50 and p99 (ms, log scale) against offered rate, one colour per target."""
    import math
    width, height, left, bottom, top, right = 720, 420, 70, 50, 30, 160
    rates = [r for series in points.values() for r, _ in series]
    lat = [max(p[k], 0.01) for series in points.values() for _, p in series for k in ("p50", "p99")]
    x_max = max(rates) * 1.05
    y_min, y_max = math.log10(min(lat + [0.05])), math.log10(max(lat + [10.0]))

    def x(rate):
        return left + (width - left - right) * rate / x_max

    def y(ms):
        return top + (height - top - bottom) * (1 - (math.log10(max(ms, 0.01)) - y_min) / (y_max - y_min))

    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="black"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="black"/>',
             f'<text x="{(width - right + left) / 2}" y="{height - 12}" text-anchor="middle">offered rate (req/s)</text>',
             f'<text x="16" y="{(height - bottom + top) / 2}" transform="rotate(-90 16 {(height - bottom + top) / 2})" '
             f'text-anchor="middle">latency (ms, log)</text>']
    for ms in (0.1, 1, 5, 10, 100, 1000):
        if y_min <= math.log10(ms) <= y_max:
            style = 'stroke="#e08000" stroke-dasharray="4 3"' if ms == 5 else 'stroke="#ddd"'
            parts.append(f'<line x1="{left}" y1="{y(ms):.1f}" x2="{width - right}" y2="{y(ms):.1f}" {style}/>')
            parts.append(f'<text x="{left - 6}" y="{y(ms) + 4:.1f}" text-anchor="end">{ms:g}</text>')
    for tick in range(0, int(x_max) + 1, max(1, int(x_max / 6 / 10000) * 10000 or 10000)):
        parts.append(f'<text x="{x(tick):.1f}" y="{height - bottom + 16}" text-anchor="middle">{tick // 1000}k</text>')
    legend_y = top + 10
    for index, (target, series) in enumerate(sorted(points.items())):
        colour = colours[index % len(colours)]
        for key, dash in (("p50", "4 3"), ("p99", "")):
            path_points = " ".join(f"{x(r):.1f},{y(p[key]):.1f}" for r, p in series)
            dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
            parts.append(f'<polyline points="{path_points}" fill="none" stroke="{colour}" stroke-width="2"{dash_attr}/>')
            parts.append(f'<line x1="{width - right + 10}" y1="{legend_y}" x2="{width - right + 34}" '
                         f'y2="{legend_y}" stroke="{colour}" stroke-width="2"{dash_attr}/>')
            parts.append(f'<text x="{width - right + 40}" y="{legend_y + 4}">{target} {key}</text>')
            legend_y += 18
    parts.append(f'<text x="{width - right + 10}" y="{legend_y + 8}" fill="#e08000">5 ms: the SLO</text>')
    parts.append("</svg>")
    open(path, "w").write("\n".join(parts) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("scenario", "sweep"):
        sys.exit(__doc__)
    {"scenario": scenario, "sweep": sweep}[sys.argv[1]](sys.argv[2])
