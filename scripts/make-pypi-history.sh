#!/bin/sh
# Builds a git repository whose first-parent commits are successive releases of a PyPI
# package's source distribution (the ingest benchmark's real Python history).
#   scripts/make-pypi-history.sh PACKAGE COUNT DIR     e.g. requests 40 /tmp/requests-history
set -eu
pkg=$1
count=$2
dir=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The newest COUNT final releases that have an sdist, oldest first, as "version url" lines.
python3 - "$pkg" "$count" >"$work/releases" <<'PY'
import json, re, sys, urllib.request
pkg, count = sys.argv[1], int(sys.argv[2])
data = json.load(urllib.request.urlopen(f"https://pypi.org/pypi/{pkg}/json"))
rel = []
for v, files in data["releases"].items():
    if not re.fullmatch(r"\d+(\.\d+)*", v):
        continue
    sdists = [f for f in files if f["packagetype"] == "sdist" and not f.get("yanked")]
    if sdists:
        rel.append((tuple(int(x) for x in v.split(".")), v, sdists[0]["url"]))
for _, v, url in sorted(rel)[-count:]:
    print(v, url)
PY
rm -rf "$dir"
git init -q -b main "$dir"
while read -r v url; do
    rm -rf "$work/src" && mkdir -p "$work/src"
    python3 -c "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])" "$url" "$work/archive"
    case "$url" in
        *.zip) (cd "$work/src" && python3 -m zipfile -e "$work/archive" .) ;;
        *) tar -xf "$work/archive" -C "$work/src" ;;
    esac
    top=$(ls "$work/src" | head -n 1)
    find "$dir" -mindepth 1 -maxdepth 1 ! -name .git -exec rm -rf {} +
    cp -R "$work/src/$top/." "$dir/"
    git -C "$dir" add -A
    GIT_AUTHOR_NAME=release GIT_AUTHOR_EMAIL=release@example.invalid \
    GIT_COMMITTER_NAME=release GIT_COMMITTER_EMAIL=release@example.invalid \
        git -C "$dir" commit -q --allow-empty -m "$pkg $v"
done <"$work/releases"
echo "$(git -C "$dir" rev-list --count HEAD) commits in $dir"
