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
while kill -0 "$pid" 2>/dev/null; do
	sleep 3
	kill -USR1 "$pid" 2>/dev/null
done
wait "$pid"
echo "RSWAP-MEM memserver exited with status $?"
while true; do sleep 3600; done
