# Helpers for the guest test scripts (busybox sh). Source it.
T=${1:-test}
FAILS=0
FIRST_FAIL=
CG=/sys/fs/cgroup/walk
DBG=/sys/kernel/debug
SWAPDEV=/dev/vda

note() { echo "[$T] $*"; }
fail() {
	echo "[$T] FAIL: $*"
	FAILS=$((FAILS + 1))
	[ -n "$FIRST_FAIL" ] || FIRST_FAIL=$(echo "$*" | head -c 300 | tr '\n' ' ')
}

# Counter from debugfs, e.g. stat rswap/stores or stat rswap/dram/loads.
stat() { cat "$DBG/$1" 2>/dev/null || echo -1; }
# How far counter $1 moved since it read $2: delta rswap/loads "$l0".
delta() { echo $(($(stat "$1") - $2)); }
vmstat() { awk -v k="$1" '$1 == k {print $2}' /proc/vmstat; }

expect() { # expect "<desc>" <a> <op> <b>   (op: -eq -ne -gt -ge -lt -le)
	if [ "$2" "$3" "$4" ] 2>/dev/null; then note "ok: $1 ($2 $3 $4)"; else fail "$1: $2 $3 $4 is false"; fi
}

# Runs a command that must fail; its dmesg must then say $2 (a grep pattern).
expect_fail() {
	local what=$1 pattern=$2
	shift 2
	local before=$(dmesg | wc -l)
	if "$@" 2>/tmp/err; then
		fail "$what: '$*' succeeded"
		return
	fi
	if dmesg | tail -n +$((before + 1)) | grep -q -- "$pattern" || grep -q -- "$pattern" /tmp/err; then
		note "ok: $what: refused, log says: $( (dmesg | tail -n +$((before + 1)); cat /tmp/err) | grep -- "$pattern" | head -1)"
	else
		fail "$what: refused but no message matching '$pattern': $(cat /tmp/err) $(dmesg | tail -n +$((before + 1)) | tail -3)"
	fi
}

load_rswap() { insmod /modules/rswap.ko && insmod /modules/rswap_dram.ko "$@"; }
unload_rswap() { rmmod rswap_dram && rmmod rswap; }
# The swap disk is marked non-rotational, as NVMe swap is: only then does
# the kernel allocate whole swap clusters and swap a THP out whole (a
# rotational device gets THPs split first). ROTATIONAL=1 keeps virtio-blk's
# default.
swap_on() {
	[ "${ROTATIONAL:-0}" = 1 ] || echo 0 >"/sys/block/${SWAPDEV#/dev/}/queue/rotational"
	mkswap "$SWAPDEV" >/dev/null && swapon "$SWAPDEV"
}

# Runs pagewalker in the memory-limited cgroup; its summary line goes to
# /tmp/walk. Returns pagewalker's exit status.
walk() { # walk <memory.max> <pagewalker args...>
	mkdir -p "$CG"
	echo "$1" >"$CG/memory.max"
	shift
	# WALK_CPU=N pins the walker to CPU N (bench_reclaim).
	${WALK_CPU:+taskset -c "$WALK_CPU"} sh -c "echo \$\$ >$CG/cgroup.procs && exec /bin/pagewalker $*" >/tmp/walk.out 2>&1
	local rc=$?
	cat /tmp/walk.out
	grep '^pagewalker: result=' /tmp/walk.out >/tmp/walk
	return $rc
}

# Value of key=value in pagewalker's summary.
walkval() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" /tmp/walk; }
# The same from the last summary in a walker's own output file.
resultval() { # resultval <file> <key>
	grep '^pagewalker: result=' "$1" | tail -1 | sed -n "s/.* $2=\([^ ]*\).*/\1/p"
}

# Each test reads the kernel log from an empty buffer: counting lines
# breaks once the ring buffer wraps (a chatty test can fill it), and then
# later tests would see none of their own messages. The serial console
# keeps everything, and the host scans all of it for splats.
dmesg -c >/dev/null
DMESG_START=0
# The kernel log since this script started must have no splat.
check_dmesg() {
	local bad
	bad=$(dmesg | tail -n +$((DMESG_START + 1)) |
		grep -E 'BUG:|kernel BUG at|BUG [a-z0-9_.:-]+ \(|WARNING:|Oops|invalid opcode|general protection fault|Bad page (state|map)|list_(add|del) corruption|soft lockup|hung_task|blocked for more than|possible circular|possible recursive|inconsistent lock state|suspicious RCU|Kernel panic' | head -5)
	if [ -n "$bad" ]; then fail "kernel log: $bad"; else note "ok: kernel log clean"; fi
}

finish() {
	check_dmesg
	if [ "$FAILS" -eq 0 ]; then
		echo "RSWAP-RESULT $T PASS"
	else
		echo "RSWAP-RESULT $T FAIL $FAILS checks failed, first: $FIRST_FAIL"
	fi
}

