#!/usr/bin/env bash
# The performance benchmark: a worker's training and inference speed beside
# PyTorch's on the same model, the parameter server's classifier step against
# its bare SGEMMs, and a 2-worker + 2-server local job's step split into
# compute and waiting. Prints tables and writes every figure as JSON.
#
#   deploy/bench.sh [--smoke] [--json FILE] [--models "r18 r50"]
#                   [--rows "100000 1000000"] [--cores "env auto"]
#
#   --smoke    tiny sizes, one step each: checks that every part runs (ctest's
#              bench_smoke), in about a minute; its figures mean nothing.
#   --json     where the results go (default: BUILD_DIR/bench-results.json).
#   --models   IResNets for the worker rows (batch 32, 1 and 2 threads).
#   --rows     classifier shard sizes for the server rows (batch 256, sample
#              rate 1 and 0.1; 1,000,000 rows need about 11 GiB).
#   --cores    OpenBLAS kernel settings to run the worker rows under: "env" is
#              the environment's OPENBLAS_CORETYPE as it is, "auto" unsets it
#              (OpenBLAS picks the CPU's own kernels). PyTorch runs under the
#              same setting as the C rows it is compared with.
#
# PyTorch rows need /usr/bin/python3 with torch (Debian's python3-torch); the
# script installs nothing and leaves those rows out when torch is missing.
# Each configuration runs in its own process, so peak RSS is that
# configuration's. The full run takes about half an hour on 2 cores.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$root/build}
smoke=0 json="" models="r18 r50" rows="100000 1000000" cores="env auto"
while [ $# -gt 0 ]; do
  case $1 in
    --smoke) smoke=1; shift ;;
    --json) json=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --rows) rows=$2; shift 2 ;;
    --cores) cores=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
json=${json:-$build/bench-results.json}
for exe in tests/bench_worker tests/bench_classifier arcface-ps arcface-worker; do
  [ -x "$build/$exe" ] || { echo "bench.sh: $build/$exe is missing: build first (deploy/build.sh)" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/arcface-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
results=$work/results.jsonl # one JSON object per line, tagged by "part"

if [ $smoke = 1 ]; then
  models="r18" rows="20000" cores="env"
  worker_args=(--width 8 --embedding 16 --batch 4 --classes 100 --steps 1 --warmup 0 --forward-steps 1)
  torch_args=("${worker_args[@]}")
  job_args=(network=r18 width=8 embedding_size=16 batch_size=4 synthetic_ids=100 synthetic_images=4 steps=4)
else
  worker_args=(--batch 32 --classes 10000 --steps 3 --warmup 1 --forward-steps 3)
  torch_args=("${worker_args[@]}")
  job_args=(network=r18 width=64 embedding_size=512 batch_size=32 synthetic_ids=10000 synthetic_images=4 steps=10)
fi

torch_ok=0
if /usr/bin/python3 -c "import torch" 2> /dev/null; then
  torch_ok=1
else
  echo "bench.sh: no PyTorch (/usr/bin/python3 cannot import torch): the PyTorch rows are left out" >&2
fi

# Runs "$@" under an OpenBLAS setting: env (as it is) or auto (unset).
under_core() {
  local core=$1
  shift
  if [ "$core" = auto ]; then env -u OPENBLAS_CORETYPE "$@"; else "$@"; fi
}

# Appends a JSON line with part, core setting and the program's own object.
tag() { # part core
  /usr/bin/python3 -c '
import json, sys
part, core = sys.argv[1], sys.argv[2]
for line in sys.stdin:
    rec = json.loads(line)
    rec.update(part=part, core_setting=core)
    print(json.dumps(rec))' "$1" "$2" >> "$results"
}

echo "bench.sh: worker rows (${models}; 1 and 2 threads; OpenBLAS settings: $cores)" >&2
for core in $cores; do
  for model in $models; do
    for threads in 1 2; do
      under_core "$core" "$build/tests/bench_worker" --model "$model" --threads "$threads" "${worker_args[@]}" |
        tag worker "$core"
      if [ $torch_ok = 1 ]; then
        under_core "$core" /usr/bin/python3 "$root/tests/bench/torch_iresnet.py" --model "$model" --threads "$threads" \
          "${torch_args[@]}" | tag worker "$core"
      fi
    done
  done
done

echo "bench.sh: server rows ($rows rows)" >&2
# shellcheck disable=SC2086 # the row counts are separate arguments
"$build/tests/bench_classifier" --json $rows | tag server env

echo "bench.sh: 2 workers + 2 servers local job" >&2
job_dir=$work/job
cat > "$work/job.conf" << EOF
# Synthetic data, no verification, one OpenBLAS thread per process (4 on 2 cores).
dataset = synthetic
verify =
loss = arcface
s = 64
lr = 0.1
threads = 1
log_every = 1
step_timeout = 600
EOF
if ! "$root/deploy/local.sh" -p 2 -w 2 "$work/job.conf" "${job_args[@]}" output_dir="$job_dir" > "$work/job.log" 2>&1; then
  tail -20 "$work/job.log" >&2
  echo "bench.sh: the local job failed (log above)" >&2
  exit 1
fi
# The job runs with deploy/mpi-env.sh's OpenBLAS choice; its log names the kernels.
job_core=$(sed -n 's/.*OpenBLAS .*, core \([A-Za-z0-9]*\),.*/\1/p' "$work/job.log" | head -n 1)
/usr/bin/python3 -c '
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if "time_s" in l]
skip = 2 if len(steps) > 4 else 1  # the first steps warm caches and connections
steps = steps[skip:]
phases = list(steps[0]["time_s"])
mean = {p: sum(s["time_s"][p] for s in steps) / len(steps) for p in phases}
print(json.dumps({"part": "job", "core_setting": "mpi-env.sh", "openblas_core": sys.argv[2], "workers": 2, "servers": 2,
                  "steps_timed": len(steps), "mean_time_s": mean,
                  "images_per_s": sum(s["images_per_s"] for s in steps) / len(steps)}))' \
  "$job_dir/metrics.jsonl" "${job_core:-unknown}" >> "$results"

/usr/bin/python3 "$root/tests/bench/report.py" "$results" "$json"
