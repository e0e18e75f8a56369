# The tiered policy, by counters, with every byte verified while pages
# move. The link to memory node 2 is slowed (4 ms more delay, 1/4 the
# rate), so node 1 is the fast tier. A Zipf-like walk (--skew 3) over
# 24 MiB fills node 1's 16 MiB: cold pages are demoted to node 2 in the
# background, pages faulted in and swapped out again are stored on node 1
# (hot), and pages of node 2 loaded twice are promoted. Half way through
# the policy is switched to capacity and back while pages are moving.
# Then the fast node gets busy with its own work, and back (below).
. /tests/lib.sh
P=/sys/module/rswap_rdma/parameters/placement
/usr/sbin/tc qdisc add dev eth1 root netem delay 4ms rate 10mbit || fail "netem on eth1"
load_rdma servers="$(server 1),$(server 2)" mib_per_server=16 placement=tiered || fail "insmod rswap_rdma"
swap_on || fail "swapon"
expect "placement is tiered" "$(cat $P)" = tiered
# The switch, once the walker reads its pages back (pages are moving).
(i=0
	while ! grep -q 'phase=verify' /tmp/walk.out 2>/dev/null && [ $i -lt 600 ]; do
		sleep 1
		i=$((i + 1))
	done
	echo capacity >$P && sleep 5 && echo tiered >$P) &
