#!/bin/sh
# occam reproduce goes on where it stopped: finished runs are kept, interrupted ones continue
# from their checkpoints, damaged or edited ones run again, and every way of stopping it (a
# kill at any moment, a damaged summary or checkpoint, a kill during the control) ends in the
# same files as one uninterrupted reproduce. --force starts over; a run directory is not
# taken for a reproduce directory; two processes never share one, except shards, whose
# --collect gives the one process's table and names what failed or is missing.
set -u
occam="$1"; work="$2"
rm -rf "$work"; mkdir -p "$work"
. "$(dirname "$0")/lib.sh"
# The runs' own files, which must not depend on how often the reproduce was stopped (log.csv's
# time column and the table's footer with its run time do).
results() {
  for f in seed1/summary.json seed1/probe.csv seed1/control/summary.json seed2/summary.json seed2/probe.csv; do
    cat "$1/fig2b-ridge/$f" 2> /dev/null || echo "missing $f"
  done
  grep -v "s of run time\|runs collected from" "$1/RESULTS.md" 2> /dev/null || echo "missing RESULTS.md"
}
rep() {  # rep DIR [flags...]: the reproduce under test, quiet; its stderr in $work/err.txt
  out="$1"; shift
  "$occam" reproduce --presets fig2b-ridge --seeds 1,2 --threads 1 --no-plot --out "$out" "$@" > /dev/null 2> "$work/err.txt"
}
same_as_reference() {  # same_as_reference WHAT: the results in $work/rep equal the uninterrupted ones
  results "$work/rep" > "$work/got.txt"
  cmp -s "$work/ref.txt" "$work/got.txt" || fail "$1: the results differ from an uninterrupted reproduce"
}

rep "$work/ref" || fail "the reference reproduce failed: $(cat "$work/err.txt")"
results "$work/ref" > "$work/ref.txt"
grep -q "missing" "$work/ref.txt" && fail "the reference lacks files: $(grep missing "$work/ref.txt")"

# 1. Run again: both runs kept, nothing recomputed, the same table.
cp -r "$work/ref" "$work/rep"
rep "$work/rep" || fail "continuing a finished reproduce failed: $(cat "$work/err.txt")"
[ "$(grep -c " kept " "$work/err.txt")" -eq 2 ] || fail "finished runs were not kept: $(cat "$work/err.txt")"
grep -q "2 finished by an earlier reproduce and kept" "$work/rep/RESULTS.md" || fail "the table does not say what it kept"
same_as_reference "kept"

# 2. A missing summary, a truncated one, one killed during its control (the experiment's part
# written, the control's not): continued from the checkpoints.
rm "$work/rep/fig2b-ridge/seed1/summary.json"
head -c 40 "$work/ref/fig2b-ridge/seed2/summary.json" > "$work/rep/fig2b-ridge/seed2/summary.json"
rep "$work/rep" || fail "continuing damaged summaries failed: $(cat "$work/err.txt")"
[ "$(grep -c " continued " "$work/err.txt")" -eq 2 ] || fail "damaged summaries were not continued: $(cat "$work/err.txt")"
same_as_reference "missing and truncated summary.json"
cp "$work/ref/fig2b-ridge/seed1/control/summary.json" "$work/rep/fig2b-ridge/seed1/summary.json"
rm "$work/rep/fig2b-ridge/seed1/control/summary.json"
rep "$work/rep" || fail "continuing a run killed in its control failed: $(cat "$work/err.txt")"
grep -q "seed 1 continued" "$work/err.txt" || fail "a summary without its control's part was kept: $(cat "$work/err.txt")"
same_as_reference "killed during the control"

# 3. A damaged checkpoint runs afresh (saying why); edited settings run afresh.
rm "$work/rep/fig2b-ridge/seed1/summary.json"
head -c 100 "$work/ref/fig2b-ridge/seed1/checkpoint.json" > "$work/rep/fig2b-ridge/seed1/checkpoint.json"
sed 's/"seed": 2/"seed": 7/' "$work/ref/fig2b-ridge/seed2/config.json" > "$work/rep/fig2b-ridge/seed2/config.json"
rep "$work/rep" || fail "a damaged checkpoint and an edited config failed: $(cat "$work/err.txt")"
grep -q "seed 1 ran afresh (.*checkpoint.json" "$work/err.txt" || fail "a damaged checkpoint: $(cat "$work/err.txt")"
grep -q "seed 2 ran " "$work/err.txt" || fail "an edited config.json was not run again: $(cat "$work/err.txt")"
same_as_reference "damaged checkpoint, edited config"

# 4. Killed at several moments, then continued: always the uninterrupted results.
for delay in 0.2 0.7 1.5 3; do
  "$occam" reproduce --presets fig2b-ridge --seeds 1,2 --threads 1 --no-plot --out "$work/rep" --force > /dev/null 2>&1 &
  pid=$!
  sleep $delay
  kill -9 $pid 2> /dev/null; wait $pid 2> /dev/null
  rep "$work/rep" || fail "continuing after a kill at ${delay} s failed: $(cat "$work/err.txt")"
  same_as_reference "killed at ${delay} s"
