# Trend prefetching (prefetch=trend; kernel patch 0019 lets rswap choose the
# readahead window). A strided walk defeats the kernel's readahead, which
# reads the neighbours of each fault; the trend of the process's faults
# (majority delta) is the stride, and reading ahead along it must turn
# most faults into hits. Counters prove the path: faults that had to read
# (swapin_misses), read-ahead pages used (prefetch_hits), trends found.
# prefetch=off reads nothing ahead for the walker. A random walk has no trend, so trend
# mode reads (almost) nothing ahead there. Every byte is verified; the
# mode is switched at run time, with swap on.
. /tests/lib.sh
P=/sys/module/rswap/parameters/prefetch

load_rswap capacity_mb=256 || fail "insmod"
swap_on || fail "swapon"
expect "prefetch defaults to kernel" "$(cat $P)" = kernel
expect_fail "a bad prefetch mode is refused" "not one of kernel, trend, off" sh -c "echo sideways >$P"
expect "the mode is unchanged" "$(cat $P)" = kernel

# One walk: <mode> <walk args...>; sets m (misses), h (prefetch hits),
# ra (pages read ahead), tf/tn (trend found/none).
run() {
	local mode=$1
	shift
	echo "$mode" >$P || fail "set prefetch=$mode"
	expect "prefetch is $mode" "$(cat $P)" = "$mode"
	local m0=$(stat rswap/swapin_misses) h0=$(stat rswap/prefetch_hits) r0=$(stat rswap/loads_readahead)
	local f0=$(stat rswap/trend_found) n0=$(stat rswap/trend_none)
	walk 16M --mib 48 "$@" || fail "$mode: pagewalker exit $?"
	expect "$mode $*: data verified" "$(walkval mismatches)" -eq 0
	m=$(delta rswap/swapin_misses "$m0") h=$(delta rswap/prefetch_hits "$h0") ra=$(delta rswap/loads_readahead "$r0")
	tf=$(delta rswap/trend_found "$f0") tn=$(delta rswap/trend_none "$n0")
	note "prefetch=$mode $*: misses=$m prefetch_hits=$h read_ahead=$ra trend_found=$tf trend_none=$tn majflt=$(walkval majflt) seconds=$(walkval seconds)"
}

STRIDED="--random-passes 0 --stride 5 --seed 11"
run kernel $STRIDED
m_kernel=$m
expect "kernel: no trend looked for" "$((tf + tn))" -eq 0
run trend $STRIDED
expect "trend: trends found" "$tf" -gt 1000
expect "trend: most read-ahead pages used" "$((h * 100 / (ra + 1)))" -ge 80
expect "trend: at least half the faults that read, of kernel readahead's" "$((m * 2))" -le "$m_kernel"
run off $STRIDED
# (shmem reads ahead by cluster without asking rswap: the guest's tmpfs
# may add a handful of read-ahead pages, not the walker's.)
expect "off: (almost) nothing read ahead" "$((ra * 100))" -le "$m"
run trend --random-passes 2 --seed 12 --stride 1
expect "trend, random: misses without a trend" "$tn" -gt 1000
expect "trend, random: no error" "$(stat rswap/load_errors)" -eq 0
echo kernel >$P
swapoff "$SWAPDEV" || fail "swapoff"
expect "pages_held after swapoff" "$(stat rswap/pages_held)" -eq 0
unload_rswap || fail "rmmod"
finish
