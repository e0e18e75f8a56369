# The transport's own baseline: perftest between the compute node and
# memory node 1 (which runs the perftest servers when rswap.perftest=1).
. /tests/lib.sh
sleep 2
ib_read_lat -d rxe_eth0 -p 18515 -n 1000 10.77.1.2 >/tmp/lat.out 2>&1 || fail "ib_read_lat"
cat /tmp/lat.out
ib_write_bw -d rxe_eth0 -p 18516 -n 2000 10.77.1.2 >/tmp/bw.out 2>&1 || fail "ib_write_bw"
cat /tmp/bw.out
# ib_read_lat: "#bytes #iterations t_min[usec] t_max[usec] t_typical[usec] t_avg[usec] t_stdev[usec] 99% ..."
lat=$(awk '$1 == 2 && NF >= 8 {print "t_typical_us=" $5 " t_avg_us=" $6 " p99_us=" $8}' /tmp/lat.out)
bw=$(awk '$1 == 65536 && NF >= 5 {print "bw_avg_MBps=" $4}' /tmp/bw.out)
echo "RSWAP-PERFTEST $lat $bw"
finish
