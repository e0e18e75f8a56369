#!/usr/bin/env bash
# rswap's test suite: host unit tests, then the guest tests on the patched
# kernel. Installs what it needs. Ends with "N passed, N failed".
# Usage: scripts/test.sh [test names...]   (default: all; lab_* run in the lab)
# The tests run the debug kernel (lockdep, DEBUG_VM, KFENCE, SLUB debugging).
RSWAP_FLAVOUR=${RSWAP_FLAVOUR:-debug}
source "$(dirname "$0")/lib.sh"

GUEST_TESTS=(bad_input dram_basic dram_overflow thp_dram load_cycle lost_page async_readahead prefetch_trend reclaim_offload lifetime_race zswap_conflict)
LAB_TESTS=(lab_one lab_pair lab_chain lab_weighted lab_tiered lab_spill lab_pressure lab_refusals lab_memserver lab_blackout lab_restart lab_devremove lab_ec lab_mirror_double lab_mirror lab_kill)
if [ $# -gt 0 ]; then
	GUEST_TESTS=()
	LAB_TESTS=()
	for t in "$@"; do
		case $t in lab_*) LAB_TESTS+=("$t") ;; *) GUEST_TESTS+=("$t") ;; esac
	done
fi
# Kernel splats: BUG/WARN/Oops, VM_BUG_ON ("kernel BUG at"), SLUB debugging
# ("BUG kmalloc-64 (...)"), KFENCE ("BUG: KFENCE"), bad page state, list
# corruption (DEBUG_LIST), lockups, hung tasks and lockdep.
SPLAT='BUG:|kernel BUG at|BUG [a-z0-9_.:-]+ \(|WARNING:|Oops|invalid opcode|general protection fault|Bad page (state|map)|list_(add|del) corruption|soft lockup|blocked for more than|Kernel panic|possible circular|possible recursive|inconsistent lock state|suspicious RCU'

# Reads the RSWAP-RESULT lines of <tests> from <console>; any kernel splat
# in <consoles...> fails them all.
collect() { # collect <console> "<tests>" <consoles to scan for splats...>
	local console=$1 tests=$2 splat line t
	shift 2
	# (Not the tests' own lines, which may quote a splat they found.)
	splat=$(grep -a -h -E "$SPLAT" "$@" | grep -a -v -E '^(RSWAP-RESULT |\[[a-z_]+\] )' | head -3 || true)
	for t in $tests; do
		line=$(grep -a "^RSWAP-RESULT $t " "$console" | tail -1 || true)
		if [ -z "$line" ]; then
			result "$t" FAIL "no result (guest crashed or timed out; see $console)"
		elif [ -n "$splat" ]; then
			result "$t" FAIL "kernel log: $splat"
		else
			set -- $line
			result "$t" "$3" "${*:4}"
		fi
	done
}

# A check on the host side: PASS if the command succeeds.
host_check() { # host_check <name> <detail> <command...>
	local name=$1 detail=$2
	shift 2
	if "$@"; then result "$name" PASS "$detail"; else result "$name" FAIL "$detail"; fi
}
passed=0
failed=0
failures=()
result() { # result <name> <PASS|FAIL> [detail]
	if [ "$2" = PASS ]; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		failures+=("$1: ${*:3}")
	fi
	echo "RESULT $1 $2 ${*:3}"
}

# A build step that dies still ends with the summary line.
summary_done=
trap '[ -n "$summary_done" ] || { echo "FAILED: build or setup (see the log above)"; echo "$passed passed, $((failed + 1)) failed"; }' EXIT

rswap_deps
mkdir -p "$RSWAP_WORK"
log "host: cargo test"
if (cd "$RSWAP_ROOT" && cargo test -q --workspace --locked 2>&1) | tee "$RSWAP_WORK/cargo-test.log" | tail -5; then
	n=$(awk '/^test result:/{s+=$4} END{print s+0}' "$RSWAP_WORK/cargo-test.log")
	result host-unit-tests PASS "$n unit tests"
else
	result host-unit-tests FAIL "see $RSWAP_WORK/cargo-test.log"
fi

rswap_prepare

