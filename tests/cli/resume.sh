#!/bin/sh
# An interrupted run continued with --resume ends bit-identical to an uninterrupted one, and a
# run never overwrites a non-empty directory without --force.
set -eu
occam="$1"; work="$2"
rm -rf "$work"; mkdir -p "$work"
flags="--preset fig2c-kernel --meta-hidden 32 --probe 200 --eval-tasks 2 --quiet --no-plot --checkpoint-every 5"
"$occam" run $flags --steps 20 --out "$work/full" > /dev/null
"$occam" run $flags --steps 10 --out "$work/part" > /dev/null
"$occam" run --resume "$work/part" --steps 20 --quiet --no-plot > /dev/null
cmp "$work/full/probe.csv" "$work/part/probe.csv"
cmp "$work/full/log.csv" "$work/part/log.csv"
if "$occam" run $flags --steps 2 --out "$work/full" 2> "$work/err.txt"; then
  echo "overwrote a non-empty run directory"; exit 1
fi
grep -q "pass --force" "$work/err.txt"
"$occam" run $flags --steps 2 --out "$work/full" --force > /dev/null
echo "resume and --force: ok"
