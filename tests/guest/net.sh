# Lab networking, from the kernel command line. (tc by full path: busybox
# prefers its own applets, and its tc cannot add qdiscs.)
#   rswap.role=mem     rswap.ip=10.77.N.2        its link, eth0
#                      rswap.fwd=ADDR            a second NIC, eth1, at ADDR/24; routes
#                                                between its links (the chain's node b)
#                      rswap.route=NET:VIA       a route to NET through VIA (node c)
#   rswap.role=compute rswap.links=K rswap.host=H  eth0..eth(K-1) = 10.77.1.H .. 10.77.K.H
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
	fwd=$(param rswap.fwd)
	if [ -n "$fwd" ]; then
		{ ip link set eth1 up && ip addr add "$fwd/24" dev eth1 && echo 1 >/proc/sys/net/ipv4/ip_forward; } ||
			echo "RSWAP-NET FAIL routing through eth1"
	fi
	for r in $(param rswap.route | tr ',' ' '); do
		ip route add "${r%%:*}" via "${r#*:}" || echo "RSWAP-NET FAIL route $r"
	done
else
	i=1
	host=$(param rswap.host)
	while [ "$i" -le "$(param rswap.links)" ]; do
		link "eth$((i - 1))" "10.77.$i.${host:-1}" "$i"
		i=$((i + 1))
	done
fi
echo "RSWAP-NET up: $(rdma link show 2>&1 | tr '\n' ';')"
