#!/usr/bin/env bash
# Installs everything a fresh Debian 12 machine needs to build, test and demo the extension:
# system tools (apt), Azurite (npm) and a virtualenv with the Python dependencies (pip).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: run as root (sudo): apt packages, namespaces and loop devices need it" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
mapfile -t extra < <(grep -hv '^\s*#' .ci/apt-packages.txt 2>/dev/null | tr -s ' \n' '\n' | sed '/^$/d')
apt_packages=(
    python3 python3-venv python3-dev gcc make git ca-certificates curl openssl
    iproute2 iputils-ping util-linux procps kmod
    libpcap0.8 tcpdump tshark
    nftables iptables dnsmasq-base traceroute mtr-tiny
    e2fsprogs xfsprogs
    postgresql
    "${extra[@]}"
)
missing=()
for pkg in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    missing+=(nodejs npm)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-deps: apt-get install ${missing[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

AZURITE_VERSION=3.35.0
if ! command -v azurite-blob >/dev/null || [ "$(azurite-blob --version 2>/dev/null)" != "$AZURITE_VERSION" ]; then
    echo "install-deps: npm install -g azurite@$AZURITE_VERSION"
    npm install -g --no-fund --no-audit --loglevel=error "azurite@$AZURITE_VERSION" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
echo "install-deps: ready ($(.venv/bin/python --version), azurite $(azurite-blob --version))"
