# memserver's admission and isolation, checked with rswap-probe (a
# user-space client speaking rswap_rdma's protocol), and its lifecycle.
. /tests/lib.sh
probe() { rswap-probe --server "$(server 1)" --secret "$SECRET" "$@" >/tmp/probe.out 2>&1; r=$?; cat /tmp/probe.out; return $r; }
# A node is admitted and can read its own region.
probe --read-at 0; expect "admitted, reads its own region" "$?" -eq 0
# The secret is checked.
rswap-probe --server "$(server 1)" --secret 00112233445566778899aabbccddeeff >/tmp/probe.out 2>&1
expect "wrong secret refused" "$?" -eq 3
expect "refusal says why" "$(grep -c BadSecret /tmp/probe.out)" -eq 1
# A captured request replayed byte for byte is refused, and so is a request
# dated far off the server's clock (a replay from long ago).
probe --replay; expect "a replayed request refused" "$?" -eq 3
expect "refusal says Replayed" "$(grep -c 'replayed request refused: Replayed' /tmp/probe.out)" -eq 1
# The dangerous one: a replayed request of a second queue, which proves the
# session; admitted, it would be a queue in the node's protection domain.
probe --queues 2 --replay; expect "a replayed session request refused" "$?" -eq 3
expect "refusal says Replayed" "$(grep -c 'replayed request refused: Replayed' /tmp/probe.out)" -eq 1
probe --clock-offset-s -3600; expect "a request an hour old refused" "$?" -eq 3
expect "refusal says ClockSkew" "$(grep -c 'refused: ClockSkew' /tmp/probe.out)" -eq 1
# The allowlist is checked: memory node 1 allows only 10.77.1.1.
ip addr add 10.77.1.5/24 dev eth0
sleep 1
probe --from 10.77.1.5; expect "address outside --allow refused" "$?" -eq 3
expect "refusal says why" "$(grep -c NotAllowed /tmp/probe.out)" -eq 1
ip addr del 10.77.1.5/24 dev eth0
# Regions: while the kernel node holds the first region of the pool, the
# probe's region comes after it. Neither the page past the probe's region
# nor the one before it (the kernel node's) can be read with its key.
load_rdma servers="$(server 1)" mib_per_server=64 || fail "insmod rswap_rdma"
probe --want-mib 8 --read-at $((8 << 20)); expect "read past its region refused" "$?" -eq 4
probe --want-mib 8 --read-at 18446744073709547520; expect "read of the previous region (another node's) refused" "$?" -eq 4
grep -q "remote access\|REM_ACCESS\|access" /tmp/probe.out || note "completion status: $(cat /tmp/probe.out | tail -1)"
# Each node has its own protection domain: another node's grant (rkey and
# address, as a wire capture would show them) is useless on our queue.
rswap-probe --server "$(server 1)" --secret "$SECRET" --node-id 0x21 --want-mib 4 --hold 6 >/tmp/hold.out 2>&1 &
holder=$!
sleep 3
grant=$(sed -n 's/.*(grant \(0x[0-9a-f]*:0x[0-9a-f]*\)).*/\1/p' /tmp/hold.out)
expect "the first node got a grant" "$(echo "$grant" | grep -c :)" -eq 1
probe --node-id 0x22 --want-mib 4 --read-with "$grant"; expect "another node's rkey refused on our queue" "$?" -eq 4
wait $holder; expect "the node owning that grant was served" "$?" -eq 0
unload_rdma || fail "rmmod"
# Lifecycle, on a memserver of our own (rxe loops back to our address):
# SIGTERM frees the port at once, a restart on it works, clients reconnect.
# The first takes its secret from the environment, the second from a file.
MEMSERVER_SECRET="$SECRET" memserver --listen 10.77.1.1:7480 --pool-mib 16 --metrics \
	--max-nodes 1 --max-queues-per-node 1 >/tmp/ms.log 2>&1 &
