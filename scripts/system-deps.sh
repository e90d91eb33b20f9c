#!/bin/sh
# System packages the browser and Prometheus tests need (Debian's chromium and prometheus).
# As root, installs what is missing with apt-get; otherwise says what to install and leaves the
# tests to fail with the same message (they never skip).
set -e
missing=""
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing="$missing chromium"
command -v prometheus >/dev/null 2>&1 || missing="$missing prometheus"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages:$missing"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
else
    echo "warning: missing system packages:$missing; the browser/Prometheus tests will fail." >&2
    echo "         install them with: sudo apt-get install -y$missing" >&2
fi