if [ ${#GUEST_TESTS[@]} -gt 0 ]; then
	# All single-VM guest tests run in one boot, in order; each checks the kernel log.
	run=$(IFS=,; echo "${GUEST_TESTS[*]}")
	log "guest: booting for: $run"
	t0=$(date +%s)
	console=$(rswap_run_guest "$run" 2400)
	log "guest: finished in $(($(date +%s) - t0)) s (console: $console)"
	grep -a -E '^\[[a-z_]+\] |^pagewalker: result' "$console" | sed 's/^/  /' || true
	collect "$console" "${GUEST_TESTS[*]}" "$console"
fi

if [ ${#LAB_TESTS[@]} -gt 0 ]; then
	# The lab: three memory nodes and a compute node (a second one boots for
	# lab_pair); the lab tests run in one boot of compute node 1, in order
	# (lab_kill last: it kills nodes). Node 2 routes between segments 2 and 3
	# and re-exports node 3's memory (the chain); node 3 hands out fair
	# shares of its pool.
	run=$(IFS=,; echo "${LAB_TESTS[*]}")
	log "lab: starting 3 memory nodes"
	t0=$(date +%s)
	trap 'lab_stop' INT TERM
	lab_mem_start 1 160 rswap.allow=10.77.1.1,10.77.1.3
	lab_mem_start 2 160 rswap.allow=10.77.2.1,10.77.2.3 rswap.fwd=10.77.3.4 rswap.upstream=10.77.3.2:7471
	lab_mem_start 3 160 rswap.allow=10.77.3.1,10.77.3.3,10.77.2.1 rswap.route=10.77.2.0/24:10.77.3.4 rswap.region=fair
	if lab_mem_wait 1 && lab_mem_wait 2 && lab_mem_wait 3; then
		log "lab: compute node runs: $run"
		console=$(lab_compute 3 "$run" 3600)
	else
		console=/dev/null
	fi
	lab_stop
	log "lab: finished in $(($(date +%s) - t0)) s (consoles: $RSWAP_WORK/lab-*.log)"
	grep -a -E '^\[[a-z_]+\] |^pagewalker: result|^RSWAP-SPLIT|^RSWAP-CHAIN' "$console" | sed 's/^/  /' || true
	m1=$RSWAP_WORK/lab-mem1.log m2=$RSWAP_WORK/lab-mem2.log m3=$RSWAP_WORK/lab-mem3.log
	grep -a -E '^memserver: [^s]' "$m1" "$m2" "$m3" | sed 's/^/  /' | tail -30 || true
	collect "$console" "${LAB_TESTS[*]}" "$console" "$m1" "$m2" "$m3"
	if [[ " ${LAB_TESTS[*]} " == *" lab_pair "* ]]; then
		c2=$RSWAP_WORK/lab-compute2-lab_pair_b.log
		grep -a -E '^\[lab_pair_b\] ' "$c2" 2>/dev/null | sed 's/^/  /' || true
		collect "$c2" lab_pair_b "$c2"
		used() { grep -a -o 'pages_used=[0-9]*' "$1" | cut -d= -f2 | sort -n | tail -1; }
		for n in 1 2 3; do
			m=$RSWAP_WORK/lab-mem$n.log
			host_check lab_pair_memserver$n "node $n served compute node 2 (10.77.$n.3) too ($(grep -a -o "peer=10.77.$n.[13] region_mib=[0-9]*" "$m" | sort -u | tr '\n' ' ')); up to $(used "$m") pages used" \
				grep -a -q -E "peer=10.77.$n.3 .*pages_used=[1-9]" "$m"
		done
	fi
	if [[ " ${LAB_TESTS[*]} " == *" lab_chain "* ]]; then
		host_check lab_chain_memserver "node 3 served compute node 1 through node 2 (peer 10.77.2.1)" \
			grep -a -q -E 'peer=10.77.2.1 .*pages_used=[1-9]' "$m3"
		host_check lab_chain_upstream "node 2 pointed compute node 1 to its upstream, node 3" \
			grep -a -q 'at 10.77.2.1 asked for our upstream: pointed it to 10.77.3.2:7471' "$m2"
	fi
	if [[ " ${LAB_TESTS[*]} " == *" lab_one "* ]]; then
		host_check lab_one_memserver_frees_region "rmmod released the region and memserver freed it" \
			grep -a -q 'gone: released by the node (it unloaded); region of .* freed' "$m1"
	fi
	if [[ " ${LAB_TESTS[*]} " == *" lab_one "* ]]; then
		lines=$(grep -a -c 'refused connection from' "$m1")
		host_check lab_one_flood_log "the connect flood was logged in summaries ($lines refusal lines; $(grep -a -o 'refused [0-9]* more connections in the last [0-9]* s' "$m1" | head -3 | tr '\n' ';'))" \
			test "$(grep -a -c 'not logged one by one' "$m1")" -ge 1 -a "$lines" -le 300
	fi
	if [[ " ${LAB_TESTS[*]} " == *" lab_refusals "* ]]; then
		host_check lab_refusals_memserver_log "memserver logged the wrong secret" \
			grep -a -q 'refused connection from 10.77.1.1: node [0-9a-f]*: wrong secret' "$m1"
	fi
fi

for f in "${failures[@]}"; do echo "FAILED: $f"; done
summary_done=1
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
