#!/usr/bin/env bash
# mpirun across hosts, on one machine: two network namespaces joined by a veth
# pair play two hosts, each with its own address on a private /24 and its own
# hostname (a UTS namespace). mpirun runs on host A and starts host B's
# ranks through tests/support/netns_rsh.sh, an ssh stand-in (plm_rsh_agent)
# that enters B's namespaces with an environment as bare as an ssh login's.
# The hostfile names the hosts by address, so no name resolution is needed.
#
# Placement (--map-by node): A runs ps 0 and worker 0, B runs ps 1 and worker
# 1, so ZeroMQ connections cross the link in both directions, and the
# backbone allreduce crosses it too (Open MPI's TCP transport, restricted to
# the test's subnet like Open MPI's own control traffic).
#
# Checks: with interface and ARCFACE_INTERFACE empty the servers pick their
# veth address, never 127.0.0.1; the losses and weights of 20 steps equal the
# same job on one host (tolerance below); `interface = <name>` and
# ARCFACE_INTERFACE (forwarded with -x) work; a wrong interface name, and the
# loopback interface while workers run on another host, end the job with an
# error naming the host. Exits 77 when it cannot make network namespaces.
# Everything it makes (namespaces, links, addresses, processes) has the
# shell's pid in its name and is removed on exit, failure included; the root
# namespace gets no address and no route.
set -euo pipefail
: "${BUILD_DIR:?}" "${SOURCE_DIR:?}"
. "$SOURCE_DIR/deploy/mpi-env.sh"
unset ARCFACE_INTERFACE # the automatic choice is under test; by_env sets it

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
command -v ip > /dev/null || skip "no 'ip' command (Debian package iproute2)"
command -v unshare > /dev/null || skip "no 'unshare' command (Debian package util-linux)"

id=$$
nsA=arcface-a-$id nsB=arcface-b-$id         # network namespaces
hostA=arcface-host-a-$id hostB=arcface-host-b-$id # their hostnames
link=afnet$id                                  # the veth end in each namespace (same name on both hosts, like eth0)
net=10.213.$((id % 256))                       # private, and only inside this run's namespaces
subnet=$net.0/24 addrA=$net.1 addrB=$net.2
out=$(mktemp -d /tmp/arcface-multihost.XXXXXX)

