#!/usr/bin/env bash
# The balancing frontier in the simulator: every shipped scenario that exercises balancing, five
# seeds each, the data plane's modes and the shifting planners in one run per scenario; then
# table.md from the summaries. About 3 minutes on 2 cores with a release build:
#
#   cargo build --release --bin loadshift && docs/results/frontier-sim/run.sh [BINARY]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
bin=${1:-$root/target/release/loadshift}
policies=${POLICIES:-round-robin,least-request,p2c-ewma,prequal,imbres-shift,imbres-shift-pure}
for s in zone-link moving-interference flash-crowd skew equal imbalance hotel multicloud mesh-two-services; do
  extra=""
  # `local` only means something where callers and containers have zones.
  case $s in zone-link|multicloud) extra=",local" ;; esac
  "$bin" sim "$root/scenarios/$s.yaml" --compare "$policies$extra" --seeds 5 --out "$here/$s" > /dev/null
  rm -f "$here/$s"/seed-*/timeseries.csv "$here/$s"/seed-*/report.html
done
python3 "$here/table.py" "$here" > "$here/table.md"
echo "wrote $here/table.md"
