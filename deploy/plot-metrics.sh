#!/usr/bin/env bash
# Plots a training run's metrics.jsonl with gnuplot: loss.png and lr.png over
# steps, accuracy.png with one line per verification set.
# Usage: deploy/plot-metrics.sh OUTPUT_DIR/metrics.jsonl [PLOT_DIR]  (default: beside the file)
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 METRICS.jsonl [PLOT_DIR]" >&2; exit 2; }
metrics=$1
out=${2:-$(dirname "$metrics")}
command -v gnuplot >/dev/null || { echo "$0: gnuplot is not installed (apt-get install gnuplot-nox)" >&2; exit 1; }
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$metrics" "$tmp" <<'PY'
import json, sys
path, tmp = sys.argv[1], sys.argv[2]
steps, sets = [], {}
with open(path) as f:
    for n, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except ValueError as e:
            sys.exit(f"{path}:{n}: not JSON: {e}")
        if "loss" in r:
            steps.append((r["step"], r["loss"], r.get("lr", 0.0)))
        if "accuracy" in r:
            sets.setdefault(r["set"], []).append((r["step"], r["accuracy"], r.get("accuracy_std", 0.0)))
if not steps:
    sys.exit(f"{path}: no training steps recorded")
with open(f"{tmp}/steps.tsv", "w") as f:
    f.writelines(f"{s}\t{l}\t{lr}\n" for s, l, lr in steps)
with open(f"{tmp}/sets.txt", "w") as f:
    for name, rows in sets.items():
        f.write(name + "\n")
        with open(f"{tmp}/acc_{name}.tsv", "w") as g:
            g.writelines(f"{s}\t{a}\t{sd}\n" for s, a, sd in rows)
PY
common="set terminal pngcairo size 900,500 font ',10'; set grid; set xlabel 'step'; set key top right"
gnuplot -e "$common; set output '$out/loss.png'; set ylabel 'loss'; set title 'training loss';
  plot '$tmp/steps.tsv' using 1:2 with lines lw 1 title 'loss'"
gnuplot -e "$common; set output '$out/lr.png'; set ylabel 'learning rate'; set title 'learning rate';
  plot '$tmp/steps.tsv' using 1:3 with lines lw 2 title 'lr'"
if [ -s "$tmp/sets.txt" ]; then
  plot=""
  while read -r name; do
    plot+="${plot:+, }'$tmp/acc_$name.tsv' using 1:2:3 with yerrorlines pt 7 ps 0.6 title '$name'"
  done < "$tmp/sets.txt"
  gnuplot -e "$common; set output '$out/accuracy.png'; set ylabel 'verification accuracy (10-fold)';
    set title 'verification accuracy'; set key bottom right; set offsets graph 0.03, graph 0.03, graph 0.1, graph 0.1;
    plot $plot"
fi
echo "wrote $(cd "$out" && ls loss.png lr.png accuracy.png 2>/dev/null | tr '\n' ' ')in $out"
