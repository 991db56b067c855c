#!/usr/bin/env python3
"""Turns the JSON lines deploy/bench.sh collected into tables and one JSON file.

Usage: report.py RESULTS.jsonl OUT.json

Every input line is one measurement tagged by "part" (worker, server, job) and
"core_setting" (env: OPENBLAS_CORETYPE as the environment set it, auto: unset).
The output JSON holds the machine, every measurement, and the ratios the
targets of the performance issue are stated in.
"""
import json
import math
import os
import platform
import sys
import time


def cpu_info():
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {
        "model": model,
        "cores": os.cpu_count(),
        "avx2": "avx2" in flags,
        "avx512f": "avx512f" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
    }


def fmt(x, digits=1):
    return "-" if x is None else f"{x:.{digits}f}"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def worker_rows(records):
    """Pairs each C measurement with the PyTorch one of the same configuration."""
    key = lambda r: (r["core_setting"], r["model"], r["width"], r["batch"], r["threads"])
    torch = {key(r): r for r in records if r["impl"] == "pytorch"}
    rows = []
    for r in records:
        if r["impl"] != "arcface-c":
            continue
        t = torch.get(key(r), {})
        rows.append({
            "core_setting": r["core_setting"], "openblas_core": r["openblas_core"],
            "model": r["model"], "width": r["width"], "batch": r["batch"], "threads": r["threads"],
            "train_images_per_s": r["train_images_per_s"],
            "torch_train_images_per_s": t.get("train_images_per_s"),
            "train_ratio": ratio(r["train_images_per_s"], t.get("train_images_per_s")),
            "train_gflops": r["train_gflops"],
            "forward_images_per_s": r["forward_images_per_s"],
            "torch_forward_images_per_s": t.get("forward_images_per_s"),
            "forward_ratio": ratio(r["forward_images_per_s"], t.get("forward_images_per_s")),
            "peak_rss_mib": r["peak_rss_mib"],
            "torch_peak_rss_mib": t.get("peak_rss_mib"),
            "rss_ratio": ratio(r["peak_rss_mib"], t.get("peak_rss_mib")),
        })
    return rows


def print_worker(rows):
    print("Worker: IResNet + ArcFace, fp32; training = forward, ArcFace, backward, SGD")
    print(f"{'model':>5} {'w':>3} {'batch':>5} {'thr':>3} {'OpenBLAS':>14} | {'train img/s':>11} {'GFLOPS':>6} "
          f"{'torch':>7} {'ratio':>5} | {'fwd img/s':>9} {'torch':>7} {'ratio':>5} | "
          f"{'RSS MiB':>7} {'torch':>6} {'ratio':>5}")
    for r in rows:
        core = f"{r['openblas_core']}({r['core_setting']})"
        print(f"{r['model']:>5} {r['width']:>3} {r['batch']:>5} {r['threads']:>3} {core:>14} | "
              f"{fmt(r['train_images_per_s'], 2):>11} {fmt(r['train_gflops']):>6} "
              f"{fmt(r['torch_train_images_per_s'], 2):>7} {fmt(r['train_ratio'], 2):>5} | "
              f"{fmt(r['forward_images_per_s'], 2):>9} {fmt(r['torch_forward_images_per_s'], 2):>7} "
              f"{fmt(r['forward_ratio'], 2):>5} | {fmt(r['peak_rss_mib'], 0):>7} "
              f"{fmt(r['torch_peak_rss_mib'], 0):>6} {fmt(r['rss_ratio'], 2):>5}")


def server_rows(records):
    full = {(r["rows"], r["threads"]): r["step_ms"] for r in records if r["sample_rate"] == 1.0}
    out = []
    for r in records:
        r = dict(r)
        r["sampled_over_full"] = (None if r["sample_rate"] == 1.0
                                  else ratio(r["step_ms"], full.get((r["rows"], r["threads"]))))
        out.append(r)
    return out


