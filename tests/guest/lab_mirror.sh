# redundancy=mirror over three memory nodes: every page has two copies on
# two nodes. Two walkers write their pages and pause; memory node 3 is
# killed; one walker reads everything back while node 3 is gone (every
# byte verifies, no SIGBUS: a failed read is served by the other copy),
# repair gives the pages that had a copy on node 3 a new one on nodes 1
# and 2, and then the other walker verifies every byte too.
. /tests/lib.sh
insmod /modules/rswap.ko || fail "insmod rswap"
expect_fail "mirror with one server" "redundancy=mirror needs at least two servers" \
	insmod /modules/rswap_rdma.ko secret="$SECRET" servers="$(server 1)" redundancy=mirror
expect_fail "unknown redundancy" "redundancy=raid5: use none" \
	insmod /modules/rswap_rdma.ko secret="$SECRET" servers="$(server 1),$(server 2)" redundancy=raid5
rmmod rswap || fail "rmmod rswap"
load_rdma servers="$(server 1),$(server 2),$(server 3)" mib_per_server=64 timeout_ms=1000 loss_timeout_s=3 \
	redundancy=mirror || fail "insmod rswap_rdma"
swap_on || fail "swapon"
mkdir -p "$CG" && echo 8M >"$CG/memory.max"
# A walker in the cgroup, in the background, with its own output file.
walker() { # walker <name> <pagewalker args...>
	local name=$1
	shift
	sh -c "echo \$\$ >$CG/cgroup.procs && exec /bin/pagewalker $*" >"/tmp/$name.out" 2>&1 &
}
paused() { # paused <name>: until it has written its pages (300 s at most)
	local i=0
	while ! grep -q "paused until" "/tmp/$1.out" 2>/dev/null && [ $i -lt 300 ]; do sleep 1; i=$((i + 1)); done
	grep -q "paused until" "/tmp/$1.out" || fail "walker $1 did not finish writing: $(tail -3 "/tmp/$1.out")"
}
result() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" "/tmp/$1.out" | tail -1; }
copies() { echo $(($(rstat 0 pages) + $(rstat 1 pages) + $(rstat 2 pages))); }
rm -f /tmp/goa /tmp/gob
walker a --mib 12 --seed 21 --random-passes 1 --pause /tmp/goa
a=$!
paused a
walker b --mib 12 --seed 22 --random-passes 1 --pause /tmp/gob
b=$!
paused b
held=$(stat rswap/pages_held)
note "held $held pages in $(copies) copies: $(rstat 0 pages) / $(rstat 1 pages) / $(rstat 2 pages) on nodes 1-3"
expect "pages were swapped out" "$held" -gt 2000
expect "every page has two copies" "$(copies)" -eq $((2 * held))
expect "node 3 holds copies" "$(rstat 2 pages)" -gt 500
lab_kill 3
touch /tmp/gob
wait $b
rc=$?
cat /tmp/b.out
expect "walker b: no SIGBUS (exit 0)" "$rc" -eq 0
expect "walker b: every byte verified" "$(result b mismatches)" -eq 0
expect "walker b: no page lost" "$(result b lost)" -eq 0
expect "loads failed over to the other copy" "$(stat rswap_rdma/mirror_failovers)" -gt 0
# Repair: node 3's copies are made again on nodes 1 and 2.
i=0
while { [ "$(stat rswap_rdma/mirror_passes)" -lt 1 ] || [ "$(stat rswap_rdma/mirror_degraded)" -ne 0 ]; } && [ $i -lt 180 ]; do
	sleep 1
	i=$((i + 1))
done
note "repair: $(stat rswap_rdma/mirror_repaired) copies made in $(stat rswap_rdma/mirror_passes) passes (waited $i s); degraded $(stat rswap_rdma/mirror_degraded), lost $(stat rswap_rdma/mirror_lost)"
expect "server 3 marked down" "$(rstat 2 up)" -eq 0
expect "repair made copies" "$(stat rswap_rdma/mirror_repaired)" -gt 0
expect "no page left with one copy" "$(stat rswap_rdma/mirror_degraded)" -eq 0
expect "no page lost" "$(stat rswap_rdma/mirror_lost)" -eq 0
held=$(stat rswap/pages_held)
note "held $held pages in $(rstat 0 pages) + $(rstat 1 pages) copies on nodes 1 and 2"
expect "every page has two copies again, on nodes 1 and 2" "$(($(rstat 0 pages) + $(rstat 1 pages)))" -eq $((2 * held))
touch /tmp/goa
wait $a
rc=$?
cat /tmp/a.out
expect "walker a: no SIGBUS (exit 0)" "$rc" -eq 0
expect "walker a: every byte verified" "$(result a mismatches)" -eq 0
note "stores refused for want of a second server: $(stat rswap_rdma/mirror_refused)"
swapoff "$SWAPDEV" || fail "swapoff"
expect "pages_held after swapoff" "$(stat rswap/pages_held)" -eq 0
expect "no copy left on nodes 1 and 2" "$(($(rstat 0 pages) + $(rstat 1 pages)))" -eq 0
unload_rdma || fail "rmmod"
finish
