# One memory node: the page walker at 3x memory.max swaps over RDMA; every
# byte verifies and rswap_rdma's counters show the traffic, the pages read
# ahead asynchronously in batches among it.
. /tests/lib.sh
# A fixed node id, which the clones below claim.
load_rdma servers="$(server 1)" mib_per_server=256 node_id=0x5eed || fail "insmod rswap_rdma"
swap_on || fail "swapon"
out0=$(vmstat pswpout)
# A connect flood against the same memserver while the walk runs: 1,000
# attempts as new nodes, half without the secret and half with it (a
# runaway client). memserver turns them away (its caps, and past
# --max-connects-per-s 20 from one address, Busy) and the walk verifies.
rswap-probe --server "$(server 1)" --secret 00112233445566778899aabbccddeeff --flood 500 >/tmp/flood1.out 2>&1 &
f1=$!
rswap-probe --server "$(server 1)" --secret "$SECRET" --flood 500 >/tmp/flood2.out 2>&1 &
f2=$!
# Clones of this node (its id, without its session, or with a made-up one)
# are refused while its pages are in use; the walk verifies every byte.
# They go once the floods are over (else they may just be rate-limited).
(i=0
	while ! cat /tmp/flood1.out /tmp/flood2.out | grep -c 'flood:' | grep -q 2 && [ $i -lt 600 ]; do
		sleep 1
		i=$((i + 1))
	done
	sleep 3
	for fake in "" --fake-session; do
		rswap-probe --server "$(server 1)" --secret "$SECRET" --node-id 0x5eed $fake --read-at 0
		echo "exit $?"
	done >/tmp/clones.out 2>&1) &
cl=$!
walk 8M --mib 24 --random-passes 1 || fail "pagewalker exit $?"
wait $f1 $f2 $cl
cat /tmp/clones.out
expect "clones of the node refused" "$(grep -c 'refused: NodeInUse' /tmp/clones.out)" -eq 2
expect "no clone admitted" "$(grep -c 'exit 0' /tmp/clones.out)" -eq 0
cat /tmp/flood1.out /tmp/flood2.out
flood() { local v=$(sed -n "s/.*[:,] $2 \([0-9]*\).*/\1/p" /tmp/flood$1.out); echo "${v:-0}"; }
expect "flood without the secret: none admitted" "$(flood 1 admitted)" -eq 0
expect "flood: all 1,000 attempts answered" "$(grep -o 'flood: [0-9]* attempts' /tmp/flood1.out /tmp/flood2.out | grep -c 'flood: 500 attempts')" -eq 2
expect "flood: rate-limited (Busy)" "$(($(flood 1 Busy) + $(flood 2 Busy)))" -gt 0
expect "data verified" "$(walkval mismatches)" -eq 0
stores=$(stat rswap/stores)
expect "rswap stores" "$stores" -ge 3072
expect "all of them over RDMA" "$(stat rswap/rdma/stores)" -eq "$stores"
expect "RDMA writes to the server" "$(rstat 0 writes)" -ge "$stores"
expect "RDMA reads from the server" "$(rstat 0 reads)" -ge 3000
expect "no RDMA error" "$(rstat 0 errors)" -eq 0
# Reads ahead went asynchronously, in batches on the readahead queues, and
# none had to be loaded again.
expect "readahead pages loaded asynchronously" "$(stat rswap/loads_async)" -gt 1000
expect "all of them read in batches (or at once, their list full)" "$(($(rstat 0 reads_ahead) + $(stat rswap_rdma/reads_ahead_at_once)))" -eq "$(stat rswap/loads_async)"
expect "batches of more than one page" "$(rstat 0 reads_ahead)" -gt "$(rstat 0 read_batches)"
expect "no batch retried" "$(rstat 0 readahead_retried)" -eq 0
note "reads ahead: $(rstat 0 reads_ahead) pages in $(rstat 0 read_batches) batches, $(stat rswap_rdma/reads_ahead_at_once) at once; rswap loads $(stat rswap/loads), of them readahead $(stat rswap/loads_readahead)"
expect "server up" "$(rstat 0 up)" -eq 1
expect "no store refused" "$(stat rswap/store_refused)" -eq 0
expect "nothing written to the swap disk" "$(($(vmstat pswpout) - out0))" -eq 0
note "latency us: read p50 $(rstat 0 read_lat_p50_us) p99 $(rstat 0 read_lat_p99_us), write p50 $(rstat 0 write_lat_p50_us) p99 $(rstat 0 write_lat_p99_us)"
swapoff "$SWAPDEV" || fail "swapoff"
expect "server pages after swapoff" "$(rstat 0 pages)" -eq 0
expect "all slots free again" "$(rstat 0 free_pages)" -eq "$(rstat 0 capacity_pages)"
unload_rdma || fail "rmmod after swapoff"
# The host checks memserver's log for the disconnect; give it time to see it.
sleep 6
note "$(cat /tmp/walk)"
finish