ms=$!
sleep 2
rswap-probe --server 10.77.1.1:7480 --secret "$SECRET" >/dev/null; expect "local memserver serves" "$?" -eq 0
rswap-probe --server 10.77.1.1:7480 --secret "$SECRET" >/dev/null; expect "a client reconnects" "$?" -eq 0
# Caps: a node's second queue past --max-queues-per-node 1 is refused
# (NoSpace on the wire), and the log says which cap. A probe releases its
# region when it leaves, as rswap_rdma does on unload.
rswap-probe --server 10.77.1.1:7480 --secret "$SECRET" --node-id 3 --queues 2 >/tmp/probe.out 2>&1
expect "a queue past --max-queues-per-node refused" "$?" -eq 3
expect "refusal says NoSpace" "$(grep -c 'queue 1 refused: NoSpace' /tmp/probe.out)" -eq 1
expect "the probe released its region" "$(grep -c 'released the region' /tmp/probe.out)" -eq 1
# While node 1 holds its queue, a second node is refused, and so is a clone
# of node 1: the same node id without node 1's session token.
rswap-probe --server 10.77.1.1:7480 --secret "$SECRET" --node-id 1 --hold 8 >/tmp/hold.out 2>&1 &
holder=$!
sleep 3
rswap-probe --server 10.77.1.1:7480 --secret "$SECRET" --node-id 2 >/tmp/probe.out 2>&1
expect "a node past --max-nodes refused" "$?" -eq 3
expect "refusal says NoSpace" "$(grep -c NoSpace /tmp/probe.out)" -eq 1
rswap-probe --server 10.77.1.1:7480 --secret "$SECRET" --node-id 1 >/tmp/probe.out 2>&1
expect "a clone of node 1 (no session token) refused" "$?" -eq 3
expect "refusal says NodeInUse" "$(grep -c NodeInUse /tmp/probe.out)" -eq 1
rswap-probe --server 10.77.1.1:7480 --secret "$SECRET" --node-id 1 --fake-session >/tmp/probe.out 2>&1
expect "a clone of node 1 guessing a session refused" "$?" -eq 3
expect "refusal says NodeInUse" "$(grep -c NodeInUse /tmp/probe.out)" -eq 1
rswap-probe --server 10.77.1.1:7480 --secret 00112233445566778899aabbccddeeff >/dev/null 2>&1
expect "wrong secret refused by the local memserver" "$?" -eq 3
wait $holder; expect "the node holding its queue was served" "$?" -eq 0
expect "log names --max-nodes" "$(grep -c 'already serving 1 nodes (--max-nodes 1)' /tmp/ms.log)" -eq 1
expect "log names --max-queues-per-node" "$(grep -c 'already has 1 queues (--max-queues-per-node 1)' /tmp/ms.log)" -eq 1
expect "log names the clones" "$(grep -c 'node 0000000000000001: that node id is in use' /tmp/ms.log)" -eq 2
# Metrics (Prometheus text on 127.0.0.1:9471).
sleep 2
wget -q -O /tmp/metrics http://127.0.0.1:9471/metrics; expect "metrics endpoint answers" "$?" -eq 0
metric() { grep -c -F -x "$1" /tmp/metrics; }
expect "metrics: pool" "$(metric 'memserver_pool_bytes 16777216')" -eq 1
expect "metrics: no node left" "$(metric 'memserver_nodes 0')" -eq 1
expect "metrics: refusals by reason" "$(metric 'memserver_refusals_total{reason="too_many_nodes"} 1')$(metric 'memserver_refusals_total{reason="too_many_queues"} 1')$(metric 'memserver_refusals_total{reason="bad_secret"} 1')$(metric 'memserver_refusals_total{reason="node_in_use"} 2')" = 1111
kill -TERM $ms; wait $ms; expect "memserver exits 0 on SIGTERM" "$?" -eq 0
expect "it said the port is free" "$(grep -c 'port 7480 is free' /tmp/ms.log)" -eq 1
(umask 077 && echo "$SECRET" >/tmp/ms.secret)
memserver --listen 10.77.1.1:7480 --pool-mib 16 --secret-file /tmp/ms.secret >/tmp/ms2.log 2>&1 &
ms=$!
sleep 2
rswap-probe --server 10.77.1.1:7480 --secret-file /tmp/ms.secret >/dev/null; expect "restart on the same port serves" "$?" -eq 0
kill -INT $ms; wait $ms; expect "memserver exits 0 on SIGINT" "$?" -eq 0
# Slow work stays off the event loop: a freed region is zeroed by another
# thread while new nodes are admitted. Connections to an idle server are
# timed, then a node takes 160 MiB and leaves, and the next connections
# are timed while that region is being zeroed. The log proves they were
# admitted before the zeroing ended.
MEMSERVER_SECRET="$SECRET" memserver --listen 10.77.1.1:7484 --pool-mib 192 --region-mib 160 \
	--max-nodes 4 >/tmp/zero.log 2>&1 &
zs=$!
sleep 2
zprobe() { rswap-probe --server 10.77.1.1:7484 --secret "$SECRET" "$@" | sed -n 's/.*connected in \([0-9.]*\) ms/\1/p'; }
idle=$(for i in 1 2 3; do zprobe --node-id $((0x40 + i)) --want-mib 8; done | tr '\n' ' ')
zprobe --node-id 0x50 --want-mib 160 >/dev/null
busy=$(for i in 1 2 3; do zprobe --node-id $((0x60 + i)) --want-mib 8; done | tr '\n' ' ')
sleep 3
kill -TERM $zs; wait $zs
gone=$(grep -n 'node 0000000000000050 .*gone' /tmp/zero.log | head -1 | cut -d: -f1)
zeroed=$(grep -n 'node 0000000000000050: its former region of 160 MiB is zeroed' /tmp/zero.log | head -1 | cut -d: -f1)
during=$(awk -v a="${gone:-0}" -v b="${zeroed:-0}" 'NR > a && NR < b && /node 00000000000000(61|62|63) from/' /tmp/zero.log | wc -l)
expect "the 160 MiB region was zeroed" "${zeroed:-0}" -gt 0
expect "nodes admitted while it was being zeroed" "$during" -ge 1
note "connect latency (ms), idle: $idle; while 160 MiB is zeroed: $busy; the 160 MiB region $(grep -o 'region of 160 MiB is zeroed ([0-9]* ms)' /tmp/zero.log | grep -o '([0-9]* ms)'), during which $during nodes were admitted"
cat /tmp/ms.log /tmp/ms2.log | sed 's/^/  ms: /'
memserver --listen 10.77.1.1:7481 --pool-mib 16 >/tmp/ms3.log 2>&1
expect "memserver with no --secret nor --allow refuses to start" "$?" -eq 2
sleep 4
finish
