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

# What a resume refuses: anything it cannot continue exactly. Each is one line naming the cause.
fails=0
refuse() {  # refuse "words" occam-args...
  want="$1"; shift
  if "$occam" "$@" > /dev/null 2> "$work/err.txt"; then echo "FAIL: resumed: $*"; fails=$((fails + 1)); return; fi
  grep -q -- "$want" "$work/err.txt" || { echo "FAIL: $* said: $(cat "$work/err.txt") (wanted: $want)"; fails=$((fails + 1)); }
  [ "$(wc -l < "$work/err.txt")" -eq 1 ] || { echo "FAIL: not one line: $(cat "$work/err.txt")"; fails=$((fails + 1)); }
}
fresh_part() { rm -rf "$work/p"; "$occam" run $flags --steps 10 --out "$work/p" > /dev/null; }
fresh_part
refuse "below the 10 steps" run --resume "$work/p" --steps 5 --quiet --no-plot
refuse "lr cannot be given" run --resume "$work/p" --lr 0.5 --quiet --no-plot
sed 's/"lr": [0-9.e-]*/"lr": 0.02/' "$work/p/config.json" > "$work/c.json" && mv "$work/c.json" "$work/p/config.json"
refuse "config.json's lr is 0.02" run --resume "$work/p" --quiet --no-plot
fresh_part
sed 's/"seed": 1/"seed": 2/' "$work/p/config.json" > "$work/c.json" && mv "$work/c.json" "$work/p/config.json"
refuse "config.json's seed is 2" run --resume "$work/p" --quiet --no-plot
fresh_part
sed 's/"step":10/"step":9/' "$work/p/checkpoint.json" > "$work/c.json" && mv "$work/c.json" "$work/p/checkpoint.json"
refuse "checksum" run --resume "$work/p" --quiet --no-plot
fresh_part
head -c 100 "$work/p/checkpoint.json" > "$work/c.json" && mv "$work/c.json" "$work/p/checkpoint.json"
refuse "not valid JSON" run --resume "$work/p" --quiet --no-plot
fresh_part
head -c -5 "$work/p/log.csv" > "$work/c.csv" && mv "$work/c.csv" "$work/p/log.csv"
refuse "the log was cut or edited" run --resume "$work/p" --steps 20 --quiet --no-plot
fresh_part
sed '5d' "$work/p/log.csv" > "$work/c.csv" && mv "$work/c.csv" "$work/p/log.csv"
refuse "line 5 is not the complete row of step 3" run --resume "$work/p" --steps 20 --quiet --no-plot
# A finished function cannot be trained longer: the result would not be a fresh run's.
rm -rf "$work/two"; "$occam" run $flags --functions 2 --steps 6 --out "$work/two" > /dev/null
refuse "already trained with 6 steps" run --resume "$work/two" --steps 8 --quiet --no-plot
# An input file replaced between the kill and the resume.
i=0; : > "$work/data.csv"; while [ $i -lt 40 ]; do echo "$i,$((i * 3 % 7)),$((i % 5))" >> "$work/data.csv"; i=$((i + 1)); done
rm -rf "$work/file"; "$occam" run --inputs file:"$work/data.csv" --learner ridge --train 6 --test 12 --steps 6 --probe 50 --eval-tasks 2 \
  --quiet --no-plot --out "$work/file" > /dev/null
echo "40,1,1" >> "$work/data.csv"
refuse "changed since the run started" run --resume "$work/file" --quiet --no-plot
# IDX image files changed between the kill and the resume (30 images of 4 x 4, classes 0 and 1).
mkdir -p "$work/idx"
idx() {  # idx SHIFT: the images file, its pixels shifted by SHIFT, and the labels file
  { printf '\000\000\010\003\000\000\000\036\000\000\000\004\000\000\000\004'
    i=0; while [ $i -lt 480 ]; do printf "\\$(printf %o $(((i * 37 + $1) % 256)))"; i=$((i + 1)); done
  } > "$work/idx/train-images-idx3-ubyte"
  { printf '\000\000\010\001\000\000\000\036'
    i=0; while [ $i -lt 30 ]; do printf "\\$(printf %o $((i % 2)))"; i=$((i + 1)); done
  } > "$work/idx/train-labels-idx1-ubyte"
}
idx 0
rm -rf "$work/images"
"$occam" run --inputs idx:"$work/idx" --learner ridge --train 6 --test 12 --steps 6 --probe 20 --eval-tasks 2 \
  --quiet --no-plot --out "$work/images" > /dev/null 2> "$work/err.txt" || fail "the IDX run failed: $(cat "$work/err.txt")"
"$occam" run --resume "$work/images" --quiet --no-plot > /dev/null 2> "$work/err.txt" \
  || fail "resuming with the same IDX files failed: $(cat "$work/err.txt")"
idx 1
refuse "data of --inputs idx:.* changed since the run started" run --resume "$work/images" --quiet --no-plot
echo "resume refusals: $fails failures"
[ $fails -eq 0 ]
