# redundancy=ec:2+1 over three memory nodes: a page is two 2 KiB data
# chunks and their XOR parity, one chunk on each node.
# 0. Bad values are refused with their reason.
# 1. Two walkers write their pages and pause: each node holds one chunk of
#    every page (rswap_rdma's counts), and memserver's own count of our
#    pages holding data is 1.5x the pages held, the design's (K+1)/K.
# 2. Memory node 3's memserver is killed (-9) while walker ea reads
#    everything back with late binding (each load asks for all three
#    chunks and uses the first two to arrive; node 3's reads die in
#    flight): loads rebuild node 3's data chunks from the parity (no
#    SIGBUS, every byte verifies). Its supervisor restarts it with a
#    fresh pool; the kernel sees the new session and declares node 3's
#    chunks gone, and repair gives every page its lost chunk again, on
#    node 3 (the only node holding none of the page's chunks): each node
#    holds a chunk of every page again; walker eb verifies, with late
#    binding off (the data chunks read one after the other).
# 3. Four servers: memory node 1 runs a second memserver (port 7472), so
#    a page's three chunks are on three of four servers, and nodes 2 and 3
#    hold two chunks of some pages and one of the others. Both go dark
#    together past the bound: a page that lost two chunks, more than the
#    one parity covers, is lost; one that lost one (its other two on node
#    1's two servers) is not. So some pages are counted lost and some are
#    not; walker ec's loads of lost pages fail (SIGBUS; it reads with
#    --lost-ok and counts them), never with wrong data, and no more than
#    rswap_rdma counted lost; its other pages verify. A walker that swaps
#    meanwhile loses nothing (its stores are refused and go to the swap
#    disk).
# 4. ec:4+1 (1.25x) over five servers (node 2 runs a second memserver
#    too): a page is four 1 KiB data chunks and their parity, one on each
#    server; memserver's own counts are 1.25x the pages held; a walker
#    writes and reads back with late binding, every byte verified.
. /tests/lib.sh
insmod /modules/rswap.ko || fail "insmod rswap"
expect_fail "two parity chunks" "more than one parity chunk needs RAID-6 syndromes" \
	insmod /modules/rswap_rdma.ko secret="$SECRET" servers="$(server 1),$(server 2),$(server 3)" redundancy=ec:2+2
expect_fail "three data chunks" "use ec:K+1 with K data chunks per page, K = 2 or 4" \
	insmod /modules/rswap_rdma.ko secret="$SECRET" servers="$(server 1),$(server 2),$(server 3)" redundancy=ec:3+1
expect_fail "ec:2+1 on two servers" "redundancy=ec:2+1 needs at least 3 servers in servers= (it has 2)" \
	insmod /modules/rswap_rdma.ko secret="$SECRET" servers="$(server 1),$(server 2)" redundancy=ec:2+1
rmmod rswap || fail "rmmod rswap"
NODE=0x6563326231
load_rdma servers="$(server 1),$(server 2),$(server 3)" mib_per_server=32 timeout_ms=1000 loss_timeout_s=3 \
	redundancy=ec:2+1 late_binding=1 node_id=$NODE || fail "insmod rswap_rdma"
swap_on || fail "swapon"
mkdir -p "$CG" && echo 6M >"$CG/memory.max"
estat() { stat "rswap_rdma/ec_$1"; }
# Loads rswap_rdma with <args>, retrying while a second memserver that
# was just asked for starts listening (30 s at most).
load_second() { # load_second <what> <rswap_rdma args...>
	local what=$1 i=0
	shift
	until load_rdma "$@" 2>/dev/null; do
		rmmod rswap 2>/dev/null
		i=$((i + 1))
		[ $i -lt 15 ] || break
		sleep 2
	done
	[ -d $DBG/rswap_rdma ] || fail "insmod rswap_rdma with $what"
}
chunks() { note "chunks on nodes 1-3: $(rstat 0 pages) / $(rstat 1 pages) / $(rstat 2 pages) for $(stat rswap/pages_held) pages held"; }

