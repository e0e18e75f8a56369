# Remote capacity smaller than the swapped set: once both servers are full
# the swap disk takes the rest, and every byte verifies. Then rswap_dram
# as tier 0 above the remote nodes: loaded before rswap_rdma, it takes new
# pages first (local DRAM, the fastest tier) and the remote nodes take
# what it refuses once full.
. /tests/lib.sh
load_rdma servers="$(server 1),$(server 2)" mib_per_server=4 || fail "insmod rswap_rdma"
swap_on || fail "swapon"
out0=$(vmstat pswpout)
walk 8M --mib 24 --random-passes 1 || fail "pagewalker exit $?"
expect "data verified" "$(walkval mismatches)" -eq 0
expect "rdma refused stores when full" "$(stat rswap/rdma/store_refused)" -gt 1000
expect "the swap disk took the spill" "$(($(vmstat pswpout) - out0))" -gt 1000
expect "server 1 filled (1024 slots)" "$(rstat 0 writes)" -ge 1024
expect "server 2 filled (1024 slots)" "$(rstat 1 writes)" -ge 1024
expect "never more than capacity on server 1" "$(rstat 0 pages)" -le 1024
expect "no RDMA errors" "$(($(rstat 0 errors) + $(rstat 1 errors)))" -eq 0
swapoff "$SWAPDEV" || fail "swapoff"
unload_rdma || fail "rmmod"
load_rswap capacity_mb=4 || fail "insmod rswap_dram (tier 0)"
insmod /modules/rswap_rdma.ko secret="$SECRET" servers="$(server 1),$(server 2)" mib_per_server=64 placement=tiered ||
	fail "insmod rswap_rdma below rswap_dram"
swap_on || fail "swapon (tier 0)"
walk 6M --mib 16 --random-passes 1 --seed 41 || fail "tier 0: pagewalker exit $?"
expect "tier 0: data verified" "$(walkval mismatches)" -eq 0
note "tier 0: dram stores $(stat rswap/dram/stores) refused $(stat rswap/dram/store_refused) loads $(stat rswap/dram/loads); rdma stores $(stat rswap/rdma/stores) loads $(stat rswap/rdma/loads)"
expect "tier 0: local DRAM filled first (4 MiB: 1024 pages)" "$(stat rswap/dram/stores)" -ge 1024
expect "tier 0: it refused stores once full" "$(stat rswap/dram/store_refused)" -gt 100
expect "tier 0: the remote nodes took what it refused" "$(stat rswap/rdma/stores)" -gt 100
expect "tier 0: no RDMA errors" "$(($(rstat 0 errors) + $(rstat 1 errors)))" -eq 0
expect "tier 0: nothing lost" "$(($(rstat 0 lost_pages) + $(rstat 1 lost_pages)))" -eq 0
expect "tier 0: pages came back from both tiers" "$(($(stat rswap/dram/loads) > 0 && $(stat rswap/rdma/loads) > 0))" -eq 1
swapoff "$SWAPDEV" || fail "swapoff (tier 0)"
rmmod rswap_rdma && rmmod rswap_dram && rmmod rswap || fail "rmmod (tier 0)"
finish
