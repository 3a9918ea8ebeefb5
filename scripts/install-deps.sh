#!/bin/sh
# Installs the Debian packages occam needs, if any are missing.
# As root: apt-get update && apt-get install. Otherwise: prints the exact command and fails.
set -eu
missing=""
for pkg in "$@"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $pkg"
  fi
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = "0" ]; then
  echo "occam: installing missing Debian packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing
else
  echo "occam: missing Debian packages. Run:"
  echo "  sudo apt-get install -y$missing"
  exit 1
fi
