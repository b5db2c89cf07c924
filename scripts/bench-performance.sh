#!/bin/sh
# Every performance benchmark of docs/BENCHMARKS.md ("Performance to the floor") once, one
# after another, each against floors it measures itself in the same run; the tables go to
# stdout and to the file named (default target/bench-performance.md).
#   scripts/bench-performance.sh [OUT]
# EVOLORA_INGEST_REPO: a clone of a real history for the ingest rows (e.g. psf/requests:
#   git clone https://github.com/psf/requests); without it those rows are skipped.
# EVOLORA_TORCH_PYTHON: a Python with torch and safetensors for the PyTorch column (the
#   authors' tool's stack); python3 otherwise, and the column is skipped without torch.
# Run it on an otherwise idle machine: each benchmark uses every core.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${1:-target/bench-performance.md}
mkdir -p "$(dirname "$out")"

cargo build --release --locked -p evolora-hooks --bins
cargo bench --locked --no-run -p evolora-model --bench model
cargo bench --locked --no-run -p evolora-daemon --bench fresh --bench hooks --bench ingest

run() {
    title=$1
    shift
    echo "== $title: $*" >&2
    printf '\n### %s\n\n`%s`\n\n' "$title" "$*" >>"$out"
    "$@" 2>/dev/null | grep -v '^\s*\(Finished\|Running\|Compiling\)' | tee -a "$out"
}

printf '# Performance run, %s, %s (%s CPUs)\n' "$(date -u +%Y-%m-%dT%H:%MZ)" "$(git rev-parse --short HEAD)" "$(nproc)" >"$out"
run "model, paper preset" cargo bench --locked -q -p evolora-model --bench model -- --preset paper
run "model, compact preset" cargo bench --locked -q -p evolora-model --bench model -- --preset compact
run "commit → fresh adapter, paper preset" cargo bench --locked -q -p evolora-daemon --bench fresh -- --preset paper
run "commit → fresh adapter, compact preset" cargo bench --locked -q -p evolora-daemon --bench fresh -- --preset compact
run "hooks" cargo bench --locked -q -p evolora-daemon --bench hooks
if [ -n "${EVOLORA_INGEST_REPO:-}" ]; then
    run "ingest, compact preset" cargo bench --locked -q -p evolora-daemon --bench ingest -- --repo "$EVOLORA_INGEST_REPO" --preset compact
    run "ingest, paper preset" cargo bench --locked -q -p evolora-daemon --bench ingest -- --repo "$EVOLORA_INGEST_REPO" --preset paper
else
    echo "(EVOLORA_INGEST_REPO unset: ingest skipped)" | tee -a "$out"
fi
echo "written to $out" >&2
