#!/usr/bin/env bash
# Benchmark (not a test): the same page walker run under each swap setup,
# and the raw RDMA transport (perftest) between two lab VMs. Appends the
# figures to tests/results.md with the date and kernel version.
# Usage: scripts/bench.sh [modes...]
#   modes: disk zswap dram rdma1 rdma2 rdma2_slow perftest policies tight mixed prefetch prefetch_random
#   reclaim redundancy late_binding (default: the first seven; the others have their own tables)
# The disk mode opens the swap image with cache=none (O_DIRECT): a disk,
# not the host's page cache.
source "$(dirname "$0")/lib.sh"
MODES=(disk zswap dram rdma1 rdma2 rdma2_slow perftest)
[ $# -gt 0 ] && MODES=("$@")
rswap_prepare
results=$RSWAP_ROOT/tests/results.md
rows=()
perf=""
policies=""
mixed=""
prefetch=""
prefetch_random=""
perf4k=""
reclaim=""
redundancy=""
late_binding=""
timeline=""
trap 'lab_stop' EXIT

val() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
# Loads of a redundancy run served by the other pieces: failovers
# (mirror) or loads rebuilt from the parity (ec); "-" without redundancy.
served() {
	case $(val redundancy "$1") in
	mirror) val failovers "$1" ;;
	ec:*) echo $(($(val rebuilt "$1") + $(val late_parity "$1"))) ;;
	*) echo - ;;
	esac
}

# "- <group>: <median of value>" per group of <lines> (the group: the
# values of the <keys>), sorted.
medians() { # medians <lines> <value key> <keys...>
	local lines=$1 v=$2 k l key
	shift 2
	while read -r l; do
		[ -n "$l" ] || continue
		key=""
		for k in "$@"; do key="$key $(val "$k" "$l")"; done
		echo "${key# }|$(val "$v" "$l")"
	done <<<"$lines" | sort -t'|' -k1,1 -k2g |
		awk -F'|' '{a[$1] = a[$1] " " $2; n[$1]++} END {for (k in a) {split(substr(a[k], 2), x, " "); print "- " k ": " x[int((n[k] + 1) / 2)]}}' | sort
}

