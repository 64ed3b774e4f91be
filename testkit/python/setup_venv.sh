#!/usr/bin/env bash
# Creates (once) a Python virtualenv with the official Azure Web PubSub Python SDKs, for the
# interoperability tests against the emulator.
#
#   venv:    ${CARGO_TARGET_DIR:-<repo>/target}/pyenv
#   output:  the venv's python path, as the last line on stdout
#   exit 0:  ready; 3: python3 not found (tests skip); other non-zero: setup failed (message on stderr)
#
# Idempotent and quiet: when the marker file records the pinned package set, nothing is installed.
# Safe to run concurrently (serialised with flock when available).
set -euo pipefail

# The pinned set. Changing it changes the marker, which triggers a reinstall.
PINNED_PACKAGES=(
    "azure-messaging-webpubsubclient==1.1.0"
    "azure-messaging-webpubsubservice==1.3.0"
    "pproxy==2.7.9"
)

die() {
    echo "setup_venv.sh: $*" >&2
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
venv="$target_dir/pyenv"
venv_python="$venv/bin/python"
marker="$venv/.webpubsub-pinned"
wanted="$(printf '%s\n' "${PINNED_PACKAGES[@]}")"

if ! command -v python3 >/dev/null 2>&1; then
    echo "setup_venv.sh: python3 not found" >&2
    exit 3
fi

# Fast path: already installed (no lock needed; the marker is written last).
if [ -x "$venv_python" ] && [ -f "$marker" ] && [ "$(cat "$marker")" = "$wanted" ]; then
    echo "$venv_python"
    exit 0
fi

mkdir -p "$target_dir" || die "cannot create $target_dir"

# Serialise concurrent runs (e.g. several test binaries starting at once).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$target_dir/.pyenv.lock" || die "cannot open lock file $target_dir/.pyenv.lock"
    flock 9 || die "cannot lock $target_dir/.pyenv.lock"
    # Another run may have finished the job while we waited.
    if [ -x "$venv_python" ] && [ -f "$marker" ] && [ "$(cat "$marker")" = "$wanted" ]; then
        echo "$venv_python"
        exit 0
    fi
fi

log="$(mktemp "${TMPDIR:-/tmp}/webpubsub-pyenv.XXXXXX")"
trap 'rm -f "$log"' EXIT

run_quiet() {
    # Runs "$@" with its output captured; on failure prints the output and the failing step.
    local what="$1"
    shift
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        die "$what failed: $*"
    fi
}

rm -f "$marker"
if [ ! -x "$venv_python" ] || ! "$venv_python" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$venv"
    run_quiet "creating the virtualenv (is python3-venv installed?)" python3 -m venv "$venv"
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
run_quiet "installing ${PINNED_PACKAGES[*]}" \
    "$venv_python" -m pip install --quiet "${PINNED_PACKAGES[@]}"
run_quiet "importing the installed SDKs" \
    "$venv_python" -c 'import azure.messaging.webpubsubclient, azure.messaging.webpubsubservice'

printf '%s\n' "$wanted" >"$marker.tmp" && mv "$marker.tmp" "$marker" || die "cannot write $marker"
echo "$venv_python"
