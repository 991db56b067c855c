#!/usr/bin/env python3
"""Compares the outputs of training runs: losses per step (metrics.jsonl), the
backbone (backbone.bin) and the classifier reassembled from every server's
classifier.<p>.bin. Exits 1 when any run differs from the first beyond the
tolerances. Standard library only."""
import argparse
import glob
import json
import os
import struct
import sys
from array import array


def read_dump(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"AFDUMP01":
        raise SystemExit(f"{path}: not a dump file")
    (kind_len,) = struct.unpack_from("<I", data, 8)
    off = 12 + kind_len
    meta = struct.unpack_from("<4q", data, off)
    off += 32
    (count,) = struct.unpack_from("<Q", data, off)
    off += 12
    values = array("f")
    values.frombytes(data[off:off + 4 * count])
    if len(values) != count:
        raise SystemExit(f"{path}: truncated ({len(values)} of {count} floats)")
    return meta, values


def classifier(run):
    shards = []
    for path in glob.glob(os.path.join(run, "classifier.*.bin")):
        meta, values = read_dump(path)
        shards.append((meta[0], meta[1], values))
    shards.sort()
    whole = array("f")
    expect = 0
    for start, rows, values in shards:
        if start != expect:
            raise SystemExit(f"{run}: classifier shards leave a gap at class {expect}")
        whole.extend(values)
        expect = start + rows
    return whole


def backbone_params(run):
    """The parameters of backbone.bin (meta[3] of them), without the BatchNorm
    running statistics that follow: those are per worker, not per job."""
    meta, values = read_dump(os.path.join(run, "backbone.bin"))
    return values[:meta[3]]


def losses(run):
    out = {}
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if "loss" in rec:
                out[rec["step"]] = rec["loss"]
    return out


def max_diff(a, b):
    """Largest |a-b| relative to the largest magnitude of a (a scale-aware norm)."""
    scale = max(max(abs(x) for x in a), 1e-12)
    return max(abs(x - y) for x, y in zip(a, b)) / scale


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--loss-rtol", type=float, default=1e-4)
    ap.add_argument("--weight-rtol", type=float, default=1e-3)
    ap.add_argument("--steps", type=int, required=True)
    args = ap.parse_args()
    ref = args.runs[0]
    ref_loss, ref_bb, ref_cls = losses(ref), backbone_params(ref), classifier(ref)
    ok = True
    if sorted(ref_loss) != list(range(1, args.steps + 1)):
        print(f"{ref}: expected losses for steps 1..{args.steps}, got {len(ref_loss)}")
        ok = False
    for run in args.runs[1:]:
        run_loss = losses(run)
        worst = 0.0
        for step, value in ref_loss.items():
            if step not in run_loss:
                print(f"{run}: no loss for step {step}")
                ok = False
                continue
            rel = abs(run_loss[step] - value) / max(abs(value), 1e-12)
            worst = max(worst, rel)
        bb = backbone_params(run)
        cls = classifier(run)
        if len(bb) != len(ref_bb) or len(cls) != len(ref_cls):
            print(f"{run}: weight sizes differ from {ref}")
            ok = False
            continue
        bb_diff, cls_diff = max_diff(ref_bb, bb), max_diff(ref_cls, cls)
        verdict = worst <= args.loss_rtol and bb_diff <= args.weight_rtol and cls_diff <= args.weight_rtol
        ok &= verdict
        print(f"{os.path.basename(run)} vs {os.path.basename(ref)}: loss max rel diff {worst:.2e} "
              f"(tol {args.loss_rtol:g}), backbone {bb_diff:.2e}, classifier {cls_diff:.2e} "
              f"(tol {args.weight_rtol:g}) -> {'same' if verdict else 'DIFFERENT'}")
    print(f"first losses: {[round(ref_loss[s], 4) for s in sorted(ref_loss)[:3]]} ... last {ref_loss[max(ref_loss)]:.4f}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
