# The main job: a memory-hungry program on rswap, with a summary.
. /tests/lib.sh
load_rswap capacity_mb=256 || fail "insmod"
swap_on || fail "swapon"
note "pagewalker: 128 MiB working set in a cgroup with memory.max=32M"
walk 32M --mib 128 --random-passes 2 || fail "pagewalker exit $?"
echo "RSWAP-DEMO out=$(stat rswap/stores) in=$(stat rswap/loads) refused=$(stat rswap/store_refused)" \
	"disk_out=$(vmstat pswpout) mismatches=$(walkval mismatches) verified=$(walkval verified)" \
	"swapin_mib_s=$(walkval swapin_mib_s) p50_us=$(walkval fault_p50_us) p99_us=$(walkval fault_p99_us)"
swapoff "$SWAPDEV" || fail "swapoff"
unload_rswap || fail "rmmod"
finish
