#!/bin/sh
# A sweep runs once per value, each run identical to the same single run, for any --threads;
# a sweep can be resumed; bad sweeps are one-line errors.
set -u
occam="$1"; work="$2"
rm -rf "$work"; mkdir -p "$work"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
base="run --inputs disk --learner ridge --train 6 --test 12 --steps 4 --probe 50 --eval-tasks 2 --quiet --no-plot --force"
"$occam" $base --sweep ridge=0.001,0.1 --threads 2 --out "$work/sweep" > /dev/null || fail "the sweep did not run"
"$occam" $base --ridge 0.1 --out "$work/single" > /dev/null || fail "the single run did not run"
cmp -s "$work/sweep/ridge=0.1/probe.csv" "$work/single/probe.csv" || fail "sweep run ridge=0.1 differs from the single run"
grep -q '"ridge": 0.1' "$work/sweep/ridge=0.1/config.json" || fail "the run's config.json does not hold ridge 0.1"
grep -q '"ridge=0.001"' "$work/sweep/summary.json" || fail "summary.json lacks the run ridge=0.001"
# Resume: a finished run is kept, a deleted one is run again and comes out the same.
cp "$work/sweep/ridge=0.1/probe.csv" "$work/probe_before.csv"
rm -rf "$work/sweep/ridge=0.1"
"$occam" run --resume "$work/sweep" --quiet --no-plot > /dev/null || fail "resuming the sweep failed"
cmp -s "$work/sweep/ridge=0.1/probe.csv" "$work/probe_before.csv" || fail "the resumed sweep run differs"
# A run killed during its control has the experiment's summary.json without the control's part:
# resuming continues that control, it does not keep the half summary.
"$occam" $base --sweep ridge=0.001,0.1 --control --out "$work/ctl" > /dev/null || fail "the sweep with controls did not run"
cp "$work/ctl/ridge=0.1/summary.json" "$work/summary_before.json"
cp "$work/ctl/ridge=0.1/control/summary.json" "$work/ctl/ridge=0.1/summary.json"
rm "$work/ctl/ridge=0.1/control/summary.json" "$work/ctl/summary.json"
"$occam" run --resume "$work/ctl" --quiet --no-plot > /dev/null || fail "resuming the sweep with controls failed"
cmp -s "$work/ctl/ridge=0.1/summary.json" "$work/summary_before.json" \
  || fail "a run stopped during its control was kept half done, or continued differently"
for bad in "nope=1,2" "ridge=abc" "ridge" "meta_depth=1.5"; do
  if "$occam" $base --sweep "$bad" --out "$work/bad" > /dev/null 2> "$work/err.txt"; then
    fail "--sweep $bad succeeded"
  elif [ "$(wc -l < "$work/err.txt")" -ne 1 ] || ! grep -q -- "--sweep" "$work/err.txt"; then
    fail "--sweep $bad said: $(cat "$work/err.txt")"
  fi
done
echo "sweep: $fails failures"
[ $fails -eq 0 ]
