#!/usr/bin/env bash
# Install the Debian packages the test suite needs, if they are missing.
# Runs as part of `make test`; does nothing when everything is present.
set -euo pipefail
need=()
command -v openssl >/dev/null || need+=(openssl)
command -v systemd-analyze >/dev/null || need+=(systemd)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null || need+=(chromium)
# receipt pictures draw Chinese text with a font that has it (devices/receipt_image.py)
command -v fc-list >/dev/null || need+=(fontconfig)
fc-list ':lang=zh-cn' 2>/dev/null | grep -q . || need+=(fonts-wqy-microhei)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "system-deps: missing ${need[*]}; install them (apt-get install ${need[*]}) to run every test" >&2
    exit 0
fi
echo "system-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
