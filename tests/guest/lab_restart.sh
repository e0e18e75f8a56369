# memserver on memory node 2 is killed (-9) and restarted by its
# supervisor, with a fresh pool. The pages it held are gone: the kernel
# sees the new session, declares them lost (SIGBUS when touched, never
# wrong data), and node 2 serves new stores after the restart.
. /tests/lib.sh
load_rdma servers="$(server 1),$(server 2)" mib_per_server=64 timeout_ms=1000 || fail "insmod rswap_rdma"
swap_on || fail "swapon"
walk_paused 4M --mib 12 --random-passes 0 --seed 21 --lost-ok
on2=$(rstat 1 pages)
expect "node 2 holds pages" "$on2" -gt 500
echo kill | nc -w 2 10.77.2.2 7990
i=0
while { [ "$(rstat 1 lost_pages)" -eq 0 ] || [ "$(rstat 1 up)" != 1 ]; } && [ $i -lt 60 ]; do sleep 1; i=$((i + 1)); done
note "after $i s: $(rcounters 1)"
expect "the kernel saw the new session and declared node 2's pages lost" "$(rstat 1 lost_pages)" -eq "$on2"
expect "node 2 is up again" "$(rstat 1 up)" -eq 1
touch /tmp/go
wait $wpid
expect "walker finished (lost pages tolerated)" "$?" -eq 0
expect "no page came back wrong" "$(walkval mismatches)" -eq 0
expect "the pages on node 2 were lost" "$(walkval lost)" -gt 0
expect "no more than node 2 held" "$(walkval lost)" -le "$on2"
lost=$(walkval lost)
node2_serves_again 22 "RSWAP-RESTART" "$lost"
finish
