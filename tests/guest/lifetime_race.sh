# Module lifetime: 30 rounds of swapon / walk / swapoff race a loop that
# loads rswap and rswap_dram, keeps them a random while, and unloads them
# as soon as it can (retrying while swap is on). The races this exercises:
# swapon against rswap's init and exit, swapoff against rmmod, and backend
# registration against both. Whatever the interleaving, no module may be
# freed while frontswap can call it (kernel patch 0015), every walk
# verifies byte for byte, and the kernel log stays clean.
. /tests/lib.sh
ROUNDS=30
STOP=/tmp/lifetime.stop
rm -f "$STOP"
(
	n=0 refused=0
	while [ ! -e "$STOP" ]; do
		insmod /modules/rswap.ko 2>/dev/null && n=$((n + 1))
		insmod /modules/rswap_dram.ko capacity_mb=64 2>/dev/null
		usleep $((RANDOM % 500000))
		# Unload as soon as swapoff lets us: rmmod is refused (module in
		# use) while an area uses rswap.
		while [ ! -e "$STOP" ]; do
			rmmod rswap_dram 2>/dev/null
			rmmod rswap 2>/dev/null && break
			grep -q '^rswap ' /proc/modules || break
			refused=$((refused + 1))
			usleep 20000
		done
		usleep $((RANDOM % 200000))
	done
	echo "$n $refused" >/tmp/lifetime.churn
) &
churn=$!
used=0 bad=0 i=0
while [ $i -lt $ROUNDS ]; do
	i=$((i + 1))
	# Every fifth round, give the churn up to 3 s to have both modules in,
	# so that some rounds surely swap through rswap.
	if [ $((i % 5)) = 0 ]; then
		w=0
		while ! grep -q '^rswap_dram ' /proc/modules && [ $w -lt 30 ]; do usleep 100000; w=$((w + 1)); done
	fi
	swap_on || { fail "round $i: swapon"; continue; }
	s0=$(stat rswap/stores)
	walk 4M --mib 8 --random-passes 0 --seed $i >/dev/null || { bad=$((bad + 1)); fail "round $i: pagewalker exit $? ($(cat /tmp/walk))"; }
	# rswap took this round's pages if its counter grew during the walk
	# (it cannot be reloaded while it holds the area).
	[ "$s0" -ge 0 ] && [ "$(stat rswap/stores)" -gt "$s0" ] && used=$((used + 1))
	swapoff "$SWAPDEV" || fail "round $i: swapoff"
	usleep $((RANDOM % 300000))
done
touch "$STOP"
wait $churn
# Leave nothing loaded for the next test.
rmmod rswap_dram 2>/dev/null
rmmod rswap 2>/dev/null
read loads refused </tmp/lifetime.churn
expect "every walk verified" "$bad" -eq 0
expect "rounds in which rswap took pages" "$used" -gt 0
expect "rswap was loaded and unloaded" "$loads" -gt 5
expect "rmmod raced swap being on (and was refused)" "$refused" -gt 0
note "$ROUNDS rounds: $used with rswap storing; rswap loaded $loads times, rmmod refused $refused times while swap was on"
grep -q '^rswap ' /proc/modules && fail "rswap still loaded"
finish
