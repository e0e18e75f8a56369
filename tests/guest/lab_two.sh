# Two memory nodes: pages land on both, in proportion to free capacity,
# and every byte verifies.
. /tests/lib.sh
load_rdma servers="$(server 1),$(server 2)" mib_per_server=128 || fail "insmod rswap_rdma"
swap_on || fail "swapon"
walk 16M --mib 64 --random-passes 1 || fail "pagewalker exit $?"
expect "data verified" "$(walkval mismatches)" -eq 0
w0=$(rstat 0 writes); w1=$(rstat 1 writes)
expect "server 1 took pages" "$w0" -gt 2000
expect "server 2 took pages" "$w1" -gt 2000
# Equal free capacity: each gets a fair share (within 35%-65%).
expect "split is balanced" "$((100 * w0 / (w0 + w1)))" -ge 35
expect "split is balanced" "$((100 * w0 / (w0 + w1)))" -le 65
expect "reads from server 1" "$(rstat 0 reads)" -gt 1000
expect "reads from server 2" "$(rstat 1 reads)" -gt 1000
expect "no RDMA errors" "$(($(rstat 0 errors) + $(rstat 1 errors)))" -eq 0
echo "RSWAP-SPLIT server1_writes=$w0 server2_writes=$w1"
# memserver logs pages used per region every 3 s; the host checks both.
sleep 7
swapoff "$SWAPDEV" || fail "swapoff"
unload_rdma || fail "rmmod"
sleep 6
finish
