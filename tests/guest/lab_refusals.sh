# Connections that must fail do so quickly and say why; nothing hangs.
. /tests/lib.sh
insmod /modules/rswap.ko || fail "insmod rswap"
t0=$(date +%s)
expect_fail "unreachable server" "timed out\|unreachable" \
	insmod /modules/rswap_rdma.ko secret="$SECRET" servers=10.77.1.99:7471 timeout_ms=2000
took=$(($(date +%s) - t0))
expect "unreachable server refused within 20 s" "$took" -le 20
t0=$(date +%s)
expect_fail "no memserver on that port" "no memserver" \
	insmod /modules/rswap_rdma.ko secret="$SECRET" servers=10.77.1.2:7999 timeout_ms=2000
expect "refused within 10 s" "$(($(date +%s) - t0))" -le 10
expect_fail "wrong secret" "wrong secret" \
	insmod /modules/rswap_rdma.ko secret=00000000000000000000000000000000 servers="$(server 1)"
# The first server accepts, the second has no memserver on that port: the
# whole load fails and the first server's connections are torn down.
expect_fail "second server fails: whole load fails" "10.77.2.2:7999: rejected" \
	insmod /modules/rswap_rdma.ko secret="$SECRET" servers="$(server 1),10.77.2.2:7999"
expect_fail "missing secret" "secret= is required" insmod /modules/rswap_rdma.ko servers="$(server 1)"
expect_fail "bad server list" "is not IPV4:PORT" insmod /modules/rswap_rdma.ko secret="$SECRET" servers=10.77.1.2
expect_fail "timeout out of range" "outside 100..60000" \
	insmod /modules/rswap_rdma.ko secret="$SECRET" servers="$(server 1)" timeout_ms=5
expect_fail "loss timeout out of range" "loss_timeout_s=0 is outside 1..3600" \
	insmod /modules/rswap_rdma.ko secret="$SECRET" servers="$(server 1)" loss_timeout_s=0
expect_fail "loss timeout within two request timeouts" "must be longer than two timeouts" \
	insmod /modules/rswap_rdma.ko secret="$SECRET" servers="$(server 1)" timeout_ms=3000 loss_timeout_s=5
# Servers that cannot prove they know the secret are refused, and so are
# replies changed on the way: local memservers (rxe loops back to our own
# address) that misbehave on purpose. The impostor admits any request and
# answers without the secret; the other changes the rkey of its grants.
MEMSERVER_SECRET="$SECRET" memserver --listen 10.77.1.1:7482 --pool-mib 16 --test-fault impostor >/tmp/imp.log 2>&1 &
imp=$!
MEMSERVER_SECRET="$SECRET" memserver --listen 10.77.1.1:7483 --pool-mib 16 --test-fault tamper-reply >/tmp/tamper.log 2>&1 &
tamper=$!
sleep 3
expect_fail "impostor memserver refused" "accepted us, but its reply does not authenticate" \
	insmod /modules/rswap_rdma.ko secret="$SECRET" servers=10.77.1.1:7482
expect_fail "tampered reply refused" "accepted us, but its reply does not authenticate" \
	insmod /modules/rswap_rdma.ko secret="$SECRET" servers=10.77.1.1:7483
rswap-probe --server 10.77.1.1:7482 --secret "$SECRET" >/tmp/probe.out 2>&1
expect "rswap-probe refuses the impostor too" "$?" -eq 5
rswap-probe --server 10.77.1.1:7483 --secret "$SECRET" >/tmp/probe.out 2>&1
expect "rswap-probe refuses the tampered reply too" "$?" -eq 5
kill $imp $tamper
wait $imp $tamper
expect "rswap_rdma not loaded" "$(grep -c rswap_rdma /proc/modules)" -eq 0
# After all that a good load works and unloads cleanly.
insmod /modules/rswap_rdma.ko secret="$SECRET" servers="$(server 1),$(server 2)" || fail "good load"
rmmod rswap_rdma && rmmod rswap || fail "rmmod"
sleep 6
finish
