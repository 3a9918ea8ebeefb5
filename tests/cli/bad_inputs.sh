#!/bin/sh
# Bad input files and flags get a one-line error naming the problem and a non-zero exit.
set -u
occam="$1"; work="$2"
rm -rf "$work"; mkdir -p "$work"
fails=0
expect_error() {  # expect_error "what the message must contain" occam-args...
  want="$1"; shift
  if "$occam" "$@" > "$work/out.txt" 2> "$work/err.txt"; then
    echo "FAIL: succeeded: occam $*"; fails=$((fails + 1)); return
  fi
  if ! grep -q -- "$want" "$work/err.txt"; then
    echo "FAIL: occam $* said: $(cat "$work/err.txt") (wanted: $want)"; fails=$((fails + 1)); return
  fi
  if [ "$(wc -l < "$work/err.txt")" -ne 1 ]; then
    echo "FAIL: more than one line: $(cat "$work/err.txt")"; fails=$((fails + 1))
  fi
}
run="run --steps 2 --quiet --no-plot --force --out $work/run"
i=0; while [ $i -lt 12 ]; do echo "$i,0.5,-0.25"; i=$((i + 1)); done > "$work/good.csv"
{ echo "1,2,3"; echo "1,2"; } > "$work/ragged.csv"
i=0; while [ $i -lt 12 ]; do echo "$i,abc"; i=$((i + 1)); done > "$work/text.csv"
i=0; while [ $i -lt 12 ]; do echo "$i,nan"; i=$((i + 1)); done > "$work/nan.csv"
i=0; while [ $i -lt 5 ]; do echo "$i,1"; i=$((i + 1)); done > "$work/short.csv"
expect_error "cannot be read\|does not exist\|cannot open\|no such" $run --inputs "file:$work/missing.csv"
expect_error "line 2 has 2 values, expected 3" $run --inputs "file:$work/ragged.csv"
expect_error "is not a number" $run --inputs "file:$work/text.csv"
expect_error "non-finite" $run --inputs "file:$work/nan.csv"
expect_error "need at least 10" $run --inputs "file:$work/short.csv"
expect_error "unknown preset" $run --preset nope
expect_error "--learner must be" $run --learner svm
expect_error "does not exist" $run --no-such-flag
expect_error "--features must be" $run --features abc
expect_error "--fused-steps needs --inner-optimizer sgd" $run --learner mlp --inner-optimizer adam --fused-steps
if ! "$occam" $run --inputs "file:$work/good.csv" --learner ridge --train 4 --test 6 --probe 20 > /dev/null 2>&1; then
  echo "FAIL: a good CSV file did not run"; fails=$((fails + 1))
fi
echo "bad inputs: $fails failures"
[ $fails -eq 0 ]
