#!/bin/sh
# Tries cluster mode on one machine: starts a nats-server with JetStream, one edge and two
# workers (three `evolora daemon` processes from the same binary, each with its own
# configuration, state and socket under $EVOLORA_CLUSTER_DIR, default
# $XDG_STATE_HOME/evolora-cluster), registers the repository given (default: the current
# directory) on the edge, waits for the workers' first adapter and prints the cluster's status.
#
#   scripts/cluster-local.sh /path/to/repo   # start (or reuse) the cluster, register the repo
#   scripts/cluster-local.sh status          # evolora cluster status
#   scripts/cluster-local.sh stop            # stop the daemons and the NATS server
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
dir="${EVOLORA_CLUSTER_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/evolora-cluster}"
port="${EVOLORA_NATS_PORT:-4222}"
url="nats://127.0.0.1:$port"
bin="$root/target/release/evolora"
nodes="edge w1 w2"

stop() {
    for name in $nodes nats; do
        pidfile="$dir/$name.pid"
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        # The daemons finish their job and flush on SIGTERM; the server stops at once.
        kill "$pid" 2>/dev/null && echo "stopped $name (pid $pid)"
        rm -f "$pidfile"
    done
}

running() {
    [ -f "$dir/$1.pid" ] && kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null
}

case "${1:-}" in
    stop)
        stop
        exit 0
        ;;
    status)
        exec "$bin" cluster status --url "$url"
        ;;
esac
repo=$(cd "${1:-.}" && pwd)

EVOLORA_SKIP_PYTHON=1 EVOLORA_NATS=1 "$root/scripts/install-build-deps.sh"
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p evolora-daemon -p evolora-hooks
mkdir -p "$dir"

if ! running nats; then
    nats=$("$root/scripts/nats-server.sh")
    mkdir -p "$dir/nats"
    : >"$dir/nats.log"
    "$nats" --jetstream --store_dir "$dir/nats" --addr 127.0.0.1 --port "$port" >>"$dir/nats.log" 2>&1 &
    echo $! >"$dir/nats.pid"
    tries=0
    until grep -q "Server is ready" "$dir/nats.log"; do
        tries=$((tries + 1))
        if [ "$tries" -gt 100 ] || ! running nats; then
            echo "evolora: nats-server did not start (port $port taken? set EVOLORA_NATS_PORT); see $dir/nats.log" >&2
            tail -n 20 "$dir/nats.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "nats-server with JetStream on $url (data: $dir/nats)"
fi

for name in $nodes; do
    running "$name" && continue
    role=worker
    [ "$name" = edge ] && role=edge
    mkdir -p "$dir/$name"
    cat >"$dir/$name/evolora.toml" <<TOML
state_dir = "$dir/$name/state"
socket = "$dir/$name/evolora.sock"

[cluster]
role = "$role"
url = "$url"
node = "$name"
TOML
    "$bin" daemon --config "$dir/$name/evolora.toml" >>"$dir/$name/daemon.log" 2>&1 &
    echo $! >"$dir/$name.pid"
    tries=0
    until EVOLORA_SOCKET="$dir/$name/evolora.sock" "$bin" ping >/dev/null 2>&1; do
        tries=$((tries + 1))
        if [ "$tries" -gt 600 ] || ! running "$name"; then
            echo "evolora: the $role $name did not start; see $dir/$name/daemon.log" >&2
            tail -n 20 "$dir/$name/daemon.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "$role $name started (log: $dir/$name/daemon.log)"
done

# The edge installs its hooks and publishes a wake-up; a worker fetches the repository into
# its mirror, walks its history and uploads the adapter, which the edge then hands out.
EVOLORA_SOCKET="$dir/edge/evolora.sock" "$bin" register "$repo"
echo "waiting for a worker's adapter (the first walk folds the whole history)..."
EVOLORA_SOCKET="$dir/edge/evolora.sock" "$bin" adapter "$repo" --wait 3600
"$bin" cluster status --url "$url"
echo "next: EVOLORA_SOCKET=$dir/edge/evolora.sock $bin adapter $repo"
echo "stop: $0 stop"
