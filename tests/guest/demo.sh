# The main job: a memory-hungry program on a compute node whose swap goes
# to two memory nodes of different speed over RDMA (the link to node 2 is
# shaped to about 1/4 of node 1's rate, with 2 ms more delay), placed by
# the tiered policy, with a summary and rswapctl's view.
. /tests/lib.sh
load_rdma servers="$(server 1),$(server 2)" mib_per_server=48 placement=tiered || fail "insmod"
swap_on || fail "swapon"
note "pagewalker: 96 MiB working set, Zipf-like random pass, in a cgroup with memory.max=32M"
walk 32M --mib 96 --random-passes 1 --skew 3 || fail "pagewalker exit $?"
rswapctl status | sed 's/^/[demo] /'
echo "RSWAP-DEMO out=$(stat rswap/stores) in=$(stat rswap/loads) refused=$(stat rswap/store_refused)" \
	"node1_out=$(rstat 0 writes) node1_in=$(rstat 0 reads) node2_out=$(rstat 1 writes) node2_in=$(rstat 1 reads)" \
	"node1_lat_us=$(rstat 0 read_lat_ewma_us) node2_lat_us=$(rstat 1 read_lat_ewma_us)" \
	"promotions=$(rstat 0 promotions) demotions=$(rstat 0 demotions)" \
	"rdma_errors=$(($(rstat 0 errors) + $(rstat 1 errors)))" \
	"disk_out=$(vmstat pswpout) mismatches=$(walkval mismatches) verified=$(walkval verified)" \
	"swapin_mib_s=$(walkval swapin_mib_s) p50_us=$(walkval fault_p50_us) p99_us=$(walkval fault_p99_us)"
sleep 4
swapoff "$SWAPDEV" || fail "swapoff"
unload_rdma || fail "rmmod"
sleep 4
finish
