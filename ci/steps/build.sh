#!/usr/bin/env bash
# Builds kmatrix once per workflow, for the other jobs to download: the
# host packages the static guest agent needs (clang, libelf and zlib; with
# KMATRIX_CI_ARM64=true the arm64 cross toolchain too), then a release
# build of the checkout at KMATRIX_CI_SOURCE. Writes the binary and these
# steps to KMATRIX_CI_OUT (`kmatrix`, `steps/`).
#
# The binary carries the guest agent; at run time it needs only glibc,
# libgcc_s and liblzma (on every Debian and Ubuntu image), QEMU, and gpgv
# for Debian kernels (install-qemu.sh installs both).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/apt.sh"
source_dir=${KMATRIX_CI_SOURCE:?KMATRIX_CI_SOURCE: the kmatrix checkout to build}
out=${KMATRIX_CI_OUT:?KMATRIX_CI_OUT: the directory to write kmatrix to}

apt_install clang libelf-dev zlib1g-dev pkg-config
if [ "${KMATRIX_CI_ARM64:-false}" = true ]; then
    # On Ubuntu, the :arm64 packages come from its ports archive, which
    # apt's sources must name first (see the README's Quick start).
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        if [ "$(id -u)" -eq 0 ]; then dpkg --add-architecture arm64; else sudo dpkg --add-architecture arm64; fi
    fi
    apt_install gcc-aarch64-linux-gnu libc6-dev-arm64-cross libelf-dev:arm64 zlib1g-dev:arm64
    rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
fi

target=${CARGO_TARGET_DIR:-$source_dir/target}
CARGO_TARGET_DIR=$target cargo build --release --locked -p kmatrix --manifest-path "$source_dir/Cargo.toml"
mkdir -p "$out"
cp "$target/release/kmatrix" "$out/kmatrix"
rm -rf "$out/steps"
cp -r "$here" "$out/steps"
"$out/kmatrix" --version
