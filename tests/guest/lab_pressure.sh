# Swap over Soft-RoCE while the whole machine is short of memory, not just
# the cgroup: a locked hog leaves ~24 MiB available, vm.min_free_kbytes is
# raised so that the free memory left sits just above the low watermark
# (kswapd must reclaim system-wide), and the walker runs at 8x its
# memory.max. rxe allocates every packet it sends with GFP_ATOMIC in a
# tasklet (PF_MEMALLOC masked), so this is where it could stall or drop.
# Nothing may hang (hung-task and soft-lockup detectors stay silent) and
# every byte must verify. See the rxe note in rswap_rdma/queue.rs.
. /tests/lib.sh
load_rdma servers="$(server 1)" mib_per_server=128 || fail "insmod rswap_rdma"
swap_on || fail "swapon"
# A task stuck 30 s (not the default 120) counts as hung here.
echo 30 >/proc/sys/kernel/hung_task_timeout_secs
avail=$(awk '/MemAvailable/{print int($2 / 1024)}' /proc/meminfo)
hog=$((avail - 24))
rm -f /tmp/hog.stop
/bin/pagewalker --mib "$hog" --lock --random-passes 0 --pause /tmp/hog.stop >/tmp/hog.out 2>&1 &
hogpid=$!
i=0
while ! grep -q paused /tmp/hog.out && [ $i -lt 600 ]; do usleep 200000; i=$((i + 1)); done
minfree0=$(cat /proc/sys/vm/min_free_kbytes)
# The low watermark (min x 1.25) lands above free memory: kswapd is woken
# and scans; free memory stays above min, so allocations still succeed.
echo $(($(awk '/MemFree/{print $2}' /proc/meminfo) * 9 / 10)) >/proc/sys/vm/min_free_kbytes
note "hog holds $hog MiB locked, min_free_kbytes $minfree0 -> $(cat /proc/sys/vm/min_free_kbytes); free now $(awk '/MemFree/{print int($2 / 1024)}' /proc/meminfo) MiB, available $(awk '/MemAvailable/{print int($2 / 1024)}' /proc/meminfo) MiB"
skb0=$(dmesg | grep -c 'Failed allocating skb')
scan0=$(vmstat pgscan_kswapd)
walk 4M --mib 32 --random-passes 1 || fail "pagewalker exit $?"
echo "$minfree0" >/proc/sys/vm/min_free_kbytes
touch /tmp/hog.stop
wait $hogpid || fail "the hog failed: $(tail -2 /tmp/hog.out)"
expect "data verified under global pressure" "$(walkval mismatches)" -eq 0
expect "stores over RDMA" "$(stat rswap/rdma/stores)" -ge 6144
expect "the machine was short of memory (kswapd scanned)" "$(($(vmstat pgscan_kswapd) - scan0))" -gt 0
expect "no load error" "$(stat rswap/load_errors)" -eq 0
expect "server up" "$(rstat 0 up)" -eq 1
note "rxe skb allocation failures: $(($(dmesg | grep -c 'Failed allocating skb') - skb0)); RDMA errors $(rstat 0 errors); allocstall $(vmstat allocstall_normal) pgscan_kswapd $(vmstat pgscan_kswapd)"
swapoff "$SWAPDEV" || fail "swapoff"
unload_rdma || fail "rmmod"
echo 120 >/proc/sys/kernel/hung_task_timeout_secs
note "$(cat /tmp/walk)"
finish
