# Benchmark: rswap with the DRAM backend.
. /tests/lib.sh
load_rswap capacity_mb=256 || fail "insmod"
bench_run rswap_dram
unload_rswap || fail "rmmod"
finish
