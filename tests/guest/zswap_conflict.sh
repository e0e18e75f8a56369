# Frontswap has one slot: rswap and zswap refuse to take it from each other.
# Run last (scripts/test.sh keeps it last): once registered, zswap cannot
# be unregistered, and no later test could load rswap.
. /tests/lib.sh
expect "zswap off at boot" "$(cat /sys/module/zswap/parameters/enabled)" = N
insmod /modules/rswap.ko || fail "insmod rswap with zswap off"
expect_fail "enable zswap while rswap owns frontswap" "can't enable" sh -c 'echo 1 >/sys/module/zswap/parameters/enabled'
rmmod rswap || fail "rmmod rswap"
echo 1 >/sys/module/zswap/parameters/enabled || fail "enable zswap with the slot free"
expect_fail "rswap while zswap owns frontswap" "another backend" insmod /modules/rswap.ko
finish
