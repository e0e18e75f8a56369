# A memory node: runs memserver on its link address until the lab stops the
# VM, configured as an operator would: a TOML file and a secret file (never
# the secret on the command line). Every few seconds memserver logs its
# status (pages used per region) on the console, which the host reads.
param() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
pool=$(param rswap.pool)
# Regions of up to 128 MiB (the lab's compute node asks up to 256 per
# server); without region-mib (rswap.region=fair) each node gets a fair
# share, pool / max-nodes.
region=128
[ "$pool" -lt "$region" ] && region=$pool
[ "$(param rswap.region)" = fair ] && region=
conf=/tmp/memserver.toml
{
	echo "listen = \"$(param rswap.ip):7471\""
	echo "pool-mib = $pool"
	[ -n "$region" ] && echo "region-mib = $region"
	echo "max-nodes = 4"
	# A node connects 2 x CPUs queues; a flood from one address is cut
	# down to 20 requests a second (lab_one floods it).
	echo "max-queues-per-node = 16"
	echo "max-connects-per-s = 20"
	echo "status-file = \"/tmp/memserver.status\""
	echo "metrics = \"$(param rswap.ip):9471\""
	# The a-b-c chain: node 2 re-exports node 3's memory.
	[ -n "$(param rswap.upstream)" ] && echo "upstream = \"$(param rswap.upstream)\""
	allow=$(param rswap.allow | sed 's/\([^,][^,]*\)/"\1"/g; s/,/, /g')
	[ -n "$allow" ] && echo "allow = [$allow]"
} >"$conf"
args="--config $conf"
if [ -n "$(param rswap.secret)" ]; then
	(umask 077 && param rswap.secret >/tmp/memserver.secret)
	args="$args --secret-file /tmp/memserver.secret"
fi
echo "RSWAP-MEM starting: memserver $args"
sed 's/^/RSWAP-MEM   /' "$conf"
# Supervised as systemd would (Restart=always): a memserver that dies is
# started again, with a fresh pool; its old nodes' pages are gone.
pidfile=/tmp/memserver.pid
(
	n=0
	while true; do
		memserver $args &
		echo $! >$pidfile
		wait $!
		rc=$?
		n=$((n + 1))
		echo "RSWAP-MEM memserver exited with status $rc; restart $n in 1 s"
		sleep 1
	done
) &
if [ "$(param rswap.perftest)" = 1 ]; then
	# perftest servers for the transport baseline (one run each).
	ib_read_lat -d rxe_eth0 -p 18515 -n 1000 >/tmp/lat.out 2>&1 &
	ib_write_bw -d rxe_eth0 -p 18516 -n 2000 >/tmp/bw.out 2>&1 &
	# 4 KiB reads, rswap's page: one at a time, and at the readahead
	# queue's depth (readahead_depth's default, 8).
	ib_read_lat -d rxe_eth0 -p 18517 -s 4096 -n 1000 >/tmp/lat4k.out 2>&1 &
	ib_read_bw -d rxe_eth0 -p 18518 -s 4096 -t 8 -n 5000 >/tmp/bw4k.out 2>&1 &
fi
# The lab's control port (TCP 7990), on the lab link only: "kill" kills memserver -9
# (tests of a crashed server; the supervisor restarts it); "busy S" runs a
# memory-bandwidth-heavy job (a 96 MiB page walker, writing and checking
# every page over and over) for S seconds, the node's own work competing
# with memserver; "calm" stops it; "second" starts a second memserver on
# this node, on port 7472 with a 32 MiB pool (two servers behind one link,
# so that two dark links lose some erasure-coded pages, not all: lab_ec),
# and "nosecond" stops it.
(
	while true; do
		cmd=$(nc -l -p 7990 2>/dev/null)
		case $cmd in
		kill*)
			echo "RSWAP-MEM control: killing memserver $(cat $pidfile)"
			kill -9 "$(cat $pidfile)"
			;;
		busy*)
			echo "RSWAP-MEM control: a memory-bandwidth-heavy job for ${cmd#busy } s"
			timeout "${cmd#busy }" pagewalker --mib 96 --random-passes 100000 >/dev/null 2>&1 &
			echo $! >/tmp/busy.pid
			;;
		nosecond*)
			echo "RSWAP-MEM control: stopping the second memserver"
			rm -f /tmp/memserver2.ready
			kill "$(cat /tmp/memserver2.pid)" 2>/dev/null
			;;
		second*)
			sed -e 's/:7471"/:7472"/; s/:9471"/:9472"/; s/^pool-mib = .*/pool-mib = 32/' \
				-e 's/^region-mib = .*/region-mib = 32/; s/memserver.status/memserver2.status/; /^upstream/d' \
				$conf >/tmp/memserver2.toml
			echo "RSWAP-MEM control: a second memserver on port 7472"
			rm -f /tmp/memserver2.ready
			memserver $(echo "$args" | sed "s#$conf#/tmp/memserver2.toml#") &
			echo $! >/tmp/memserver2.pid
			# Signalled for its scans (below) only once it serves: a
			# SIGUSR1 before it installs its handlers would kill it.
			(
				i=0
				until wget -q -O /dev/null "http://$(param rswap.ip):9472/metrics" || [ $i -ge 60 ]; do
					sleep 1
					i=$((i + 1))
				done
				touch /tmp/memserver2.ready
			) &
			;;
		calm*)
			echo "RSWAP-MEM control: stopping the busy job"
			kill "$(cat /tmp/busy.pid)" 2>/dev/null
			killall pagewalker 2>/dev/null
			;;
		esac
	done
) &
while true; do
	sleep 3
	kill -USR1 "$(cat $pidfile 2>/dev/null)" 2>/dev/null
	[ -f /tmp/memserver2.ready ] && kill -USR1 "$(cat /tmp/memserver2.pid)" 2>/dev/null
done
