# Remote capacity smaller than the swapped set: once both servers are full
# the swap disk takes the rest, and every byte verifies.
. /tests/lib.sh
load_rdma servers="$(server 1),$(server 2)" mib_per_server=8 || fail "insmod rswap_rdma"
swap_on || fail "swapon"
out0=$(vmstat pswpout)
walk 16M --mib 64 --random-passes 1 || fail "pagewalker exit $?"
expect "data verified" "$(walkval mismatches)" -eq 0
expect "rdma refused stores when full" "$(stat rswap/rdma/store_refused)" -gt 1000
expect "the swap disk took the spill" "$(($(vmstat pswpout) - out0))" -gt 1000
expect "server 1 filled (2048 slots)" "$(rstat 0 writes)" -ge 2048
expect "server 2 filled (2048 slots)" "$(rstat 1 writes)" -ge 2048
expect "never more than capacity on server 1" "$(rstat 0 pages)" -le 2048
expect "no RDMA errors" "$(($(rstat 0 errors) + $(rstat 1 errors)))" -eq 0
swapoff "$SWAPDEV" || fail "swapoff"
unload_rdma || fail "rmmod"
finish