# One lab run: memory nodes 1..<nodes>, each "<n>:<rate>[:<delay ms>]"
# shaped if a rate is given (net.sh, both ends), and the compute node
# running <script>.
lab_bench() { # lab_bench <script> <nodes> [n:rate[:delay] ...]
	local script=$1 nodes=$2 shape="" n extra
	shift 2
	for s in "$@"; do
		[[ $s == *:*:* ]] || s=$s:0
		shape="$shape,$s"
	done
	shape=${shape#,}
	for n in $(seq "$nodes"); do
		extra=()
		[ -n "$shape" ] && extra+=("rswap.shape=$shape")
		[[ $script == bench_perftest || $script == bench_prefetch ]] && [ "$n" = 1 ] && extra+=(rswap.perftest=1)
		lab_mem_start "$n" 160 "${extra[@]}"
	done
	for n in $(seq "$nodes"); do lab_mem_wait "$n" || die "memory node $n did not start"; done
	console=$(lab_compute "$nodes" "$script" 2400 "rswap.servers=$nodes" ${shape:+rswap.shape=$shape} ${BENCH_ARGS:-})
	lab_stop
}

# Runs guest script <script> with rswap_dram in the single VM, then with
# rswap_rdma against memory node 1 of the lab (kernel args <lab args>;
# the single VM's: <vm args>); sets $both to the <tag> lines of both runs
# ($console is left at the lab's).
dram_and_rdma() { # dram_and_rdma <script> <tag> <lab args> [vm args...]
	console=$(rswap_run_guest "$1" 3600 "${@:4}")
	grep -a -q "^RSWAP-RESULT $1 PASS" "$console" || die "$1 (dram) failed; see $console"
	both=$(grep -a "^$2 " "$console")$'\n'
	BENCH_ARGS=$3 lab_bench "$1" 1
	both+=$(grep -a "^$2 " "$console")
}

for mode in "${MODES[@]}"; do
	log "bench: $mode"
	case $mode in
	disk) console=$(RSWAP_DISK_CACHE=none rswap_run_guest bench_disk 1800) ;;
	dram) console=$(rswap_run_guest bench_dram 1800) ;;
	reclaim)
		dram_and_rdma bench_reclaim RSWAP-BENCH-RECLAIM "rswap.mib=16 rswap.rounds=2"
		reclaim=$both
		;;
	prefetch)
		dram_and_rdma bench_prefetch RSWAP-BENCH-PREFETCH rswap.mib=32
		prefetch=$both
		perf4k=$(grep -a '^RSWAP-PERFTEST4K ' "$console" | tail -1)
		;;
	# Random walks only, off against trend, three rounds: what trend
	# costs where there is no trend, as medians.
	prefetch_random)
		r="rswap.modes=off,trend rswap.workloads=random rswap.rounds=3"
		dram_and_rdma bench_prefetch RSWAP-BENCH-PREFETCH "rswap.mib=32 $r" $r
		prefetch_random=$both
		;;
	# Three memory nodes, unshaped: none against mirror, healthy and with
	# node 2's link device removed.
	redundancy)
		BENCH_ARGS="rswap.mib=24" lab_bench bench_redundancy 3
		redundancy=$(grep -a '^RSWAP-BENCH-REDUNDANCY ' "$console")
		;;
	# ec:2+1 healthy, without and with late binding in turn, three
	# rounds: one run each is within the runs' noise.
	late_binding)
		l=ec:2+1/nolate,ec:2+1
		BENCH_ARGS="rswap.mib=24 rswap.runs=$l,$l,$l rswap.states=healthy" lab_bench bench_redundancy 3
		late_binding=$(grep -a '^RSWAP-BENCH-REDUNDANCY ' "$console")
		;;
	zswap) console=$(rswap_run_guest bench_zswap 1800 zswap.enabled=1) ;;
	rdma1) lab_bench bench_rdma 1 ;;
	rdma2) lab_bench bench_rdma 2 ;;
	rdma2_slow) lab_bench bench_rdma 2 1:40mbit 2:10mbit ;;
	perftest) lab_bench bench_perftest 1 ;;
	# 4:1, and low enough to bind: under TCG the swap traffic is about 1
	# MiB/s, below 40 vs 10 mbit, where tbf passed every burst at once and
	# both nodes measured the same latency.
	policies) lab_bench bench_policies,bench_timeline 2 1:8mbit 2:2mbit ;;
	# The three-node mixed lab: node 2 at 1/4 of node 1's rate, node 3 at
	# node 1's rate with 5 ms more each way (about 4x node 1's latency).
	mixed) BENCH_ARGS="rswap.mib=16" lab_bench bench_policies 3 1:8mbit 2:2mbit 3:8mbit:5 ;;
	# The same 4:1 nodes with 16 MiB each: the fast node cannot hold
	# every page, so only the tiered policy can choose which it keeps.
	tight) BENCH_ARGS="rswap.mib=16 rswap.workloads=skewed" lab_bench bench_policies 2 1:8mbit 2:2mbit ;;
	*) die "unknown mode $mode" ;;
	esac
	grep -a -q "^RSWAP-RESULT bench_\w* PASS" "$console" || die "$mode failed; see $console"
	if [ "$mode" = policies ]; then
		grep -a -q "^RSWAP-RESULT bench_timeline PASS" "$console" || die "bench_timeline failed; see $console"
		policies+=$(grep -a '^RSWAP-BENCH-POLICY ' "$console")$'\n'
		timeline=$(grep -a '^RSWAP-BENCH-TIMELINE ' "$console")
		# The plots: per-server traffic over time, next to the tables.
		(cd "$RSWAP_ROOT" && cargo build -q --release --locked -p benchplot) || die "cargo build of benchplot failed"
		plot=$RSWAP_ROOT/target/release/benchplot
		grep -a 'RSWAP-TS run=\(skewed\|uniform\)-' "$console" >"$RSWAP_WORK/ts-policies.txt"
		grep -a 'RSWAP-TS run=\(interference\|blackout\)' "$console" >"$RSWAP_WORK/ts-timeline.txt"
		"$plot" "$RSWAP_WORK/ts-policies.txt" "$RSWAP_ROOT/tests/results-policies.svg" \
			"rswap placement policies: node 1 at 8 mbit, node 2 at 2 mbit" || die "plotting failed"
		"$plot" "$RSWAP_WORK/ts-timeline.txt" "$RSWAP_ROOT/tests/results-timeline.svg" \
			"rswap under interference (node 2 busy 20-60 s) and a 10 s blackout of link 2 (from 20 s)" || die "plotting failed"
		continue
	fi
	if [ "$mode" = tight ]; then
		policies+=$(grep -a '^RSWAP-BENCH-POLICY ' "$console")$'\n'
		continue
	fi
	if [ "$mode" = mixed ]; then
		mixed=$(grep -a '^RSWAP-BENCH-POLICY ' "$console")
		continue
	fi
	[[ $mode == prefetch || $mode == prefetch_random || $mode == reclaim || $mode == redundancy || $mode == late_binding ]] && continue
	if [ "$mode" = perftest ]; then
		perf=$(grep -a '^RSWAP-PERFTEST ' "$console" | tail -1)
		continue
	fi
	line=$(grep -a '^RSWAP-BENCH ' "$console" | tail -1)
	split=$(grep -a '^RSWAP-BENCH-SPLIT ' "$console" | tail -1 || true)
	name=$mode
	[ $mode = rdma2_slow ] && name="rdma2_slow (node 2 at 1/4 of node 1's rate)"
	rows+=("| $name | $(val swapin_mib_s "$line") | $(val fault_p50_us "$line") | $(val fault_p99_us "$line") | $(val swapin_pages "$line") | $(val disk_pswpin "$line") | $(val server1 "$split") | $(val server2 "$split") | $(val seconds "$line") | $(val mismatches "$line") |")
