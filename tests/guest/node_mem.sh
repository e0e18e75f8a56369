# A memory node: runs memserver on its link address until the lab stops the
# VM. Every few seconds memserver logs its status (pages used per region)
# on the console, which the host reads.
param() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
args="--listen $(param rswap.ip):7471 --pool-mib $(param rswap.pool) --status-file /tmp/memserver.status"
[ -n "$(param rswap.secret)" ] && args="$args --secret $(param rswap.secret)"
for a in $(param rswap.allow | tr ',' ' '); do args="$args --allow $a"; done
echo "RSWAP-MEM starting: memserver $args" | sed 's/--secret [0-9a-f]*/--secret <hidden>/'
memserver $args &
pid=$!
if [ "$(param rswap.perftest)" = 1 ]; then
	# perftest servers for the transport baseline (one run each).
	ib_read_lat -d rxe_eth0 -p 18515 -n 1000 >/tmp/lat.out 2>&1 &
	ib_write_bw -d rxe_eth0 -p 18516 -n 2000 >/tmp/bw.out 2>&1 &
fi
while kill -0 "$pid" 2>/dev/null; do
	sleep 3
	kill -USR1 "$pid" 2>/dev/null
done
wait "$pid"
echo "RSWAP-MEM memserver exited with status $?"
while true; do sleep 3600; done
