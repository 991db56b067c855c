#!/usr/bin/env bash
# Runs a training job on this machine: P servers and W workers as one MPMD MPI
# job. Usage: deploy/local.sh [-p P] [-w W] CONFIG [key=value ...]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$root/build}
servers=2 workers=2
while getopts "p:w:" opt; do
  case $opt in
    p) servers=$OPTARG ;;
    w) workers=$OPTARG ;;
    *) echo "usage: $0 [-p servers] [-w workers] CONFIG [key=value ...]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: $0 [-p servers] [-w workers] CONFIG [key=value ...]" >&2; exit 2; }
. "$root/deploy/mpi-env.sh"
exec mpirun --bind-to none -np "$servers" "$build/arcface-ps" "$@" : -np "$workers" "$build/arcface-worker" "$@"
