#!/bin/sh
# Under mpirun the processes share the work, never the results: a reproduce, a sweep and an
# evolution strategy split over 2 or 3 processes (and threads) write the same bytes as one
# process; a resumed split run too; a run that fails on another process is reported by process
# 0 with its error, after the other runs finished.
set -u
occam="$1"; work="$2"; mpirun="$3"
rm -rf "$work"; mkdir -p "$work"
. "$(dirname "$0")/lib.sh"
mpi() { np="$1"; shift; "$mpirun" --oversubscribe --allow-run-as-root -np "$np" "$occam" "$@"; }
same() {  # same WHAT DIR1 DIR2 FILES...: the files are byte-identical
  what="$1"; a="$2"; b="$3"; shift 3
  for f in "$@"; do cmp -s "$a/$f" "$b/$f" || fail "$what: $f differs from one process's"; done
}

# 1. occam reproduce: the processes take the runs; the first writes the one table.
rep="reproduce --presets fig2b-ridge --seeds 1,2,3 --threads 1 --no-plot"
"$occam" $rep --out "$work/rep1" > /dev/null 2>&1 || fail "the serial reproduce failed"
mpi 2 $rep --out "$work/rep2" > "$work/out.txt" 2>&1 || fail "the reproduce under mpirun failed: $(cat "$work/out.txt")"
grep -v "s of run time" "$work/rep1/RESULTS.md" > "$work/t1.txt"
grep -v "s of run time" "$work/rep2/RESULTS.md" > "$work/t2.txt" 2> /dev/null
cmp -s "$work/t1.txt" "$work/t2.txt" || fail "the reproduce table under mpirun differs"
for s in 1 2 3; do same "reproduce" "$work/rep1/fig2b-ridge/seed$s" "$work/rep2/fig2b-ridge/seed$s" summary.json probe.csv; done
grep -q "in each of 2 MPI processes" "$work/rep2/RESULTS.md" || fail "the table does not say it ran on 2 processes"
mpi 2 $rep --out "$work/rep3" --shard 1/2 > /dev/null 2> "$work/err.txt" && fail "--shard under mpirun was accepted"
grep -q "are for separate processes" "$work/err.txt" || fail "--shard under mpirun said: $(cat "$work/err.txt")"

# 2. A sweep with controls: the processes take its runs.
sweep="run --inputs disk --learner ridge --train 6 --test 12 --steps 4 --probe 50 --eval-tasks 2 --quiet --no-plot --control"
"$occam" $sweep --sweep ridge=0.001,0.1,1 --out "$work/sweep1" > "$work/sweep1.txt" || fail "the serial sweep failed"
mpi 2 $sweep --sweep ridge=0.001,0.1,1 --out "$work/sweep2" > "$work/sweep2.txt" 2> "$work/err.txt" \
  || fail "the sweep under mpirun failed: $(cat "$work/err.txt")"
same "sweep" "$work/sweep1" "$work/sweep2" summary.json ridge=0.1/probe.csv ridge=1/control/summary.json
[ "$(grep -vc "^results:" "$work/sweep2.txt")" -eq "$(grep -vc "^results:" "$work/sweep1.txt")" ] \
  || fail "the sweep under mpirun printed more or less than one process"

# 3. An evolution strategy's population split over 2 processes, and over 3 with 2 threads each.
es="run --preset fig8-evolution --steps 3 --quiet --no-plot --control"
"$occam" $es --out "$work/es1" > "$work/es1.txt" || fail "the serial evolution strategy failed"
mpi 2 $es --out "$work/es2" > "$work/es2.txt" 2> "$work/err.txt" || fail "the split population failed: $(cat "$work/err.txt")"
mpi 3 $es --threads 2 --out "$work/es3" > /dev/null 2> "$work/err.txt" || fail "3 processes failed: $(cat "$work/err.txt")"
for d in es2 es3; do
  same "$d" "$work/es1" "$work/$d" summary.json probe.csv checkpoint.json control/summary.json control/checkpoint.json
  cut -d, -f1-7 "$work/es1/log.csv" > "$work/l1.txt"; cut -d, -f1-7 "$work/$d/log.csv" > "$work/l2.txt"
  cmp -s "$work/l1.txt" "$work/l2.txt" || fail "$d: log.csv's losses differ"
done
# Resumed under mpirun (the experiment from its checkpoint, the finished control skipped).
cp -r "$work/es1" "$work/es4"; rm "$work/es4/summary.json" "$work/es4/probe.csv"
mpi 2 run --resume "$work/es4" --quiet --no-plot > /dev/null 2> "$work/err.txt" \
  || fail "resuming under mpirun failed: $(cat "$work/err.txt")"
same "resumed" "$work/es1" "$work/es4" summary.json probe.csv checkpoint.json

# 4. A run that fails on process 1 (its directory is a user's): process 0 names it, the others ran.
rm -rf "$work/sweep2/ridge=0.1"; mkdir "$work/sweep2/ridge=0.1"; echo "mine" > "$work/sweep2/ridge=0.1/notes.txt"
rm "$work/sweep2/ridge=1/summary.json"
mpi 2 run --resume "$work/sweep2" --quiet --no-plot > /dev/null 2> "$work/err.txt" && fail "a failed sweep run exited 0"
grep -q "process 0 of 2): error: sweep run ridge=0.1: .*occam did not make it" "$work/err.txt" \
  || fail "the failure on process 1 was not reported: $(cat "$work/err.txt")"
[ -f "$work/sweep2/ridge=1/summary.json" ] || fail "the other runs did not finish"
[ "$(cat "$work/sweep2/ridge=0.1/notes.txt")" = "mine" ] || fail "a user's directory was touched"

echo "mpi: $fails failures"
[ $fails -eq 0 ]
