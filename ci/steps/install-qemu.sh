#!/usr/bin/env bash
# What a shard job needs to boot kernels: QEMU for KMATRIX_CI_ARCH
# (amd64, arm64, or both when empty), gpgv (Debian's archive signature),
# the packages in KMATRIX_CI_PACKAGES (e.g. `clang libbpf-dev` for a
# suite of C sources), and, where the runner has KVM, access to it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/apt.sh"
arch=${KMATRIX_CI_ARCH:-}
packages=(gpgv)
case "$arch" in
    amd64) packages+=(qemu-system-x86) ;;
    arm64) packages+=(qemu-system-arm) ;;
    "") packages+=(qemu-system-x86 qemu-system-arm) ;;
    *) echo "kmatrix-ci: unknown architecture '$arch': amd64, arm64, or empty for both" >&2; exit 2 ;;
esac
# shellcheck disable=SC2206 # a list of package names, split on blanks
packages+=(${KMATRIX_CI_PACKAGES:-})
apt_install "${packages[@]}"
if [ -e /dev/kvm ] && [ ! -w /dev/kvm ]; then
    echo 'KERNEL=="kvm", GROUP="kvm", MODE="0666", OPTIONS+="static_node=kvm"' |
        sudo tee /etc/udev/rules.d/99-kmatrix-kvm.rules >/dev/null
    sudo udevadm control --reload-rules
    sudo udevadm trigger --name-match=kvm
fi
