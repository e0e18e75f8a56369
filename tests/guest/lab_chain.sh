# The a-b-c chain (design item 7): compute node a reaches memory node c
# (node 3) through memory node b (node 2), which routes RoCEv2 between its
# two links (IP forwarding, rswap.fwd; c routes back through b). The relay
# keeps no copy of any page: every RDMA read and write goes end to end to
# c's memory, so a page read through b cannot be stale. The same walk runs
# twice against node 3's memserver, direct (link 3) and relayed (a host
# route to 10.77.3.2 through b), with its pages rewritten and verified;
# the figures compare the two. Interface counters prove which path the
# pages took.
. /tests/lib.sh
tx() { cat "/sys/class/net/$1/statistics/tx_bytes"; }
run() { # run <tag> <seed>
	local e1 e2
	load_rdma servers="$(server 3)" mib_per_server=32 || fail "$1: insmod rswap_rdma"
	swap_on || fail "$1: swapon"
	e1=$(tx eth1) e2=$(tx eth2)
	walk 6M --mib 16 --random-passes 1 --seed "$2" || fail "$1: pagewalker exit $?"
	E1=$(($(tx eth1) - e1)) E2=$(($(tx eth2) - e2))
	expect "$1: data verified (pages rewritten, none stale)" "$(walkval mismatches)" -eq 0
	expect "$1: node 3 took the pages" "$(rstat 0 stores)" -gt 1000
	expect "$1: no RDMA errors" "$(rstat 0 errors)" -eq 0
	echo "RSWAP-CHAIN path=$1 swapin_mib_s=$(walkval swapin_mib_s) fault_p50_us=$(walkval fault_p50_us)" \
		"fault_p99_us=$(walkval fault_p99_us) run_s=$(walkval seconds) read_lat_us=$(rstat 0 read_lat_ewma_us)" \
		"write_lat_us=$(rstat 0 write_lat_ewma_us) stores=$(rstat 0 stores) reads=$(rstat 0 reads)" \
		"tx_link2_mib=$((E1 >> 20)) tx_link3_mib=$((E2 >> 20))"
	swapoff "$SWAPDEV" || fail "$1: swapoff"
	unload_rdma || fail "$1: rmmod"
}
run direct 51
expect "direct: the pages went over link 3" "$E2" -gt $((E1 + 4000000))
ip route add 10.77.3.2/32 via 10.77.2.2 || fail "route through node 2"
note "route: $(ip route get 10.77.3.2 | head -1)"
run relayed 52
expect "relayed: the pages went over link 2, through node 2" "$E1" -gt $((E2 + 4000000))
ip route del 10.77.3.2/32 via 10.77.2.2 || fail "removing the route"
finish
