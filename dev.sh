#!/usr/bin/env bash
# One entry point that sets up everything on a fresh Debian 12 machine (as root) and runs a job:
#   ./dev.sh demo   ftmb-instrument demo: the bundled example NAT analyzed, built with ftmb-cc, crashed,
#                   recovered from its newest checkpoint and verified (arguments go to the demo)
#   ./dev.sh test   run the whole test suite
# Set-up is idempotent: Debian packages are installed only when missing, the virtual
# environment (.venv) is rebuilt only when pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")"

DEB_PACKAGES=(python3 python3-venv python3-dev gcc make pkg-config libdpdk-dev dpdk-doc libpcap-dev tcpdump dpkg-dev graphviz)

install_debian_packages() {
    local missing=()
    for pkg in "${DEB_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "dev.sh: installing Debian packages: ${missing[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
    fi
}

setup_venv() {
    local stamp=.venv/.ftmb-installed
    local want
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "dev.sh: creating .venv" >&2
        python3 -m venv .venv
        .venv/bin/pip install -q --upgrade pip >&2
        .venv/bin/pip install -q -e '.[test]' >&2
        echo "$want" > "$stamp"
    fi
}

install_debian_packages
setup_venv
export PATH="$PWD/.venv/bin:$PATH"

case "${1:-}" in
    demo)
        shift
        exec ftmb-instrument demo "$@"
        ;;
    test)
        shift
        exec python -m pytest -q "$@"
        ;;
    *)
        echo "usage: ./dev.sh demo|test [ARGS...]" >&2
        exit 2
        ;;
esac
