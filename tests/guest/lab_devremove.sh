# The RDMA device under rswap_rdma is removed during a run (`rdma link
# delete` of the compute node's link 2): the removal does not hang (the
# module gives back everything it held on the device), node 2's pages are
# lost once the 5 s bound passes (never wrong data), node 1 loses nothing,
# and once the device is back node 2 takes new pages again.
. /tests/lib.sh
load_rdma servers="$(server 1),$(server 2)" mib_per_server=64 timeout_ms=1000 loss_timeout_s=5 || fail "insmod rswap_rdma"
swap_on || fail "swapon"
walk_paused 4M --mib 12 --random-passes 0 --seed 31 --lost-ok
on2=$(rstat 1 pages)
expect "node 2 holds pages" "$on2" -gt 500
t0=$(date +%s)
timeout 60 rdma link delete rxe_eth1
expect "rdma link delete returned (no hang)" "$?" -eq 0
note "rdma link delete took $(($(date +%s) - t0)) s; $(rcounters 1)"
touch /tmp/go
wait $wpid
expect "walker finished (lost pages tolerated)" "$?" -eq 0
expect "no page came back wrong" "$(walkval mismatches)" -eq 0
expect "no more lost than node 2 held" "$(walkval lost)" -le "$on2"
lost=$(walkval lost)
expect "node 2's pages declared lost" "$(rstat 1 lost_pages)" -gt 0
expect "node 1 lost nothing" "$(rstat 0 lost_pages)" -eq 0
rdma link add rxe_eth1 type rxe netdev eth1 || fail "rdma link add"
wait_up 1 40
expect "node 2 is back with the device" "$(rstat 1 up)" -eq 1
node2_serves_again 32 "RSWAP-DEVREMOVE" "$lost"
finish
