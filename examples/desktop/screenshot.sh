#!/usr/bin/env bash
# Runs the desktop example's --demo in a virtual X server and saves the window's screenshot,
# by default to docs/images/desktop.png (the one the README shows).
#
#   examples/desktop/screenshot.sh [OUTPUT.png]
#
# Needs, on Debian or Ubuntu:
#   apt-get install -y xvfb xauth libgl1-mesa-dri
# (xvfb-run and its X server, and Mesa's software OpenGL: the virtual server has no GPU).
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-docs/images/desktop.png}"

if ! command -v xvfb-run >/dev/null; then
    echo "screenshot.sh: needs xvfb-run: apt-get install -y xvfb xauth libgl1-mesa-dri" >&2
    exit 1
fi
cargo build --quiet -p webpubsub-desktop
# The demo's own waits are bounded; the timeout bounds everything else (the X server, GL).
LIBGL_ALWAYS_SOFTWARE=1 timeout 120 \
    xvfb-run --auto-servernum --server-args="-screen 0 1280x800x24" \
    cargo run --quiet -p webpubsub-desktop -- --demo --screenshot "$out"
echo "screenshot.sh: wrote $out"
