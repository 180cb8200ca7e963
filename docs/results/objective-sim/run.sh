#!/usr/bin/env bash
# The objective planner (Samani & Stadler, seed 004) in the twin: one system model trained on
# mesh-two-services under random actions and random-level load, then objective, random and
# p2c-ewma (the data plane's default, which never blocks) under MO1, MO2 and MO3, on the seen
# random-level load and the unseen sinusoidal load, 5 seeds each. About 3 minutes on 2 cores.
# Run from the repository root after `cargo build --release`.
set -euo pipefail
bin=${LOADSHIFT:-target/release/loadshift}
out=docs/results/objective-sim
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$bin" model collect scenarios/mesh-two-services.yaml --steps 4000 --out "$tmp/trace.json"
"$bin" model train objective "$tmp/trace.json" --out "$tmp/model.json" | grep -v "^model: " | tee "$out/model.txt"
printf 'objective: { model: %s }\n' "$tmp/model.json" > "$tmp/settings.yaml"

declare -A mo=(
  [mo1]='{ kind: mo1, bounds_ms: { s1: 80, s2: 150 } }'
  [mo2]='{ kind: mo2, bounds_ms: { s1: 80, s2: 150 }, utility: { s2: 5 } }'
  [mo3]='{ kind: mo3, bounds_ms: { s2: 150 }, favoured: s2, protected: s1, min_carried_rps: 5 }'
)
for load in mesh-two-services mesh-two-services-sin; do
  for k in mo1 mo2 mo3; do
    sed "s|^  management: .*|  management: ${mo[$k]}|" "scenarios/$load.yaml" > "$tmp/$load-$k.yaml"
    "$bin" sim "$tmp/$load-$k.yaml" --compare objective,random,p2c-ewma --seeds 5 \
      --planner-settings "$tmp/settings.yaml" --out "$out/$load-$k" | grep -E '^ANR'
    rm -f "$out/$load-$k"/seed-*/timeseries.csv "$out/$load-$k"/seed-*/report.html
  done
done
python3 "$out/table.py" > "$out/table.md"
python3 "$out/figures.py"
