# The a-b-c chain (design item 7): compute node a reaches memory node c
# (node 3) through memory node b (node 2). b's memserver re-exports c's
# memory alongside its own (--upstream 10.77.3.2:7471): a, loaded with
# servers=b and follow_upstream=1, asks b where its upstream is (an
# authenticated reply, proto.rs) and connects to c too. b routes RoCEv2
# between its two links (IP forwarding, rswap.fwd; c routes back through
# b) and keeps no copy of any page: every RDMA read and write goes end
# to end to c's memory, so a page read through b cannot be stale.
#
# Two walks, each with its pages rewritten and verified: to c alone,
# direct (link 3); then, with a host route to 10.77.3.2 through b, to b
# with its upstream: both hold pages, all through link 2, c's relayed by
# b. Interface counters prove which path the pages took. (A third walk,
# to c relayed through b without the upstream, measured what the relay
# costs: 1.40x the run time, tests/results.md of 2026-12-06; it proved
# nothing the upstream walk does not, so the suite no longer runs it.)
. /tests/lib.sh
tx() { cat "/sys/class/net/$1/statistics/tx_bytes"; }
run() { # run <tag> <seed> <servers> [insmod args...]
	local e1 e2 tag=$1 seed=$2 servers=$3
	shift 3
	load_rdma servers="$servers" mib_per_server=32 "$@" || fail "$tag: insmod rswap_rdma"
	swap_on || fail "$tag: swapon"
	e1=$(tx eth1) e2=$(tx eth2)
	walk 5M --mib 10 --random-passes 1 --seed "$seed" || fail "$tag: pagewalker exit $?"
	E1=$(($(tx eth1) - e1)) E2=$(($(tx eth2) - e2))
	expect "$tag: data verified (pages rewritten, none stale)" "$(walkval mismatches)" -eq 0
	errs=$(rstat 0 errors) up=$(rstat 1 errors)
	[ "$up" -gt 0 ] && errs=$((errs + up))
	expect "$tag: no RDMA errors" "$errs" -eq 0
	echo "RSWAP-CHAIN path=$tag swapin_mib_s=$(walkval swapin_mib_s) fault_p50_us=$(walkval fault_p50_us)" \
		"fault_p99_us=$(walkval fault_p99_us) run_s=$(walkval seconds) read_lat_us=$(rstat 0 read_lat_ewma_us)" \
		"write_lat_us=$(rstat 0 write_lat_ewma_us) stores=$(rstat 0 stores) reads=$(rstat 0 reads)" \
		"upstream_read_lat_us=$(rstat 1 read_lat_ewma_us) upstream_stores=$(rstat 1 stores) upstream_reads=$(rstat 1 reads)" \
		"tx_link2_mib=$((E1 >> 20)) tx_link3_mib=$((E2 >> 20))"
}
stop() { # stop <tag>
	swapoff "$SWAPDEV" || fail "$1: swapoff"
	unload_rdma || fail "$1: rmmod"
}
run direct 51 "$(server 3)"
expect "direct: node 3 took the pages" "$(rstat 0 stores)" -gt 600
expect "direct: the pages went over link 3" "$E2" -gt $((E1 + 4000000))
stop direct
ip route add 10.77.3.2/32 via 10.77.2.2 || fail "route through node 2"
note "route: $(ip route get 10.77.3.2 | head -1)"
run upstream 53 "$(server 2)" follow_upstream=1
expect "upstream: node 2 named node 3 as its upstream, and we use it" \
	"$(dmesg | grep -c 'server 10.77.2.2:7471: using its upstream 10.77.3.2:7471 too')" -ge 1
expect "upstream: node 3 is our second server" "$(ls -d $DBG/rswap_rdma/server1-* 2>/dev/null | grep -c 10.77.3.2)" -eq 1
expect "upstream: node 2 took pages" "$(rstat 0 stores)" -gt 300
expect "upstream: node 3 (through node 2) took pages" "$(rstat 1 stores)" -gt 300
expect "upstream: node 3's pages came back" "$(rstat 1 reads)" -gt 100
expect "upstream: everything went over link 2" "$E1" -gt $((E2 + 4000000))
stop upstream
ip route del 10.77.3.2/32 via 10.77.2.2 || fail "removing the route"
# Without follow_upstream (the default), a server's upstream is not used.
load_rdma servers="$(server 2)" mib_per_server=8 || fail "insmod without follow_upstream"
expect "without follow_upstream: one server" "$(ls -d $DBG/rswap_rdma/server* | wc -l)" -eq 1
unload_rdma || fail "rmmod"
finish
