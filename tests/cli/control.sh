#!/bin/sh
# --control runs the experiment again without the learner's term into DIR/control: its own run
# directory, identical to a plain run with --mse-weight 0; summary.json holds the control and the
# test-MSE ratio; a resume reuses a finished control and finishes an interrupted one identically.
set -u
occam="$1"; work="$2"
rm -rf "$work"; mkdir -p "$work"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
flags="--preset fig2c-kernel --meta-hidden 32 --steps 12 --probe 200 --eval-tasks 2 --quiet --no-plot --checkpoint-every 5"
"$occam" run $flags --control --out "$work/run" > "$work/out.txt" || fail "the run with --control failed"
grep -q "control (no learner term" "$work/out.txt" || fail "no control block printed"
"$occam" run $flags --mse-weight 0 --out "$work/plain" > /dev/null || fail "the plain --mse-weight 0 run failed"
cmp -s "$work/run/control/probe.csv" "$work/plain/probe.csv" || fail "the control differs from a run with --mse-weight 0"
cmp -s "$work/run/control/log.csv" "$work/plain/log.csv" || fail "the control's log differs from a run with --mse-weight 0"
grep -q '"control_mse_ratio"' "$work/run/summary.json" || fail "summary.json has no control_mse_ratio"
grep -q '"control": {' "$work/run/summary.json" || fail "summary.json has no control summary"
"$occam" check "$work/run" > /dev/null || fail "occam check rejected the run"
cp "$work/run/summary.json" "$work/summary_before.json"
# An interrupted control: only its first checkpoint is left; the resume finishes it identically.
rm -f "$work/run/control/summary.json" "$work/run/control/probe.csv"
"$occam" run --resume "$work/run" --quiet --no-plot > /dev/null || fail "resuming with an unfinished control failed"
cmp -s "$work/run/summary.json" "$work/summary_before.json" || fail "the resumed run's summary differs"
cmp -s "$work/run/control/probe.csv" "$work/plain/probe.csv" || fail "the resumed control differs"
# --control without a learner term is refused in one line.
if "$occam" run $flags --control --mse-weight 0 --out "$work/bad" 2> "$work/err.txt" > /dev/null; then
  fail "--control --mse-weight 0 was accepted"
elif [ "$(wc -l < "$work/err.txt")" -ne 1 ] || ! grep -q -- "--control" "$work/err.txt"; then
  fail "--control --mse-weight 0 said: $(cat "$work/err.txt")"
fi
# analyse keeps what it cannot recompute: the control and its ratios.
"$occam" analyse "$work/run" > /dev/null || fail "analyse failed"
grep -q '"control_mse_ratio"' "$work/run/summary.json" || fail "analyse dropped control_mse_ratio"
echo "control: $fails failures"
[ $fails -eq 0 ]
