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
unload_rdma || fail "rmmod"
# Lifecycle, on a memserver of our own (rxe loops back to our address):
# SIGTERM frees the port at once, a restart on it works, clients reconnect.
memserver --listen 10.77.1.1:7480 --pool-mib 16 --secret "$SECRET" >/tmp/ms.log 2>&1 &
ms=$!
sleep 2
rswap-probe --server 10.77.1.1:7480 --secret "$SECRET" >/dev/null; expect "local memserver serves" "$?" -eq 0
rswap-probe --server 10.77.1.1:7480 --secret "$SECRET" >/dev/null; expect "a client reconnects" "$?" -eq 0
kill -TERM $ms; wait $ms; expect "memserver exits 0 on SIGTERM" "$?" -eq 0
expect "it said the port is free" "$(grep -c 'port 7480 is free' /tmp/ms.log)" -eq 1
memserver --listen 10.77.1.1:7480 --pool-mib 16 --secret "$SECRET" >/tmp/ms2.log 2>&1 &
ms=$!
sleep 2
rswap-probe --server 10.77.1.1:7480 --secret "$SECRET" >/dev/null; expect "restart on the same port serves" "$?" -eq 0
kill -INT $ms; wait $ms; expect "memserver exits 0 on SIGINT" "$?" -eq 0
cat /tmp/ms.log /tmp/ms2.log | sed 's/^/  ms: /'
memserver --listen 10.77.1.1:7481 --pool-mib 16 >/tmp/ms3.log 2>&1
expect "memserver with no --secret nor --allow refuses to start" "$?" -eq 2
sleep 4
finish