sw=$!
walk 6M --mib 24 --random-passes 2 --skew 3 || fail "pagewalker exit $?"
wait $sw
expect "data verified while pages moved" "$(walkval mismatches)" -eq 0
during=$(stat rswap_rdma/loads_during_move) waited=$(stat rswap_rdma/frees_waited)
note "races: $during loads found their page being moved (and read its old slot); freeing old slots waited for loads in $waited periods"
c() { note "$1: $(for k in stores stores_hot promotions demotions moved_bytes pages reads writes read_lat_ewma_us write_lat_ewma_us share_permille; do printf '%s=%s ' $k "$(rstat $2 $k)"; done)"; }
c node1 0
c node2 1
dmesg | grep "tiered: the fast tier" | tail -3
dmesg | grep -q "tiered: the fast tier is now server 10.77.1.2" || fail "node 1 was not chosen as the fast tier"
expect "hot pages stored on the fast node" "$(rstat 0 stores_hot)" -gt 100
expect "cold pages demoted from the fast node" "$(rstat 0 demotions)" -gt 100
expect "pages promoted to the fast node" "$(rstat 0 promotions)" -gt 10
expect "moved bytes: every demotion to node 2" "$(rstat 1 moved_bytes)" -eq $(($(rstat 0 demotions) * 4096))
expect "moved bytes: every promotion to node 1" "$(rstat 0 moved_bytes)" -eq $(($(rstat 0 promotions) * 4096))
expect "the policy was switched while pages moved" "$(dmesg | grep -c -E 'placement is now (capacity|tiered)')" -eq 2
# Loads: reads minus the moves' own reads (moved_out).
r0=$(($(rstat 0 reads) - $(rstat 0 moved_out))) r1=$(($(rstat 1 reads) - $(rstat 1 moved_out)))
note "loads served by the fast node: $((100 * r0 / (r0 + r1 + 1)))% ($r0 of $((r0 + r1)))"
echo "RSWAP-TIERED fast_reads=$r0 slow_reads=$r1 stores_hot=$(rstat 0 stores_hot) promotions=$(rstat 0 promotions) demotions=$(rstat 0 demotions) $(cat /tmp/walk)"
# (How many loads the fast node serves depends on the workload: a figure
# for the benchmark, not a check. Where pages go is the policy's part.)
expect "most new pages stored on the fast node" "$(rstat 0 stores)" -gt "$(rstat 1 stores)"
expect "hot stores go to the fast node" "$(rstat 0 stores_hot)" -gt $((10 * $(rstat 1 stores_hot)))
expect "no RDMA errors" "$(($(rstat 0 errors) + $(rstat 1 errors)))" -eq 0
expect "nothing lost" "$(($(rstat 0 lost_pages) + $(rstat 1 lost_pages)))" -eq 0
# rswapctl: the view a user diagnoses with.
rswapctl status >/tmp/ctl || fail "rswapctl status: exit $?"
sed "s/^/[$T] /" /tmp/ctl
expect "rswapctl shows the policy" "$(grep -c 'placement tiered, 2 memory servers' /tmp/ctl)" -eq 1
expect "rswapctl shows both servers up" "$(grep -c -E '^[12] +10\.77\.[12]\.2:7471 +up ' /tmp/ctl)" -eq 2
rswapctl top --interval 0.5 --count 2 >/tmp/top || fail "rswapctl top: exit $?"
expect "rswapctl top refreshes" "$(grep -c 'over the last interval' /tmp/top)" -eq 2
swapoff "$SWAPDEV" || fail "swapoff"
sleep 1 # the last batch's old slots are freed on the next period
expect "every page accounted for after swapoff" "$(($(rstat 0 pages) + $(rstat 1 pages)))" -eq 0
expect "every slot free again (node 1)" "$(rstat 0 free_pages)" -eq "$(rstat 0 capacity_pages)"
expect "every slot free again (node 2)" "$(rstat 1 free_pages)" -eq "$(rstat 1 capacity_pages)"
unload_rdma || fail "rmmod"
# Interference: node 1, the fast tier, runs its own memory-bandwidth-heavy
# job (lab control port; the host caps its VM's CPU time, lab_throttle)
# while the compute node swaps with room to spare on both nodes (every new
# page goes to the fast tier while it has room). Its loaded latency rises
# past node 2's, node 2 becomes the fast tier and takes the new pages;
# once node 1 is idle again (loads of its pages measure it) it is the
# fast tier again. Three walks, every byte verified.
load_rdma servers="$(server 1),$(server 2)" mib_per_server=64 placement=tiered || fail "insmod rswap_rdma (interference)"
swap_on || fail "swapon (interference)"
A=0 B=0
window() { # window <name> <seed>: a walk; node 1's share of its stores
	walk 5M --mib 8 --random-passes 1 --seed "$2" || fail "$1: pagewalker exit $?"
	expect "$1: data verified" "$(walkval mismatches)" -eq 0
	local a=$(rstat 0 stores) b=$(rstat 1 stores)
	local da=$((a - A)) db=$((b - B))
	A=$a B=$b
	pct1=$((100 * da / (da + db + 1)))
	note "$1: stores node1 $da node2 $db (node 1: $pct1%); latency ewma r/w us node1 $(rstat 0 read_lat_ewma_us)/$(rstat 0 write_lat_ewma_us) node2 $(rstat 1 read_lat_ewma_us)/$(rstat 1 write_lat_ewma_us); swap-in $(walkval swapin_mib_s) MiB/s; $(dmesg | grep 'tiered: the fast tier' | tail -1 | sed 's/^\[[^]]*\] *//')"
}
to2() { dmesg | grep -c 'tiered: the fast tier is now server 10.77.2.2'; }
window idle 31
idle=$pct1 to2_idle=$(to2)
echo "busy 600" | nc -w 2 10.77.1.2 7990 || fail "asking node 1 to get busy"
echo "RSWAP-LAB busy 1 on"
sleep 3
window busy 32
busy=$pct1
echo calm | nc -w 2 10.77.1.2 7990 || fail "asking node 1 to calm down"
echo "RSWAP-LAB busy 1 off"
sleep 3
window calm 33
calm=$pct1
echo "RSWAP-INTERFERENCE policy=tiered busy_node=1 node1_share_idle=$idle node1_share_busy=$busy node1_share_calm=$calm"
expect "tiered: the busy fast node gets a smaller share" "$busy" -le $((idle - 20))
expect "tiered: node 2 became the fast tier while node 1 was busy" "$(to2)" -gt "$to2_idle"
expect "tiered: its share comes back when it is idle" "$calm" -ge $((busy + 20))
expect "no RDMA errors (interference)" "$(($(rstat 0 errors) + $(rstat 1 errors)))" -eq 0
swapoff "$SWAPDEV" || fail "swapoff (interference)"
unload_rdma || fail "rmmod (interference)"
/usr/sbin/tc qdisc del dev eth1 root || fail "removing netem on eth1"
finish
