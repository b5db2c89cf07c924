#!/bin/sh
# Flame graphs of the benchmarks, written to docs/profiles/NAME.svg: perf with DWARF call
# graphs on the release bench binaries, folded and drawn by inferno
# (`cargo install inferno`). Needs perf (Debian: linux-perf) and permission to use it.
#   scripts/profile.sh model     head, GRU steps and the adapter write (paper preset; the
#                                per-commit work repeated 40 times after the measurements)
#   scripts/profile.sh hooks     commits through the installed hooks, daemon up and down
#   scripts/profile.sh fresh     commit → fresh adapter (paper preset)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
what=${1:?"usage: scripts/profile.sh model|hooks|fresh"}
out="$root/docs/profiles"
work=${EVOLORA_BENCH_DIR:-/tmp}
mkdir -p "$out"

cargo build --release --locked -p evolora-hooks --bins
case "$what" in
    model) cargo bench --locked --no-run -p evolora-model --bench model ;;
    hooks | fresh) cargo bench --locked --no-run -p evolora-daemon --bench "$what" ;;
    *) echo "unknown profile: $what" >&2; exit 2 ;;
esac
# The newest build of the bench binary.
binary=$(ls -t target/release/deps/"$what"-* | grep -v '\.d$' | head -n 1)
data="$work/evolora-$what.perf"
case "$what" in
    model) name=model-paper; set -- --preset paper --repeat 40 ;;
    fresh) name=fresh-paper; set -- --preset paper ;;
    hooks) name=hooks; set -- ;;
esac
EVOLORA_BENCH_DIR="$work" perf record -F 199 --call-graph dwarf,16384 -o "$data" -- "$binary" "$@"
perf script -i "$data" | inferno-collapse-perf | inferno-flamegraph --title "evolora $what bench" > "$out/$name.svg"
echo "wrote $out/$name.svg"
