# Sourced by the scripts in this folder. Defines the set-up steps; each
# script calls only the ones it needs, so the quick benchmark does not wait
# for PyPy or nginx to install.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# What the test suite needs from Debian: PyPy, nginx (the origin), the
# archive checkers, wrk and curl (clients), strace (path checks).
APT_PACKAGES=(pypy3 pypy3-venv python3-venv nginx-light unzip curl openssl strace wrk p7zip-full libarchive-tools)

ensure_apt_packages() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" \
            || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Runs a quiet command (pip, build) with its output kept aside and shown
# only when it fails: setuptools prints a page of notes on every editable
# install, and some machines' pip configuration adds a warning per package.
quietly() {
    local log
    log=$(mktemp)
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
}

# ensure_venv NAME INTERPRETER EXTRAS: .venv/NAME with bytepump[EXTRAS]
# (comma-separated) in editable mode. Does nothing, and prints nothing, when
# pyproject.toml is unchanged since the last install and that install had
# every extra asked for.
ensure_venv() {
    local name=$1 interpreter=$2 extras=$3 venv=.venv/$1
    local digest have=() extra up_to_date=yes
    digest=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ -f "$venv/.bytepump-stamp" ] && [ "$(head -n1 "$venv/.bytepump-stamp")" = "$digest" ]; then
        read -r -a have < <(tail -n +2 "$venv/.bytepump-stamp" | tr ',' ' ')
    else
        up_to_date=no
    fi
    for extra in ${extras//,/ }; do
        [[ " ${have[*]} " == *" $extra "* ]] || up_to_date=no
    done
    [ "$up_to_date" = yes ] && return 0
    if [ ! -x "$venv/bin/python" ]; then
        "$interpreter" -m venv "$venv"
        quietly "$venv/bin/python" -m pip install -q --upgrade pip
    fi
    quietly "$venv/bin/python" -m pip install -q -e ".${extras:+[$extras]}"
    printf '%s\n%s\n' "$digest" "$extras" >"$venv/.bytepump-stamp"
}
