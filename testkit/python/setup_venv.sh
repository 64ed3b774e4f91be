#!/usr/bin/env bash
# Creates (once) the Python virtualenv of the tests: the official Azure Web PubSub Python SDKs
# (interoperability tests of the client and the emulator) and pproxy (a real HTTP proxy), every
# package installed from the committed lock file, each file checked against its hash.
#
#   lock:    testkit/python/requirements.lock (every package, transitive ones included, pinned
#            with hashes), generated from testkit/python/requirements.in (the top-level pins)
#   venv:    ${CARGO_TARGET_DIR:-<repo>/target}/pyenv
#   output:  the venv's python path, as the last line on stdout
#   exit 0:  ready; 3: python3 not found (tests skip); other non-zero: setup failed (message on stderr)
#
# Idempotent and quiet: when the marker file records the lock's hash, nothing is installed; a
# changed lock reinstalls. Safe to run concurrently (serialised with flock when available).
#
# Regenerating the lock (after editing requirements.in), in a throwaway venv:
#
#   python3 -m venv /tmp/lockvenv && /tmp/lockvenv/bin/pip install pip-tools
#   cd testkit/python && /tmp/lockvenv/bin/pip-compile --generate-hashes --strip-extras \
#       --allow-unsafe --no-emit-index-url --no-emit-find-links \
#       --output-file requirements.lock requirements.in
#
# Commit both files. The lock is resolved for the Python that generated it (its header says
# which); `pip check` below fails plainly if another Python needs a package the lock lacks.
set -euo pipefail

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
marker="$venv/.webpubsub-lock"
lock="$script_dir/requirements.lock"
[ -f "$lock" ] || die "missing $lock"

if ! command -v python3 >/dev/null 2>&1; then
    echo "setup_venv.sh: python3 not found" >&2
    exit 3
fi

# The marker holds the hash of the lock it was installed from.
wanted="$(python3 -c 'import hashlib, sys; print("sha256:" + hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$lock")" ||
    die "cannot hash $lock"

# Fast path: already installed (no flock needed: the marker is written last).
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

# A fresh venv, so that it holds exactly the lock's packages (none left from an older lock).
rm -rf "$venv"
run_quiet "creating the virtualenv (is python3-venv installed?)" python3 -m venv "$venv"

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
# --require-hashes: every file must match the lock; --no-deps: nothing outside the lock.
run_quiet "installing $lock" \
    "$venv_python" -m pip install --quiet --require-hashes --no-deps -r "$lock"
run_quiet "checking that the lock is complete" "$venv_python" -m pip check
run_quiet "importing the installed packages" \
    "$venv_python" -c 'import azure.messaging.webpubsubclient, azure.messaging.webpubsubservice, pproxy'

printf '%s\n' "$wanted" >"$marker.tmp" && mv "$marker.tmp" "$marker" || die "cannot write $marker"
echo "$venv_python"
