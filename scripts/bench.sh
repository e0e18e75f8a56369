#!/usr/bin/env bash
# Benchmark (not a test): the same page walker run in the same guest with
# swap on the disk only, with zswap, and with rswap_dram. Appends the
# figures to tests/results.md with the date and kernel version.
source "$(dirname "$0")/lib.sh"
rswap_prepare
results=$RSWAP_ROOT/tests/results.md
rows=()
for mode in disk zswap dram; do
	args=()
	[ $mode = zswap ] && args=(zswap.enabled=1)
	log "bench: $mode"
	console=$(rswap_run_guest "bench_$mode" 1800 "${args[@]}")
	line=$(grep -a '^RSWAP-BENCH ' "$console" | tail -1) || die "bench_$mode did not finish; see $console"
	grep -q "^RSWAP-RESULT bench_$mode PASS" "$console" || die "bench_$mode failed; see $console"
	val() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $line"; }
	rows+=("| $(val mode) | $(val swapin_mib_s) | $(val fault_p50_us) | $(val fault_p99_us) | $(val swapin_pages) | $(val majflt) | $(val disk_pswpin) | $(val seconds) | $(val mismatches) |")
done
{
	echo
	echo "## $(date -u +%Y-%m-%d) - Linux $(rswap_kernel_version) + rswap patches, QEMU TCG guest (2 vCPUs, 512 MiB)"
	echo
	echo "pagewalker --mib 128 --random-passes 2 under memory.max=32M, swap on a 1 GiB virtio-blk disk."
	echo
	echo "| mode | swap-in MiB/s | fault p50 us | fault p99 us | faulting reads | major faults | disk pages read | run s | mismatches |"
	echo "|---|---|---|---|---|---|---|---|---|"
	printf '%s\n' "${rows[@]}"
} | tee -a "$results"
