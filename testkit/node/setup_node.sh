#!/usr/bin/env bash
# Installs (once) the official Node.js packages the tests run — @azure/web-pubsub-express with
# express, and @azure/web-pubsub-client — with `npm ci` from the committed package-lock.json.
#
#   folder:  ${CARGO_TARGET_DIR:-<repo>/target}/nodeenv
#   output:  its node_modules path, as the last line on stdout (for NODE_PATH)
#   exit 0:  ready; 3: node or npm not found (tests skip); other non-zero: setup failed (message on stderr)
#
# Idempotent and quiet: when the marker file records the hash of the lock file, nothing is
# installed. Safe to run concurrently (serialised with flock when available).
set -euo pipefail

die() {
    echo "setup_node.sh: $*" >&2
    exit 1
}

script_path="${BASH_SOURCE[0]}"
case "$script_path" in
    */*) script_dir="${script_path%/*}" ;;
    *) script_dir="." ;;
esac
script_dir="$(cd "$script_dir" && pwd)"
repo_root="$(cd "$script_dir/../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
case "$target_dir" in
    /*) ;;
    *) target_dir="$repo_root/$target_dir" ;; # a relative CARGO_TARGET_DIR is relative to the workspace
esac
env_dir="$target_dir/nodeenv"
modules="$env_dir/node_modules"
marker="$env_dir/.webpubsub-lock-hash"

for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "setup_node.sh: $tool not found" >&2
        exit 3
    fi
done

hash_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        cat "$@" | sha256sum | cut -d' ' -f1
    else
        cat "$@" | shasum -a 256 | cut -d' ' -f1
    fi
}
wanted="$(hash_of "$script_dir/package.json" "$script_dir/package-lock.json")"

# Fast path: already installed (no lock needed; the marker is written last).
if [ -d "$modules" ] && [ -f "$marker" ] && [ "$(cat "$marker")" = "$wanted" ]; then
    echo "$modules"
    exit 0
fi

mkdir -p "$env_dir" || die "cannot create $env_dir"

# Serialise concurrent runs (e.g. several test binaries starting at once).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$target_dir/.nodeenv.lock" || die "cannot open lock file $target_dir/.nodeenv.lock"
    flock 9 || die "cannot lock $target_dir/.nodeenv.lock"
    # Another run may have finished the job while we waited.
    if [ -d "$modules" ] && [ -f "$marker" ] && [ "$(cat "$marker")" = "$wanted" ]; then
        echo "$modules"
        exit 0
    fi
fi

log="$(mktemp "${TMPDIR:-/tmp}/webpubsub-nodeenv.XXXXXX")"
trap 'rm -f "$log"' EXIT

rm -f "$marker"
cp "$script_dir/package.json" "$script_dir/package-lock.json" "$env_dir/" || die "cannot copy the package files"
# No install scripts: none of the pinned packages needs one.
if ! (cd "$env_dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error) >"$log" 2>&1; then
    cat "$log" >&2
    die "npm ci failed in $env_dir"
fi
if ! NODE_PATH="$modules" node -e 'require("@azure/web-pubsub-express"); require("express"); require("@azure/web-pubsub-client")' >"$log" 2>&1; then
    cat "$log" >&2
    die "the installed packages do not load"
fi

printf '%s\n' "$wanted" >"$marker.tmp" && mv "$marker.tmp" "$marker" || die "cannot write $marker"
echo "$modules"
