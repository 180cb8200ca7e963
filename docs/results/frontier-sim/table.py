"""table.md of docs/results/frontier-sim: p95 and p99 (mean and sd over seeds) per scenario and
policy, and each policy's p95 and p99 as a ratio of p2c-ewma's."""
import json
import pathlib
import sys

here = pathlib.Path(sys.argv[1])
print("| scenario | policy | p95 ms | p99 ms | p95 / p2c-ewma | p99 / p2c-ewma |")
print("|---|---|---|---|---|---|")
for d in sorted(p for p in here.iterdir() if (p / "summary.json").exists()):
    pol = json.loads((d / "summary.json").read_text())["policies"]
    base = pol.get("p2c-ewma")
    for name, v in pol.items():
        p95, p99 = v["p95_ms"], v["p99_ms"]
        r95 = f"{p95['mean'] / base['p95_ms']['mean']:.3f}" if base else ""
        r99 = f"{p99['mean'] / base['p99_ms']['mean']:.3f}" if base else ""
        print(
            f"| {d.name} | {name} | {p95['mean']:.1f} ± {p95['sd']:.1f} "
            f"| {p99['mean']:.1f} ± {p99['sd']:.1f} | {r95} | {r99} |"
        )
