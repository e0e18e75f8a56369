# A DRAM pool smaller than what is swapped: rswap refuses the excess, the
# swap disk takes it, and every byte still verifies.
. /tests/lib.sh
load_rswap capacity_mb=16 || fail "insmod"
swap_on || fail "swapon"
out0=$(vmstat pswpout); in0=$(vmstat pswpin)
walk 32M --mib 128 --random-passes 1 || fail "pagewalker exit $?"
expect "data verified" "$(walkval mismatches)" -eq 0
expect "rswap refused stores when full" "$(stat rswap/store_refused)" -gt 1000
expect "dram refused them" "$(stat rswap/dram/store_refused)" -gt 1000
expect "pool never over capacity (4096 pages)" "$(stat rswap_dram/used_pages)" -le 4096
expect "rswap still took pages" "$(stat rswap/stores)" -ge 4096
expect "the swap disk took the excess" "$(($(vmstat pswpout) - out0))" -gt 1000
expect "and gave it back" "$(($(vmstat pswpin) - in0))" -gt 1000
expect "no load error" "$(stat rswap/load_errors)" -eq 0
swapoff "$SWAPDEV" || fail "swapoff"
expect "pages_held after swapoff" "$(stat rswap/pages_held)" -eq 0
unload_rswap || fail "rmmod"
note "$(cat /tmp/walk)"
finish