# Benchmark run: the same workload for every mode, one summary line.
BENCH_MAX=32M
BENCH_MIB=128
bench_run() { # bench_run <mode>
	swap_on || fail "swapon"
	in0=$(vmstat pswpin)
	walk "$BENCH_MAX" --mib "$BENCH_MIB" --random-passes 2 --seed 7 --compressible || fail "pagewalker exit $?"
	echo "RSWAP-BENCH mode=$1 disk_pswpin=$(($(vmstat pswpin) - in0)) rswap_loads=$(stat rswap/loads)" \
		"frontswap_loads=$(cat /sys/kernel/debug/frontswap/loads 2>/dev/null || echo 0) $(cat /tmp/walk)"
	swapoff "$SWAPDEV" || fail "swapoff"
}

# --- lab (compute node) helpers ---
param() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
SECRET=$(param rswap.secret)
server() { echo "10.77.$1.2:7471"; }
load_rdma() { insmod /modules/rswap.ko && insmod /modules/rswap_rdma.ko secret="$SECRET" "$@"; }
unload_rdma() { rmmod rswap_rdma && rmmod rswap; }
# Counter of server N (0-based) of rswap_rdma.
rstat() { cat $DBG/rswap_rdma/server$1-*/$2 2>/dev/null || echo -1; }
# Records per-server traffic every second (rswapctl record) on the console,
# tagged "RSWAP-TS run=<tag>", until record_stop: the benchmark plots it.
record_start() { # record_start <tag>
	rswapctl record --interval 1 | while read -r l; do echo "RSWAP-TS run=$1 $l"; done &
	REC=$!
}
record_stop() { kill "$REC" 2>/dev/null; killall rswapctl 2>/dev/null; wait "$REC" 2>/dev/null; }
# Asks the host to kill memory node N, then waits until it stops answering.
lab_kill() {
	echo "RSWAP-LAB kill $1"
	local i=0
	while ping -c 1 -W 1 "10.77.$1.2" >/dev/null 2>&1 && [ $i -lt 60 ]; do i=$((i + 1)); done
	note "memory node $1 is gone (after $i pings)"
}
# Drops every packet the compute node sends on link N for S seconds
# (netem on its egress), as a flapping switch port would. A shaped link
# (net.sh: tbf, then netem as 10:) keeps its shaping: its netem turns to
# 100% loss and back to its delay.
blackout() { # blackout <link> <seconds>
	local dev=eth$(($1 - 1)) netem delay
	netem=$(/usr/sbin/tc qdisc show dev "$dev" | grep "^qdisc netem 10: ")
	delay=$(echo "$netem" | sed -n 's/.* delay \([^ ]*\).*/\1/p')
	if [ -n "$netem" ]; then
		/usr/sbin/tc qdisc change dev "$dev" parent 1:1 handle 10: netem delay "${delay:-0ms}" loss 100%
	else
		/usr/sbin/tc qdisc add dev "$dev" root netem loss 100%
	fi || fail "netem loss on $dev"
	echo "RSWAP-LAB blackout of link $1 for $2 s"
	sleep "$2"
	if [ -n "$netem" ]; then
		/usr/sbin/tc qdisc change dev "$dev" parent 1:1 handle 10: netem delay "${delay:-0ms}"
	else
		/usr/sbin/tc qdisc del dev "$dev" root
	fi || fail "netem back on $dev"
	echo "RSWAP-LAB link $1 back"
}

