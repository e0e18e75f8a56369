# Placement policies, by counters. capacity splits new pages by free
# space; weighted follows each server's measured speed: when the link to
# memory node 2 is slowed mid-run (4 ms more delay, 1/4 the rate), its
# latency estimate rises within seconds and new pages shift to node 1, and
# they shift back once the link is fast again. Every byte verifies.
. /tests/lib.sh
P=/sys/module/rswap_rdma/parameters/placement
expect_fail "placement=bogus at insmod" "use capacity, weighted or tiered" \
	load_rdma servers="$(server 1),$(server 2)" placement=bogus
rmmod rswap 2>/dev/null
load_rdma servers="$(server 1),$(server 2)" mib_per_server=64 || fail "insmod rswap_rdma"
swap_on || fail "swapon"
expect "placement defaults to capacity" "$(cat $P)" = capacity
expect_fail "placement=bogus at run time" "use capacity, weighted or tiered" sh -c "echo bogus >$P"
expect "a bad value changes nothing" "$(cat $P)" = capacity

# One phase: walk, then print and keep each server's stores in it.
phase() { # phase <name> <seed>
	local a0=$(rstat 0 stores) b0=$(rstat 1 stores)
	walk 6M --mib 16 --random-passes 1 --seed "$2" || fail "$1: pagewalker exit $?"
	expect "$1: data verified" "$(walkval mismatches)" -eq 0
	a=$(($(rstat 0 stores) - a0))
	b=$(($(rstat 1 stores) - b0))
	pct=$((100 * a / (a + b + 1)))
	note "$1: stores node1 $a node2 $b ($pct% to node 1); latency ewma us node1 r/w $(rstat 0 read_lat_ewma_us)/$(rstat 0 write_lat_ewma_us) node2 $(rstat 1 read_lat_ewma_us)/$(rstat 1 write_lat_ewma_us); share permille $(rstat 0 share_permille)/$(rstat 1 share_permille); bw KiB/s $(rstat 0 bw_kib_s)/$(rstat 1 bw_kib_s); occupancy x100 $(rstat 0 occupancy_x100)/$(rstat 1 occupancy_x100)"
	echo "RSWAP-PLACEMENT phase=$1 node1=$a node2=$b pct_node1=$pct"
}
slow() { /usr/sbin/tc qdisc add dev eth1 root netem delay 4ms rate 10mbit || fail "netem on eth1"; }
fast() { /usr/sbin/tc qdisc del dev eth1 root || fail "removing netem on eth1"; }

slow
phase capacity_slow 1
expect "capacity: both nodes take pages" "$pct" -ge 30
expect "capacity: both nodes take pages" "$pct" -le 70
echo weighted >$P || fail "placement=weighted at run time"
expect "placement is now weighted" "$(cat $P)" = weighted
phase weighted_slow 2
expect "weighted: node 2 is measured slower" "$(rstat 1 write_lat_ewma_us)" -gt $((2 * $(rstat 0 write_lat_ewma_us)))
expect "weighted: most new pages go to the fast node" "$pct" -ge 70
expect "weighted: node 2 still gets some (keeps its estimate fresh)" "$b" -gt 0
fast
sleep 2
phase weighted_fast 3
expect "weighted: the split comes back when node 2 is fast again" "$pct" -le 70
expect "node 2 measured fast again" "$(rstat 1 write_lat_ewma_us)" -lt $((2 * $(rstat 0 write_lat_ewma_us) + 200))
expect "no RDMA errors" "$(($(rstat 0 errors) + $(rstat 1 errors)))" -eq 0
dmesg | grep -q "placement is now weighted" || fail "the policy change was not logged"
swapoff "$SWAPDEV" || fail "swapoff"
unload_rdma || fail "rmmod"
finish
