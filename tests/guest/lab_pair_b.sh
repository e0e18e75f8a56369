# Compute node 2 of lab_pair (runs on the second compute VM): swaps to the
# three memory nodes while compute node 1 does, then reports on its own console
# (the host collects it) and powers off, which compute node 1 waits for.
. /tests/lib.sh
# Memory node 1 may still be serving the nodes lab_one's connect flood
# left behind (kept for memserver's 90 s --grace-s; at most 4 nodes), and
# refuse us until they expire: try again for up to 2 minutes, as a user
# would.
i=0
until load_rdma servers="$(server 1),$(server 2),$(server 3)" mib_per_server=64; do
	rmmod rswap 2>/dev/null
	i=$((i + 1))
	[ $i -ge 24 ] && { fail "insmod rswap_rdma"; break; }
	sleep 5
done
note "rswap_rdma loaded after $i refusals"
swap_on || fail "swapon"
note "ready; waiting for compute node 1's go"
timeout 600 nc -l -p 7992 >/tmp/go 2>/dev/null
grep -q go /tmp/go || fail "no go from compute node 1"
walk 6M --mib 16 --random-passes 0 --seed 42 || fail "pagewalker exit $?"
expect "data verified" "$(walkval mismatches)" -eq 0
note "stores: node1 $(rstat 0 stores) node2 $(rstat 1 stores) node3 $(rstat 2 stores)"
for n in 0 1 2; do
	expect "memory node $((n + 1)) took pages" "$(rstat $n stores)" -gt 300
done
expect "node 3's fair share: 40 MiB" "$(rstat 2 capacity_pages)" -eq 10240
expect "no RDMA errors" "$(($(rstat 0 errors) + $(rstat 1 errors) + $(rstat 2 errors)))" -eq 0
swapoff "$SWAPDEV" || fail "swapoff"
unload_rdma || fail "rmmod"
finish
