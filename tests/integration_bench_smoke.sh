#!/usr/bin/env bash
# deploy/bench.sh --smoke: every part of the performance benchmark runs (C
# worker, PyTorch when installed, classifier step, 2+2 local job) and writes
# a results file with every figure present and plausible (tests/bench/report.py
# checks them). The figures themselves are not judged: sizes are tiny.
set -euo pipefail
root=${SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
BUILD_DIR=${BUILD_DIR:-$root/build} "$root/deploy/bench.sh" --smoke --json "$out/results.json"
/usr/bin/python3 - "$out/results.json" << 'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert len(r["server"]) == 4, r["server"]            # rate 1 and 0.1, 1 and 2 threads
assert {w["threads"] for w in r["worker"]} == {1, 2}, r["worker"]
assert r["job"] and r["job"][0]["steps_timed"] >= 1, r["job"]
print(f"bench smoke: {len(r['worker'])} worker rows, {len(r['server'])} server rows, job ok")
PY
