# Asynchronous swap-in (kernel patches 0017-0018): the faulting page is read
# first, the rest of the readahead window is handed to the backend without
# waiting, and the backend completes each page later (rswap_dram from its
# workqueue). Both of the kernel's readahead paths, VMA-based and cluster,
# must give byte-exact data; the counters show the asynchronous path was
# taken. Then a readahead load that fails after it was started must lose
# the page cleanly (never wrong data), and a backend without asynchronous
# loads (async_loads=0) must still work through the synchronous path.
. /tests/lib.sh
RA=/sys/kernel/mm/swap/vma_ra_enabled

load_rswap capacity_mb=256 || fail "insmod"
swap_on || fail "swapon"
for path in vma cluster; do
	[ $path = vma ] && echo true >$RA || echo false >$RA
	a0=$(stat rswap/loads_async) r0=$(stat rswap/loads_readahead) l0=$(stat rswap/loads)
	q0=$(stat rswap_dram/loads_deferred) i0=$(stat rswap_dram/loads_inline) ra0=$(vmstat swap_ra)
	walk 16M --mib 64 --random-passes 0 --seed 3 || fail "$path: pagewalker exit $?"
	expect "$path: data verified" "$(walkval mismatches)" -eq 0
	sleep 1 # the workqueue ends the window's last loads
	async=$(delta rswap/loads_async "$a0")
	expect "$path: readahead pages loaded asynchronously" "$async" -gt 2000
	expect "$path: every readahead load was asynchronous" "$(delta rswap/loads_readahead "$r0")" -eq "$async"
	expect "$path: the faulting pages loaded synchronously" "$(($(delta rswap/loads "$l0") - async))" -gt 500
	done_=$(($(delta rswap_dram/loads_deferred "$q0") + $(delta rswap_dram/loads_inline "$i0")))
	expect "$path: dram completed every asynchronous load" "$done_" -eq "$async"
	expect "$path: the kernel counted readahead" "$(($(vmstat swap_ra) - ra0))" -ge "$async"
	note "$path: loads=$(delta rswap/loads "$l0") async=$async deferred=$(delta rswap_dram/loads_deferred "$q0") inline=$(delta rswap_dram/loads_inline "$i0") $(cat /tmp/walk)"
done
expect "no load error" "$(stat rswap/load_errors)" -eq 0

# A readahead page whose asynchronous load fails is lost: a task that
# touches it gets SIGBUS, and nobody ever reads wrong data. (If reclaim
# drops the failed page before the walk reaches it, the page is read again,
# successfully: then the walk ends cleanly.)
echo true >$RA
echo 1 >"$DBG/rswap_dram/fail_async_loads"
walk 16M --mib 64 --random-passes 0 --seed 4
rc=$?
expect "failed readahead: walk ended cleanly or by SIGBUS" "$([ $rc = 0 ] || [ $rc = 135 ] && echo 1)" -eq 1
expect "failed readahead: never wrong data" "$(grep -c MISMATCH /tmp/walk.out)" -eq 0
expect "failed readahead: the injected failure was used" "$(stat rswap_dram/fail_async_loads)" -eq 0
expect "failed readahead: one load error" "$(stat rswap/load_errors)" -eq 1
expect "failed readahead: the kernel said the page is lost" "$(dmesg | grep -c 'Frontswap load failed for swap entry')" -ge 1
note "failed readahead: walk exit $rc"
swapoff "$SWAPDEV" || fail "swapoff"
expect "pages_held after swapoff" "$(stat rswap/pages_held)" -eq 0
unload_rswap || fail "rmmod"

# A backend without asynchronous loads: readahead goes through its
# synchronous load.
load_rswap capacity_mb=256 async_loads=0 || fail "insmod async_loads=0"
swap_on || fail "swapon"
walk 16M --mib 64 --random-passes 0 --seed 5 || fail "sync backend: pagewalker exit $?"
expect "sync backend: data verified" "$(walkval mismatches)" -eq 0
expect "sync backend: readahead pages loaded" "$(stat rswap/loads_readahead)" -gt 2000
expect "sync backend: none asynchronously" "$(stat rswap/loads_async)" -eq 0
expect "sync backend: nothing deferred" "$(stat rswap_dram/loads_deferred)" -eq 0
expect "sync backend: no load error" "$(stat rswap/load_errors)" -eq 0
note "sync backend: loads=$(stat rswap/loads) readahead=$(stat rswap/loads_readahead) $(cat /tmp/walk)"
swapoff "$SWAPDEV" || fail "swapoff"
unload_rswap || fail "rmmod"
finish
