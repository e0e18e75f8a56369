#!/usr/bin/env bash
# Shared helpers of rswap's scripts: dependencies, the cached kernel build,
# the modules, the guest initramfs and booting guests. Source it.
set -euo pipefail

RSWAP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RSWAP_CACHE=${RSWAP_CACHE:-/var/cache/rswap}
RSWAP_WORK=${RSWAP_WORK:-$RSWAP_CACHE/work}
# The toolchain 6.1's Rust support builds with (see README).
KMAKE=(make LLVM=1 RUSTC=/usr/bin/rustc BINDGEN=/usr/bin/bindgen
	RUST_LIB_SRC=/usr/src/rustc-1.63.0/library)

log() { printf '[rswap %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

DEB_PACKAGES=(linux-source-6.1 rustc rust-src bindgen clang lld llvm libelf-dev
	bc flex bison libssl-dev cpio qemu-system-x86 busybox-static xz-utils
	libc6-dev gcc make perl python3
	libibverbs-dev librdmacm-dev ibverbs-providers iproute2 rdmacm-utils perftest)

# Installs what the build and the guests need, once.
rswap_deps() {
	[ "$(id -u)" = 0 ] || die "run as root (apt-get, /var/cache/rswap)"
	local missing=()
	for p in "${DEB_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		log "installing Debian packages: ${missing[*]}"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	fi
	command -v cargo >/dev/null || die "cargo (stable Rust) is needed for the user-space tools"
	[ -f /usr/src/linux-source-6.1.tar.xz ] || die "linux-source-6.1 did not install its tarball"
}

# The kernel version Debian's linux-source-6.1 carries, e.g. 6.1.192.
rswap_kernel_version() {
	tar -xOf /usr/src/linux-source-6.1.tar.xz linux-source-6.1/Makefile 2>/dev/null |
		awk '/^VERSION =/{v=$3} /^PATCHLEVEL =/{p=$3} /^SUBLEVEL =/{s=$3} END{print v"."p"."s}'
}

# The kernel flavour: "release" (what users run: the demo and the
# benchmark) or "debug" (release plus lockdep, DEBUG_VM, KFENCE, SLUB and
# list debugging: the tests). Each is built and cached on its own.
RSWAP_FLAVOUR=${RSWAP_FLAVOUR:-release}

# The config fragments of the flavour, merged onto tinyconfig in order.
rswap_fragments() {
	echo "$RSWAP_ROOT/scripts/kernel.config"
	[ "$RSWAP_FLAVOUR" = release ] || echo "$RSWAP_ROOT/scripts/kernel-$RSWAP_FLAVOUR.config"
}

# Cache key: source package version + patches + config fragments + recipe.
rswap_kernel_key() {
	{
		dpkg-query -W -f='${Version}\n' linux-source-6.1
		cat "$RSWAP_ROOT"/kernel-patches/*.patch $(rswap_fragments)
		echo "recipe 2: ${KMAKE[*]} tinyconfig+fragments($RSWAP_FLAVOUR) all"
	} | sha256sum | cut -c1-16
}

# Builds (or finds) the patched kernel of $RSWAP_FLAVOUR; prints its tree's path.
rswap_kernel() {
	local key dir tmp t0 frags
	case $RSWAP_FLAVOUR in
	release | debug) ;;
	*) die "unknown kernel flavour '$RSWAP_FLAVOUR' (RSWAP_FLAVOUR=release or debug)" ;;
	esac
	frags=$(rswap_fragments)
	key=$(rswap_kernel_key)
	dir=$RSWAP_CACHE/kernel-$(rswap_kernel_version)-$RSWAP_FLAVOUR-$key
	if [ -f "$dir/.done" ]; then
		log "kernel: cached at $dir"
		echo "$dir/linux"
		return
	fi
	t0=$(date +%s)
	tmp=$dir.tmp
	rm -rf "$tmp" && mkdir -p "$tmp"
	log "kernel: unpacking linux-source-6.1 $(rswap_kernel_version)"
	tar -C "$tmp" -xf /usr/src/linux-source-6.1.tar.xz
	mv "$tmp/linux-source-6.1" "$tmp/linux"
	log "kernel: applying $(ls "$RSWAP_ROOT"/kernel-patches/*.patch | wc -l) patches"
	for p in "$RSWAP_ROOT"/kernel-patches/*.patch; do
		patch -d "$tmp/linux" -p1 --quiet --forward <"$p" || die "patch $(basename "$p") does not apply"
	done
	(
		cd "$tmp/linux"
		"${KMAKE[@]}" tinyconfig >/dev/null
		# shellcheck disable=SC2086 # one path a line, no spaces
		scripts/kconfig/merge_config.sh -m .config $frags >/dev/null
		"${KMAKE[@]}" olddefconfig >/dev/null
		# Every option of the fragments must have survived olddefconfig.
		# shellcheck disable=SC2086
		grep -h -E '^CONFIG_[A-Z0-9_]+=' $frags | while read -r l; do
			grep -qx "$l" .config || { echo "config: $l did not stick" >&2; exit 1; }
		done
		log "kernel: building the $RSWAP_FLAVOUR kernel with $(nproc) cores (10 to 15 minutes cold)"
		# The default target: bzImage plus Module.symvers and the module
		# linker script that out-of-tree modules need.
		"${KMAKE[@]}" -j"$(($(nproc) + 1))" >"$tmp/build.log" 2>&1 ||
			{ tail -40 "$tmp/build.log" >&2; exit 1; }
	) || die "kernel build failed (log: $tmp/build.log)"
	echo "$(($(date +%s) - t0))" >"$tmp/build-seconds"
	touch "$tmp/.done"
	rm -rf "$dir" && mv "$tmp" "$dir"
	log "kernel: built in $(cat "$dir/build-seconds") s, cached at $dir"
	echo "$dir/linux"
}

# Builds the Rust kernel modules out of tree; prints the directory of the .ko files.
rswap_modules() {
	local kdir=$1 out=$RSWAP_WORK/modules-$RSWAP_FLAVOUR
	mkdir -p "$out"
	# Build from a copy so the repository stays free of build outputs.
	cp "$RSWAP_ROOT/Kbuild" "$out/"
	for m in rswap rswap_dram rswap_rdma; do
		mkdir -p "$out/$m"
		cp "$RSWAP_ROOT/$m"/*.rs "$RSWAP_ROOT/$m"/*.c "$RSWAP_ROOT/$m/Kbuild" "$out/$m/"
	done
	# The wire protocol's one source, which rswap_rdma includes.
	mkdir -p "$out/memserver/src"
	cp "$RSWAP_ROOT/memserver/src/proto.rs" "$out/memserver/src/"
	"${KMAKE[@]}" -C "$kdir" M="$out" -j"$(nproc)" modules >"$out/build.log" 2>&1 ||
		{ cat "$out/build.log" >&2; die "module build failed"; }
	grep -E 'warning|error' "$out/build.log" >&2 || true
	echo "$out"
}

# Builds the static user-space programs the guests run; prints their directory.
rswap_userspace() {
	local target=x86_64-unknown-linux-gnu
	(cd "$RSWAP_ROOT" && RUSTFLAGS="-C target-feature=+crt-static" \
		cargo build -q --release --locked --target $target -p pagewalker -p rswapctl) >&2 ||
		die "cargo build of pagewalker and rswapctl failed"
	# memserver links rdma-core dynamically; it is built for the host
	# target and goes into the guests with its libraries.
	(cd "$RSWAP_ROOT" && cargo build -q --release --locked -p memserver --features test-faults) >&2 ||
		die "cargo build of memserver failed"
	cp "$RSWAP_ROOT/target/release/memserver" "$RSWAP_ROOT/target/release/rswap-probe" \
		"$RSWAP_ROOT/target/$target/release/"
	echo "$RSWAP_ROOT/target/$target/release"
}

# Packs the guest initramfs: busybox, the modules, pagewalker and the guest
# scripts. Prints its path.
rswap_initramfs() {
	local mods=$1 bins=$2 root=$RSWAP_WORK/initramfs out=$RSWAP_WORK/initramfs.cpio.gz
	rm -rf "$root"
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,modules,tests}
	cp /bin/busybox "$root/bin/busybox"
	for a in $("$root/bin/busybox" --list); do
		[ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"
	done
	cp "$mods"/rswap/rswap.ko "$mods"/rswap_dram/rswap_dram.ko "$mods"/rswap_rdma/rswap_rdma.ko "$root/modules/"
	cp "$bins/pagewalker" "$bins/rswapctl" "$root/bin/"
	# The lab's programs and the rdma-core runtime (dynamically linked):
	# memserver, iproute2's ip/tc/rdma, perftest, and the rxe provider.
	local progs=("$bins/memserver" "$bins/rswap-probe" /usr/bin/rdma /usr/sbin/tc /usr/bin/ib_read_lat
		/usr/bin/ib_read_bw /usr/bin/ib_write_bw /usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav34.so)
	mkdir -p "$root/usr/lib/x86_64-linux-gnu/libibverbs" "$root/etc/libibverbs.d" "$root/lib64" "$root/usr/sbin"
	cp "$bins/memserver" "$bins/rswap-probe" /usr/bin/ib_read_lat /usr/bin/ib_read_bw /usr/bin/ib_write_bw "$root/usr/bin/"
	cp /usr/bin/rdma "$root/usr/sbin/rdma"
	cp /usr/sbin/tc "$root/usr/sbin/tc"
	rm -f "$root/bin/tc" # busybox's tc cannot add qdiscs (net.sh calls /usr/sbin/tc)
	cp /usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav34.so "$root/usr/lib/x86_64-linux-gnu/libibverbs/"
	cp /etc/libibverbs.d/rxe.driver "$root/etc/libibverbs.d/"
	local lib
	for lib in $(ldd "${progs[@]}" 2>/dev/null | awk '/=> \//{print $3} /^[ \t]*\/lib64/{print $1}' | sort -u); do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
	cp "$RSWAP_ROOT"/tests/guest/*.sh "$root/tests/"
	cp "$RSWAP_ROOT/tests/guest/init" "$root/init"
	chmod +x "$root/init"
	(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$out"
	echo "$out"
}

# Boots the test guest; the console goes to $log. Waits at most $timeout s.
# The swap disk is cached by the host (cache=unsafe) unless
# RSWAP_DISK_CACHE says otherwise: the disk benchmark uses none (O_DIRECT),
# so that it measures a disk and not the host's page cache.
# rswap_boot <kernel tree> <initramfs> <log> <timeout> <kernel args...>
rswap_boot() {
	local kdir=$1 initrd=$2 out=$3 timeout=$4
	shift 4
	local disk=$RSWAP_WORK/swap.img
	rm -f "$disk" && truncate -s 1G "$disk"
	timeout --foreground -k 10 "$timeout" qemu-system-x86_64 \
		-accel tcg,thread=multi -cpu max -smp 2 -m 512M \
		-kernel "$kdir/arch/x86/boot/bzImage" -initrd "$initrd" \
		-append "console=ttyS0 panic=-1 log_buf_len=4M $*" \
		-drive file="$disk",if=virtio,format=raw,cache="${RSWAP_DISK_CACHE:-unsafe}" \
		-nic none -display none -serial file:"$out" -monitor none -no-reboot \
		</dev/null >/dev/null 2>&1
	local rc=$?
	[ $rc = 124 ] && log "guest timed out after $timeout s"
	return $rc
}

# Installs dependencies and builds everything the guests need; sets KDIR
# (the kernel tree) and INITRD.
rswap_prepare() {
	rswap_deps
	mkdir -p "$RSWAP_WORK"
	KDIR=$(rswap_kernel)
	local mods bins
	mods=$(rswap_modules "$KDIR")
	bins=$(rswap_userspace)
	INITRD=$(rswap_initramfs "$mods" "$bins")
}

# Boots a guest running the guest scripts $1 (comma-separated); extra
# arguments go on the kernel command line. The console is left in
# $RSWAP_WORK/<first script>.log, whose path is printed.
rswap_run_guest() { # rswap_run_guest <scripts> <timeout> [kernel args...]
	local run=$1 timeout=$2 console
	shift 2
	console=$RSWAP_WORK/guest-${run%%,*}.log
	rswap_boot "$KDIR" "$INITRD" "$console" "$timeout" "rswap.run=$run" "$@" || true
	sed -i 's/\r$//' "$console" # the serial console ends lines with CR LF
	echo "$console"
}

# ---------------------------------------------------------------------------
# The lab: compute VMs and memory-node VMs joined by links made of QEMU
# UDP socket netdevs on 127.0.0.1. UDP, because QEMU's TCP socket netdev
# adds Nagle/delayed-ACK stalls of ~40 ms per exchange. Memory node N's
# NIC sits on a QEMU hub inside its own QEMU process, with one socket port
# per peer: compute node C (port lab_port C N on the node's side, the next
# one on the compute node's), and for the a-b-c chain memory node 2's
# second NIC on node 3's hub. Inside, segment N is 10.77.N.0/24: memory node
# N is .2, compute node 1 is .1 and compute node 2 is .3 (on their
# eth(N-1)); node 2's second NIC is 10.77.3.4 and routes between segments
# 2 and 3. Nothing else is reachable.

LAB_PORT=${RSWAP_LAB_PORT:-47700}
LAB_SECRET=${LAB_SECRET:-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}
declare -A LAB_PID=()

lab_qemu() { # lab_qemu <console> <mem> <smp> <append> <qemu args...>
	local console=$1 mem=$2 smp=$3 append=$4
	shift 4
	: >"$console"
	qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp "$smp" -m "$mem" \
		-kernel "$KDIR/arch/x86/boot/bzImage" -initrd "$INITRD" \
		-append "console=ttyS0 panic=-1 log_buf_len=4M $append" \
		-display none -serial file:"$console" -monitor none -no-reboot "$@" \
		</dev/null >/dev/null 2>&1 &
}

# Memory nodes run no rswap module, only memserver and upstream code (rxe):
# they boot the debug kernel with SLUB debugging, KFENCE and lockdep's
# proving off, which cost them most of their time under TCG (every RoCE
# packet is an skb allocation). The compute nodes keep all of it.
LAB_MEM_DEBUG=${LAB_MEM_DEBUG-slub_debug=- kfence.sample_interval=0 lockdep.prove_locking=0}

lab_port() { echo $((LAB_PORT + 40 * ($1 - 1) + 2 * $2)); } # lab_port <compute> <memory node>
LAB_CHAIN_PORT=$((LAB_PORT + 90)) # node 2's side of the 2-3 link; node 3's is the next

# Starts memory node N with a pool of POOL MiB; extra kernel args follow.
lab_mem_start() { # lab_mem_start <n> <pool_mib> [rswap.allow=... rswap.shape=...]
	local n=$1 pool=$2 c p net=()
	shift 2
	for c in 1 2; do
		p=$(lab_port "$c" "$n")
		net+=(-netdev socket,id=c$c,localaddr=127.0.0.1:$p,udp=127.0.0.1:$((p + 1))
			-netdev hubport,id=h$c,hubid=0,netdev=c$c)
	done
	if [ "$n" = 3 ]; then # the chain: node 2's second NIC
		net+=(-netdev socket,id=b,localaddr=127.0.0.1:$((LAB_CHAIN_PORT + 1)),udp=127.0.0.1:$LAB_CHAIN_PORT
			-netdev hubport,id=hb,hubid=0,netdev=b)
	elif [ "$n" = 2 ]; then
		net+=(-netdev socket,id=up,localaddr=127.0.0.1:$LAB_CHAIN_PORT,udp=127.0.0.1:$((LAB_CHAIN_PORT + 1))
			-device virtio-net-pci,netdev=up,mac=52:54:00:77:03:04)
	fi
	lab_qemu "$RSWAP_WORK/lab-mem$n.log" 384M 1 \
		"$LAB_MEM_DEBUG rswap.role=mem rswap.ip=10.77.$n.2 rswap.pool=$pool rswap.secret=$LAB_SECRET $*" \
		-netdev hubport,id=nic,hubid=0 \
		-device virtio-net-pci,netdev=nic,mac="$(printf '52:54:00:77:%02x:02' "$n")" "${net[@]}"
	LAB_PID[$n]=$!
}

lab_mem_wait() { # lab_mem_wait <n>: until its memserver listens (or 120 s)
	local i
	for i in $(seq 240); do
		grep -q 'memserver: listening on' "$RSWAP_WORK/lab-mem$1.log" 2>/dev/null && return 0
		kill -0 "${LAB_PID[$1]}" 2>/dev/null || break
		sleep 0.5
	done
	log "lab: memory node $1 did not come up; its console:"
	tail -20 "$RSWAP_WORK/lab-mem$1.log" >&2
	return 1
}

lab_stop() {
	local n
	for n in "${!LAB_PID[@]}"; do
		kill "${LAB_PID[$n]}" 2>/dev/null || true
		wait "${LAB_PID[$n]}" 2>/dev/null || true
		sed -i 's/\r$//' "$RSWAP_WORK/lab-mem$n.log"
	done
	LAB_PID=()
}

# While memory node N is "busy" (its own work running), caps its VM's CPU
# time: all the lab's VMs share the host's cores, so a busy VM would slow
# every VM alike, where a real memory node's own work competes only with
# its own memserver. The VM is stopped 60 ms of every 100 ms.
lab_throttle() { # lab_throttle <n> &   (until killed)
	local pid=${LAB_PID[$1]}
	trap 'kill -CONT "$pid" 2>/dev/null; exit 0' TERM INT
	while kill -0 "$pid" 2>/dev/null; do
		kill -STOP "$pid" 2>/dev/null
		sleep 0.06
		kill -CONT "$pid" 2>/dev/null
		sleep 0.04
	done
}

# Starts compute VM C (1 or 2) with <links> links, running the guest
# scripts <run>; its console is <console>.
lab_compute_vm() { # lab_compute_vm <c> <links> <console> <run> [kernel args...]
	local c=$1 links=$2 console=$3 run=$4 net=() i p
	shift 4
	for i in $(seq "$links"); do
		p=$(lab_port "$c" "$i")
		net+=(-netdev socket,id=l$i,localaddr=127.0.0.1:$((p + 1)),udp=127.0.0.1:$p
			-device virtio-net-pci,netdev=l$i,mac="$(printf '52:54:00:77:%02x:%02x' "$i" $((2 * c - 1)))")
	done
	local disk=$RSWAP_WORK/lab-swap$c.img
	rm -f "$disk" && truncate -s 1G "$disk"
	lab_qemu "$console" 512M 2 "rswap.role=compute rswap.host=$((2 * c - 1)) rswap.links=$links rswap.secret=$LAB_SECRET rswap.run=$run $*" \
		-drive file="$disk",if=virtio,format=raw,cache=unsafe "${net[@]}"
}

# Runs compute VM 1 with <links> links and the guest scripts <run>; serves
# its requests until it exits or <timeout> s pass: "RSWAP-LAB kill N"
# stops memory node N, "RSWAP-LAB busy N on|off" caps its CPU time
# (lab_throttle), "RSWAP-LAB compute2 <run>" boots compute VM 2 running
# <run> (console lab-compute2-<run>.log; it shares the memory nodes).
# Prints the console's path.
lab_compute() { # lab_compute <links> <run> <timeout> [kernel args...]
	local links=$1 run=$2 timeout=$3
	shift 3
	local console=$RSWAP_WORK/lab-compute-${run%%,*}.log n extra=("$@")
	lab_compute_vm 1 "$links" "$console" "$run" "$@"
	local pid=$! t0=$SECONDS done_kills="" busy_seen=0 req r c2=""
	local -A throttle=()
	while kill -0 "$pid" 2>/dev/null; do
		if [ $((SECONDS - t0)) -gt "$timeout" ]; then
			log "lab: compute node timed out after $timeout s"
			kill "$pid"
			break
		fi
		for n in $(sed -n 's/^RSWAP-LAB kill \([0-9]*\).*/\1/p' "$console" 2>/dev/null); do
			case " $done_kills " in *" $n "*) continue ;; esac
			log "lab: killing memory node $n as the test asked"
			kill -9 "${LAB_PID[$n]}" 2>/dev/null || true
			done_kills="$done_kills $n"
		done
		r=$(sed -n 's/^RSWAP-LAB compute2 \([a-z_0-9,]*\).*/\1/p' "$console" 2>/dev/null | head -1)
		if [ -n "$r" ] && [ -z "$c2" ]; then
			log "lab: booting compute node 2 for: $r"
			lab_compute_vm 2 "$links" "$RSWAP_WORK/lab-compute2-${r%%,*}.log" "$r" "${extra[@]}"
			c2=$!
		fi
		mapfile -t req < <(grep -a '^RSWAP-LAB busy [0-9]* o[nf]*' "$console" 2>/dev/null | tail -n +$((busy_seen + 1)))
		for r in "${req[@]}"; do
			busy_seen=$((busy_seen + 1))
			r=${r%$'\r'}
			set -- $r
			n=$3
			if [ "$4" = on ] && [ -z "${throttle[$n]:-}" ]; then
				log "lab: memory node $n is busy: capping its CPU time"
				lab_throttle "$n" &
				throttle[$n]=$!
			elif [ "$4" = off ] && [ -n "${throttle[$n]:-}" ]; then
				log "lab: memory node $n is idle again"
				kill "${throttle[$n]}" 2>/dev/null
				wait "${throttle[$n]}" 2>/dev/null || true
				throttle[$n]=""
			fi
		done
		sleep 0.5
	done
	wait "$pid" 2>/dev/null || true
	if [ -n "$c2" ]; then
		kill "$c2" 2>/dev/null
		wait "$c2" 2>/dev/null || true
		sed -i 's/\r$//' "$RSWAP_WORK"/lab-compute2-*.log
	fi
	for n in "${!throttle[@]}"; do
		[ -n "${throttle[$n]}" ] && { kill "${throttle[$n]}" 2>/dev/null; wait "${throttle[$n]}" 2>/dev/null || true; }
	done
	sed -i 's/\r$//' "$console"
	echo "$console"
}
