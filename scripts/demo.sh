#!/usr/bin/env bash
# The main job: boots the patched kernel in a QEMU guest with rswap and its
# DRAM backend, runs a 128 MiB page walker under memory.max=32M, and prints
# what went out and came back. Installs and builds what it needs.
source "$(dirname "$0")/lib.sh"
rswap_prepare
log "guest: booting the demo (a minute or so under TCG)"
console=$(rswap_run_guest demo 1200)
line=$(grep -a '^RSWAP-DEMO ' "$console" | tail -1) || die "demo did not finish; console: $console"
grep -a -E '^\[demo\]|^pagewalker: phase' "$console" | sed 's/^/  /'
val() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $line"; }
echo
echo "rswap demo on Linux $(rswap_kernel_version) (patched), rswap_dram backend:"
echo "  pages swapped out through rswap: $(val out)   refused (to disk): $(val refused)"
echo "  pages swapped back in:           $(val in)"
echo "  pages written to the swap disk:  $(val disk_out)"
echo "  swap-in throughput:              $(val swapin_mib_s) MiB/s   fault latency p50 $(val p50_us) us, p99 $(val p99_us) us"
if [ "$(val mismatches)" = 0 ] && grep -q '^RSWAP-RESULT demo PASS' "$console"; then
	echo "  integrity: OK ($(val verified) page reads verified byte for byte)"
else
	echo "  integrity: FAILED ($(val mismatches) mismatches); console: $console"
	exit 1
fi
