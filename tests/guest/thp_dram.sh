# Transparent huge pages through rswap: with a non-rotational swap disk a
# THP is swapped out whole, and frontswap hands it to rswap one subpage at
# a time (kernel patch 0014). Every byte must come back. Then a pool too
# small for the working set: a refused subpage sends its whole THP to the
# disk, and every byte still comes back.
. /tests/lib.sh
THP=/sys/kernel/mm/transparent_hugepage
expect "THP is on (always)" "$(grep -c -F '[always]' $THP/enabled)" -eq 1
load_rswap capacity_mb=256 || fail "insmod"
swap_on || fail "swapon"
alloc0=$(vmstat thp_fault_alloc) thp0=$(vmstat thp_swpout) out0=$(vmstat pswpout)
walk 32M --mib 128 --huge --random-passes 1 || fail "pagewalker exit $?"
expect "data verified" "$(walkval mismatches)" -eq 0
expect "huge pages were in play (thp_fault_alloc)" "$(($(vmstat thp_fault_alloc) - alloc0))" -gt 10
huge=$(stat rswap/stores_huge)
# A THP reaches rswap as 512 subpages only if it was swapped out whole.
expect "whole THPs stored through rswap (stores_huge)" "$huge" -ge 5120
expect "dram took the huge stores" "$(stat rswap/dram/stores_huge)" -eq "$huge"
expect "no store refused" "$(stat rswap/store_refused)" -eq 0
expect "no THP went to the disk" "$(($(vmstat thp_swpout) - thp0))" -eq 0
expect "nothing written to the swap disk" "$(($(vmstat pswpout) - out0))" -eq 0
expect "no load error" "$(stat rswap/load_errors)" -eq 0
note "pass 1: stores=$(stat rswap/stores) stores_huge=$huge loads=$(stat rswap/loads) thp_fault_alloc+$(($(vmstat thp_fault_alloc) - alloc0)) $(cat /tmp/walk)"
swapoff "$SWAPDEV" || fail "swapoff"
expect "pages_held after swapoff" "$(stat rswap/pages_held)" -eq 0
unload_rswap || fail "rmmod after swapoff"

# An 8 MiB pool: THPs that do not fit go to the disk whole.
load_rswap capacity_mb=8 || fail "insmod (small pool)"
swap_on || fail "swapon"
thp0=$(vmstat thp_swpout) out0=$(vmstat pswpout) in0=$(vmstat pswpin)
walk 16M --mib 64 --huge --random-passes 1 || fail "pagewalker exit $?"
expect "data verified (small pool)" "$(walkval mismatches)" -eq 0
expect "huge subpages refused" "$(stat rswap/store_refused_huge)" -gt 0
expect "refused THPs written to the disk whole (thp_swpout)" "$(($(vmstat thp_swpout) - thp0))" -gt 0
expect "the disk was read back" "$(($(vmstat pswpin) - in0))" -gt 0
expect "no load error" "$(stat rswap/load_errors)" -eq 0
expect "dram never over capacity" "$(stat rswap_dram/used_pages)" -le 2048
note "pass 2: stores_huge=$(stat rswap/stores_huge) store_refused_huge=$(stat rswap/store_refused_huge) thp_swpout+$(($(vmstat thp_swpout) - thp0)) pswpout+$(($(vmstat pswpout) - out0)) $(cat /tmp/walk)"
swapoff "$SWAPDEV" || fail "swapoff"
unload_rswap || fail "rmmod after swapoff"
finish
