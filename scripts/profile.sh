#!/bin/sh
# Flame graphs of the benchmarks, written to docs/profiles/NAME.svg: perf with DWARF call
# graphs on the release bench binaries, folded and drawn by inferno
# (`cargo install inferno`). Needs perf (Debian: linux-perf) and permission to use it.
#   scripts/profile.sh model     head, GRU steps and the adapter write (paper preset; the
#                                per-commit work repeated 40 times after the measurements)
#   scripts/profile.sh hooks     commits through the installed hooks, daemon up and down
#   scripts/profile.sh fresh     commit → fresh adapter (paper preset)
#   scripts/profile.sh ingest    a real history's ingest (compact preset; EVOLORA_INGEST_REPO,
#                                default /tmp/requests, a clone of psf/requests)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
what=${1:?"usage: scripts/profile.sh model|hooks|fresh|ingest"}
out="$root/docs/profiles"
work=${EVOLORA_BENCH_DIR:-/tmp}
mkdir -p "$out"

cargo build --release --locked -p evolora-hooks --bins
case "$what" in
    model) cargo bench --locked --no-run -p evolora-model --bench model ;;
    hooks | fresh | ingest) cargo bench --locked --no-run -p evolora-daemon --bench "$what" ;;
    *) echo "unknown profile: $what" >&2; exit 2 ;;
esac
# The newest build of the bench binary.
binary=$(ls -t target/release/deps/"$what"-* | grep -v '\.d$' | head -n 1)
data="$work/evolora-$what.perf"
case "$what" in
    model) name=model-paper; set -- --preset paper --repeat 40 ;;
    fresh) name=fresh-paper; set -- --preset paper ;;
    hooks) name=hooks; set -- ;;
    ingest) name=ingest-compact; set -- --repo "${EVOLORA_INGEST_REPO:-/tmp/requests}" --preset compact ;;
esac
EVOLORA_BENCH_DIR="$work" perf record -F 199 --call-graph dwarf,16384 -o "$data" -- "$binary" "$@"
perf script -i "$data" | inferno-collapse-perf | inferno-flamegraph --title "evolora $what bench" > "$out/$name.svg"
echo "wrote $out/$name.svg"
