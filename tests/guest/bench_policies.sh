# Benchmark: the placement policies on the same workloads, in one boot of
# the lab with memory node 2's link at 1/4 of node 1's rate (bench.sh
# policies). Each run: 24 MiB walker under memory.max=6M, one random
# pass, 16 MiB from each node: the fast node can hold most of the ~18 MiB
# swapped, not all of it, so placement has a choice (with 12 MiB each
# both nodes fill up and every policy is forced to an even split);
# skewed (Zipf-like, --skew 3) and uniform (rswap.workloads= picks; and
# rswap.policies= the policies). Per-server traffic is recorded every
# second (rswapctl record) for the plots.
. /tests/lib.sh
wls=$(param rswap.workloads | tr ',' ' ')
pols=$(param rswap.policies | tr ',' ' ')
for wl in ${wls:-skewed uniform}; do
	for pol in ${pols:-capacity weighted tiered}; do
		load_rdma servers="$(server 1),$(server 2)" mib_per_server=16 placement=$pol || fail "insmod $pol"
		swap_on || fail "swapon"
		args="--mib 24 --random-passes 1 --seed 7"
		[ $wl = skewed ] && args="$args --skew 3"
		record_start "$wl-$pol"
		walk 6M $args || fail "$pol $wl: pagewalker exit $?"
		record_stop
		# Loads served by each node, without the moves' own reads.
		f=$(($(rstat 0 reads) - $(rstat 0 moved_out))) s=$(($(rstat 1 reads) - $(rstat 1 moved_out)))
		echo "RSWAP-BENCH-POLICY policy=$pol workload=$wl fast_loads=$f slow_loads=$s" \
			"fast_stores=$(rstat 0 stores) slow_stores=$(rstat 1 stores) promotions=$(rstat 0 promotions)" \
			"demotions=$(rstat 0 demotions) refused=$(stat rswap/store_refused) $(cat /tmp/walk)"
		swapoff "$SWAPDEV" || fail "swapoff"
		unload_rdma || fail "rmmod"
	done
done
finish
