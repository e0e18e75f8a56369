# Wrong parameters and wrong order fail cleanly with a clear message.
. /tests/lib.sh
expect_fail "rswap_dram without rswap" "Unknown symbol\|unknown symbol" insmod /modules/rswap_dram.ko
insmod /modules/rswap.ko || fail "insmod rswap"
expect_fail "capacity_mb=0" "capacity_mb=0" insmod /modules/rswap_dram.ko capacity_mb=0
expect_fail "capacity_mb larger than RAM" "exceeds this machine's RAM" insmod /modules/rswap_dram.ko capacity_mb=1000000
expect_fail "capacity_mb not a number" "invalid for parameter" insmod /modules/rswap_dram.ko capacity_mb=lots
swap_on || fail "swapon"
expect_fail "backend loaded after swapon" "load backends before swapon" insmod /modules/rswap_dram.ko
swapoff "$SWAPDEV" || fail "swapoff"
rmmod rswap || fail "rmmod rswap"
swap_on || fail "swapon"
expect_fail "rswap loaded after swapon" "load rswap before swapon" insmod /modules/rswap.ko
swapoff "$SWAPDEV" || fail "swapoff"
expect "no rswap module left" "$(grep -c rswap /proc/modules)" -eq 0
# The kernel ignores unknown parameters with a warning; it must be logged.
before=$(dmesg | wc -l)
insmod /modules/rswap.ko && insmod /modules/rswap_dram.ko capacity=5 || fail "insmod with an unknown parameter"
expect "unknown parameter warned about" "$(dmesg | tail -n +$((before + 1)) | grep -c "unknown parameter 'capacity' ignored")" -ge 1
unload_rswap || fail "rmmod"
# A clean load still works after all that.
load_rswap capacity_mb=8 || fail "insmod after refusals"
unload_rswap || fail "rmmod"
finish
