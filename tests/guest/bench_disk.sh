# Benchmark: swap on the virtio-blk disk only.
. /tests/lib.sh
bench_run disk
finish
