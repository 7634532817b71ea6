#!/bin/sh
# The browser tests (tests/browser) drive Debian's Chromium through its ChromeDriver. Installs
# both (packages chromium and chromium-driver) when either is missing; does nothing, and calls
# no apt, when both are there. Installing needs root: anyone else is told what to install.
set -eu

CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver
PACKAGES="chromium chromium-driver"

if [ -x "$CHROMIUM" ] && [ -x "$CHROMEDRIVER" ]; then
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "The browser tests need Debian's packages chromium and chromium-driver" \
		"($CHROMIUM, $CHROMEDRIVER). Install them as root:" >&2
	echo "    apt-get update && apt-get install -y $PACKAGES" >&2
	exit 1
fi

echo "Installing Debian's $PACKAGES for the browser tests..."
export DEBIAN_FRONTEND=noninteractive
# The package lists may be missing or stale on a fresh machine: refresh them only if needed.
# shellcheck disable=SC2086
if ! apt-get install -y -qq $PACKAGES >/dev/null; then
	echo "Refreshing the package lists (apt-get update), then installing again..."
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq $PACKAGES >/dev/null
fi

for binary in "$CHROMIUM" "$CHROMEDRIVER"; do
	if [ ! -x "$binary" ]; then
		echo "apt-get installed $PACKAGES but $binary is missing" >&2
		exit 1
	fi
done
"$CHROMIUM" --version
"$CHROMEDRIVER" --version
