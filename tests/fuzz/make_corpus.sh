#!/usr/bin/env bash
# Rebuilds the generated seeds in tests/fuzz/corpus/<target>/ (files named
# seed-*) from the project's own writers (arcface-fuzz-seeds) and test tools
# (tests/tools/make_bins.py, make_png.py, mxrecordio.py). Inputs kept for
# fixed findings (regress-*) and any other file are left alone.
#     tests/fuzz/make_corpus.sh [BUILD_DIR]     (default: build; needs
#                                               tests/fuzz/arcface-fuzz-seeds built)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
seeds=$build/tests/fuzz/arcface-fuzz-seeds
[ -x "$seeds" ] || { echo "make_corpus: $seeds not built (cmake --build $build --target arcface-fuzz-seeds)" >&2; exit 1; }
corpus=$here/corpus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$seeds" "$tmp/c" >/dev/null

# .bin sets as Python 2 and 3 pickle them, and pickles the reader must refuse.
mkdir -p "$tmp/bins" "$tmp/bad"
python3 "$root/tests/tools/make_bins.py" write "$tmp/bins" 3
python3 "$root/tests/tools/make_bins.py" bad "$tmp/bad"
for f in "$tmp"/bins/*.bin; do cp "$f" "$tmp/c/binset/py-$(basename "$f")"; done
for f in "$tmp"/bad/*.bin; do cp "$f" "$tmp/c/binset/refused-$(basename "$f")"; done

# PNGs of every colour type, depth, filter and interlacing (the small ones).
mkdir -p "$tmp/png"
python3 "$root/tests/tools/make_png.py" "$tmp/png" >/dev/null
find "$tmp/png" -name '*.png' -size -1500c -exec cp {} "$tmp/c/decode/" \;

# A RecordIO set as insightface's face2rec2.py lays it out, in fuzz_recordio's
# input format: 2-byte .idx length, property length + 128 (rec_scan too), .idx, property, .rec.
printf '0\t%s\n1\t%s\n1\t%s\n2\t%s\n' 00ff11 a0b1c2d3e4 0a23d7ce0a23d7ce 7f > "$tmp/list.txt"
mkdir -p "$tmp/face2rec" "$tmp/plain"
python3 "$root/tests/tools/mxrecordio.py" makeset "$tmp/list.txt" "$tmp/face2rec/train"
python3 "$root/tests/tools/mxrecordio.py" makeset --plain "$tmp/list.txt" "$tmp/plain/train"
python3 - "$tmp" <<'PY'
import os, struct, sys
tmp = sys.argv[1]
for name in ('face2rec', 'plain'):
    d = os.path.join(tmp, name)
    idx = open(os.path.join(d, 'train.idx'), 'rb').read()
    rec = open(os.path.join(d, 'train.rec'), 'rb').read()
    p = os.path.join(d, 'property')
    prop = open(p, 'rb').read() if os.path.exists(p) else b''
    out = struct.pack('<HB', len(idx), len(prop) | 128) + idx + prop + rec
    open(os.path.join(tmp, 'c', 'recordio', 'py-' + name), 'wb').write(out)
PY

# Config presets shipped in deploy/configs, each with one override.
for f in "$root"/deploy/configs/*.conf; do
  { cat "$f"; printf '\0threads=1\0--log_every=5'; } > "$tmp/c/config/preset-$(basename "$f" .conf)"
done

for dir in "$tmp"/c/*/; do
  target=$(basename "$dir")
  mkdir -p "$corpus/$target"
  rm -f "$corpus/$target"/seed-*
  for f in "$dir"*; do cp "$f" "$corpus/$target/seed-$(basename "$f")"; done
done
printf "make_corpus: %s bytes in %s\n" "$(cat "$corpus"/*/* | wc -c)" "$corpus"
for d in "$corpus"/*/; do printf '%s: %s files\n' "$(basename "$d")" "$(ls "$d" | wc -l)"; done
