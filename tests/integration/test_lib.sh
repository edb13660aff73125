# lib.sh itself: a failing test says where. A command that fails outside a
# `|| fail` (at top level, in a function, in a command substitution), fail()
# and a wait_for past its deadline each name the test's file and line.
. "$(dirname "$0")/lib.sh"

# expect_where NAME WANT SCRIPT: runs SCRIPT as its own test file NAME, after
# a first line that sources lib.sh (so SCRIPT's line 1 is the file's line 2);
# it must exit non-zero and print WANT on stderr.
expect_where() {
  printf '. "%s/lib.sh"\n%s\n' "$HERE" "$3" >"$T/$1"
  rc=0
  SITEGATE_BIN=$BIN bash "$T/$1" >/dev/null 2>"$T/$1.err" || rc=$?
  [ $rc -ne 0 ] || fail "$1 exited 0"
  grep -qF -- "$2" "$T/$1.err" || fail "$1: wanted \"$2\", got: $(cat "$T/$1.err")"
}

expect_where top.sh "FAIL top.sh:3: exit 1 from: false" 'true
false
echo not reached'
expect_where func.sh "FAIL func.sh:3: exit 1 from: false" 'f() {
false; }
g() { f; }
g'
expect_where func.sh "in f, called from func.sh:4" 'f() {
false; }
g() { f; }
g'
expect_where subst.sh "FAIL subst.sh:4: exit 1 from: n=\$(json 'j[\"a\"]' <<< '{}')" 'x=$(grep -c nothing /dev/null || true)
[ "$x" = 0 ]
n=$(json '"'"'j["a"]'"'"' <<< '"'"'{}'"'"')'
expect_where fail.sh "FAIL fail.sh:2: the reason" 'f() { fail "the reason"; }
true
f'
expect_where wait.sh "FAIL wait.sh:3: the moon rising did not happen within 1 s" 'true
wait_for 1 "the moon rising" false'
expect_where diag.sh "what the test knows" 'diagnose() { echo state; }
fail x'
echo "lib.sh: failures name their file and line"
