#!/usr/bin/env bash
# Using a trained model: arcface-onnx, arcface-embed and arcface-verify agree.
#
# A randomised IResNet-18 (width 16, 64-d by default; every BN, PReLU and bias value away
# from its default, BN statistics of a real batch) is exported to ONNX, checked
# by onnx's checker (with shape inference) and run by OpenCV's dnn on the same
# image files arcface-embed reads: the raw embeddings (and the flip sums) must
# agree within 1e-4. Colour PNG images (lossless, so both sides see the same
# pixels, and not grey, so the RGB order is tested): LFW crops tinted per
# channel when ../shared/data/faces is present, and noise images. Also: embed's
# CSV and binary outputs hold the same values, arcface-verify gives cosine 1
# for an image with itself, a corrupt image stops embed with its path (and
# --skip-bad counts it). Skipped (77) when /usr/bin/python3 lacks cv2 or onnx.
# NET="DEPTH WIDTH EMBEDDING" tests another size (by hand: NET="18 64 512" is a
# full IResNet-18, about a minute here).
set -euo pipefail
: "${BUILD_DIR:?}" "${SOURCE_DIR:?}"
PY=/usr/bin/python3
if ! "$PY" -c "import cv2, onnx" 2>/dev/null; then
  echo "skipped: $PY cannot import cv2 and onnx (apt-get install python3-opencv python3-onnx)"
  exit 77
fi
out=$(mktemp -d /tmp/arcface-onnx.XXXXXX)
trap 'rm -rf "$out"' EXIT
faces="$SOURCE_DIR/../shared/data/faces/lfw"

# shellcheck disable=SC2086 # three words
"$BUILD_DIR/tests/test_onnx" --write-backbone "$out/backbone.bin" ${NET:-18 16 64}
"$BUILD_DIR/arcface-onnx" "$out/backbone.bin" "$out/model.onnx"

"$PY" - "$out/images" "$faces" <<'PY'
import os, sys, cv2, numpy as np
root, faces = sys.argv[1], sys.argv[2]
os.makedirs(f"{root}/lfw"); os.makedirs(f"{root}/noise/deeper")
rng = np.random.default_rng(1)
n = 0
if os.path.isdir(faces):
    people = sorted(os.listdir(faces))[:40:8]
    for p in people:
        f = sorted(os.listdir(f"{faces}/{p}"))[0]
        grey = cv2.imread(f"{faces}/{p}/{f}", cv2.IMREAD_GRAYSCALE)[69:181, 69:181].astype(np.float32)
        tint = rng.uniform(0.4, 1.0, 3)  # B, G, R factors: a colour image
        bgr = np.clip(grey[:, :, None] * tint[None, None, :], 0, 255).astype(np.uint8)
        cv2.imwrite(f"{root}/lfw/{p}.png", bgr); n += 1
else:
    print(f"note: {faces} absent, noise images only")
for i in range(3):
    cv2.imwrite(f"{root}/noise/deeper/{i}.png", rng.integers(0, 256, (112, 112, 3), dtype=np.uint8))
print(f"{n} tinted LFW crops and 3 noise images")
PY

"$BUILD_DIR/arcface-embed" "$out/backbone.bin" "$out/images" "$out/raw.bin" --raw --batch 3
"$BUILD_DIR/arcface-embed" "$out/backbone.bin" "$out/images" "$out/flip.bin" --raw --flip --batch 2
"$BUILD_DIR/arcface-embed" "$out/backbone.bin" "$out/images" "$out/norm.bin" --threads 1 --batch 4
"$BUILD_DIR/arcface-embed" "$out/backbone.bin" "$out/images" "$out/norm.csv" --threads 1 --batch 4

"$PY" - "$out" <<'PY'
import csv, struct, sys, cv2, numpy as np, onnx
out = sys.argv[1]

def read_bin(path):
    h = open(path, "rb").read()
    magic, version, dim, n, names_bytes = struct.unpack_from("<8sIIQQ", h)
    assert magic == b"AFEMBED\0" and version == 1, (magic, version)
    rows = np.frombuffer(h, "<f4", n * dim, 32).reshape(n, dim)
    names = h[32 + 4 * n * dim:].split(b"\0")[:n]
    return [s.decode() for s in names], rows