done
{
	echo
	echo "## $(date -u +%Y-%m-%d) - Linux $(rswap_kernel_version) + rswap patches ($RSWAP_FLAVOUR kernel), QEMU TCG"
	echo
	echo "Single-VM modes: 2 vCPUs, 512 MiB. rdma modes: the lab (compute 2 vCPUs/512 MiB, memory nodes 1 vCPU/384 MiB,"
	echo "Soft-RoCE over QEMU UDP socket links on 127.0.0.1)."
	if [ ${#rows[@]} -gt 0 ]; then
		echo
		echo "pagewalker --mib 128 --random-passes 2 --seed 7 under memory.max=32M; swap on a 1 GiB virtio-blk disk; mib_per_server=128."
		echo
		echo "| mode | swap-in MiB/s | fault p50 us | fault p99 us | faulting reads | disk pages read | pages to node 1 | pages to node 2 | run s | mismatches |"
		echo "|---|---|---|---|---|---|---|---|---|---|"
		printf '%s\n' "${rows[@]}"
	fi
	if [ -n "$policies" ]; then
		echo
		echo "Placement policies (bench.sh policies, tight): 2 memory nodes, node 2's link at 2 mbit vs node 1's 8 mbit"
		echo "(both ends, tbf); pagewalker --mib 24 --random-passes 1 --seed 7 [--skew 3] under memory.max=6M (about"
		echo "24 MiB swapped); MiB per node 32 (either node can hold every page) or 16 (tight: node 1 holds at most two"
		echo "thirds). Loads from node 1 exclude the moves' own reads; read latency is each node's moving average at the end."
		echo
		echo "| workload | MiB per node | policy | swap-in MiB/s | run s | fault p50 us | fault p99 us | loads from node 1 | stores node 1 / node 2 | read latency us 1 / 2 | promotions | demotions | mismatches |"
		echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
		while read -r l; do
			[ -n "$l" ] || continue
			f=$(val fast_loads "$l") s=$(val slow_loads "$l")
			echo "| $(val workload "$l") | $(val mib_per_server "$l") | $(val policy "$l") | $(val swapin_mib_s "$l") | $(val seconds "$l") | $(val fault_p50_us "$l") | $(val fault_p99_us "$l") | $((100 * f / (f + s + 1)))% | $(val stores "$l" | sed "s|/| / |g") | $(val read_lat_us "$l" | sed "s|/| / |g") | $(val promotions "$l") | $(val demotions "$l") | $(val mismatches "$l") |"
		done <<<"$policies"
		echo
		echo "Per-server traffic over time in each run: [results-policies.svg](results-policies.svg)."
		if [ -n "$timeline" ]; then
			echo "Interference and blackout runs ([results-timeline.svg](results-timeline.svg)), 24 MiB, three random passes:"
			while read -r l; do
				echo "- $(val run "$l"): swap-in $(val swapin_mib_s "$l") MiB/s, run $(val seconds "$l") s, fault p50/p99 $(val fault_p50_us "$l")/$(val fault_p99_us "$l") us, mismatches $(val mismatches "$l"), lost $(val lost "$l")"
			done <<<"$timeline"
		fi
	fi
	if [ -n "$mixed" ]; then
		echo
		echo "Placement policies in the three-node mixed lab (bench.sh mixed): node 1 at 8 mbit, node 2 at 2 mbit,"
		echo "node 3 at 8 mbit with 5 ms more delay each way; the same walks; 16 MiB from each node (node 1 holds two thirds at most)."
		echo "Loads exclude the moves' own reads; read latency is each node's moving average at the end of the run."
		echo
		echo "| workload | policy | swap-in MiB/s | run s | fault p50 us | fault p99 us | loads node 1 / 2 / 3 | stores node 1 / 2 / 3 | read latency us 1 / 2 / 3 | mismatches |"
		echo "|---|---|---|---|---|---|---|---|---|---|"
		while read -r l; do
			echo "| $(val workload "$l") | $(val policy "$l") | $(val swapin_mib_s "$l") | $(val seconds "$l") | $(val fault_p50_us "$l") | $(val fault_p99_us "$l") | $(val loads "$l" | sed 's|/| / |g') | $(val stores "$l" | sed 's|/| / |g') | $(val read_lat_us "$l" | sed 's|/| / |g') | $(val mismatches "$l") |"
		done <<<"$mixed"
	fi
	if [ -n "$prefetch" ]; then
		echo
		echo "The fault path (bench.sh prefetch), rswap_dram (single VM) and rswap_rdma (the lab, memory node 1, unshaped link):"
		echo "pagewalker --mib 64 (rdma: 32) --seed 7 under memory.max=16M, two full"
		echo "read passes (sequential, stride 5, or a random permutation; mixed: sequential, one Zipf-like random pass"
		echo "with rewrites, sequential). sync: async_loads=0 (readahead read synchronously, as before patch 0017);"
		echo "async: kernel readahead loaded asynchronously; trend and off: prefetch=trend, prefetch=off. Misses are"
		echo "faults that had to read their page; accuracy = read-ahead pages used / read ahead; coverage = read-ahead"
		echo "pages used / (those + misses)."
		echo
		echo "| backend | workload | mode | swap-in MiB/s | major faults | misses | read ahead | accuracy | coverage | fault p50 us | fault p99 us | run s | mismatches |"
		echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
		while read -r l; do
			[ -n "$l" ] || continue
			m=$(val misses "$l") h=$(val prefetch_hits "$l") r=$(val read_ahead "$l")
			echo "| $(val backend "$l") | $(val workload "$l") | $(val mode "$l") | $(val swapin_mib_s "$l") | $(val majflt "$l") | $m | $r | $((100 * h / (r + 1)))% | $((100 * h / (h + m + 1)))% | $(val fault_p50_us "$l") | $(val fault_p99_us "$l") | $(val seconds "$l") | $(val mismatches "$l") |"
		done <<<"$prefetch"
	fi
	if [ -n "$perf4k" ]; then
		echo
		echo "The same link's ceiling, in the same run (perftest, compute node to memory node 1): 4 KiB ib_read_lat typical" \
			"$(val read_lat_typical_us "$perf4k") us, avg $(val read_lat_avg_us "$perf4k") us, p99 $(val read_lat_p99_us "$perf4k") us;" \
			"4 KiB ib_read_bw at depth 8 (readahead_depth) $(val read_bw_MBps "$perf4k") MB/s."
	fi
	if [ -n "$reclaim" ]; then
		echo
		echo "Offloaded reclaim (bench.sh reclaim), Fastswap's design without a patch: the walker on CPU 0; inline, it"
		echo "reclaims for itself at memory.max=16M; offload, rswapctl reclaim on CPU 1 keeps the cgroup 1 MiB below the"
		echo "limit through memory.reclaim. rswap_dram (single VM, 48 MiB, three rounds) and rswap_rdma (lab, memory node 1, 16 MiB, two rounds);"
		echo "sequential (two passes) and mixed walks; the modes alternate. max events: times the walker itself hit the limit."
		echo
		echo "| backend | workload | round | mode | run s | swap-in MiB/s | fault p50 us | fault p99 us | max events | reclaimed by the helper MiB | mismatches |"
		echo "|---|---|---|---|---|---|---|---|---|---|---|"
		while read -r l; do
			[ -n "$l" ] || continue
			echo "| $(val backend "$l") | $(val workload "$l") | $(val round "$l") | $(val mode "$l") | $(val seconds "$l") | $(val swapin_mib_s "$l") | $(val fault_p50_us "$l") | $(val fault_p99_us "$l") | $(val max_events "$l") | $(($(val reclaimed_kib "$l") / 1024)) | $(val mismatches "$l") |"
		done <<<"$reclaim"
		echo
		echo "Median run s over the rounds:"
		medians "$reclaim" seconds backend workload mode | sed 's/$/ s/'
	fi
	if [ -n "$prefetch_random" ]; then
		echo
		echo "What trend prefetching costs where there is no trend (bench.sh prefetch_random): random walks only"
		echo "(pagewalker --shuffle, two full passes in a random permutation, --seed 7, memory.max=16M; rswap_dram 64 MiB"
		echo "in the single VM, rswap_rdma 32 MiB against memory node 1), prefetch=off against prefetch=trend, three"
		echo "rounds, the modes alternating within a round."
		echo
		echo "| backend | round | mode | run s | swap-in MiB/s | major faults | read ahead | fault p50 us | fault p99 us | mismatches |"
		echo "|---|---|---|---|---|---|---|---|---|---|"
		while read -r l; do
			[ -n "$l" ] || continue
			echo "| $(val backend "$l") | $(val round "$l") | $(val mode "$l") | $(val seconds "$l") | $(val swapin_mib_s "$l") | $(val majflt "$l") | $(val read_ahead "$l") | $(val fault_p50_us "$l") | $(val fault_p99_us "$l") | $(val mismatches "$l") |"
		done <<<"$prefetch_random"
		echo
		echo "Median run s over the rounds:"
		medians "$prefetch_random" seconds backend mode | sed 's/$/ s/'
		echo
		echo "Median fault p50 us over the rounds:"
		medians "$prefetch_random" fault_p50_us backend mode
	fi
	if [ -n "$redundancy" ]; then
		echo
		echo "Redundancy (bench.sh redundancy): three memory nodes, 24 MiB walk under memory.max=8M (one sequential"
		echo "pass, one random), redundancy=none, mirror and ec:2+1; degraded: the compute node's link-2 RDMA device"
		echo "removed after the write phase. Swap-out: pages held after the write phase (nothing is read back in it) over its"
		echo "time. Overhead: pieces (copies or chunks) per page held (rswap_rdma) and memserver's"
		echo "own pages holding data per page held. Repair: from node 2's pieces declared gone until no page is short of one,"
		echo "per GiB of pages re-protected. Served by the other pieces: mirror's failovers, ec's loads rebuilt from the parity"
		echo "(a chunk unreachable, or with late binding one that came after the parity). ec late binding: each fault reads all"
		echo "three chunks and uses the first two to arrive; without it, the two data chunks one after the other."
		echo
		echo "| redundancy | state | swap-out MiB/s | swap-in MiB/s | fault p50 us | fault p99 us | pieces / page | memserver pages / page | loads served by the other pieces | repair s per GiB | pages lost | mismatches |"
		echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
		while read -r l; do
			[ -n "$l" ] || continue
			name=$(val redundancy "$l")
			case $name/$(val late_binding "$l") in ec:*/1) name="$name, late binding" ;; ec:*/0) name="$name, no late binding" ;; esac
			echo "| $name | $(val state "$l") | $(awk -v p="$(val held "$l")" -v s="$(val write_s "$l")" 'BEGIN { printf "%.2f", p / 256 / s }') | $(val swapin_mib_s "$l") | $(val fault_p50_us "$l") | $(val fault_p99_us "$l") | $(awk -v c="$(val copies "$l")" -v h="$(val held "$l")" 'BEGIN { printf "%.2f", c / h }') | $(awk -v c="$(val memserver_pages "$l")" -v h="$(val held "$l")" 'BEGIN { printf "%.2f", c / h }') | $(served "$l") | $(val repair_s_per_gib "$l") | $(val lost "$l") | $(val mismatches "$l") |"
		done <<<"$redundancy"
	fi
	if [ -n "$late_binding" ]; then
		echo
		echo "Late binding (bench.sh late_binding): redundancy=ec:2+1 over three memory nodes, healthy, the redundancy"
		echo "bench's walk; late_binding=0 (the two data chunks read one after the other) and 1 (all three chunks at once,"
		echo "the first two to arrive used) in turn, three rounds. Per run: late-bound loads, and of them those whose parity"
		echo "came before a data chunk."
		echo
		echo "| late binding | swap-in MiB/s | fault p50 us | fault p99 us | read s | late-bound loads | parity first | mismatches |"
		echo "|---|---|---|---|---|---|---|---|"
		while read -r l; do
			[ -n "$l" ] || continue
			echo "| $(val late_binding "$l") | $(val swapin_mib_s "$l") | $(val fault_p50_us "$l") | $(val fault_p99_us "$l") | $(val read_s "$l") | $(val late "$l") | $(val late_parity "$l") | $(val mismatches "$l") |"
		done <<<"$late_binding"
		echo
		echo "Medians over the rounds, by late_binding:"
		echo
		echo "Fault p50 us:"
		medians "$late_binding" fault_p50_us late_binding
		echo
		echo "Fault p99 us:"
		medians "$late_binding" fault_p99_us late_binding
		echo
		echo "Read s:"
		medians "$late_binding" read_s late_binding
	fi
	if [ -n "$perf" ]; then
		echo
		echo "Raw transport, perftest between the compute node and memory node 1 (rxe):" \
			"ib_read_lat 2 B typical $(val t_typical_us "$perf") us, avg $(val t_avg_us "$perf") us, p99 $(val p99_us "$perf") us;" \
			"ib_write_bw 64 KiB average $(val bw_avg_MBps "$perf") MB/s."
	fi
} | tee -a "$results"
