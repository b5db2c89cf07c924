#!/bin/sh
# Builds evolora, starts the daemon on its embedded defaults (state under
# $XDG_STATE_HOME/evolora, CPU backend, the built-in `compact` model preset for
# Qwen2.5-Coder-1.5B, no downloads) and registers the repository given (default: the
# current directory).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "${1:-.}" && pwd)

EVOLORA_SKIP_PYTHON=1 "$root/scripts/install-build-deps.sh"
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p evolora-daemon -p evolora-hooks
bin="$root/target/release/evolora"

state="${XDG_STATE_HOME:-$HOME/.local/state}/evolora"
mkdir -p "$state"
if "$bin" ping >/dev/null 2>&1; then
    echo "daemon already running"
else
    nohup "$bin" daemon >>"$state/daemon.log" 2>&1 &
    tries=0
    until "$bin" ping >/dev/null 2>&1; do
        tries=$((tries + 1))
        if [ "$tries" -gt 600 ]; then
            echo "evolora: the daemon did not start; see $state/daemon.log" >&2
            tail -n 20 "$state/daemon.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "daemon started (log: $state/daemon.log)"
fi
# The first walk folds the repository's whole history; --wait shows its progress.
"$bin" register --wait "$repo"
echo "next: $bin adapter $repo"
