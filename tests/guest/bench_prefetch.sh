# Benchmark: the fault path, every workload under every mode, in one run:
# with rswap_dram in the single VM, with rswap_rdma against memory node 1
# in the lab. One RSWAP-BENCH-PREFETCH line per run (bench.sh prefetch
# tabulates them):
# - modes: sync (async_loads=0, prefetch=kernel: every readahead page read
#   synchronously, one by one, as before patch 0017), async (kernel
#   readahead, loaded asynchronously), trend (prefetch=trend), off
#   (prefetch=off);
# - workloads: sequential, strided (stride 5: the kernel's readahead
#   reads the wrong neighbours), random (full passes in a random
#   permutation), mixed (a Zipf-like random pass between two sequential
#   ones).
# rswap.modes= and rswap.workloads= (comma-separated) pick some of them,
# rswap.rounds= repeats the whole set (the modes alternate within a round).
. /tests/lib.sh
P=/sys/module/rswap/parameters/prefetch
MIB=$(param rswap.mib)
MIB=${MIB:-64}
MODES=$(param rswap.modes)
MODES=${MODES:-sync,async,trend,off}
WORKLOADS=$(param rswap.workloads)
WORKLOADS=${WORKLOADS:-sequential,strided,random,mixed}
ROUNDS=$(param rswap.rounds)
ROUNDS=${ROUNDS:-1}
if [ -n "$(param rswap.servers)" ]; then
	backend=rdma
	load() { load_rdma servers="$(server 1)" mib_per_server=128 "$@"; }
	unload() { unload_rdma; }
else
	backend=dram
	load() { load_rswap capacity_mb=256 "$@"; }
	unload() { unload_rswap; }
fi
if [ $backend = rdma ]; then
	# The transport's own figures on the same link, in the same run (memory
	# node 1 runs the perftest servers, rswap.perftest=1): 4 KiB reads one
	# at a time (ib_read_lat), and at the readahead queue's depth of 8
	# (ib_read_bw -t 8), the ceiling for reads ahead.
	sleep 2
	ib_read_lat -d rxe_eth0 -p 18517 -s 4096 -n 1000 10.77.1.2 >/tmp/lat4k.out 2>&1 || fail "ib_read_lat"
	ib_read_bw -d rxe_eth0 -p 18518 -s 4096 -t 8 -n 5000 10.77.1.2 >/tmp/bw4k.out 2>&1 || fail "ib_read_bw"
	cat /tmp/lat4k.out /tmp/bw4k.out
	lat=$(awk '$1 == 4096 && NF >= 8 {print "read_lat_typical_us=" $5 " read_lat_avg_us=" $6 " read_lat_p99_us=" $8}' /tmp/lat4k.out)
	bw=$(awk '$1 == 4096 && NF >= 5 {print "read_bw_MBps=" $4}' /tmp/bw4k.out)
	echo "RSWAP-PERFTEST4K $lat $bw"
fi
for round in $(seq "$ROUNDS"); do
for mode in $(echo "$MODES" | tr , " "); do
	if [ $mode = sync ]; then
		load async_loads=0 || fail "insmod"
	else
		load || fail "insmod"
	fi
	case $mode in trend) echo trend >$P ;; off) echo off >$P ;; *) echo kernel >$P ;; esac
	swap_on || fail "swapon"
	for wl in $(echo "$WORKLOADS" | tr , " "); do
		case $wl in
		sequential) args="--random-passes 0" ;;
		strided) args="--random-passes 0 --stride 5" ;;
		random) args="--random-passes 0 --shuffle" ;;
		mixed) args="--random-passes 1 --skew 3" ;;
		esac
		m0=$(stat rswap/swapin_misses) h0=$(stat rswap/prefetch_hits) r0=$(stat rswap/loads_readahead)
		a0=$(stat rswap/loads_async) l0=$(stat rswap/loads)
		walk 16M --mib "$MIB" --seed 7 $args || fail "$mode $wl: pagewalker exit $?"
		sleep 1
		echo "RSWAP-BENCH-PREFETCH backend=$backend round=$round mode=$mode workload=$wl misses=$(delta rswap/swapin_misses "$m0")" \
			"prefetch_hits=$(delta rswap/prefetch_hits "$h0") read_ahead=$(delta rswap/loads_readahead "$r0")" \
			"async=$(delta rswap/loads_async "$a0") rswap_loads=$(delta rswap/loads "$l0") $(cat /tmp/walk)"
	done
	expect "$mode: no load error" "$(stat rswap/load_errors)" -eq 0
	swapoff "$SWAPDEV" || fail "swapoff"
	unload || fail "rmmod"
done
done
finish
