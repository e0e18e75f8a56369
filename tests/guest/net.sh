# Lab networking, from the kernel command line. (tc by full path: busybox
# prefers its own applets, and its tc cannot add qdiscs.)
#   rswap.role=mem     rswap.ip=10.77.N.2        one link, eth0
#   rswap.role=compute rswap.links=K             eth0..eth(K-1) = 10.77.1.1 .. 10.77.K.1
#   rswap.shape=N:RATE:DELAY,...                 tbf RATE (e.g. 20mbit) and netem DELAY (ms)
#                                                on link N, at both ends
param() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
ip link set lo up
shape() { # shape <dev> <link number>
	for s in $(param rswap.shape | tr ',' ' '); do
		[ "${s%%:*}" = "$2" ] || continue
		rate=$(echo "$s" | cut -d: -f2)
		delay=$(echo "$s" | cut -d: -f3)
		/usr/sbin/tc qdisc add dev "$1" root handle 1: tbf rate "$rate" burst 64kb latency 500ms &&
			/usr/sbin/tc qdisc add dev "$1" parent 1:1 handle 10: netem delay "${delay:-0}ms" &&
			echo "RSWAP-NET $1 shaped: rate $rate delay ${delay:-0}ms"
	done
}
link() { # link <dev> <address> <link number>
	ip link set "$1" up && ip addr add "$2/24" dev "$1" &&
		rdma link add "rxe_$1" type rxe netdev "$1" ||
		echo "RSWAP-NET FAIL setting up $1"
	shape "$1" "$3"
}
if [ "$(param rswap.role)" = mem ]; then
	addr=$(param rswap.ip)
	n=$(echo "$addr" | cut -d. -f3)
	link eth0 "$addr" "$n"
else
	i=1
	while [ "$i" -le "$(param rswap.links)" ]; do
		link "eth$((i - 1))" "10.77.$i.1" "$i"
		i=$((i + 1))
	done
fi
echo "RSWAP-NET up: $(rdma link show 2>&1 | tr '\n' ';')"
