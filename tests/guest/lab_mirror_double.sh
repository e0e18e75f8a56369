# A second failure under redundancy=mirror before repair is done: the
# links of memory nodes 2 and 3 go dark together, past loss_timeout_s, so
# both nodes' copies are declared gone before repair could re-protect
# them. Only the pages whose two copies were on nodes 2 and 3 are truly
# lost: their loads fail with EIO (a task touching one gets SIGBUS; the
# walker reads with --lost-ok and counts them), never with wrong data,
# and the walker loses no more than the pages rswap_rdma counts as lost.
# Every other page is read from its copy on node 1 and repaired onto the
# returned nodes.
. /tests/lib.sh
load_rdma servers="$(server 1),$(server 2),$(server 3)" mib_per_server=64 timeout_ms=1000 loss_timeout_s=3 \
	redundancy=mirror || fail "insmod rswap_rdma"
swap_on || fail "swapon"
mstat() { stat "rswap_rdma/mirror_$1"; }
walk_paused 4M --mib 10 --random-passes 0 --seed 61 --lost-ok
held=$(stat rswap/pages_held)
note "held $held pages in $(rstat 0 pages) / $(rstat 1 pages) / $(rstat 2 pages) copies on nodes 1-3"
expect "pages were swapped out" "$held" -gt 1000
expect "every page has two copies" "$(($(rstat 0 pages) + $(rstat 1 pages) + $(rstat 2 pages)))" -eq $((2 * held))
# (A walker swapping meanwhile makes the compute node notice; its
# stores, refused with a single server left, go to the swap disk.)
dark_2_and_3 10 62
i=0
while { [ "$(rstat 1 up)" != 1 ] || [ "$(rstat 2 up)" != 1 ]; } && [ $i -lt 40 ]; do sleep 1; i=$((i + 1)); done
expect "node 2 had an outage" "$(rstat 1 outages)" -ge 1
expect "node 3 had an outage" "$(rstat 2 outages)" -ge 1
expect "node 2's copies were declared gone" "$(rstat 1 lost_pages)" -gt 0
expect "node 3's copies were declared gone" "$(rstat 2 lost_pages)" -gt 0
# While only node 1 was up, no page could get a second copy; repair runs
# once the two nodes are back. Pages with no copy left stay lost. (Done:
# two checks in a row, a second apart, find a finished pass and no page
# with one copy.)
i=0 ok=0
while [ $ok -lt 2 ] && [ $i -lt 180 ]; do
	if [ "$(mstat passes)" -ge 1 ] && [ "$(mstat degraded)" -eq 0 ]; then ok=$((ok + 1)); else ok=0; fi
	sleep 1
	i=$((i + 1))
done
lost=$(mstat lost)
note "repair: $(mstat repaired) copies made, $(mstat passes) passes (waited $i s); degraded $(mstat degraded), lost $lost"
expect "repair left no page with one copy" "$(mstat degraded)" -eq 0
expect "some pages had both copies on nodes 2 and 3" "$lost" -gt 0
expect "fewer than the pages held (node 1 held a copy of the rest)" "$lost" -lt "$held"
touch /tmp/go
wait $wpid
expect "walker finished (lost pages tolerated)" "$?" -eq 0
cat /tmp/walk
expect "no page came back wrong" "$(walkval mismatches)" -eq 0
note "the walker lost $(walkval lost) pages; rswap_rdma counted $lost with no copy left"
expect "the walker lost pages" "$(walkval lost)" -gt 0
expect "only pages with no copy left failed" "$(walkval lost)" -le "$lost"
swapoff "$SWAPDEV" || fail "swapoff"
expect "no copy left" "$(($(rstat 0 pages) + $(rstat 1 pages) + $(rstat 2 pages)))" -eq 0
unload_rdma || fail "rmmod"
finish
