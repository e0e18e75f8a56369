# Benchmark: rswap_rdma over the lab's memory nodes (rswap.servers=N).
. /tests/lib.sh
n=$(param rswap.servers)
list=$(server 1)
[ "$n" -ge 2 ] && list="$list,$(server 2)"
load_rdma servers="$list" mib_per_server=128 || fail "insmod"
bench_run "rdma$n"
echo "RSWAP-BENCH-SPLIT server1=$(rstat 0 writes) server2=$(rstat 1 writes)" \
	"read_p50_us=$(rstat 0 read_lat_p50_us),$(rstat 1 read_lat_p50_us)" \
	"read_p99_us=$(rstat 0 read_lat_p99_us),$(rstat 1 read_lat_p99_us)"
unload_rdma || fail "rmmod"
finish