# 1.
walker ea --mib 6 --seed 31 --random-passes 1
ea=$!
paused ea
walker eb --mib 6 --seed 32 --random-passes 0
eb=$!
paused eb
held=$(stat rswap/pages_held)
chunks
expect "pages were swapped out" "$held" -gt 1000
for n in 0 1 2; do
	expect "node $((n + 1)) holds a chunk of every page" "$(rstat $n pages)" -eq "$held"
done
sleep 7 # memserver scans every 3 s
used=$(memserver_used "$NODE")
note "memory overhead from memserver's counts: $used pages for $held held = $((used * 1000 / held))/1000"
expect "memserver holds 1.5x the pages held (at least 1.49x)" "$((used * 1000 / held))" -ge 1490
expect "memserver holds 1.5x the pages held (at most 1.51x)" "$((used * 1000 / held))" -le 1510

# 2.
(sleep 2; echo kill | nc -w 2 10.77.3.2 7990) &
k3=$!
resumed ea $ea
expect "(2) walker a: no SIGBUS (exit 0)" "$?" -eq 0
expect "(2) walker a: every byte verified" "$(resultval /tmp/ea.out mismatches)" -eq 0
note "(2) late binding: $(estat late) loads late-bound, $(estat late_parity) of them with the parity before a data chunk; $(estat late_fallback) read the ordinary way, $(estat rebuilt) of those rebuilt"
expect "(2) loads were late-bound" "$(estat late)" -gt 0
expect "(2) loads rebuilt chunks from the parity" "$(($(estat rebuilt) + $(estat late_parity)))" -gt 0
wait $k3
i=0
while { [ "$(rstat 2 lost_pages)" -eq 0 ] || [ "$(rstat 2 up)" != 1 ]; } && [ $i -lt 60 ]; do sleep 1; i=$((i + 1)); done
note "(2) after $i s: $(rcounters 2)"
expect "(2) node 3's chunks were declared gone" "$(rstat 2 lost_pages)" -gt 0
expect "(2) node 3 is back" "$(rstat 2 up)" -eq 1
i=0
while { [ "$(estat passes)" -lt 1 ] || [ "$(estat degraded)" -ne 0 ]; } && [ $i -lt 180 ]; do
	sleep 1
	i=$((i + 1))
done
note "repair: $(estat repaired) chunks made, $(estat passes) passes (waited $i s); degraded $(estat degraded), lost $(estat lost)"
expect "(2) no page left a chunk short" "$(estat degraded)" -eq 0
expect "(2) no page lost" "$(estat lost)" -eq 0
expect "(2) repair made chunks" "$(estat repaired)" -gt 0
held=$(stat rswap/pages_held)
chunks
for n in 0 1 2; do
	expect "(2) node $((n + 1)) holds a chunk of every page again" "$(rstat $n pages)" -eq "$held"
done
echo 0 >/sys/module/rswap_rdma/parameters/late_binding
late=$(estat late)
resumed eb $eb
expect "(2) walker b: no SIGBUS (exit 0)" "$?" -eq 0
expect "(2) walker b: every byte verified" "$(resultval /tmp/eb.out mismatches)" -eq 0
expect "(2) walker b's loads were not late-bound (late_binding=0)" "$(estat late)" -eq "$late"
echo 1 >/sys/module/rswap_rdma/parameters/late_binding

# 3.
swapoff "$SWAPDEV" || fail "swapoff"
pages_counted_out 0 1 2
unload_rdma || fail "rmmod"
echo second | nc -w 2 10.77.1.2 7990 || fail "asking node 1 for a second memserver"
load_second "four servers" servers="$(server 1),10.77.1.2:7472,$(server 2),$(server 3)" mib_per_server=32 \
	timeout_ms=1000 loss_timeout_s=3 redundancy=ec:2+1 late_binding=1 node_id=0x6563326232
