#!/usr/bin/env bash
# The main job: the multi-node lab. Boots two memory-node VMs running
# memserver and a compute VM running the patched kernel with rswap and
# rswap_rdma, all joined by Soft-RoCE over private QEMU links on
# 127.0.0.1, the link to node 2 shaped to about 1/4 of node 1's rate;
# runs a 96 MiB page walker under memory.max=32M on the compute node with
# placement=tiered, and prints where its pages went (rswapctl status) and
# whether every byte came back.
# Installs and builds what it needs.
#
# scripts/demo.sh mirror: the failure act instead. Three memory nodes,
# redundancy=mirror (every page on two of them), a 32 MiB walker, and
# memory node 3 killed while the walker reads its pages back: every byte
# comes back, no page is lost, and repair gives node 3's pages new copies.
source "$(dirname "$0")/lib.sh"
case "${1:-}" in
"" | mirror) ;;
*) die "usage: scripts/demo.sh [mirror]" ;;
esac
rswap_prepare
trap 'lab_stop' EXIT
# A key's value in the guest's summary line, $line.
val() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $line"; }
if [ "${1:-}" = mirror ]; then
	log "lab: starting 3 memory nodes"
	for n in 1 2 3; do lab_mem_start "$n" 160 "rswap.allow=10.77.$n.1"; done
	lab_mem_wait 1 && lab_mem_wait 2 && lab_mem_wait 3 || die "memory nodes did not start"
	log "lab: compute node runs the demo; memory node 3 is killed mid-run (a few minutes under TCG)"
	console=$(lab_compute 3 demo_mirror 1800)
	lab_stop
	line=$(grep -a '^RSWAP-DEMO-MIRROR ' "$console" | tail -1) || die "demo did not finish; console: $console"
	grep -a -E '^\[demo_mirror\]|^pagewalker: phase' "$console" | sed 's/^/  /'
	echo
	echo "rswap demo on Linux $(rswap_kernel_version) (patched): 1 compute node, 3 memory nodes, redundancy=mirror, memory node 3 killed mid-run"
	echo "  pages held: $(val held), each on two memory nodes; node 3 held $(val node3_copies) copies when it was killed ($(val node3_declared_lost) declared gone)"
	echo "  loads served by the other copy (failovers): $(val failovers)"
	echo "  repair while the program ran: $(val repaired) new copies made on nodes 1 and 2; pages with one copy left at the end: $(val degraded); with none: $(val lost)"
	if [ "$(val exit)" = 0 ] && [ "$(val mismatches)" = 0 ] && [ "$(val walker_lost)" = 0 ] &&
		grep -q '^RSWAP-RESULT demo_mirror PASS' "$console"; then
		echo "  integrity: OK, 0 pages lost ($(val verified) page reads verified byte for byte, the program never saw an error)"
		exit 0
	fi
	echo "  integrity: FAILED (exit $(val exit), $(val mismatches) mismatches, $(val walker_lost) pages lost); console: $console"
	exit 1
fi
log "lab: starting 2 memory nodes"
shape=rswap.shape=2:30mbit:2
lab_mem_start 1 160 rswap.allow=10.77.1.1
lab_mem_start 2 160 rswap.allow=10.77.2.1 $shape
lab_mem_wait 1 && lab_mem_wait 2 || die "memory nodes did not start"
log "lab: compute node runs the demo (a few minutes under TCG)"
console=$(lab_compute 2 demo 1800 $shape)
lab_stop
line=$(grep -a '^RSWAP-DEMO ' "$console" | tail -1) || die "demo did not finish; console: $console"
grep -a -E '^\[demo\]|^pagewalker: phase' "$console" | sed 's/^/  /'
used() { grep -a -o 'pages_used=[0-9]*' "$RSWAP_WORK/lab-mem$1.log" | cut -d= -f2 | sort -n | tail -1; }
echo
echo "rswap demo on Linux $(rswap_kernel_version) (patched): 1 compute node, 2 memory nodes of different speed, RDMA (Soft-RoCE), placement=tiered"
echo "  pages swapped out through rswap: $(val out)   refused (to disk): $(val refused)   written to the swap disk: $(val disk_out)"
echo "  pages swapped back in:           $(val in)"
echo "  memory node 1 (10.77.1.2, fast): $(val node1_out) pages written, $(val node1_in) read, $(val node1_lat_us) us read latency; memserver saw up to $(used 1) pages in use"
echo "  memory node 2 (10.77.2.2, slow): $(val node2_out) pages written, $(val node2_in) read, $(val node2_lat_us) us read latency; memserver saw up to $(used 2) pages in use"
echo "  tiering: $(val promotions) pages promoted to node 1, $(val demotions) demoted to node 2"
echo "  swap-in throughput: $(val swapin_mib_s) MiB/s; fault latency p50 $(val p50_us) us, p99 $(val p99_us) us; RDMA errors: $(val rdma_errors)"
if [ "$(val mismatches)" = 0 ] && grep -q '^RSWAP-RESULT demo PASS' "$console"; then
	echo "  integrity: OK ($(val verified) page reads verified byte for byte)"
else
	echo "  integrity: FAILED ($(val mismatches) mismatches); console: $console"
	exit 1
fi
