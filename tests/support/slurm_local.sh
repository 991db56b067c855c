# slurm_local.sh -- a throw-away single-node Slurm cluster for tests. Sourced.
#
#   slurm_local_available || exit 77      # munged, slurmctld, slurmd, sbatch installed?
#   slurm_local_start DIR                 # DIR: new or empty, removed by the caller; every
#                                         # directory above it must be searchable by all (munged)
#   ... sbatch, squeue, scontrol with SLURM_CONF exported ...
#   slurm_local_stop                      # also from an EXIT trap; safe to call twice
#
# munged runs with its own key and socket in DIR/munge; slurmctld and slurmd
# run as root in the foreground (their pids are ours) with state, spool and
# logs under DIR, on two free TCP ports of 127.0.0.1. The node is this host
# (its short name, as slurmd reports it) with CPUs=2; no cgroups
# (proctrack/pgid, task/none), no accounting, MPI plugins loaded on demand
# (srun --mpi=pmix). slurm_local_stop cancels the jobs, stops the daemons and
# kills, by pid, whatever the cluster started and left: the slurmstepd
# processes (they inherit SLURM_LOCAL_DIR=DIR from slurmd) and the jobs'
# processes (SLURM_JOB_ID set and SLURM_CONF naming DIR/slurm.conf).
# shellcheck shell=bash

slurm_local_pids=()
slurm_local_dir=

slurm_local_available() {
  local prog
  for prog in munged slurmctld slurmd sbatch scontrol squeue scancel sinfo; do
    command -v "$prog" > /dev/null 2>&1 || { echo "slurm_local: $prog is not installed" >&2; return 1; }
  done
  [ "$(id -u)" -eq 0 ] || { echo "slurm_local: runs slurmd as root; not root" >&2; return 1; }
}

# Two TCP ports of 127.0.0.1 that no socket uses now (read from /proc/net).
slurm_local_ports() {
  local local_addr used=" " port found=()
  while read -r _ local_addr _; do
    [[ $local_addr == *:* ]] && used+="$((16#${local_addr##*:})) "
  done < <(cat /proc/net/tcp /proc/net/tcp6 2> /dev/null)
  while [ ${#found[@]} -lt 2 ]; do
    port=$((20000 + RANDOM % 30000))
    [[ $used == *" $port "* || " ${found[*]} " == *" $port "* ]] || found+=("$port")
  done
  echo "${found[@]}"
}

slurm_local_start() { # DIR
  local dir=$1 node ctld_port slurmd_port i state=
  slurm_local_dir=$dir
  node=$(hostname -s)
  read -r ctld_port slurmd_port < <(slurm_local_ports)
  # munged refuses a socket directory others cannot enter (every directory
  # above it included) and a key others can read.
  mkdir -p "$dir"
  chmod 755 "$dir"
  mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log"
  chmod 755 "$dir/munge"
  head -c 128 /dev/urandom > "$dir/munge/munge.key"
  chmod 600 "$dir/munge/munge.key"
  # MinJobAge=5: sbatch --wait polls every 2 s only when MinJobAge < 6 (else
  # every 8 s), and a job record purged before that poll makes it exit 0
  # with "no longer found". KillWait=5: cancelled jobs end quickly.
  cat > "$dir/slurm.conf" <<EOF
ClusterName=arcface-test
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
SwitchType=switch/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
KillWait=5
MinJobAge=5
NodeName=$node NodeAddr=127.0.0.1 CPUs=2 RealMemory=2000 State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF=$dir/slurm.conf
  munged -F --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/munge/munged.pid" --seed-file="$dir/munge/munged.seed" \
    --log-file="$dir/log/munged.log" > "$dir/log/munged.out" 2>&1 &
  slurm_local_pids+=($!)
  for i in $(seq 50); do [ -S "$dir/munge/munge.socket" ] && break; sleep 0.1; done
  [ -S "$dir/munge/munge.socket" ] || { cat "$dir/log/munged.out" >&2; echo "slurm_local: munged did not start" >&2; return 1; }
  slurmctld -D -f "$SLURM_CONF" > "$dir/log/slurmctld.out" 2>&1 &
  slurm_local_pids+=($!)
  SLURM_LOCAL_DIR=$dir slurmd -D -f "$SLURM_CONF" > "$dir/log/slurmd.out" 2>&1 &
  slurm_local_pids+=($!)
  for i in $(seq 100); do
    state=$(sinfo -h -o %t 2>/dev/null) || true
    [ "$state" = idle ] && return 0
    sleep 0.1
  done
  tail -n 20 "$dir"/log/*.log "$dir"/log/*.out >&2
  echo "slurm_local: node $node not idle after 10 s (state '${state}')" >&2
  return 1
}

# Pids of the processes this cluster started (see the top of the file).
slurm_local_job_pids() {
  local f
  {
    grep -lzxF "SLURM_LOCAL_DIR=$slurm_local_dir" /proc/[0-9]*/environ
    for f in $(grep -lzxF "SLURM_CONF=$slurm_local_dir/slurm.conf" /proc/[0-9]*/environ); do
      grep -qz '^SLURM_JOB_ID=' "$f" && echo "$f"
    done
  } 2> /dev/null | sed 's|^/proc/||; s|/environ$||' | sort -un
}

slurm_local_stop() {
  local pid i
  [ ${#slurm_local_pids[@]} -gt 0 ] || return 0
  if timeout 5 scancel --quiet "--user=$(id -un)" > /dev/null 2>&1; then
    for i in $(seq 50); do [ -z "$(timeout 2 squeue -h 2>/dev/null)" ] && break; sleep 0.1; done
  fi
  # The daemons last: reversed start order.
  for ((i = ${#slurm_local_pids[@]} - 1; i >= 0; i--)); do kill "${slurm_local_pids[i]}" 2>/dev/null; done
  for pid in "${slurm_local_pids[@]}"; do wait "$pid" 2>/dev/null; done
  for pid in $(slurm_local_job_pids); do kill -KILL "$pid" 2>/dev/null; done
  slurm_local_pids=()
}
