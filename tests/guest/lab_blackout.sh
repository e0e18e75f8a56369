# Transient faults lose nothing. Memory node 2's link is blacked out (every
# packet from the compute node dropped) while a walker reads its pages
# back: (a) for 5 s, within loss_timeout_s: its queues are rebuilt, the
# faults that hit it wait and succeed, no SIGBUS, every byte verifies;
# (b) for 12 s, past a 3 s loss_timeout_s: only node 2's pages are lost
# (SIGBUS when touched, never stale data), and node 2 serves new stores
# once it is back.
. /tests/lib.sh
# (a)
load_rdma servers="$(server 1),$(server 2)" mib_per_server=64 timeout_ms=1000 || fail "insmod rswap_rdma"
swap_on || fail "swapon"
walk_paused 4M --mib 12 --random-passes 0 --seed 11
expect "node 2 holds pages" "$(rstat 1 pages)" -gt 500
blackout 2 5 &
sleep 1
touch /tmp/go
wait $wpid
expect "walker survived a 5 s blackout (no SIGBUS)" "$?" -eq 0
wait
expect "data verified across the blackout" "$(walkval mismatches)" -eq 0
note "$(rcounters 1)"
expect "node 2 had an outage" "$(rstat 1 outages)" -ge 1
expect "its queues were rebuilt" "$(rstat 1 reconnects)" -ge 1
expect "faults waited for it and then succeeded" "$(rstat 1 loads_recovered)" -ge 1
expect "no page declared lost" "$(rstat 1 lost_pages)" -eq 0
expect "rswap saw no load error" "$(stat rswap/load_errors)" -eq 0
wait_up 1 30
expect "node 2 is up again" "$(rstat 1 up)" -eq 1
echo "RSWAP-BLACKOUT short: $(rcounters 1) $(cat /tmp/walk)"
swapoff "$SWAPDEV" || fail "swapoff"
unload_rdma || fail "rmmod"
# (b)
load_rdma servers="$(server 1),$(server 2)" mib_per_server=64 timeout_ms=1000 loss_timeout_s=3 || fail "insmod rswap_rdma (b)"
swap_on || fail "swapon (b)"
walk_paused 4M --mib 12 --random-passes 0 --seed 12 --lost-ok
on2=$(rstat 1 pages)
expect "node 2 holds pages (b)" "$on2" -gt 500
blackout 2 12 &
sleep 1
touch /tmp/go
wait $wpid
expect "walker finished (lost pages tolerated)" "$?" -eq 0
expect "no page came back wrong" "$(walkval mismatches)" -eq 0
expect "pages of node 2 were lost" "$(walkval lost)" -gt 0
expect "no more were lost than node 2 held" "$(walkval lost)" -le "$on2"
lost=$(walkval lost)
expect "node 2's pages declared lost" "$(rstat 1 lost_pages)" -gt 0
expect "node 1 lost nothing" "$(rstat 0 lost_pages)" -eq 0
note "lost $(walkval lost) pages of $on2 on node 2; $(rcounters 1)"
wait
wait_up 1 40
expect "node 2 is back after the long blackout" "$(rstat 1 up)" -eq 1
node2_serves_again 13 "RSWAP-BLACKOUT long" "$lost"
finish
