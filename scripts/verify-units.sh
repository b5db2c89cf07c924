#!/bin/sh
# Runs `systemd-analyze verify` on the shipped units, pointing ExecStart at a real binary.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/target/debug/evolora"
[ -x "$bin" ] || cargo build --quiet --manifest-path "$root/Cargo.toml" -p evolora-daemon
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for unit in "$root"/systemd/*.service; do
    name=$(basename "$unit")
    sed -e "s|^ExecStart=[^ ]*|ExecStart=$bin|" -e '/^User=/d' -e '/^Group=/d' "$unit" >"$tmp/$name"
    systemd-analyze verify "$tmp/$name"
    echo "verified $name"
done
