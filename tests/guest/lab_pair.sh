# Two compute nodes, three memory nodes: compute node 1 (this VM) and
# compute node 2 (booted by the lab on request, running lab_pair_b) swap to
# the same three memory nodes at the same time. Each gets its own regions
# (the memservers log two nodes each), node 3 hands out fair shares
# (rswap.region=fair: pool / max-nodes = 40 MiB however much a node asks),
# pages land on all three nodes, and both walkers verify every byte.
# Compute node 2's own checks are lab_pair_b.
# (Replaces the two-node split test: capacity placement over equal nodes
# is checked here over three.)
. /tests/lib.sh
PEER=10.77.1.3 # compute node 2, on memory node 1's segment
echo "RSWAP-LAB compute2 lab_pair_b"
load_rdma servers="$(server 1),$(server 2),$(server 3)" mib_per_server=64 || fail "insmod rswap_rdma"
swap_on || fail "swapon"
# Compute node 2 boots (a minute or two under TCG), loads rswap_rdma and
# listens on TCP 7992; "go" starts both walkers together.
i=0
until echo go | nc -w 2 "$PEER" 7992 2>/dev/null; do
	i=$((i + 1))
	[ $i -ge 200 ] && { fail "compute node 2 never got ready"; break; }
	sleep 2
done
note "compute node 2 is ready (after ~$((2 * i)) s); both walk now"
walk 6M --mib 16 --random-passes 0 --seed 41 || fail "pagewalker exit $?"
expect "data verified" "$(walkval mismatches)" -eq 0
s0=$(rstat 0 stores) s1=$(rstat 1 stores) s2=$(rstat 2 stores) all=$((s0 + s1 + s2 + 1))
note "stores: node1 $s0 node2 $s1 node3 $s2"
for n in 0 1 2; do
	expect "memory node $((n + 1)) took pages" "$(rstat $n stores)" -gt 300
	expect "memory node $((n + 1)) served loads" "$(rstat $n reads)" -gt 200
done
# Capacity placement: shares follow free capacity (64, 64 and 40 MiB).
expect "node 1's share near its capacity share (38%)" "$((100 * s0 / all))" -ge 25
expect "node 1's share near its capacity share (38%)" "$((100 * s0 / all))" -le 50
expect "node 2's share near its capacity share (38%)" "$((100 * s1 / all))" -ge 25
expect "node 2's share near its capacity share (38%)" "$((100 * s1 / all))" -le 50
expect "node 3's fair share: 40 MiB (10240 pages), not the 64 asked" "$(rstat 2 capacity_pages)" -eq 10240
expect "node 1 gives the 64 MiB asked" "$(rstat 0 capacity_pages)" -eq 16384
expect "no RDMA errors" "$(($(rstat 0 errors) + $(rstat 1 errors) + $(rstat 2 errors)))" -eq 0
# Compute node 2 powers off when its test is done (its result, on its own
# console, is collected by the host as lab_pair_b): wait for that, so the
# next tests have the lab to themselves.
i=0
while ping -c 1 -W 1 "$PEER" >/dev/null 2>&1 && [ $i -lt 600 ]; do sleep 1; i=$((i + 1)); done
expect "compute node 2 finished" "$i" -lt 600
echo "RSWAP-SPLIT node1_stores=$s0 node2_stores=$s1 node3_stores=$s2"
# memserver logs its nodes and pages used every 3 s; the host checks both
# compute nodes show up on all three.
sleep 7
swapoff "$SWAPDEV" || fail "swapoff"
unload_rdma || fail "rmmod"
sleep 6
finish
