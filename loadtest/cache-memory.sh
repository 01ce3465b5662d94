#!/usr/bin/env bash
# Memory per cached link, split into moka's own overhead, key, value and URL (issue #10), and
# with generated codes keyed by their 64-bit id: examples/cache_memory.rs fills one layout per
# process (N entries, 60-byte URLs, moka built as LinkCache builds it), RUNS times each; this
# prints the medians, bytes per entry, and the split. No service, no database, no network.
#
#   loadtest/cache-memory.sh              N=1000000 RUNS=3
#
# Output in OUT [target/loadtest/cache-memory-<timestamp>]: runs.txt (one line a run) and
# summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-1000000}
RUNS=${RUNS:-3}
OUT=${OUT:-target/loadtest/cache-memory-$(date +%Y%m%dT%H%M%S)}
LAYOUTS="u64-unit code-unit code-link-nourl code-link code-link-hit id-link id-link-hit hashmap-code-link"

NAME=cache-memory
# shellcheck source=loadtest/common.sh
. loadtest/common.sh
mkdir -p "$OUT"
cargo build --release --example cache_memory
BIN=target/release/examples/cache_memory
: >"$OUT/runs.txt"
for run in $(seq 1 "$RUNS"); do
  for layout in $LAYOUTS; do
    log "run $run/$RUNS: $layout"
    timeout 300 "$BIN" "$layout" "$N" | tee -a "$OUT/runs.txt"
  done
done

python3 - "$OUT/runs.txt" "$N" "$RUNS" <<'PY' | tee "$OUT/summary.md"
import statistics, sys
from collections import defaultdict
runs = defaultdict(lambda: defaultdict(list))
for line in open(sys.argv[1]):
    fields = dict(f.split("=", 1) for f in line.split())
    for k in ("rss", "rss_purged", "heap", "requested"):
        runs[fields["layout"]][k].append(float(fields[k]))
m = {l: {k: statistics.median(v) for k, v in ks.items()} for l, ks in runs.items()}
what = {
    "u64-unit": "`moka<u64, ()>`",
    "code-unit": "`moka<Box<str>, ()>` (11-char code)",
    "code-link-nourl": "`moka<Box<str>, Arc<ResolvedLink>>`, empty URL",
    "code-link": "`LinkCache` (the service's layout), 60-byte URL",
    "code-link-hit": "the same, each link served once",
    "id-link": "`moka<u64, Arc<ResolvedLink>>` (key by id), 60-byte URL",
    "id-link-hit": "the same, each link served once",
    "hashmap-code-link": "`HashMap<Box<str>, Arc<ResolvedLink>>` (no moka)",
}
print(f"{sys.argv[2]} entries, median of {sys.argv[3]} runs, bytes per entry. RSS: growth "
      "after `run_pending_tasks`; settled: once jemalloc has purged its dirty pages; heap: "
      "live allocations in jemalloc size classes (requested in brackets).\n")
print("| layout | RSS | settled RSS | heap (requested) |")
print("| --- | ---: | ---: | ---: |")
for l, text in what.items():
    if l in m:
        r = m[l]
        print(f"| {text} | {r['rss']:.0f} | {r['rss_purged']:.0f} | "
              f"{r['heap']:.0f} ({r['requested']:.0f}) |")
need = ("u64-unit", "code-unit", "code-link-nourl", "code-link", "code-link-hit", "id-link")
if all(l in m for l in need):
    for k, label in (("rss_purged", "settled RSS"), ("heap", "heap")):
        v = {l: m[l][k] for l in m}
        # Additive: overhead + key + value + URL + served = the service's layout, served.
        split = [
            ("moka's own overhead: (u64-unit) - 8", v["u64-unit"] - 8),
            ("key, the code: (code-unit) - (u64-unit) + 8", v["code-unit"] - v["u64-unit"] + 8),
            ("value without URL: (code-link-nourl) - (code-unit)",
             v["code-link-nourl"] - v["code-unit"]),
            ("URL: (code-link) - (code-link-nourl)", v["code-link"] - v["code-link-nourl"]),
            ("served once: (code-link-hit) - (code-link)", v["code-link-hit"] - v["code-link"]),
        ]
        print(f"\nSplit of the service's layout ({label}):\n")
        print("| part | bytes |")
        print("| --- | ---: |")
        for name, b in split:
            print(f"| {name} | {b:.0f} |")
        print(f"| **total = code-link-hit** | **{v['code-link-hit']:.0f}** |")
        print(f"| key by id saves: (code-link) - (id-link) | {v['code-link'] - v['id-link']:.0f} |")
PY
