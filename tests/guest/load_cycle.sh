# Load, swapon, run, swapoff, unload, three times: nothing leaks, and each
# load starts from zero.
. /tests/lib.sh
free0=$(awk '/MemFree/{print $2}' /proc/meminfo)
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
free1=$(awk '/MemFree/{print $2}' /proc/meminfo)
# The pool held up to 40 MiB; after three rounds free memory is back within 8 MiB.
expect "free memory back (kB)" "$((free0 - free1))" -lt 8192
finish
