#!/usr/bin/env bash
# The full soak: tests/guest/lab_soak.sh for SOAK_S seconds (default 1200)
# in the lab, on the debug kernel the tests use. Mixed verified workloads in
# two cgroups with a link blackout in the middle; prints and records its
# figures (in $RSWAP_WORK/soak-results.txt). The default suite does not
# run it (CI time); `scripts/test.sh lab_soak` runs a 60 s version.
RSWAP_FLAVOUR=${RSWAP_FLAVOUR:-debug}
source "$(dirname "$0")/lib.sh"
SOAK_S=${SOAK_S:-1200}
rswap_prepare
trap 'lab_stop' EXIT
log "lab: starting 2 memory nodes"
t0=$(date +%s)
lab_mem_start 1 160 rswap.allow=10.77.1.1
lab_mem_start 2 160 rswap.allow=10.77.2.1
lab_mem_wait 1 && lab_mem_wait 2 || die "memory nodes did not start"
log "lab: compute node soaks for $SOAK_S s"
console=$(lab_compute 2 lab_soak $((SOAK_S + 1200)) rswap.soak_s="$SOAK_S")
lab_stop
grep -a -E '^\[lab_soak\]' "$console" | sed 's/^/  /'
line=$(grep -a '^RSWAP-SOAK ' "$console" | tail -1)
result=$(grep -a '^RSWAP-RESULT lab_soak ' "$console" | tail -1)
# No match is the good case: grep's status must not end the script.
splat=$(grep -a -E 'BUG:|WARNING:|Oops|possible circular|soft lockup|blocked for more than' "$console" "$RSWAP_WORK"/lab-mem*.log | head -3 || true)
{
	echo "$(date -u +%F) soak on Linux $(rswap_kernel_version) ($RSWAP_FLAVOUR), $(($(date +%s) - t0)) s wall: $line"
	echo "  result: ${result:-none}; kernel log: ${splat:-clean}"
} | tee -a "$RSWAP_WORK/soak-results.txt"
[[ "$result" == *PASS* ]] && [ -z "$splat" ]
