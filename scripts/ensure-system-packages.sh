#!/bin/sh
# The system programs some tests drive, from Debian's packages:
#   chromium, chromium-driver  the browser tests (tests/browser): Chromium through its ChromeDriver
#   nginx                      tests/test_deploy.py checks deploy/nginx.conf with `nginx -t`
# Installs every package whose program is missing; does nothing, and calls no apt, when all are
# there. Installing needs root: anyone else is told what to install.
set -eu

CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver
NGINX=/usr/sbin/nginx

missing=""
[ -x "$CHROMIUM" ] || missing="$missing chromium"
[ -x "$CHROMEDRIVER" ] || missing="$missing chromium-driver"
[ -x "$NGINX" ] || missing="$missing nginx"
missing="${missing# }"

if [ -z "$missing" ]; then
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "The tests need Debian's packages $missing ($CHROMIUM, $CHROMEDRIVER, $NGINX)." \
		"Install them as root:" >&2
	echo "    apt-get update && apt-get install -y $missing" >&2
	exit 1
fi

echo "Installing Debian's $missing for the tests..."
export DEBIAN_FRONTEND=noninteractive
# nginx's package starts the daemon (on port 80) unless a policy-rc.d says no, as Docker's
# images do: the tests only run `nginx -t`, so say no for this install when nothing does.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod +x "$policy"
	trap 'rm -f "$policy"' EXIT
fi
# The package lists may be missing or stale on a fresh machine: refresh them only if needed.
# shellcheck disable=SC2086
if ! apt-get install -y -qq $missing >/dev/null; then
	echo "Refreshing the package lists (apt-get update), then installing again..."
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq $missing >/dev/null
fi

for binary in "$CHROMIUM" "$CHROMEDRIVER" "$NGINX"; do
	if [ ! -x "$binary" ]; then
		echo "apt-get installed $missing but $binary is missing" >&2
		exit 1
	fi
done
"$CHROMIUM" --version
"$CHROMEDRIVER" --version
"$NGINX" -v
