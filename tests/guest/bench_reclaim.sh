# Benchmark: offloaded reclaim (issue 10, section 4), Fastswap's design
# evaluated on 6.1 without a patch. The walker runs on CPU 0 in both
# modes; CPU 1 is free for the kernel's workers:
# - inline: the walker reclaims for itself when it hits memory.max;
# - offload: rswapctl reclaim, pinned to CPU 1, keeps the cgroup 1 MiB
#   below memory.max through memory.reclaim, so the walker's faults
#   should find room.
# The modes alternate, rswap.rounds rounds (default 3), so drift (a warming pool, the host)
# falls on both. One RSWAP-BENCH-RECLAIM line per walk; memory.events'
# `max` counts the times the walker itself hit the limit.
. /tests/lib.sh
MIB=$(param rswap.mib)
MIB=${MIB:-48}
ROUNDS=$(param rswap.rounds)
ROUNDS=${ROUNDS:-3}
if [ -n "$(param rswap.servers)" ]; then
	backend=rdma
	load_rdma servers="$(server 1)" mib_per_server=128 || fail "insmod"
else
	backend=dram
	load_rswap capacity_mb=256 || fail "insmod"
fi
swap_on || fail "swapon"
mkdir -p "$CG"
for round in $(seq "$ROUNDS"); do
	for wl in sequential mixed; do
		case $wl in
		sequential) args="--random-passes 0" ;;
		mixed) args="--random-passes 1 --skew 3" ;;
		esac
		for mode in inline offload; do
			rm -f /tmp/reclaim.out
			if [ $mode = offload ]; then
				taskset -c 1 rswapctl reclaim "$CG" --headroom-kib 1024 >/tmp/reclaim.out 2>&1 &
				rpid=$!
			fi
			e0=$(awk '$1 == "max" {print $2}' "$CG/memory.events")
			WALK_CPU=0 walk 16M --mib "$MIB" --seed 7 $args || fail "$mode $wl: pagewalker exit $?"
			if [ $mode = offload ]; then
				wait $rpid || fail "rswapctl reclaim: $(cat /tmp/reclaim.out)"
			fi
			e1=$(awk '$1 == "max" {print $2}' "$CG/memory.events")
			r=$(sed -n 's/^rswapctl reclaim: //p' /tmp/reclaim.out 2>/dev/null)
			echo "RSWAP-BENCH-RECLAIM backend=$backend mode=$mode workload=$wl round=$round max_events=$((e1 - e0)) ${r:-reclaimed_kib=0} $(cat /tmp/walk)"
		done
	done
done
expect "no load error" "$(stat rswap/load_errors)" -eq 0
swapoff "$SWAPDEV" || fail "swapoff"
finish
