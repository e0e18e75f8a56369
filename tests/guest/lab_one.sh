# One memory node: the page walker at 4x memory.max swaps over RDMA; every
# byte verifies and rswap_rdma's counters show the traffic.
. /tests/lib.sh
load_rdma servers="$(server 1)" mib_per_server=256 || fail "insmod rswap_rdma"
swap_on || fail "swapon"
out0=$(vmstat pswpout)
walk 16M --mib 64 --random-passes 1 || fail "pagewalker exit $?"
expect "data verified" "$(walkval mismatches)" -eq 0
stores=$(stat rswap/stores)
expect "rswap stores" "$stores" -ge 12288
expect "all of them over RDMA" "$(stat rswap/rdma/stores)" -eq "$stores"
expect "RDMA writes to the server" "$(rstat 0 writes)" -ge "$stores"
expect "RDMA reads from the server" "$(rstat 0 reads)" -ge 10000
expect "no RDMA error" "$(rstat 0 errors)" -eq 0
expect "server up" "$(rstat 0 up)" -eq 1
expect "no store refused" "$(stat rswap/store_refused)" -eq 0
expect "nothing written to the swap disk" "$(($(vmstat pswpout) - out0))" -eq 0
note "latency us: read p50 $(rstat 0 read_lat_p50_us) p99 $(rstat 0 read_lat_p99_us), write p50 $(rstat 0 write_lat_p50_us) p99 $(rstat 0 write_lat_p99_us)"
swapoff "$SWAPDEV" || fail "swapoff"
expect "server pages after swapoff" "$(rstat 0 pages)" -eq 0
expect "all slots free again" "$(rstat 0 free_pages)" -eq "$(rstat 0 capacity_pages)"
unload_rdma || fail "rmmod after swapoff"
# The host checks memserver's log for the disconnect; give it time to see it.
sleep 6
note "$(cat /tmp/walk)"
finish
