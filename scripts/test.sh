#!/usr/bin/env bash
# rswap's test suite: host unit tests, then the guest tests on the patched
# kernel. Installs what it needs. Ends with "N passed, N failed".
# Usage: scripts/test.sh [guest test names...]   (default: all)
source "$(dirname "$0")/lib.sh"

GUEST_TESTS=(bad_input dram_basic dram_overflow load_cycle lost_page zswap_conflict)
[ $# -gt 0 ] && GUEST_TESTS=("$@")
passed=0
failed=0
failures=()
result() { # result <name> <PASS|FAIL> [detail]
	if [ "$2" = PASS ]; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		failures+=("$1: ${*:3}")
	fi
	echo "RESULT $1 $2 ${*:3}"
}

# A build step that dies still ends with the summary line.
summary_done=
trap '[ -n "$summary_done" ] || { echo "FAILED: build or setup (see the log above)"; echo "$passed passed, $((failed + 1)) failed"; }' EXIT

rswap_deps
mkdir -p "$RSWAP_WORK"
log "host: cargo test"
if (cd "$RSWAP_ROOT" && cargo test -q --workspace --locked 2>&1) | tee "$RSWAP_WORK/cargo-test.log" | tail -5; then
	n=$(awk '/^test result:/{s+=$4} END{print s+0}' "$RSWAP_WORK/cargo-test.log")
	result host-unit-tests PASS "$n unit tests"
else
	result host-unit-tests FAIL "see $RSWAP_WORK/cargo-test.log"
fi

rswap_prepare
# All guest tests run in one boot, in order; each checks the kernel log.
run=$(IFS=,; echo "${GUEST_TESTS[*]}")
log "guest: booting for: $run"
t0=$(date +%s)
console=$(rswap_run_guest "$run" 2400)
log "guest: finished in $(($(date +%s) - t0)) s (console: $console)"
grep -E '^\[[a-z_]+\] |^pagewalker: result' "$console" | sed 's/^/  /' || true
splat=$(grep -E 'BUG:|WARNING:|Oops|soft lockup|Kernel panic|lockdep|possible circular' "$console" | head -3 || true)
for t in "${GUEST_TESTS[@]}"; do
	line=$(grep -a "^RSWAP-RESULT $t " "$console" | tail -1 || true)
	if [ -z "$line" ]; then
		result "$t" FAIL "no result (guest crashed or timed out; see $console)"
	elif [ -n "$splat" ]; then
		result "$t" FAIL "kernel log: $splat"
	else
		set -- $line
		result "$t" "$3" "${*:4}"
	fi
done

for f in "${failures[@]}"; do echo "FAILED: $f"; done
summary_done=1
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