# A walker in $CG, in the background, that pauses after its write phase,
# with its own output file /tmp/<name>.out; touching /tmp/go<name> resumes it.
walker() { # walker <name> <pagewalker args...>
	local name=$1
	shift
	rm -f "/tmp/go$name"
	sh -c "echo \$\$ >$CG/cgroup.procs && exec /bin/pagewalker $* --pause /tmp/go$name" >"/tmp/$name.out" 2>&1 &
}
resumed() { # resumed <name> <pid>: lets it read its pages back, prints its output; its exit status
	touch "/tmp/go$1"
	wait "$2"
	local rc=$?
	cat "/tmp/$1.out"
	return $rc
}
paused() { # paused <name>: until it has written its pages (300 s at most)
	local i=0
	while ! grep -q "paused until" "/tmp/$1.out" 2>/dev/null && [ $i -lt 300 ]; do sleep 1; i=$((i + 1)); done
	grep -q "paused until" "/tmp/$1.out" && return
	fail "walker $1 did not finish writing: $(tail -3 "/tmp/$1.out"); cgroup events: $(tr '\n' ' ' <"$CG/memory.events")"
	local p
	for p in $(pidof pagewalker); do
		note "pagewalker $p: $(grep -E '^(State|VmRSS|VmSwap)' /proc/$p/status | tr '\n' ' ')"
		cat /proc/$p/stack 2>/dev/null | head -20
	done
	note "vmstat: $(grep -E '^(pswpin|pswpout) ' /proc/vmstat | tr '\n' ' '); rswap: $(stat rswap/stores) stores, $(stat rswap/store_refused) refused"
	dmesg | tail -20
}
# The links of memory nodes 2 and 3 dark together for <seconds>. Paused
# walkers send nothing, so once both links are dark, a walker in a cgroup
# of its own swaps (pagewalker seed <seed>) so that the compute node
# notices. Started before, a page of it could have pieces on both nodes
# and be lost with them; started after, its stores find a node gone, are
# refused and go to the swap disk: it must lose nothing. Returns when the
# links are back.
dark_2_and_3() { # dark_2_and_3 <seconds> <seed>
	local b2 b3 i=0
	blackout 2 "$1" &
	b2=$!
	blackout 3 "$1" &
	b3=$!
	while [ "$(dark)" -lt 2 ] && [ $i -lt 50 ]; do
		usleep 100000
		i=$((i + 1))
	done
	expect "both links dark" "$(dark)" -eq 2
	mkdir -p /sys/fs/cgroup/ping && echo 2M >/sys/fs/cgroup/ping/memory.max
	sh -c "echo \$\$ >/sys/fs/cgroup/ping/cgroup.procs && exec /bin/pagewalker --mib 6 --random-passes 0 --seed $2" >/tmp/ping.out 2>&1
	expect "the walker during the blackout: exit 0" "$?" -eq 0
	expect "the walker during the blackout: every byte verified" "$(resultval /tmp/ping.out mismatches)" -eq 0
	wait $b2 $b3
}
dark() { for d in eth1 eth2; do /usr/sbin/tc qdisc show dev $d; done | grep -c 'loss 100%'; }

# The pages of node <id>'s regions holding data, by memserver's own counts
# (its metrics, over the lab links) on memory nodes 1-3 (and a second
# memserver's, on port 9472, where one runs), summed; each count goes to
# the log (stderr).
memserver_used() { # memserver_used <node id>
	local n m u l total=0
	for n in 1 2 3; do
		for m in 9471 9472; do
			u=$(wget -q -O - "http://10.77.$n.2:$m/metrics" 2>/dev/null |
				sed -n "s/^memserver_node_pages_used{node=\"$(printf %016x "$1")\",[^}]*} \([0-9]*\)$/\1/p")
			l=""
			if [ $m = 9472 ]; then
				[ -n "$u" ] || continue
				l=" (second memserver)"
			fi
			note "memory node $n$l: memserver counts ${u:-?} pages of ours holding data" >&2
			total=$((total + ${u:-0}))
		done
	done
	echo "$total"
}
# Starts a walker that pauses after its write phase; returns once paused.
walk_paused() { # walk_paused <memory.max> <pagewalker args...>
	rm -f /tmp/go /tmp/walk.out
	walk "$@" --pause /tmp/go &
	wpid=$!
	local i=0
	while ! grep -q "paused until" /tmp/walk.out 2>/dev/null && [ $i -lt 600 ]; do sleep 1; i=$((i + 1)); done
}
# Waits up to <seconds> for server N (0-based) to be up again.
wait_up() { # wait_up <server> <seconds>
	local i=0
	while [ "$(rstat "$1" up)" != 1 ] && [ $i -lt "$2" ]; do sleep 1; i=$((i + 1)); done
	note "server $(($1 + 1)) up=$(rstat "$1" up) after $i s"
}
# Server N's recovery counters, for the log.
rcounters() { # rcounters <server>
	local c out=""
	for c in up outages reconnects loads_waited loads_recovered lost_pages errors pages; do
		out="$out $c=$(rstat "$1" $c)"
	done
	echo "server $(($1 + 1)):$out"
}
# After a fault, memory node 2 serves again: a fresh walk verifies and node
# 2 takes new pages; then prints "<tag>: <its counters> lost_by_walker=<lost>"
# and unloads.
node2_serves_again() { # node2_serves_again <seed> <tag> <pages the faulted walker lost>
	local w2
	w2=$(rstat 1 writes)
	walk 5M --mib 10 --random-passes 0 --seed "$1" || fail "walker after node 2 came back: exit $?"
	expect "data verified after node 2 came back" "$(walkval mismatches)" -eq 0
	expect "node 2 takes new pages again" "$(rstat 1 writes)" -gt $((w2 + 200))
	echo "$2: $(rcounters 1) lost_by_walker=$3"
	swapoff "$SWAPDEV" || fail "swapoff"
	pages_counted_out 0 1
	unload_rdma || fail "rmmod"
}
# After swapoff: every page was counted out of its server's gauge once,
# freed or lost with a retired generation, never both (a gauge left at -1
# or 1 means a free raced a retirement).
pages_counted_out() { # pages_counted_out <server>...
	local i
	for i in "$@"; do
		expect "node $((i + 1)) counts no page after swapoff" "$(rstat "$i" pages)" -eq 0
	done
}
