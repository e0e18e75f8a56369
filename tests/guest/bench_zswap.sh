# Benchmark: zswap (boot with zswap.enabled=1).
. /tests/lib.sh
expect "zswap enabled" "$(cat /sys/module/zswap/parameters/enabled)" = Y
bench_run zswap
finish
