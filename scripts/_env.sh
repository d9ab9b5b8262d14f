# Sourced by the scripts in this folder: installs what bytepump's tests and
# benchmarks need on a Debian machine and makes one virtualenv per
# interpreter under .venv/ with the package installed in editable mode.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

APT_PACKAGES=(pypy3 pypy3-venv python3-venv nginx-light unzip curl openssl strace wrk p7zip-full libarchive-tools)

ensure_apt_packages() {
    local missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
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

# ensure_venv NAME INTERPRETER EXTRAS: .venv/NAME with bytepump[EXTRAS].
ensure_venv() {
    local name=$1 interpreter=$2 extras=$3 venv=.venv/$1
    if [ ! -x "$venv/bin/python" ]; then
        "$interpreter" -m venv "$venv"
        "$venv/bin/python" -m pip install -q --upgrade pip
    fi
    "$venv/bin/python" -m pip install -q -e ".[$extras]"
}

ensure_apt_packages
