#!/usr/bin/env bash
# Installs the Debian 12 packages needed to build arcface-ps and run its tests.
# Run as root (or with sudo). Safe to run again.
set -euo pipefail

packages=(
  build-essential cmake pkg-config      # compiler and build
  libopenmpi-dev openmpi-bin            # MPI launcher and collectives
  libzmq3-dev                           # ZeroMQ transport
  libprotobuf-c-dev protobuf-c-compiler # message headers (protoc-c at build time)
  libopenblas-dev                       # SGEMM
  libturbojpeg0-dev                     # JPEG decoding
  python3                               # test helpers (standard library only)
  gnuplot-nox                           # deploy/plot-metrics.sh
  python3-opencv python3-onnx           # integration_onnx: a real ONNX consumer and checker
  iproute2                              # integration_multihost: network namespaces
  munge slurmctld slurmd slurm-client   # integration_slurm: a real one-node Slurm
  slurm-wlm-basic-plugins               #   (its PMIx plugin for srun --mpi=pmix)
  clang libclang-rt-14-dev              # deploy/fuzz.sh: libFuzzer and clang's sanitizer runtimes
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
