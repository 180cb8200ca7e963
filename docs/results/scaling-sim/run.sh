#!/bin/sh
# Regenerates this directory: every scaler with the balancer its paper used, 5 seeds, a strict
# (0.75x) and a slack (1.5x) SLA, on imbalance, hotel and hotel-diurnal; imbalance also over
# 900 s (the 300 s scenario ends while imbres is still removing containers). Run from the
# repository root after `cargo build --release`; takes about two minutes.
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
run imbalance 0.75 imbalance-900s-strict 900
run imbalance 1.5 imbalance-900s-slack 900
# From a quarter of the containers (one per service): how long until the SLA holds to the end.
tmp=$(mktemp -d)
target/release/loadshift sim scenarios/imbalance-cold.yaml \
    --compare imbres-connect+imbres,round-robin+hpa,round-robin+hpa-best --seeds 3 --out "$tmp" \
    > "$out/imbalance-cold.txt"
cp "$tmp/summary.json" "$out/imbalance-cold.json"
rm -rf "$tmp"