swap_on || fail "swapon"
walker ec --mib 6 --seed 33 --random-passes 0 --lost-ok
ec=$!
paused ec
held=$(stat rswap/pages_held)
note "(3) chunks on servers 1a, 1b, 2, 3: $(rstat 0 pages) / $(rstat 1 pages) / $(rstat 2 pages) / $(rstat 3 pages) for $held pages held"
expect "(3) node 1's second server holds chunks" "$(rstat 1 pages)" -gt 0
lost0=$(estat lost)
# (Its stores, finding too few servers, go to the swap disk.)
dark_2_and_3 10 34
expect "(3) node 2's chunks were declared gone" "$(rstat 2 lost_pages)" -gt 0
expect "(3) node 3's chunks were declared gone" "$(rstat 3 lost_pages)" -gt 0
i=0
while { [ "$(estat lost)" -le "$lost0" ] || [ "$(estat degraded)" -ne 0 ]; } && [ $i -lt 120 ]; do
	sleep 1
	i=$((i + 1))
done
lost=$(estat lost)
note "(3) repair after two nodes: $(estat repaired) chunks made in all, degraded $(estat degraded), lost $lost (of $held pages held)"
expect "(3) pages with two chunks gone are counted lost" "$lost" -gt 0
expect "(3) pages with one chunk gone are not (fewer lost than held)" "$lost" -lt "$held"
expect "(3) their lost chunk was made again" "$(estat repaired)" -gt 0
resumed ec $ec
expect "(3) walker ec finished (lost pages tolerated)" "$?" -eq 0
expect "(3) no page came back wrong" "$(resultval /tmp/ec.out mismatches)" -eq 0
note "(3) walker ec lost $(resultval /tmp/ec.out lost) pages; rswap_rdma counted $lost with too few chunks"
expect "(3) walker ec lost pages" "$(resultval /tmp/ec.out lost)" -gt 0
expect "(3) only pages with too few chunks failed" "$(resultval /tmp/ec.out lost)" -le "$lost"

# 4.
swapoff "$SWAPDEV" || fail "swapoff"
pages_counted_out 0 1 2 3
unload_rdma || fail "rmmod"
echo second | nc -w 2 10.77.2.2 7990 || fail "asking node 2 for a second memserver"
NODE=0x6563346231
load_second "five servers" servers="$(server 1),10.77.1.2:7472,$(server 2),10.77.2.2:7472,$(server 3)" \
	mib_per_server=32 timeout_ms=1000 loss_timeout_s=3 redundancy=ec:4+1 late_binding=1 node_id=$NODE
swap_on || fail "swapon"
walker e4 --mib 12 --seed 35 --random-passes 1
e4=$!
paused e4
held=$(stat rswap/pages_held)
note "(4) ec:4+1: chunks on servers 1a, 1b, 2a, 2b, 3: $(rstat 0 pages) / $(rstat 1 pages) / $(rstat 2 pages) / $(rstat 3 pages) / $(rstat 4 pages) for $held pages held"
expect "(4) pages were swapped out" "$held" -gt 100
for n in 0 1 2 3 4; do
	expect "(4) server $((n + 1)) holds a chunk of every page" "$(rstat $n pages)" -eq "$held"
done
sleep 7 # memserver scans every 3 s
used=$(memserver_used "$NODE")
note "(4) memory overhead from memserver's counts: $used pages for $held held = $((used * 1000 / held))/1000"
expect "(4) memserver holds 1.25x the pages held (at least 1.24x)" "$((used * 1000 / held))" -ge 1240
expect "(4) memserver holds 1.25x the pages held (at most 1.27x)" "$((used * 1000 / held))" -le 1270
resumed e4 $e4
expect "(4) walker e4: no SIGBUS (exit 0)" "$?" -eq 0
expect "(4) walker e4: every byte verified" "$(resultval /tmp/e4.out mismatches)" -eq 0
note "(4) late-bound loads $(estat late), $(estat late_parity) with the parity first"
swapoff "$SWAPDEV" || fail "swapoff"
pages_counted_out 0 1 2 3 4
unload_rdma || fail "rmmod"
echo nosecond | nc -w 2 10.77.1.2 7990
echo nosecond | nc -w 2 10.77.2.2 7990
finish
