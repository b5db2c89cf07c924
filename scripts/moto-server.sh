#!/bin/sh
# Prints the path of moto's moto_server (PyPI moto[server]): on the PATH, or where pip put
# it (its scripts directory may not be on the PATH).
set -eu
if command -v moto_server >/dev/null 2>&1; then
    command -v moto_server
    exit 0
fi
for d in "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')" \
         "$(python3 -c 'import site; print(site.USER_BASE)')/bin"; do
    if [ -x "$d/moto_server" ]; then
        echo "$d/moto_server"
        exit 0
    fi
done
echo "evolora: moto_server not found; run scripts/install-build-deps.sh" >&2
exit 1
