#!/bin/sh
# The exec learner: a ridge-regression script gives the same meta-training as the built-in
# ridge learner; broken programs give one clear line that quotes their stderr.
set -u
occam="$1"; work="$2"; script="$3"
rm -rf "$work"; mkdir -p "$work"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
base="run --inputs sphere:3 --meta-hidden 8 --meta-output identity --meta-optimizer des --population 6 --steps 3 --train 8 --test 20 --probe 40 --eval-tasks 2 --divergence variance --threads 2 --quiet --no-plot --force"
"$occam" $base --learner ridge --out "$work/builtin" > /dev/null || fail "built-in ridge did not run"
"$occam" $base --learner "exec:python3 $script 0.001" --out "$work/exec" > "$work/out.txt" 2>&1 || fail "exec ridge did not run: $(cat "$work/out.txt")"
# Same losses to 1e-9 (the script solves in another order: rounding differs).
paste -d, "$work/builtin/log.csv" "$work/exec/log.csv" | awk -F, 'NR > 1 { d = $3 - $11; if (d < 0) d = -d; if (d > 1e-9 * ($3 > 0 ? $3 : -$3) + 1e-12) bad = 1 } END { exit bad }' \
  || fail "exec ridge's losses differ from the built-in ridge: $(cat "$work/exec/log.csv")"
expect_error() {  # expect_error "text the one-line message must contain" learner [flags...]
  want="$1"; learner="$2"; shift 2
  if "$occam" $base --learner "$learner" "$@" --out "$work/bad" > /dev/null 2> "$work/err.txt"; then
    fail "succeeded: $learner"; return
  fi
  grep -q -- "$want" "$work/err.txt" || fail "$learner said: $(cat "$work/err.txt") (wanted: $want)"
  [ "$(wc -l < "$work/err.txt")" -eq 1 ] || fail "more than one line: $(cat "$work/err.txt")"
}
expect_error "exited with status 3.*its stderr: broken model" 'exec:echo broken model >&2; exit 3'
expect_error "returned 2 predictions for 20 test points" 'exec:cat > /dev/null; echo "{\"test_y\": [1, 2]}"'
expect_error "non-finite" 'exec:cat > /dev/null; echo "{\"test_y\": [nan]}"'
expect_error "has no \"test_y\"" 'exec:cat > /dev/null; echo hello'
expect_error "no answer within 0.3 s" 'exec:sleep 5' --exec-timeout 0.3
expect_error "not found\|status 127" 'exec:/no/such/program'
expect_error "gives no gradients" "exec:python3 $script" --meta-optimizer adam
echo "exec learner: $fails failures"
[ $fails -eq 0 ]
