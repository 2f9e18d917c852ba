#!/usr/bin/env bash
# Make sure the headless browser the browser tests drive is installed: Debian's Chromium and
# its matching chromedriver. Nothing is downloaded from a browser vendor (the tests never run
# `playwright install` nor Selenium Manager), so the Debian packages are the whole set-up.
# Idempotent: when both binaries exist it only says so.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver
PACKAGES=(chromium chromium-driver)

log() { printf '[browser] %s\n' "$*"; }
die() { printf '[browser] ERROR: %s\n' "$*" >&2; exit 1; }

if [[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]]; then
    log "chromium and chromedriver present"
    exit 0
fi

sudo=()
if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "missing ${PACKAGES[*]}; run as root or install sudo"
    sudo=(sudo)
fi

# Other scripts (scripts/infra.sh) may be installing packages at the same time: wait for
# dpkg's lock instead of failing on it.
apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600)
log "installing Debian packages: ${PACKAGES[*]} (apt-get update first)"
"${apt[@]}" update
"${apt[@]}" install -y --no-install-recommends "${PACKAGES[@]}"

[[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]] || die "installed ${PACKAGES[*]} but $CHROMIUM or $CHROMEDRIVER is missing"
log "$("$CHROMIUM" --version 2>/dev/null || echo chromium), $("$CHROMEDRIVER" --version 2>/dev/null | head -n1)"