ours() { ip netns list | awk '{print $1}' | grep -Fx -e "$nsA" -e "$nsB" || true; }
cleanup() {
  local ns pids
  [ -z "${job_pid:-}" ] || kill "$job_pid" 2> /dev/null || true
  for ns in $(ours); do
    pids=$(ip netns pids "$ns" 2> /dev/null || true)
    [ -z "$pids" ] || kill -9 $pids 2> /dev/null || true
    ip netns delete "$ns" 2> /dev/null || true
  done
  [ -n "${KEEP:-}" ] || rm -rf "$out"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP # so that cleanup runs on these too

ip netns add "$nsA" 2> "$out/netns.err" ||
  skip "cannot create network namespaces (needs root or CAP_NET_ADMIN): $(cat "$out/netns.err")"
ip netns add "$nsB"
ip netns exec "$nsA" unshare --uts true 2> "$out/netns.err" ||
  skip "cannot give a namespace its own hostname (unshare --uts): $(cat "$out/netns.err")"
ip -n "$nsA" link add "$link" type veth peer name "$link" netns "$nsB" 2> "$out/netns.err" ||
  skip "cannot create a veth pair: $(cat "$out/netns.err")"
ip -n "$nsA" addr add "$addrA/24" dev "$link"
ip -n "$nsB" addr add "$addrB/24" dev "$link"
for ns in "$nsA" "$nsB"; do
  ip -n "$ns" link set lo up
  ip -n "$ns" link set "$link" up
done
printf '%s %s %s\n' "$addrA" "$nsA" "$hostA" "$addrB" "$nsB" "$hostB" > "$out/hosts.map"
printf '%s slots=2\n' "$addrA" "$addrB" > "$out/hostfile"
agent=$out/netns_rsh # an executable copy: mpirun execs the agent
install -m 755 "$SOURCE_DIR/tests/support/netns_rsh.sh" "$agent"
echo "hosts: $hostA ($addrA, namespace $nsA) and $hostB ($addrB, namespace $nsB), link $link"

steps=20
common=(network=r18 width=8 embedding_size=128 bn_group=8 dropout=0.1 synthetic_ids=37 synthetic_images=6
        synthetic_holdout_ids=10 verify_pairs=40 steps=$steps warmup_steps=3 threads=1 batch_size=8
        log_every=10 step_timeout=60 seed=7 lr=0.0003)
hosts_mpi=(--hostfile "$out/hostfile" --map-by node --display-map
           --mca plm_rsh_agent "$agent" --mca plm_rsh_no_tree_spawn 1
           --mca oob_tcp_if_include "$subnet" --mca btl_tcp_if_include "$subnet" --mca btl self,vader,tcp)

# job NAME expect(ok|fail) [mpirun options...] -- [key=value...]: 2 servers + 2 workers.
job() {
  local name=$1 expect=$2 opts=() forward=() rc=0 v
  shift 2
  # A remote rank inherits nothing through ssh: forward what changes results or
  # runs (OpenBLAS' kernel choice and blocking change the order of sums;
  # sanitizer options). -x belongs to one app context of the MPMD line, so it is
  # given to both: with it on the servers only, host B's worker ran OpenBLAS'
  # autodetected Cooperlake kernels instead of SkylakeX and the runs differed by
  # 1e-6. -x of an unset variable is an error.
  for v in $(compgen -e); do
    case $v in
      OPENBLAS_* | GOTO_* | OMP_* | ASAN_OPTIONS | UBSAN_OPTIONS | LSAN_OPTIONS | ARCFACE_INTERFACE) forward+=(-x "$v") ;;
    esac
  done
  while [ "$1" != -- ]; do opts+=("$1"); shift; done
  shift
  echo "== $name"
  # In the background, so that a signal to this script is handled at once.
  NETNS_RSH_HOSTS=$out/hosts.map timeout -k 5 100 \
    ip netns exec "$nsA" unshare --uts sh -c 'hostname "$1" && shift && exec "$@"' sh "$hostA" \
    mpirun --bind-to none "${opts[@]}" \
      "${forward[@]}" -np 2 "$BUILD_DIR/arcface-ps" "${common[@]}" output_dir="$out/$name" "$@" \
    : "${forward[@]}" -np 2 "$BUILD_DIR/arcface-worker" "${common[@]}" output_dir="$out/$name" "$@" \
    > "$out/$name.log" 2>&1 &
  job_pid=$!
  wait "$job_pid" || rc=$?
  job_pid=
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then cat "$out/$name.log"; fail "job $name timed out"; fi
  if [ "$expect" = ok ] && [ $rc -ne 0 ]; then cat "$out/$name.log"; fail "job $name exited with $rc"; fi
  if [ "$expect" = fail ] && [ $rc -eq 0 ]; then cat "$out/$name.log"; fail "job $name should have failed"; fi
  for ns in "$nsA" "$nsB"; do
    [ -z "$(ip netns pids "$ns")" ] || { ps -o pid,args -p "$(ip netns pids "$ns" | paste -sd,)"; fail "job $name left processes in $ns"; }
  done
  grep -E "bind address|classes .* on tcp|error:" "$out/$name.log" | sort -u || true
}
# expect_endpoints NAME ADDR0 ADDR1: server p logged an endpoint on ADDRp.
expect_endpoints() {
  local name=$1 p=0 addr
  shift
  for addr in "$@"; do
    grep -Eq "^\[ps $p\] classes .* on tcp://${addr//./\\.}:[0-9]+\$" "$out/$name.log" ||
      fail "$name: ps $p did not bind $addr"
    p=$((p + 1))
  done
  if [ "$1" != 127.0.0.1 ] && grep -q "on tcp://127\." "$out/$name.log"; then fail "$name: a server bound 127.0.0.1"; fi
}

