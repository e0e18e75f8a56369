# DRAM backend: a working set 4x memory.max goes out through rswap and comes
# back byte-exact; the counters show every page took the rswap path.
. /tests/lib.sh
load_rswap capacity_mb=256 || fail "insmod"
swap_on || fail "swapon"
out0=$(vmstat pswpout)
walk 32M --mib 128 --random-passes 2 || fail "pagewalker exit $?"
expect "data verified" "$(walkval mismatches)" -eq 0
expect "pages swapped in by faults" "$(walkval swapin_pages)" -gt 10000
stores=$(stat rswap/stores); loads=$(stat rswap/loads)
# 96 MiB over the limit is 24576 pages: each goes out at least once.
expect "rswap stores" "$stores" -ge 24576
expect "rswap stores bounded" "$stores" -le 400000
expect "rswap loads" "$loads" -ge 20000
# A page read back stays in the swap cache with its frontswap copy, so it
# can be reclaimed again without a new store: loads may exceed stores.
expect "dram took every store" "$(stat rswap/dram/stores)" -eq "$stores"
expect "no store refused" "$(stat rswap/store_refused)" -eq 0
expect "no load error" "$(stat rswap/load_errors)" -eq 0
expect "nothing written to the swap disk" "$(($(vmstat pswpout) - out0))" -eq 0
held=$(stat rswap/pages_held)
expect "bytes_held is pages_held pages" "$(stat rswap/bytes_held)" -eq $((held * 4096))
expect "dram used_pages matches" "$(stat rswap_dram/used_pages)" -eq "$held"
expect_fail "rmmod rswap_dram while swap is on" "in use\|Resource temporarily\|busy" rmmod rswap_dram
expect_fail "rmmod rswap while swap is on" "in use\|Resource temporarily\|busy" rmmod rswap
swapoff "$SWAPDEV" || fail "swapoff"
expect "pages_held after swapoff" "$(stat rswap/pages_held)" -eq 0
expect "dram pages_held after swapoff" "$(stat rswap/dram/pages_held)" -eq 0
expect "dram used_pages after swapoff" "$(stat rswap_dram/used_pages)" -eq 0
unload_rswap || fail "rmmod after swapoff"
note "stores=$stores loads=$loads $(cat /tmp/walk)"
finish
