# Benchmark: what per-server traffic does over time when a memory node
# gets busy or its link goes dark (bench.sh policies; plotted from the
# rswapctl record samples). Two runs, each one long walk (24 MiB under
# memory.max=6M, three random passes) over both nodes:
# - interference-weighted: placement=weighted; memory node 2 runs its own
#   memory-heavy job from 20 s to 60 s (control port "busy", host CPU cap);
# - blackout-capacity: placement=capacity; link 2 drops every packet for
#   10 s from 20 s.
. /tests/lib.sh
long_walk() { walk 6M --mib 24 --random-passes 3 --seed "$1" --lost-ok; }
for run in interference-weighted blackout-capacity; do
	pol=${run#*-}
	load_rdma servers="$(server 1),$(server 2)" mib_per_server=12 placement=$pol timeout_ms=1000 || fail "insmod $run"
	swap_on || fail "swapon"
	record_start "$run"
	(
		sleep 20
		if [ "$run" = interference-weighted ]; then
			echo "busy 40" | nc -w 2 10.77.2.2 7990
			echo "RSWAP-LAB busy 2 on"
			sleep 40
			echo calm | nc -w 2 10.77.2.2 7990
			echo "RSWAP-LAB busy 2 off"
		else
			blackout 2 10
		fi
	) &
	ev=$!
	long_walk 61 || fail "$run: pagewalker exit $?"
	wait $ev
	record_stop
	expect "$run: data verified" "$(walkval mismatches)" -eq 0
	echo "RSWAP-BENCH-TIMELINE run=$run $(cat /tmp/walk)"
	swapoff "$SWAPDEV" || fail "swapoff"
	unload_rdma || fail "rmmod"
done
finish
