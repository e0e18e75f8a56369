# Swap over Soft-RoCE while the whole machine is short of memory, not just
# a cgroup: a locked hog leaves ~16 MiB available and the walker, with no
# memory.max of its own, writes and reads back 8 MiB more than is then
# free. It is sized on free memory, not MemAvailable, whose watermark
# estimate varies (a walker sized on it once fit in free memory and never
# swapped); free sits well above MemAvailable, by the watermarks, so some
# 40 MiB are swapped out in all. Every page it swaps is taken by
# global reclaim (kswapd, or direct reclaim in the walker's own faults),
# so rxe allocates every packet it sends with GFP_ATOMIC in a tasklet
# (PF_MEMALLOC masked) while free memory sits at the watermarks: this is
# where it could stall or drop. Nothing may hang (hung-task and
# soft-lockup detectors stay silent) and every byte must verify. See the
# rxe note in rswap_rdma/queue.rs.
#
# Watermark boosting is off while the hog runs. With two thirds of RAM
# mlocked in huge pages, one fragmentation event boosts the watermarks by
# 150% of the high one, 51 MiB here, above all that is left to reclaim:
# the page allocator then OOM-kills the hog on a kworker's GFP_KERNEL
# allocation with 1 GiB of swap free (seen in CI and reproduced,
# 2026-12-07: free 61 MiB, boosted min 75 MiB, 14 MiB of anon left on the
# LRU). That is the allocator's heuristic, whatever the swap device; the
# test is about swapping under the real watermarks.
#
# An earlier version raised vm.min_free_kbytes to wake kswapd under a
# cgroup-limited walker. That was flaky: kswapd stops as soon as any
# zone (ZONE_DMA, which little else touches) is above its high watermark.
. /tests/lib.sh
load_rdma servers="$(server 1)" mib_per_server=128 || fail "insmod rswap_rdma"
swap_on || fail "swapon"
# A task stuck 30 s (not the default 120) counts as hung here.
echo 30 >/proc/sys/kernel/hung_task_timeout_secs
boost=$(cat /proc/sys/vm/watermark_boost_factor)
echo 0 >/proc/sys/vm/watermark_boost_factor
avail=$(awk '/MemAvailable/{print int($2 / 1024)}' /proc/meminfo)
hog=$((avail - 16))
rm -f /tmp/hog.stop
/bin/pagewalker --mib "$hog" --lock --random-passes 0 --pause /tmp/hog.stop >/tmp/hog.out 2>&1 &
hogpid=$!
i=0
while ! grep -q paused /tmp/hog.out && [ $i -lt 600 ]; do usleep 200000; i=$((i + 1)); done
note "hog holds $hog MiB locked; free now $(awk '/MemFree/{print int($2 / 1024)}' /proc/meminfo) MiB, available $(awk '/MemAvailable/{print int($2 / 1024)}' /proc/meminfo) MiB"
oom0=$(vmstat oom_kill)
wmib=$(($(awk '/MemFree/{print int($2 / 1024)}' /proc/meminfo) + 8))
skb0=$(dmesg | grep -c 'Failed allocating skb')
scan0=$(($(vmstat pgscan_kswapd) + $(vmstat pgscan_direct)))
walk max --mib "$wmib" --random-passes 0 || fail "pagewalker exit $?"
touch /tmp/hog.stop
oom=$(dmesg | grep -E 'invoked oom-killer|DMA32 free|Killed process' | tail -3 | cut -c1-240 | tr '\n' ' ')
wait $hogpid || fail "the hog failed (exit $?): $(tail -1 /tmp/hog.out) ${oom:+OOM: $oom}"
[ "$(vmstat oom_kill)" -gt "$oom0" ] && note "OOM: $oom"
expect "data verified under global pressure" "$(walkval mismatches)" -eq 0
expect "stores over RDMA (at least the 8 MiB over free memory)" "$(stat rswap/rdma/stores)" -ge 2048
expect "global reclaim scanned pages (the machine, not a cgroup, was short)" "$(($(vmstat pgscan_kswapd) + $(vmstat pgscan_direct) - scan0))" -gt 0
expect "no task was OOM-killed" "$(($(vmstat oom_kill) - oom0))" -eq 0
expect "no load error" "$(stat rswap/load_errors)" -eq 0
expect "server up" "$(rstat 0 up)" -eq 1
note "rxe skb allocation failures: $(($(dmesg | grep -c 'Failed allocating skb') - skb0)); RDMA errors $(rstat 0 errors); pgscan_kswapd $(vmstat pgscan_kswapd) pgscan_direct $(vmstat pgscan_direct)"
swapoff "$SWAPDEV" || fail "swapoff"
unload_rdma || fail "rmmod"
echo 120 >/proc/sys/kernel/hung_task_timeout_secs
echo "$boost" >/proc/sys/vm/watermark_boost_factor
note "$(cat /tmp/walk)"
finish