names, raw = read_bin(f"{out}/raw.bin")
model = onnx.load(f"{out}/model.onnx")
onnx.checker.check_model(model, full_check=True)
net = cv2.dnn.readNetFromONNX(f"{out}/model.onnx")
bgr = [cv2.imread(f"{out}/images/{name}", cv2.IMREAD_COLOR) for name in names]
x = np.stack([(im[:, :, ::-1].astype(np.float32) - 127.5) / 128 for im in bgr]).transpose(0, 3, 1, 2)
net.setInput(np.ascontiguousarray(x))
y = net.forward()
net.setInput(np.ascontiguousarray(x[:, :, :, ::-1]))
y_flip = y + net.forward()
_, flip = read_bin(f"{out}/flip.bin")
diff, diff_flip = np.abs(y - raw).max(), np.abs(y_flip - flip).max()
print(f"{len(names)} images, {raw.shape[1]}-d, |embedding| {np.linalg.norm(raw, axis=1).mean():.3f}: "
      f"ONNX (OpenCV dnn) vs arcface-embed max abs diff {diff:.3g}, with flip {diff_flip:.3g}")
failed = not (diff <= 1e-4 and diff_flip <= 2e-4)

norm_names, norm = read_bin(f"{out}/norm.bin")
with open(f"{out}/norm.csv") as f:
    rows = list(csv.reader(f))
csv_names = [r[0] for r in rows[1:]]
csv_values = np.array([[float(v) for v in r[1:]] for r in rows[1:]], dtype=np.float32)
same = norm_names == names == csv_names and np.array_equal(csv_values, norm)
unit = np.abs(np.linalg.norm(norm, axis=1) - 1).max()
scaled = np.abs(raw / np.linalg.norm(raw, axis=1, keepdims=True) - norm).max()
print(f"CSV and binary identical: {same}; |row| - 1 at most {unit:.2g}; normalised vs raw/|raw| {scaled:.2g}")
failed |= not (same and unit < 1e-5 and scaled < 1e-5 and rows[0][:2] == ["path", "e0"])
sys.exit(1 if failed else 0)
PY

one=$(ls "$out/images/noise/deeper/0.png")
line=$("$BUILD_DIR/arcface-verify" "$out/backbone.bin" "$one" "$one" --flip)
echo "verify with itself: $line"
awk '{ exit !($1 == "cosine" && $2 >= 0.999999 && $3 == "same") }' <<<"$line" ||
  { echo "verify: expected cosine 1"; exit 1; }
line=$("$BUILD_DIR/arcface-verify" "$out/backbone.bin" "$one" "$out/images/noise/deeper/1.png" --threshold 1)
echo "verify, threshold 1: $line"
awk '{ exit !($1 == "cosine" && $2 < 1 && $3 == "different") }' <<<"$line" ||
  { echo "verify: expected different"; exit 1; }

# A corrupt image stops embed with its path and leaves no output; --skip-bad counts it.
mkdir "$out/bad"
cp "$one" "$out/bad/good.png"
head -c 300 "$one" > "$out/bad/truncated.png"
if "$BUILD_DIR/arcface-embed" "$out/backbone.bin" "$out/bad" "$out/bad.bin" --batch 1 2> "$out/bad.log"; then
  echo "embed accepted a truncated image"; exit 1
fi
grep -q "bad/truncated.png" "$out/bad.log" || { cat "$out/bad.log"; echo "the error does not name the file"; exit 1; }
if [ -e "$out/bad.bin" ] || [ -e "$out/bad.bin.tmp" ]; then echo "a failed embed left output behind"; exit 1; fi
"$BUILD_DIR/arcface-embed" "$out/backbone.bin" "$out/bad" "$out/bad.bin" --batch 1 --skip-bad 2> "$out/bad.log" |
  tee "$out/skip.txt"
grep -q "1 embeddings .* 1 skipped" "$out/skip.txt" || { cat "$out/bad.log"; echo "--skip-bad did not count"; exit 1; }
echo "integration_onnx: all checks passed"
