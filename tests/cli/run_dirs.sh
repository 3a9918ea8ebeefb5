#!/bin/sh
# Run directories never lie: analyse and plot refuse a probe.csv that does not match config.json
# (no crash, summary.json untouched), sweep values cannot lead out of --out, --force replaces only
# occam's own directories, failed figures are reported, and two processes never share a directory.
set -u
occam="$1"; work="$2"
rm -rf "$work"; mkdir -p "$work"
. "$(dirname "$0")/lib.sh"
base="run --inputs disk --learner ridge --train 6 --test 12 --steps 4 --probe 50 --eval-tasks 2 --quiet --no-plot"
"$occam" $base --out "$work/good" > /dev/null || fail "the run did not run"

# 1-2. Damaged probe.csv (columns x0,x1,f1,g1): refused by analyse and plot; summary.json kept.
damaged() {  # damaged NAME WORDS COMMAND...: COMMAND turns good/probe.csv into NAME/probe.csv
  name="$1"; want="$2"; shift 2
  rm -rf "$work/$name"; cp -r "$work/good" "$work/$name"
  "$@" < "$work/good/probe.csv" > "$work/$name/probe.csv"
  expect_error "$want" "$occam" analyse "$work/$name"
  cmp -s "$work/good/summary.json" "$work/$name/summary.json" || fail "analyse changed summary.json of $name"
  if command -v gnuplot > /dev/null; then expect_error "$want" "$occam" plot "$work/$name"; fi
}
damaged header_only "0 rows, expected 50" head -n 1
damaged cut_at_line "30 rows, expected 50" head -n 31
damaged f1_renamed "columns after the inputs are h1,g1" sed '1s/f1/h1/'
damaged f1_missing "columns after the inputs are g1" cut -d, -f1,2,4
damaged x1_missing "2 dimensions" cut -d, -f1,3,4
damaged x0_missing "must start with x0" cut -d, -f2-
damaged not_a_number "is not a number" sed '5s/^[^,]*/abc/'
# analyse keeps what it cannot recompute: the measured test MSE.
cp -r "$work/good" "$work/reanalysed"
"$occam" analyse "$work/reanalysed" > /dev/null || fail "analyse of a good run failed"
grep -q '"test_mse"' "$work/reanalysed/summary.json" || fail "analyse dropped test_mse"
grep -q '"learner_description"' "$work/reanalysed/summary.json" || fail "analyse dropped learner_description"

# Sweep values are directory names inside --out: '/' and '..' are encoded, never followed.
printf 'a,b\n' > "$work/data.csv"
i=0; while [ $i -lt 30 ]; do printf '%s,%s\n' "$i" "$((i * 7 % 11))" >> "$work/data.csv"; i=$((i + 1)); done
mkdir -p "$work/sweeps"
"$occam" $base --sweep "inputs=file:/../..$work/data.csv,disk" --out "$work/sweeps/out" > /dev/null 2>&1 \
  || fail "the sweep with a path value did not run"
found=$(find "$work" -name config.json -path "*data.csv*" | grep -v "^$work/sweeps/out/inputs=" | head -n 1)
[ -z "$found" ] || fail "a sweep run was written outside --out: $found"
[ -d "$work/sweeps/out/inputs=file:%2F..%2F..$(echo "$work" | sed 's,/,%2F,g')%2Fdata.csv" ] || fail "no encoded sweep directory: $(ls "$work/sweeps/out")"
expect_error "lists ridge=0.1 twice" "$occam" $base --sweep ridge=0.1,0.1 --out "$work/sweeps/twice"

# --force replaces occam's directories only; a foreign directory and its files stay.
mkdir -p "$work/thesis"; echo "years of work" > "$work/thesis/chapter1.tex"
expect_error "occam did not make it" "$occam" $base --out "$work/thesis" --force
[ "$(cat "$work/thesis/chapter1.tex")" = "years of work" ] || fail "--force deleted a file occam never wrote"
expect_error "occam did not make it" "$occam" reproduce --presets fig2b-ridge --seeds 1 --out "$work/thesis" --force
"$occam" $base --out "$work/good" --force > /dev/null || fail "--force on occam's own run directory failed"

# Figures: gnuplot missing is one warning and exit 0; a failing gnuplot, or one that writes no
# whole figure, is an error after the results are written, and leaves no broken figure.
plotted="run --inputs disk --learner ridge --train 6 --test 12 --steps 2 --probe 50 --eval-tasks 2 --quiet --force"
mkdir -p "$work/bin"
PATH="$work/bin" "$occam" $plotted --out "$work/nognuplot" > /dev/null 2> "$work/err.txt" \
  || fail "a run without gnuplot failed: $(cat "$work/err.txt")"
grep -q "warning: gnuplot not found" "$work/err.txt" && [ "$(wc -l < "$work/err.txt")" -eq 1 ] \
  || fail "without gnuplot it said: $(cat "$work/err.txt")"
printf '#!/bin/sh\n[ "$1" = --version ] && exit 0\necho "cannot open font" >&2\nexit 1\n' > "$work/bin/gnuplot"
chmod +x "$work/bin/gnuplot"
expect_error "figures failed: gnuplot failed: cannot open font" env PATH="$work/bin:$PATH" "$occam" $plotted --out "$work/badplot"
[ -f "$work/badplot/summary.json" ] || fail "a failed figure lost the results"
printf '#!/bin/sh\n[ "$1" = --version ] && exit 0\nprintf "\\211PNG" > labelling.png\nexit 0\n' > "$work/bin/gnuplot"
expect_error "did not write .*labelling.png whole" env PATH="$work/bin:$PATH" "$occam" $plotted --out "$work/cutplot"
[ ! -e "$work/cutplot/labelling.png" ] || fail "a truncated figure was left behind"
rm -f "$work/bin/gnuplot"

# Two processes, one directory: the second is refused while the first runs.
"$occam" $base --steps 1000000 --checkpoint-every 1000000 --out "$work/busy" > /dev/null 2>&1 &
pid=$!
n=0; while [ ! -f "$work/busy/log.csv" ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
expect_error "in use by another occam process" "$occam" $base --out "$work/busy" --force
expect_error "in use by another occam process" "$occam" run --resume "$work/busy" --quiet
expect_error "in use by another occam process" "$occam" analyse "$work/busy"
kill -9 $pid; wait $pid 2> /dev/null
# The kernel released the dead process's lock: the run can be resumed (from step 0: it never
# reached a checkpoint) and ends as a fresh run with the same settings does.
"$occam" run --resume "$work/busy" --steps 4 --quiet --no-plot > /dev/null 2> "$work/err.txt" \
  || fail "resuming a run killed before its first checkpoint failed: $(cat "$work/err.txt")"
"$occam" $base --out "$work/fresh" > /dev/null
cmp -s "$work/busy/probe.csv" "$work/fresh/probe.csv" || fail "the run resumed from step 0 differs from a fresh run"
cmp -s "$work/busy/log.csv" "$work/fresh/log.csv" || fail "the log of the run resumed from step 0 differs"

echo "run directories: $fails failures"
[ $fails -eq 0 ]
