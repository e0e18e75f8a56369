# The demo's second act (scripts/demo.sh mirror): redundancy=mirror over
# three memory nodes, and memory node 3 killed in the middle of a run.
# Every page has a copy on two nodes, so the program reads every byte back
# and nothing is lost; repair then gives node 3's pages new copies on the
# two nodes left.
. /tests/lib.sh
load_rdma servers="$(server 1),$(server 2),$(server 3)" mib_per_server=64 timeout_ms=1000 loss_timeout_s=5 \
	redundancy=mirror || fail "insmod"
swap_on || fail "swapon"
note "pagewalker: 32 MiB working set in a cgroup with memory.max=12M, every page on two memory nodes"
walk_paused 12M --mib 32 --random-passes 1 --lost-ok
held=$(stat rswap/pages_held)
on3=$(rstat 2 pages)
note "written: $held pages held in $(($(rstat 0 pages) + $(rstat 1 pages) + on3)) copies; memory node 3 holds $on3 of them"
note "killing memory node 3 as the program reads its pages back"
touch /tmp/go
sleep 2
lab_kill 3
wait $wpid
rc=$?
# The walker's pages are freed as it exits; a repair pass under way
# finishes over what is left (2 minutes at most).
i=0
while [ "$(rstat 2 lost_pages)" -gt 0 ] && { [ "$(stat rswap_rdma/mirror_passes)" -lt 1 ] ||
	[ "$(stat rswap_rdma/mirror_degraded)" -ne 0 ]; } && [ $i -lt 120 ]; do
	sleep 1
	i=$((i + 1))
done
rswapctl status | sed 's/^/[demo_mirror] /'
echo "RSWAP-DEMO-MIRROR exit=$rc held=$held node3_copies=$on3 node3_declared_lost=$(rstat 2 lost_pages)" \
	"failovers=$(stat rswap_rdma/mirror_failovers) repaired=$(stat rswap_rdma/mirror_repaired)" \
	"degraded=$(stat rswap_rdma/mirror_degraded) lost=$(stat rswap_rdma/mirror_lost)" \
	"walker_lost=$(walkval lost) mismatches=$(walkval mismatches) verified=$(walkval verified)"
expect "the program ran to the end (no SIGBUS)" "$rc" -eq 0
expect "every byte verified" "$(walkval mismatches)" -eq 0
expect "no page lost" "$(walkval lost)" -eq 0
expect "node 3's copies were declared gone while it ran" "$(rstat 2 lost_pages)" -gt 0
expect "loads were served by the other copy" "$(stat rswap_rdma/mirror_failovers)" -gt 0
swapoff "$SWAPDEV" || fail "swapoff"
unload_rdma || fail "rmmod"
finish
