#!/usr/bin/env bash
# rswap's test suite: host unit tests, then the guest tests on the patched
# kernel. Installs what it needs. Ends with "N passed, N failed".
# Usage: scripts/test.sh [guest test names...]   (default: all)
source "$(dirname "$0")/lib.sh"

GUEST_TESTS=(bad_input dram_basic dram_overflow load_cycle zswap_conflict)
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

rswap_deps
mkdir -p "$RSWAP_WORK"

log "host: cargo test"
if (cd "$RSWAP_ROOT" && cargo test -q --workspace --locked 2>&1) | tee "$RSWAP_WORK/cargo-test.log" | tail -5; then
	n=$(awk '/^test result:/{s+=$4} END{print s+0}' "$RSWAP_WORK/cargo-test.log")
	result host-unit-tests PASS "$n unit tests"
else
	result host-unit-tests FAIL "see $RSWAP_WORK/cargo-test.log"
fi

kdir=$(rswap_kernel)
mods=$(rswap_modules "$kdir")
bins=$(rswap_userspace)
initrd=$(rswap_initramfs "$mods" "$bins")

# All guest tests run in one boot, in order; each checks the kernel log.
run=$(IFS=,; echo "${GUEST_TESTS[*]}")
console=$RSWAP_WORK/guest-tests.log
log "guest: booting for: $run (console: $console)"
t0=$(date +%s)
rswap_boot "$kdir" "$initrd" "$console" 2400 "rswap.run=$run" || true
log "guest: finished in $(($(date +%s) - t0)) s"
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
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
