# Soak: mixed verified workloads in two cgroups at once against both memory
# nodes, with a 5 s blackout of link 2 in the middle: sequential and random
# walkers and huge-page walkers, each run again and again until the time
# is up (rswap.soak_s on the kernel command line; 60 s by default, 1200 s
# from scripts/soak.sh). Every run must verify every byte, nothing may be
# lost, and the kernel log must stay clean.
. /tests/lib.sh
dur=$(param rswap.soak_s)
[ -n "$dur" ] || dur=60
load_rdma servers="$(server 1),$(server 2)" mib_per_server=128 timeout_ms=1000 || fail "insmod rswap_rdma"
swap_on || fail "swapon"
for g in soak_a soak_b; do
	mkdir -p /sys/fs/cgroup/$g
	echo 8M >/sys/fs/cgroup/$g/memory.max
done
rm -f /tmp/soak-*
end=$(($(date +%s) + dur))
# soak_loop <cgroup> <name> <pagewalker args...>: runs until the time is up.
soak_loop() {
	local g=$1 name=$2 n=0 rc
	shift 2
	while [ "$(date +%s)" -lt "$end" ]; do
		n=$((n + 1))
		sh -c "echo \$\$ >/sys/fs/cgroup/$g/cgroup.procs && exec /bin/pagewalker $* --seed $n" >/tmp/soak-$name.out 2>&1
		rc=$?
		grep '^pagewalker: result=' /tmp/soak-$name.out >>/tmp/soak-$name.results
		[ $rc -eq 0 ] || echo "run $n exit $rc: $(tail -3 /tmp/soak-$name.out | tr '\n' ' ')" >>/tmp/soak-$name.fail
	done
}
out0=$(stat rswap/stores)
soak_loop soak_a seq --mib 12 --random-passes 0 &
soak_loop soak_b random --mib 12 --random-passes 2 &
soak_loop soak_a huge --mib 12 --random-passes 1 --huge &
(sleep $((dur / 2)) && blackout 2 5) &
wait
runs=0
for name in seq random huge; do
	r=$(grep -c 'result=' /tmp/soak-$name.results 2>/dev/null)
	note "$name: $r runs, $(grep -c 'result=OK' /tmp/soak-$name.results) OK"
	expect "$name walkers ran" "${r:-0}" -ge 1
	expect "$name: every run verified" "$(grep -v -c 'result=OK' /tmp/soak-$name.results)" -eq 0
	[ -e /tmp/soak-$name.fail ] && fail "$name: $(head -3 /tmp/soak-$name.fail)"
	runs=$((runs + ${r:-0}))
done
sum() { cat /tmp/soak-*.results | sed -n "s/.* $1=\([0-9]*\).*/\1/p" | awk '{s+=$1} END {print s+0}'; }
expect "no wrong byte" "$(sum mismatches)" -eq 0
expect "no lost page" "$(sum lost)" -eq 0
expect "no page declared lost" "$(($(rstat 0 lost_pages) + $(rstat 1 lost_pages)))" -eq 0
expect "no load error" "$(stat rswap/load_errors)" -eq 0
expect "the blackout hit node 2" "$(rstat 1 outages)" -ge 1
echo "RSWAP-SOAK seconds=$dur runs=$runs verified=$(sum verified) swapin_pages=$(sum swapin_pages) stores=$(($(stat rswap/stores) - out0)) stores_huge=$(stat rswap/stores_huge) mismatches=$(sum mismatches) lost=$(sum lost) node2_outages=$(rstat 1 outages) node2_reconnects=$(rstat 1 reconnects) loads_recovered=$(($(rstat 0 loads_recovered) + $(rstat 1 loads_recovered)))"
swapoff "$SWAPDEV" || fail "swapoff"
unload_rdma || fail "rmmod"
finish
