# Sourced by the scripts that launch MPI jobs on one machine: Open MPI refuses
# to run as root and to start more ranks than cores unless told.
export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
# Ranks on one host talk through shared memory; containers often forbid the
# cross-memory-attach syscalls, so use plain copies.
export OMPI_MCA_btl_vader_single_copy_mechanism=none
# Debian's OpenBLAS may be told (OPENBLAS_CORETYPE=Haswell) to use its AVX2
# kernels on a CPU with AVX-512, which halves SGEMM. Local jobs use the AVX-512
# kernels when the CPU has them; ARCFACE_OPENBLAS_CORETYPE chooses explicitly.
if [ -n "${ARCFACE_OPENBLAS_CORETYPE:-}" ]; then
  export OPENBLAS_CORETYPE=$ARCFACE_OPENBLAS_CORETYPE
elif grep -qw avx512f /proc/cpuinfo 2>/dev/null && [ "${OPENBLAS_CORETYPE:-Haswell}" = Haswell ]; then
  export OPENBLAS_CORETYPE=SkylakeX
fi