done

# 5. --force starts over; a run directory is not a reproduce directory; one process at a time.
rep "$work/rep" --force || fail "--force failed: $(cat "$work/err.txt")"
grep -q "kept\|continued" "$work/err.txt" && fail "--force kept runs: $(cat "$work/err.txt")"
same_as_reference "--force"
"$occam" run --inputs disk --learner ridge --train 6 --test 12 --steps 2 --probe 20 --eval-tasks 2 --quiet --no-plot \
  --out "$work/a-run" > /dev/null || fail "the run did not run"
expect_error "is an occam run directory, not a reproduce directory" \
  "$occam" reproduce --presets fig2b-ridge --seeds 1 --no-plot --out "$work/a-run"
"$occam" reproduce --presets fig2b-ridge --seeds 1,2,3 --threads 1 --no-plot --out "$work/busy" > /dev/null 2>&1 &
pid=$!
n=0; while [ ! -f "$work/busy/.occam" ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
expect_error "in use by another occam process" \
  "$occam" reproduce --presets fig2b-ridge --seeds 1 --no-plot --out "$work/busy"
kill -9 $pid 2> /dev/null; wait $pid 2> /dev/null

# 6. Two shards at once into one directory, then --collect: the one process's table.
rep "$work/shards" --shard 1/2 & pid=$!
rep2() { "$occam" reproduce --presets fig2b-ridge --seeds 1,2 --threads 1 --no-plot --out "$work/shards" --shard 2/2 \
  > "$work/out2.txt" 2> "$work/err2.txt"; }
rep2 || fail "shard 2/2 failed: $(cat "$work/err2.txt")"
wait $pid || fail "shard 1/2 failed"
[ ! -e "$work/shards/RESULTS.md" ] || fail "a shard wrote the table"
"$occam" reproduce --presets fig2b-ridge --seeds 1,2 --collect "$work/shards" > /dev/null 2> "$work/err.txt" \
  || fail "--collect of two finished shards failed: $(cat "$work/err.txt")"
results "$work/shards" > "$work/got.txt"
cmp -s "$work/ref.txt" "$work/got.txt" || fail "the shards' collected results differ from one reproduce's"
# A shard not run, a run that failed (its directory is a user's): the table says so, exit 1.
"$occam" reproduce --presets fig2b-ridge --seeds 1 --out "$work/half" --shard 2/2 > "$work/out.txt" 2>&1 \
  || fail "a shard with no runs failed: $(cat "$work/out.txt")"
grep -q "shard 2/2: 0 runs" "$work/out.txt" || fail "a shard with no runs said: $(cat "$work/out.txt")"
mkdir -p "$work/half/fig2b-ridge/seed1"; echo "mine" > "$work/half/fig2b-ridge/seed1/notes.txt"
"$occam" reproduce --presets fig2b-ridge --seeds 1,2,3 --threads 1 --no-plot --out "$work/half" --shard 1/2 \
  > /dev/null 2> "$work/err.txt" && fail "a shard with a failed run exited 0"
grep -q "seed 1 FAILED: .*occam did not make it" "$work/err.txt" || fail "the failed run: $(cat "$work/err.txt")"
grep -q "seed 3 ran" "$work/err.txt" || fail "the shard stopped at its failed run: $(cat "$work/err.txt")"
[ "$(cat "$work/half/fig2b-ridge/seed1/notes.txt")" = "mine" ] || fail "a shard touched a user's directory"
"$occam" reproduce --presets fig2b-ridge --seeds 1,2,3 --collect "$work/half" > /dev/null 2> "$work/err.txt" \
  && fail "--collect with a missing run exited 0"
grep -q "seed 1: failed: .*occam did not make it" "$work/err.txt" || fail "--collect hid a failure: $(cat "$work/err.txt")"
grep -q "seed 2: not finished" "$work/err.txt" || fail "--collect hid a missing run: $(cat "$work/err.txt")"
grep -q "| error, error, " "$work/half/RESULTS.md" || fail "the table does not mark the missing runs: $(cat "$work/half/RESULTS.md")"
grep -q "3 runs collected from .*, 2 of them not finished" "$work/half/RESULTS.md" || fail "the footer: $(tail -n 1 "$work/half/RESULTS.md")"
rs="reproduce --presets fig2b-ridge --seeds 1 --no-plot --out $work/flags"
expect_error "--shard 0/2: I must be from 1 to N" "$occam" $rs --shard 0/2
expect_error "--shard 3/2: I must be from 1 to N" "$occam" $rs --shard 3/2
expect_error "--shard must be I/N" "$occam" $rs --shard 2
expect_error "is not an integer" "$occam" $rs --shard 1/x
expect_error "would delete the other shards' runs" "$occam" $rs --shard 1/2 --force
expect_error "takes no --shard, --force or --out" "$occam" reproduce --collect "$work/shards" --shard 1/2
expect_error "is not a directory" "$occam" reproduce --collect "$work/nowhere"

echo "reproduce: $fails failures"
[ $fails -eq 0 ]
