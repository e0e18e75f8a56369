# Benchmark: redundancy=none, mirror and ec:2+1 over three memory nodes
# (issue 11, section 5), on the same workload in one lab boot. For each:
# - healthy: a walker writes rswap.mib MiB under memory.max=8M and pauses
#   (swap-out MiB/s: pages rswap stored over the write phase's time; the
#   kernel's pswpout counts only what goes to the disk), then
#   reads it all back once in order and once at random (swap-in MiB/s,
#   fault p50/p99 from pagewalker);
# - memory overhead: pieces (copies or chunks) per page held (rswap_rdma's
#   counts) and memserver's own pages holding data per page held;
# - degraded: the same, with the compute node's link-2 RDMA device removed
#   after the write phase (memory node 2 unreachable): mirror reads the
#   other copies, ec rebuilds node 2's chunks from the parity; none loses
#   node 2's pages (counted, never wrong data);
# - repair (mirror, ec): from node 2's pieces being declared lost until no
#   page is short of one, in s per GiB of pages re-protected, by the kernel
#   log's own timestamps (repair runs while the walker reads, as it would).
# - late binding: ec:2+1 runs with late_binding=1 (each fault reads all
#   three chunks and uses the first two) and, healthy only, with
#   late_binding=0 (the two data chunks one after the other).
# Each run has its own node_id: a degraded run's session on node 2 (whose
# device was removed) lingers there until its grace ends, and a reused id
# would be refused meanwhile.
# rswap.runs (comma-separated, e.g. ec:2+1,ec:2+1/nolate) and
# rswap.states (healthy) pick other runs: bench.sh late_binding alternates
# ec:2+1 with and without late binding, healthy, over several rounds.
# One RSWAP-BENCH-REDUNDANCY line per run.
. /tests/lib.sh
MIB=$(param rswap.mib)
MIB=${MIB:-24}
run=0
mkdir -p "$CG"
# busybox date has whole seconds only.
now() { cut -d' ' -f1 /proc/uptime; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
RUNS=$(param rswap.runs | tr , ' ')
for red in ${RUNS:-none mirror ec:2+1 ec:2+1/nolate}; do
	late=1
	case $red in */nolate) late=0 red=${red%/*} ;; esac
	pfx=${red%%:*}
	states=$(param rswap.states | tr , ' ')
	states=${states:-healthy degraded}
	[ $late = 0 ] && states=healthy
	for state in $states; do
		run=$((run + 1))
		NODE=$(printf '0x62656e63%02x' $run)
		load_rdma servers="$(server 1),$(server 2),$(server 3)" mib_per_server=64 timeout_ms=1000 \
			loss_timeout_s=3 redundancy=$red node_id=$NODE late_binding=$late || fail "insmod ($red)"
		swap_on || fail "swapon"
		echo 8M >"$CG/memory.max"
		rm -f /tmp/go /tmp/walk.out
		o0=$(($(stat rswap/stores) + $(vmstat pswpout)))
		t0=$(now)
		walk 8M --mib "$MIB" --random-passes 1 --seed 9 --lost-ok --pause /tmp/go &
		wpid=$!
		i=0
		while ! grep -q "paused until" /tmp/walk.out 2>/dev/null && [ $i -lt 900 ]; do sleep 0.2; i=$((i + 1)); done
		t1=$(now)
		out=$(($(stat rswap/stores) + $(vmstat pswpout) - o0))
		held=$(stat rswap/pages_held)
		copies=$(($(rstat 0 pages) + $(rstat 1 pages) + $(rstat 2 pages)))
		sleep 7 # memserver scans every 3 s
		used=$(memserver_used "$NODE")
		n0=$(dmesg | wc -l)
		if [ $state = degraded ]; then
			timeout 60 rdma link delete rxe_eth1 || fail "rdma link delete"
		fi
		r0=$(now)
		touch /tmp/go
		wait $wpid || fail "$red $state: pagewalker exit $?"
		r1=$(now)
		repair_s=-
		if [ $state = degraded ] && [ $red != none ]; then
			# Until no page has one copy left (120 s at most); then, from
			# the kernel log, the time from node 2's copies declared gone
			# to the repair pass that left none with one copy.
			i=0
			while { [ "$(stat rswap_rdma/${pfx}_passes)" -lt 1 ] || [ "$(stat rswap_rdma/${pfx}_degraded)" -ne 0 ]; } && [ $i -lt 600 ]; do
				sleep 0.2
				i=$((i + 1))
			done
			ts() { dmesg | tail -n +$((n0 + 1)) | grep -E "$1" | sed -n 's/^\[ *\([0-9.]*\)\].*/\1/p'; }
			p0=$(ts 'page copies are gone|chunks are gone' | head -1)
			p1=$(ts 'repair pass done: .* 0 still (with one copy|one chunk short)' | tail -1)
			rep=$(stat rswap_rdma/${pfx}_repaired)
			repair_s=$(awk -v a="$p0" -v b="$p1" -v n="$rep" 'BEGIN { if (n > 0 && a != "" && b != "") printf "%.0f", (b - a) * 262144 / n; else print "-" }')
			if [ -n "$p0" ] && [ -n "$p1" ]; then
				note "repair: $rep copies in $(awk -v a="$p0" -v b="$p1" 'BEGIN { printf "%.1f", b - a }') s (kernel log: $p0 to $p1)"
			else
				note "repair: $rep copies; no finished repair pass in the kernel log to time it by"
			fi
		fi
		echo "RSWAP-BENCH-REDUNDANCY redundancy=$red late_binding=$late state=$state held=$held copies=$copies memserver_pages=$used swapout_mib_s=$(awk -v p="$out" -v s="$(secs "$t0" "$t1")" 'BEGIN { printf "%.2f", p / 256 / s }') write_s=$(secs "$t0" "$t1") read_s=$(secs "$r0" "$r1") repair_s_per_gib=$repair_s failovers=$(stat rswap_rdma/mirror_failovers) rebuilt=$(stat rswap_rdma/ec_rebuilt) late=$(stat rswap_rdma/ec_late) late_parity=$(stat rswap_rdma/ec_late_parity) late_fallback=$(stat rswap_rdma/ec_late_fallback) repaired=$(stat rswap_rdma/${pfx}_repaired) $(cat /tmp/walk)"
		expect "$red $state: no page came back wrong" "$(walkval mismatches)" -eq 0
		[ $red != none ] && expect "$red $state: no page lost" "$(walkval lost)" -eq 0
		swapoff "$SWAPDEV" 2>/dev/null || note "swapoff ($red $state): status $?"
		unload_rdma || fail "rmmod ($red $state)"
		if [ $state = degraded ]; then
			rdma link add rxe_eth1 type rxe netdev eth1 || fail "rdma link add"
		fi
	done
done
finish