def print_server(rows):
    print("Server: classifier step (select, forward, backward, SGD), batch 256, D 512, ArcFace")
    print(f"{'rows':>9} {'rate':>4} {'kept':>9} {'thr':>3} | {'step ms':>8} {'SGEMM ms':>8} "
          f"{'step/SGEMM':>10} {'rate/full':>9} | {'shard GiB':>9} {'peak RSS GiB':>12} {'init s':>6}")
    for r in rows:
        print(f"{r['rows']:>9} {r['sample_rate']:>4.2f} {r['kept_rows']:>9.0f} {r['threads']:>3} | "
              f"{r['step_ms']:>8.1f} {r['sgemm_ms']:>8.1f} {r['step_over_sgemm']:>10.2f} "
              f"{fmt(r['sampled_over_full'], 3):>9} | {r['shard_gib']:>9.2f} {fmt(r.get('peak_rss_gib'), 2):>12} "
              f"{r['shard_create_s']:>6.1f}")


def print_job(job):
    t = job["mean_time_s"]
    step = sum(t.values())
    waiting = t["servers"] + t["allreduce"]
    job["step_s"] = step
    job["waiting_fraction"] = waiting / step if step else None
    print(f"Local job: {job['workers']} workers + {job['servers']} servers (OpenBLAS {job['openblas_core']}), "
          f"mean of {job['steps_timed']} steps, {job['images_per_s']:.1f} images/s")
    print("  step " + f"{step:.3f} s = " + ", ".join(f"{p} {v:.3f}" for p, v in t.items()))
    print(f"  waiting on the servers and the allreduce: {100 * job['waiting_fraction']:.1f}% of the step")


def check(parts):
    """Every part measured, every time and rate a positive finite number: a
    broken benchmark fails instead of printing a table of zeros."""
    problems = [f"no {p} measurement" for p, recs in parts.items() if not recs]
    if not any(r["impl"] == "arcface-c" for r in parts["worker"]):
        problems.append("no arcface-c worker measurement")
    fields = {"worker": ("train_images_per_s", "forward_images_per_s", "peak_rss_mib"),
              "server": ("step_ms", "sgemm_ms"), "job": ("images_per_s",)}
    for part, names in fields.items():
        for r in parts[part]:
            values = [r[n] for n in names]
            values += list(r.get("mean_time_s", {}).values())
            if not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in values) or \
                    not all(r[n] > 0 for n in names):
                problems.append(f"{part}: implausible figures in {json.dumps(r)[:200]}")
    if problems:
        sys.exit("report.py: " + "; ".join(problems))


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: report.py RESULTS.jsonl OUT.json")
    records = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    parts = {p: [r for r in records if r["part"] == p] for p in ("worker", "server", "job")}
    check(parts)
    cpu = cpu_info()
    cores_seen = sorted({r["openblas_core"] for r in records if "openblas_core" in r})
    print(f"Machine: {cpu['model']}, {cpu['cores']} cores, AVX-512 {'yes' if cpu['avx512f'] else 'no'}, "
          f"AVX-512 BF16 {'yes' if cpu['avx512_bf16'] else 'no'}")
    env_core = os.environ.get("OPENBLAS_CORETYPE")
    print(f"OpenBLAS: OPENBLAS_CORETYPE={env_core or '(unset)'}; kernels used: {', '.join(cores_seen)}")
    if env_core and cpu["avx512f"] and env_core.lower() in ("haswell", "sandybridge", "nehalem"):
        print(f"  this CPU has AVX-512: OPENBLAS_CORETYPE={env_core} keeps OpenBLAS on slower kernels "
              "(compare the 'auto' rows)")
    print()
    worker = worker_rows(parts["worker"])
    if worker:
        print_worker(worker)
        print()
    server = server_rows(parts["server"])
    if server:
        print_server(server)
        print()
    for job in parts["job"]:
        print_job(job)
    out = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": platform.node(), "cpu": cpu,
           "openblas_coretype_env": env_core, "worker": worker, "server": server, "job": parts["job"],
           "raw": parts["worker"]}
    with open(sys.argv[2], "w") as f:
        json.dump(out, f, indent=1)
    print(f"\nresults: {sys.argv[2]}")


if __name__ == "__main__":
    main()
