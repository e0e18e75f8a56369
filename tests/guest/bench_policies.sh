# Benchmark: the placement policies on the same workloads, in one boot of
# the lab with memory node 2's link at 1/4 of node 1's rate (bench.sh
# policies), or with a third node at node 1's rate and 4x its latency
# (bench.sh mixed; rswap.servers= says how many nodes). Each run: 24 MiB
# walker under memory.max=6M (about 24 MiB ends up swapped), one random
# pass, skewed (Zipf-like, --skew 3) or uniform. rswap.mib= is each
# node's region: 32 MiB by default, so any node can hold every page and
# placement is free to choose; at 16 MiB the fast node fills up and holds
# at most two thirds. rswap.workloads= and rswap.policies= pick the runs.
# Per-server traffic is recorded every second (rswapctl record) for the
# plots.
. /tests/lib.sh
wls=$(param rswap.workloads | tr ',' ' ')
pols=$(param rswap.policies | tr ',' ' ')
mib=$(param rswap.mib)
n=$(param rswap.servers)
list=$(server 1)
for i in $(seq 2 "${n:-2}"); do list="$list,$(server "$i")"; done
# "a/b/c": a counter of each server.
each() { # each <counter> [<counter to subtract>]
	local out="" i sub
	for i in $(seq 0 $((${n:-2} - 1))); do
		sub=0
		[ -n "$2" ] && sub=$(rstat "$i" "$2")
		out="$out/$(($(rstat "$i" "$1") - sub))"
	done
	echo "${out#/}"
}
for wl in ${wls:-skewed uniform}; do
	for pol in ${pols:-capacity weighted tiered}; do
		load_rdma servers="$list" mib_per_server=${mib:-32} placement=$pol || fail "insmod $pol"
		swap_on || fail "swapon"
		args="--mib 24 --random-passes 1 --seed 7"
		[ $wl = skewed ] && args="$args --skew 3"
		record_start "$wl-$pol"
		walk 6M $args || fail "$pol $wl: pagewalker exit $?"
		record_stop
		# Loads served by each node, without the moves' own reads; node 1
		# is the fast one.
		loads=$(each reads moved_out)
		f=${loads%%/*}
		s=$(($(echo "$loads" | tr / +) - f))
		echo "RSWAP-BENCH-POLICY policy=$pol workload=$wl mib_per_server=${mib:-32} fast_loads=$f slow_loads=$s loads=$loads" \
			"stores=$(each stores) read_lat_us=$(each read_lat_ewma_us) promotions=$(rstat 0 promotions)" \
			"demotions=$(rstat 0 demotions) refused=$(stat rswap/store_refused) $(cat /tmp/walk)"
		swapoff "$SWAPDEV" || fail "swapoff"
		unload_rdma || fail "rmmod"
	done
done
finish
