"""The ANR table of run.sh's comparisons (markdown on stdout)."""
import csv
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
POLICIES = ["objective", "random", "p2c-ewma"]


def blocked(run_dir, policy):
    """Mean blocked share per managed service over every seed's steps."""
    tot = {}
    for seed in sorted(os.listdir(run_dir)):
        path = os.path.join(run_dir, seed, "steps.csv")
        if not seed.startswith("seed-") or not os.path.exists(path):
            continue
        for r in csv.DictReader(open(path)):
            if r["policy"] != policy or r["service"] not in ("s1", "s2"):
                continue
            o, c = float(r["offered_rps"]), float(r["carried_rps"])
            a = tot.setdefault(r["service"], [0.0, 0.0])
            a[0] += o
            a[1] += o - c
    return {s: 100.0 * b / o if o else 0.0 for s, (o, b) in sorted(tot.items())}


print("| load | objective | " + " | ".join(f"ANR {p}" for p in POLICIES)
      + " | objective blocks s1 / s2 |")
print("|---|---|" + "---|" * len(POLICIES) + "---|")
for load, name in [("mesh-two-services", "random-level (seen)"),
                   ("mesh-two-services-sin", "sinusoidal (unseen)")]:
    for mo in ["mo1", "mo2", "mo3"]:
        d = os.path.join(HERE, f"{load}-{mo}")
        s = json.load(open(os.path.join(d, "summary.json")))
        cells = []
        for p in POLICIES:
            a = s["policies"][p].get("anr")
            cells.append(f"{a['mean']:.3f} ± {a['sd']:.3f} [{a['min']:.3f}, {a['max']:.3f}]"
                         if a else "-")
        b = blocked(d, "objective")
        print(f"| {name} | {mo.upper()} | " + " | ".join(cells)
              + f" | {b.get('s1', 0):.1f} % / {b.get('s2', 0):.1f} % |")
