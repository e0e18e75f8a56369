# A page the backend accepted but cannot return must fail the faulting task
# with SIGBUS, never hand it the stale swap-disk slot (kernel patch 0012).
# rswap_dram's fail_loads knob makes its next load fail as a lost page would.
# Readahead off: the injected failure must hit the faulting page itself. (A
# failed readahead page that reclaim drops before anyone touches it is read
# again later, successfully: no loss, but no SIGBUS to check either. With
# the non-rotational disk the kernel uses VMA readahead, which hits it.)
. /tests/lib.sh
echo 0 >/proc/sys/vm/page-cluster
load_rswap capacity_mb=256 || fail "insmod"
swap_on || fail "swapon"
echo 1 >"$DBG/rswap_dram/fail_loads"
walk 24M --mib 64 --random-passes 1
rc=$?
expect "pagewalker killed by SIGBUS (128+7)" "$rc" -eq 135
expect "it never saw wrong data" "$(grep -c MISMATCH /tmp/walk.out)" -eq 0
expect "the injected failure was used" "$(stat rswap_dram/fail_loads)" -eq 0
expect "rswap counted one load error" "$(stat rswap/load_errors)" -eq 1
expect "the kernel said the page is lost" "$(dmesg | grep -c 'Frontswap load failed for swap entry')" -ge 1
# The kernel carries on: the task's pages were freed, the next run is clean.
expect "pages of the dead task freed" "$(stat rswap/pages_held)" -lt 2000
walk 24M --mib 64 --random-passes 1 --seed 9 || fail "pagewalker after the lost page: exit $?"
expect "next run verified" "$(walkval mismatches)" -eq 0
expect "no further load error" "$(stat rswap/load_errors)" -eq 1
swapoff "$SWAPDEV" || fail "swapoff"
expect "pages_held after swapoff" "$(stat rswap/pages_held)" -eq 0
unload_rswap || fail "rmmod"
echo 3 >/proc/sys/vm/page-cluster
finish