start=$SECONDS
# The reference: the same job with every rank on host A (auto = loopback).
job one_host ok --
expect_endpoints one_host 127.0.0.1 127.0.0.1
grep -q "bind address 127.0.0.1 (auto: every rank runs on host $hostA" "$out/one_host.log" ||
  fail "one_host: no log of the automatic loopback choice"

job two_hosts ok "${hosts_mpi[@]}" --
expect_endpoints two_hosts "$addrA" "$addrB"
grep -q "\[ps 1\] bind address $addrB (auto: ranks on several hosts, first non-loopback interface $link on host $hostB" \
  "$out/two_hosts.log" || fail "two_hosts: ps 1 did not log its automatic choice"
# --display-map: world ranks 0, 2 (ps 0, worker 0) on A; 1, 3 (ps 1, worker 1) on B.
python3 - "$out/two_hosts.log" "$addrA" "$addrB" "$hostA" <<'PY' || fail "two_hosts: ranks not placed as intended"
import re, sys
node, where = None, {}
for line in open(sys.argv[1]):
    m = re.search(r"Data for node: (\S+)", line)
    if m:
        node = m.group(1)
    m = re.search(r"Process rank: (\d+)", line)
    if m and node:
        where[int(m.group(1))] = node
a, b, a_name = sys.argv[2:5]
# mpirun names its own host by hostname, the others as the hostfile does.
where = {rank: a if node == a_name else node for rank, node in where.items()}
print("placement (world rank: host):", where)
sys.exit(0 if where == {0: a, 2: a, 1: b, 3: b} else 1)
PY
# Exact equality: the same ranks run the same code with the same OpenBLAS
# kernels and thread counts; only the transports differ (TCP instead of shared
# memory for MPI, the veth instead of loopback for ZeroMQ), and neither changes
# an operand or the order of a sum (2-rank collectives, gradients summed in
# server order). So any difference means a rank computed differently: a kernel
# mismatch from an environment not forwarded gave 6e-7 in the loss and 1.4e-6
# in the classifier, which a 1e-6 tolerance would half miss.
python3 "$SOURCE_DIR/tests/compare_runs.py" --steps $steps --loss-rtol 0 --weight-rtol 0 \
  "$out/one_host" "$out/two_hosts" || fail "two hosts do not train as one host"

job by_name ok "${hosts_mpi[@]}" -- steps=2 warmup_steps=1 interface="$link"
expect_endpoints by_name "$addrA" "$addrB"
grep -q "\[ps 1\] bind address $addrB (interface = $link, interface $link on host $hostB)" "$out/by_name.log" ||
  fail "by_name: ps 1 did not log the configured interface"

ARCFACE_INTERFACE=$link job by_env ok "${hosts_mpi[@]}" -- steps=2 warmup_steps=1
expect_endpoints by_env "$addrA" "$addrB"
grep -q "\[ps 1\] bind address $addrB (ARCFACE_INTERFACE = $link, interface $link on host $hostB)" "$out/by_env.log" ||
  fail "by_env: ps 1 did not log ARCFACE_INTERFACE"

job wrong_name fail "${hosts_mpi[@]}" -- steps=2 warmup_steps=1 interface=nosuch$id
grep -Eq "error: host ($hostA|$hostB) has no interface 'nosuch$id' with an IPv4 address \(from interface\); set" \
  "$out/wrong_name.log" || { cat "$out/wrong_name.log"; fail "wrong_name: no clear error naming the host"; }

job loopback fail "${hosts_mpi[@]}" -- steps=2 warmup_steps=1 interface=lo
grep -Eq "error: interface = lo is the loopback address 127.0.0.1 on host ($hostA|$hostB), which worker [01] \(world rank [23] on host ($hostB|$hostA)\) cannot reach" \
  "$out/loopback.log" || { cat "$out/loopback.log"; fail "loopback: no clear error naming the hosts"; }

echo "jobs took $((SECONDS - start)) s"
trap - EXIT
cleanup
left=$(ours)
[ -z "$left" ] || fail "namespaces left behind: $left"
echo "multi-host: all checks passed; namespaces removed"
