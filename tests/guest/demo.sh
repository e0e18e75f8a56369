# The main job: a memory-hungry program on a compute node whose swap goes
# to two memory nodes over RDMA, with a summary.
. /tests/lib.sh
load_rdma servers="$(server 1),$(server 2)" mib_per_server=128 || fail "insmod"
swap_on || fail "swapon"
note "pagewalker: 128 MiB working set in a cgroup with memory.max=32M"
walk 32M --mib 128 --random-passes 1 || fail "pagewalker exit $?"
echo "RSWAP-DEMO out=$(stat rswap/stores) in=$(stat rswap/loads) refused=$(stat rswap/store_refused)" \
	"node1_out=$(rstat 0 writes) node1_in=$(rstat 0 reads) node2_out=$(rstat 1 writes) node2_in=$(rstat 1 reads)" \
	"rdma_errors=$(($(rstat 0 errors) + $(rstat 1 errors)))" \
	"disk_out=$(vmstat pswpout) mismatches=$(walkval mismatches) verified=$(walkval verified)" \
	"swapin_mib_s=$(walkval swapin_mib_s) p50_us=$(walkval fault_p50_us) p99_us=$(walkval fault_p99_us)" \
	"read_p50_us=$(rstat 0 read_lat_p50_us),$(rstat 1 read_lat_p50_us)"
sleep 4
swapoff "$SWAPDEV" || fail "swapoff"
unload_rdma || fail "rmmod"
sleep 4
finish
