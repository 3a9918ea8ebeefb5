# Shared by the CLI test scripts (sourced): `fail` counts a failure, `expect_error` checks a
# command fails cleanly with one line. Needs $work (a scratch folder) and sets $fails.
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# expect_error "words" command...: exit status 1 or 2 (not a crash) and one line holding the words.
expect_error() {
  want="$1"; shift
  "$@" > "$work/out.txt" 2> "$work/err.txt"; rc=$?
  if [ $rc -eq 0 ]; then fail "succeeded: $*"; return; fi
  [ $rc -eq 1 ] || [ $rc -eq 2 ] || fail "exit status $rc (a crash?): $*"
  grep -q -- "$want" "$work/err.txt" || fail "$* said: $(cat "$work/err.txt") (wanted: $want)"
  [ "$(wc -l < "$work/err.txt")" -eq 1 ] || fail "not one line: $(cat "$work/err.txt")"
}
