# Load, swapon, run, swapoff, unload, three times: nothing leaks, and each
# load starts from zero.
. /tests/lib.sh
# Free memory with caches dropped and per-CPU page lists drained (compaction
# drains them): what is left is what the rounds kept.
memfree() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
	echo 1 >/proc/sys/vm/compact_memory 2>/dev/null
	awk '/MemFree/{print $2}' /proc/meminfo
}
free0=$(memfree)
for i in 1 2 3; do
	load_rswap capacity_mb=64 || fail "insmod round $i"
	expect "round $i: counters start at zero" "$(stat rswap/stores)" -eq 0
	swap_on || fail "swapon round $i"
	walk 24M --mib 64 --random-passes 1 --seed $i || fail "pagewalker round $i"
	expect "round $i: data verified" "$(walkval mismatches)" -eq 0
	expect "round $i: pages went through rswap" "$(stat rswap/stores)" -gt 4000
	swapoff "$SWAPDEV" || fail "swapoff round $i"
	expect "round $i: pages_held back to 0" "$(stat rswap/pages_held)" -eq 0
	expect "round $i: bytes_held back to 0" "$(stat rswap/bytes_held)" -eq 0
	expect "round $i: dram used back to 0" "$(stat rswap_dram/used_pages)" -eq 0
	unload_rswap || fail "rmmod round $i"
	expect "round $i: modules gone" "$(grep -c rswap /proc/modules)" -eq 0
done
# The pool held up to 40 MiB a round; after three rounds free memory is back
# within 8 MiB. Memory freed after an RCU grace period or by a worker comes
# back a little later, so take the best of a few samples.
free1=0
for s in 1 2 3 4 5; do
	f=$(memfree)
	[ "$f" -gt "$free1" ] && free1=$f
	[ $((free0 - free1)) -lt 8192 ] && break
	sleep 1
done
expect "free memory back (kB)" "$((free0 - free1))" -lt 8192
finish
