# Offloaded reclaim (rswapctl reclaim, issue 10 section 4): a helper on
# CPU 1 keeps the walker's cgroup below memory.max through memory.reclaim,
# so the walker (on CPU 0) rarely reclaims for itself. Checks: every byte
# verified, the helper reclaimed, the walker hit the limit far less often
# than without it (memory.events' max), and a bad cgroup is refused.
. /tests/lib.sh
load_rswap capacity_mb=256 || fail "insmod"
swap_on || fail "swapon"
mkdir -p "$CG"
max_events() { awk '$1 == "max" {print $2}' "$CG/memory.events"; }
WALK="--mib 24 --random-passes 0 --seed 5"

e0=$(max_events)
WALK_CPU=0 walk 16M $WALK || fail "inline: pagewalker exit $?"
expect "inline: data verified" "$(walkval mismatches)" -eq 0
inline=$(($(max_events) - e0))

taskset -c 1 rswapctl reclaim "$CG" --headroom-kib 1024 >/tmp/reclaim.out 2>&1 &
rpid=$!
e0=$(max_events)
WALK_CPU=0 walk 16M $WALK || fail "offload: pagewalker exit $?"
wait $rpid || fail "rswapctl reclaim failed: $(cat /tmp/reclaim.out)"
offload=$(($(max_events) - e0))
note "$(cat /tmp/reclaim.out); walker hit memory.max $inline times inline, $offload offloaded"
expect "offload: data verified" "$(walkval mismatches)" -eq 0
expect "the helper reclaimed" "$(sed -n 's/.*reclaimed_kib=\([0-9]*\).*/\1/p' /tmp/reclaim.out)" -gt 4096
expect "the walker hit the limit less than half as often" "$((2 * offload))" -lt "$inline"

if rswapctl reclaim /sys/kernel >/tmp/err 2>&1; then
	fail "rswapctl reclaim accepted a directory that is no cgroup"
else
	expect "a bad cgroup is refused with a message" "$(grep -c 'not a cgroup v2 directory' /tmp/err)" -eq 1
fi
expect "no load error" "$(stat rswap/load_errors)" -eq 0
swapoff "$SWAPDEV" || fail "swapoff"
unload_rswap || fail "rmmod"
finish
