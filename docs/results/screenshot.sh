#!/bin/sh
# Renders a report.html to a PNG with headless Chromium, to look at a report the way a reader
# sees it (the report's own tests check its content, not how it looks; CI has no browser).
#
#   docs/results/screenshot.sh REPORT.html OUT.png [HEIGHT]
#
# HEIGHT: of the window in pixels (default 3000; a full report with several policies needs
# 6000-12000). The width is 1400. Needs `chromium` (Debian: apt-get install -y chromium).
set -eu
if [ $# -lt 2 ]; then
    echo "usage: $0 REPORT.html OUT.png [HEIGHT]" >&2
    exit 64
fi
report=$1
out=$2
height=${3:-3000}
if [ ! -f "$report" ]; then
    echo "$0: no such file: $report" >&2
    exit 66
fi
browser=
for b in chromium chromium-browser google-chrome; do
    if command -v "$b" >/dev/null 2>&1; then
        browser=$b
        break
    fi
done
if [ -z "$browser" ]; then
    echo "$0: no chromium found (Debian: apt-get install -y chromium)" >&2
    exit 69
fi
abs=$(cd "$(dirname "$report")" && pwd)/$(basename "$report")
case $out in
/*) ;;
*) out=$(pwd)/$out ;;
esac
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# No network, no first-run or background traffic: the report is self-contained.
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --user-data-dir="$profile" --window-size="1400,$height" \
    --screenshot="$out" "file://$abs" 2>/dev/null
if [ ! -s "$out" ]; then
    echo "$0: $browser wrote no screenshot to $out" >&2
    exit 1
fi
echo "$out"
