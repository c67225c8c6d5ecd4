#!/bin/sh
# `make venv`: makes the dev venv match this checkout, and rebuilds it from scratch when it is stale.
#
#   scripts/venv.sh            check, then build or rebuild when needed
#   scripts/venv.sh --check    only say "fresh" (exit 0) or "stale: <reason>" (exit 1); changes nothing
#
# Environment: VENV (default .venv); PYTHON, the interpreter to build with. Without PYTHON an existing venv keeps
# its own Python while that is still a supported one, else the first supported of python3, python3.12, python3.11.
# Supported = pyproject.toml's requires-python (">=3.X,<3.Y", the only form this reads).
#
# A venv is stale when its Python no longer runs or is not supported, when PYTHON names another Python version
# than the one it was made with, or when it was installed from another requirements/dev.lock (or before this
# script recorded one). A stale venv is removed and made anew: installing a new lock over an old venv would keep
# packages the lock no longer has. The record is $VENV/.switchboard-venv.
set -eu
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-}
LOCK=requirements/dev.lock
RECORD=$VENV/.switchboard-venv
REQUIRES=$(sed -n 's/^requires-python = "\(.*\)"$/\1/p' pyproject.toml)

say() { echo "venv: $*" >&2; }

# The version (e.g. 3.11.7) of interpreter $1, empty when it does not run.
version_of() {
    "$1" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null || true
}

# Whether version $1 (X.Y.Z) is within requires-python (">=3.A,<3.B").
supported() {
    python_minor=$(echo "$1" | cut -d. -f2)
    low=$(echo "$REQUIRES" | sed -n 's/^>=3\.\([0-9]*\),<3\.\([0-9]*\)$/\1/p')
    high=$(echo "$REQUIRES" | sed -n 's/^>=3\.\([0-9]*\),<3\.\([0-9]*\)$/\2/p')
    [ -n "$low" ] && [ "$(echo "$1" | cut -d. -f1)" = 3 ] && [ "$python_minor" -ge "$low" ] && [ "$python_minor" -lt "$high" ]
}

fingerprint() {
    echo "lock $(sha256sum "$LOCK" | cut -d' ' -f1)"
}

# The interpreter to build a new venv with, or a clear error naming what is needed.
pick_python() {
    if [ -n "$PYTHON" ]; then
        version=$(version_of "$PYTHON")
        if [ -z "$version" ]; then
            say "PYTHON=$PYTHON does not run"; exit 2
        fi
        if ! supported "$version"; then
            say "PYTHON=$PYTHON is Python $version; switchboard needs Python $REQUIRES (pyproject.toml)"; exit 2
        fi
        echo "$PYTHON"; return
    fi
    for candidate in python3 python3.12 python3.11; do
        version=$(version_of "$candidate")
        if [ -n "$version" ] && supported "$version"; then
            echo "$candidate"; return
        fi
    done
    say "no supported Python found: switchboard needs Python $REQUIRES (pyproject.toml); python3 is" \
        "$(version_of python3 || true). Install one (e.g. Debian's python3.11) and run: make venv PYTHON=/path/to/python"
    exit 2
}

# Empty when the venv is fresh, else why it is stale.
staleness() {
    if [ ! -e "$VENV/bin/python" ]; then echo "there is no $VENV"; return; fi
    have=$(version_of "$VENV/bin/python")
    if [ -z "$have" ]; then echo "its Python ($VENV/bin/python) no longer runs"; return; fi
    if ! supported "$have"; then echo "it was made by Python $have; switchboard needs Python $REQUIRES"; return; fi
    if [ -n "$PYTHON" ]; then
        want=$(version_of "$PYTHON")
        if [ -n "$want" ] && [ "$want" != "$have" ]; then
            echo "it was made by Python $have, PYTHON=$PYTHON is Python $want"; return
        fi
    fi
    if [ ! -f "$RECORD" ]; then echo "it records no lock (made by hand or before requirements/dev.lock)"; return; fi
    if ! grep -qx "$(fingerprint)" "$RECORD"; then echo "it was installed from another requirements/dev.lock"; return; fi
}

build() {
    python=$(pick_python)
    say "making $VENV with $python (Python $(version_of "$python")) from $LOCK"
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
    # Hash-checking mode: every package must be pinned with a matching hash in the lock, dependencies included.
    "$VENV/bin/pip" install -q --disable-pip-version-check --require-hashes -r "$LOCK"
    install_local
    fingerprint >"$RECORD"
}

# Both local distributions, editable and without dependencies (the lock has them all).
install_local() {
    "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e . -e tools
    "$VENV/bin/pip" check >/dev/null || { "$VENV/bin/pip" check >&2; exit 1; }
    local_fingerprint >"$VENV/.switchboard-local"
}

# The editable installs' metadata (entry points, dependencies) comes from the two pyproject files.
local_fingerprint() {
    cat pyproject.toml tools/pyproject.toml | sha256sum | cut -d' ' -f1
}

reason=$(staleness)
if [ "${1:-}" = "--check" ]; then
    if [ -z "$reason" ]; then echo fresh; exit 0; fi
    echo "stale: $reason"; exit 1
fi
if [ -n "$reason" ]; then
    [ -e "$VENV" ] && say "rebuilding $VENV: $reason"
    build
elif [ "$(cat "$VENV/.switchboard-local" 2>/dev/null || true)" != "$(local_fingerprint)" ]; then
    say "pyproject.toml changed: reinstalling the two local distributions"
    install_local
fi
