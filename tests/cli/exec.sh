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
expect_error "has no \"test_y\"" 'exec:cat > /dev/null; echo "{\"y\": []}"'
expect_error "must be a JSON object" 'exec:cat > /dev/null; echo hello'
expect_error "no answer after 0\.[0-9] s (time-out 0.3 s; killed)" 'exec:sleep 5' --exec-timeout 0.3
expect_error "not found\|status 127" 'exec:/no/such/program'
expect_error "gives no gradients" "exec:python3 $script" --meta-optimizer adam
# The reply is one JSON object and nothing else. Each of these answers the 20 test points of a
# training step (the old reader took them, and failed only when the evaluation asked for 40).
zeros="0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0"  # 19: with one more, the 20 test points
expect_error "text after the JSON object" "exec:cat > /dev/null; echo '{\"test_y\": [1,$zeros]} trailing'"
expect_error "the key \"test_y\" appears twice" "exec:cat > /dev/null; echo '{\"test_y\": [1,$zeros], \"test_y\": [2,$zeros]}'"
expect_error "hex numbers are not JSON" "exec:cat > /dev/null; echo '{\"test_y\": [0x1p3,$zeros]}'"
# It answered, but left a job holding its stdout: said so, not "no answer".
expect_error "exited, but a process it started still holds its stdout open" \
  "exec:cat > /dev/null; echo '{\"test_y\": [1,$zeros]}'; sleep 30 &" --exec-timeout 1
expect_error "604800" 'exec:true' --exec-timeout 1e300
# occam stopped by SIGTERM, SIGINT (Ctrl-C) or SIGKILL takes its learners' processes with it. The sleep's
# own arguments carry this run's marker (a unique duration), so pgrep finds only its processes.
orphans() {  # orphans SIGNAL DIGIT
  m="300.$$$2"
  # env: a background job of a non-interactive shell starts with SIGINT ignored; restore it
  # (SIGKILL cannot be ignored, nor its action set).
  restore="--default-signal=$1"
  [ "$1" = KILL ] && restore=""
  env $restore "$occam" $base --learner "exec:sleep $m; :" --exec-timeout 600 --out "$work/orphans" \
    > "$work/orphans.txt" 2>&1 &
  pid=$!
  i=0
  while ! pgrep -f "^sleep $m" > /dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  pgrep -f "^sleep $m" > /dev/null || fail "SIG$1: the learner never started: $(cat "$work/orphans.txt")"
  kill -"$1" $pid
  i=0
  while kill -0 $pid 2> /dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  if kill -0 $pid 2> /dev/null; then fail "SIG$1: occam still runs"; kill -9 $pid; fi
  wait $pid
  sleep 0.5  # the kernel delivers the kills; init reaps
  left=$(pgrep -f "sleep $m")
  if [ -n "$left" ]; then
    fail "SIG$1: its learner still runs: $(ps -o pid=,pgid=,args= -p "$(echo $left | tr ' ' ,)" | tr '\n' ';')"
    kill -9 $left
  fi
}
orphans TERM 1
orphans INT 2
orphans KILL 3  # no handler sees SIGKILL: each supervisor sees its lifeline close
echo "exec learner: $fails failures"
[ $fails -eq 0 ]
