# placement=, and the weighted policy under interference. Bad values of
# placement= are refused at insmod and at run time. Then memory node 2
# runs its own memory-bandwidth-heavy job (lab control port: "busy")
# while the compute node swaps to both nodes with placement=weighted
# (switched at run time). Three walks: both nodes idle, node 2 busy, idle
# again. (The lab's VMs share the host's cores, so while node 2 is busy
# the host also caps its VM's CPU time, see lab_throttle: its own work
# then competes with its memserver, not with the other VMs.) Node 2's
# measured latency rises within seconds, it gets a smaller share of new
# pages, and the share comes back once it is idle. The walks' swap-in
# rates show what the interference costs. Every byte verifies.
. /tests/lib.sh
P=/sys/module/rswap_rdma/parameters/placement
expect_fail "placement=bogus at insmod" "use capacity, weighted or tiered" \
	load_rdma servers="$(server 1),$(server 2)" placement=bogus
rmmod rswap 2>/dev/null
load_rdma servers="$(server 1),$(server 2)" mib_per_server=64 || fail "insmod rswap_rdma"
swap_on || fail "swapon"
expect "placement defaults to capacity" "$(cat $P)" = capacity
expect_fail "placement=bogus at run time" "use capacity, weighted or tiered" sh -c "echo bogus >$P"
expect "a bad value changes nothing" "$(cat $P)" = capacity
echo weighted >$P || fail "placement=weighted at run time"
expect "placement is now weighted" "$(cat $P)" = weighted
A=0 B=0
window() { # window <name> <seed>: a walk; node 2's share of its stores
	walk 4M --mib 9 --random-passes 1 --seed "$2" || fail "$1: pagewalker exit $?"
	expect "$1: data verified" "$(walkval mismatches)" -eq 0
	local a=$(rstat 0 stores) b=$(rstat 1 stores)
	local da=$((a - A)) db=$((b - B))
	A=$a B=$b
	pct2=$((100 * db / (da + db + 1)))
	rate=$(walkval swapin_mib_s)
	note "$1: stores node1 $da node2 $db (node 2: $pct2%); latency ewma r/w us node1 $(rstat 0 read_lat_ewma_us)/$(rstat 0 write_lat_ewma_us) node2 $(rstat 1 read_lat_ewma_us)/$(rstat 1 write_lat_ewma_us); swap-in $rate MiB/s, fault p50 $(walkval fault_p50_us) us"
}
window idle 21
idle=$pct2 idle_rate=$rate
echo "busy 600" | nc -w 2 10.77.2.2 7990 || fail "asking node 2 to get busy"
echo "RSWAP-LAB busy 2 on"
sleep 3
window busy 22
busy=$pct2 busy_rate=$rate
echo calm | nc -w 2 10.77.2.2 7990 || fail "asking node 2 to calm down"
echo "RSWAP-LAB busy 2 off"
sleep 3
window calm 23
calm=$pct2 calm_rate=$rate
echo "RSWAP-INTERFERENCE node2_share_idle=$idle node2_share_busy=$busy node2_share_calm=$calm swapin_idle=$idle_rate swapin_busy=$busy_rate swapin_calm=$calm_rate"
expect "weighted: the busy node gets a smaller share" "$busy" -le $((idle - 10))
expect "weighted: its share comes back when it is idle" "$calm" -ge $((busy + 10))
expect "no RDMA errors" "$(($(rstat 0 errors) + $(rstat 1 errors)))" -eq 0
dmesg | grep -q "placement is now weighted" || fail "the policy change was not logged"
swapoff "$SWAPDEV" || fail "swapoff"
unload_rdma || fail "rmmod"
finish
