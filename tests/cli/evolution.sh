#!/bin/sh
# Evolution strategies: --threads 1 and 2 give byte-identical results, and an interrupted run
# resumed from its checkpoint ends identical to an uninterrupted one (for every strategy).
set -eu
occam="$1"; work="$2"
rm -rf "$work"; mkdir -p "$work"
for m in des snes openai-es sep-cma-es; do
  flags="--preset fig8-evolution --meta-optimizer $m --population 16 --functions 2 --probe 200 --eval-tasks 2 --quiet --no-plot --checkpoint-every 5"
  "$occam" run $flags --steps 20 --threads 1 --out "$work/$m-t1" > /dev/null
  "$occam" run $flags --steps 20 --threads 2 --out "$work/$m-t2" > /dev/null
  cmp "$work/$m-t1/probe.csv" "$work/$m-t2/probe.csv"
  cmp "$work/$m-t1/log.csv" "$work/$m-t2/log.csv"
  # --resume can lengthen only the last function: resume a one-function run.
  "$occam" run $flags --functions 1 --steps 20 --out "$work/$m-one" > /dev/null
  "$occam" run $flags --functions 1 --steps 12 --threads 2 --out "$work/$m-part" > /dev/null
  "$occam" run --resume "$work/$m-part" --steps 20 --quiet --no-plot > /dev/null
  cmp "$work/$m-one/probe.csv" "$work/$m-part/probe.csv"
  cmp "$work/$m-one/log.csv" "$work/$m-part/log.csv"
done
# A learner that is not linear in its labels (trained by SGD inside every member's score).
flags="--preset fig7-random --meta-optimizer des --population 8 --steps 3 --eval-tasks 2 --probe 100 --quiet --no-plot"
"$occam" run $flags --threads 1 --out "$work/mlp-t1" > /dev/null
"$occam" run $flags --threads 2 --out "$work/mlp-t2" > /dev/null
cmp "$work/mlp-t1/probe.csv" "$work/mlp-t2/probe.csv"
echo "evolution strategies: thread count and resume give identical runs"
