#!/bin/sh
# Regenerates this directory: every scaler with the balancer its paper used, 5 seeds, a strict
# (0.75x) and a slack (1.5x) SLA, on imbalance, hotel and hotel-diurnal; imbalance and hotel also
# over 900 s (within 300 s the HPA's 300 s scale-down window lets it remove nothing, and imbres
# is still removing containers when the run ends). Run from the
# repository root after `cargo build --release`; takes about three minutes.
set -e
out=docs/results/scaling-sim
policies=imbres-connect+imbres,round-robin+queueflower,round-robin+hpa-best,round-robin+hpa,round-robin+avg,imbres-connect+hpa-best
run() { # scenario sla-scale name [duration]
    tmp=$(mktemp -d)
    target/release/loadshift sim "scenarios/$1.yaml" --compare "$policies" --seeds 5 \
        --sla-scale "$2" --out "$tmp" ${4:+--duration "$4"} > "$out/$3.txt"
    cp "$tmp/summary.json" "$out/$3.json"
    rm -rf "$tmp"
}
for s in imbalance hotel hotel-diurnal; do
    run "$s" 0.75 "$s-strict"
    run "$s" 1.5 "$s-slack"
done
for s in imbalance hotel; do
    run "$s" 0.75 "$s-900s-strict" 900
    run "$s" 1.5 "$s-900s-slack" 900
done
# From a quarter of the containers (one per service): how long until the SLA holds to the end.
tmp=$(mktemp -d)
target/release/loadshift sim scenarios/imbalance-cold.yaml \
    --compare imbres-connect+imbres,round-robin+hpa,round-robin+hpa-best --seeds 3 --out "$tmp" \
    > "$out/imbalance-cold.txt"
cp "$tmp/summary.json" "$out/imbalance-cold.json"
rm -rf "$tmp"
