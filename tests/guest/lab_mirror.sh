# redundancy=mirror over three memory nodes: every page has two copies on
# two nodes.
# 1. Two walkers write their pages and pause: every page has two copies,
#    by rswap_rdma's counts and by memserver's own (2x the pages held).
# 2. Memory node 2's link goes dark past loss_timeout_s while one walker
#    reads: its copies are declared gone, the other copies serve every load
#    (no SIGBUS, every byte verifies), and repair re-protects the pages.
#    Node 2 comes back and takes new pages (a third walker's).
# 3. Memory node 3 is killed; the third walker reads everything back (no
#    SIGBUS, every byte verifies, loads fail over); repair gives node 3's
#    pages new copies on nodes 1 and 2 (the returned node 2 takes some),
#    back to two copies of every page; the first walker then verifies
#    every byte too.
. /tests/lib.sh
insmod /modules/rswap.ko || fail "insmod rswap"
expect_fail "mirror with one server" "redundancy=mirror needs at least two servers" \
	insmod /modules/rswap_rdma.ko secret="$SECRET" servers="$(server 1)" redundancy=mirror
expect_fail "unknown redundancy" "redundancy=raid5: use none" \
	insmod /modules/rswap_rdma.ko secret="$SECRET" servers="$(server 1),$(server 2)" redundancy=raid5
expect_fail "repair rate 0" "repair_mib_s=0 is outside 1..160" \
	insmod /modules/rswap_rdma.ko secret="$SECRET" servers="$(server 1),$(server 2)" redundancy=mirror repair_mib_s=0
rmmod rswap || fail "rmmod rswap"
NODE=0x6d6972726f72
load_rdma servers="$(server 1),$(server 2),$(server 3)" mib_per_server=64 timeout_ms=1000 loss_timeout_s=3 \
	redundancy=mirror node_id=$NODE || fail "insmod rswap_rdma"
swap_on || fail "swapon"
mkdir -p "$CG" && echo 8M >"$CG/memory.max"
# Resumes walker <name> (pid <pid>) and checks it read every byte back.
verified() { # verified <name> <pid>
	resumed "$1" "$2"
	expect "walker $1: no SIGBUS (exit 0)" "$?" -eq 0
	expect "walker $1: every byte verified" "$(resultval "/tmp/$1.out" mismatches)" -eq 0
}
copies() { echo $(($(rstat 0 pages) + $(rstat 1 pages) + $(rstat 2 pages))); }
mstat() { stat "rswap_rdma/mirror_$1"; }
# Until a repair pass finished with no page left with one copy (180 s).
repaired() {
	local i=0
	while { [ "$(mstat passes)" -lt "$1" ] || [ "$(mstat degraded)" -ne 0 ]; } && [ $i -lt 180 ]; do
		sleep 1
		i=$((i + 1))
	done
	note "repair: $(mstat repaired) copies made, $(mstat passes) passes (waited $i s); degraded $(mstat degraded), lost $(mstat lost)"
	expect "no page left with one copy" "$(mstat degraded)" -eq 0
	expect "no page lost" "$(mstat lost)" -eq 0
}

# 1.
walker a --mib 8 --seed 21 --random-passes 1
a=$!
paused a
walker b --mib 8 --seed 22 --random-passes 0
b=$!
paused b
held=$(stat rswap/pages_held)
note "held $held pages in $(copies) copies: $(rstat 0 pages) / $(rstat 1 pages) / $(rstat 2 pages) on nodes 1-3"
expect "pages were swapped out" "$held" -gt 1000
expect "every page has two copies" "$(copies)" -eq $((2 * held))
expect "node 2 holds copies" "$(rstat 1 pages)" -gt 500
expect "node 3 holds copies" "$(rstat 2 pages)" -gt 500
# memserver's own count of the pages holding data in our regions (it scans
# every 3 s), fresh at insmod: only the writes of this phase are in them
# (no page was written twice yet), so 2x the pages held.
sleep 7
used=$(memserver_used "$NODE")
note "memory overhead from memserver's counts: $used pages for $held held = $((used * 1000 / held))/1000"
expect "memserver holds 2x the pages held (at least 1.99x)" "$((used * 1000 / held))" -ge 1990
expect "memserver holds 2x the pages held (at most 2.02x)" "$((used * 1000 / held))" -le 2020

# 2.
blackout 2 10 &
bo=$!
sleep 1
verified b $b
expect "(2) loads failed over to the other copy" "$(mstat failovers)" -gt 0
wait $bo
expect "(2) node 2's copies were declared gone" "$(rstat 1 lost_pages)" -gt 0
repaired 1
expect "(2) repair made copies" "$(mstat repaired)" -gt 0
wait_up 1 40
expect "(2) node 2 is back" "$(rstat 1 up)" -eq 1
s2=$(rstat 1 stores)
walker c --mib 8 --seed 23 --random-passes 1
c=$!
paused c
expect "the returned node 2 takes new pages" "$(rstat 1 stores)" -gt $((s2 + 50))

# 3.
f=$(mstat failovers)
passes=$(mstat passes)
lab_kill 3
verified c $c
expect "(3) loads failed over to the other copy" "$(mstat failovers)" -gt "$f"
repaired $((passes + 1))
expect "server 3 marked down" "$(rstat 2 up)" -eq 0
held=$(stat rswap/pages_held)
note "held $held pages in $(rstat 0 pages) + $(rstat 1 pages) copies on nodes 1 and 2"
expect "every page has two copies again, on nodes 1 and 2" "$(($(rstat 0 pages) + $(rstat 1 pages)))" -eq $((2 * held))
# With node 3 gone, a page's two copies are on nodes 1 and 2: repair put
# one on the returned node 2 for every page that was on nodes 1 and 3.
expect "the returned node 2 holds a copy of every page" "$(rstat 1 pages)" -eq "$held"
verified a $a
note "stores refused for want of a second server: $(mstat refused)"
swapoff "$SWAPDEV" || fail "swapoff"
expect "pages_held after swapoff" "$(stat rswap/pages_held)" -eq 0
expect "no copy left on nodes 1 and 2" "$(($(rstat 0 pages) + $(rstat 1 pages)))" -eq 0
unload_rdma || fail "rmmod"
finish
