#!/usr/bin/env python3
"""make_png.py -- writes PNG test images with known pixels for tests/test_decode.c.

Usage: make_png.py OUTDIR

Writes, with only the standard library (zlib, struct), one PNG per case:
every colour type and bit depth (grey 1/2/4/8/16, RGB 8/16, palette 1/2/4/8,
grey+alpha 8/16, RGBA 8/16), plain and Adam7-interlaced, all five filter types
(scanline r of each pass uses filter r % 5, plus one image per single filter),
deflate streams stored (level 0), fixed-Huffman (Z_FIXED), default and
level 9, IDAT split into many chunks, ancillary chunks (tRNS, gAMA, tEXt).
For each NAME.png it writes NAME.rgb, the expected 8-bit RGB pixels as
decode.h defines them (16-bit samples keep the high byte, 1/2/4-bit grey is
scaled by 255/(2^depth - 1), alpha is ignored), and a line "NAME WIDTH HEIGHT"
in OUTDIR/manifest.txt. Prints the number of cases.
"""
import os
import random
import struct
import sys
import zlib

CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def pack_row(samples, depth):
    """Samples (ints) of one scanline to bytes: MSB-first below 8 bits, big-endian at 16."""
    if depth == 8:
        return bytes(samples)
    if depth == 16:
        return b"".join(struct.pack(">H", s) for s in samples)
    out, acc, nbits = bytearray(), 0, 0
    for s in samples:
        acc = (acc << depth) | s
        nbits += depth
        if nbits == 8:
            out.append(acc)
            acc, nbits = 0, 0
    if nbits:
        out.append(acc << (8 - nbits))
    return bytes(out)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def filter_row(kind, row, prev, bpp):
    out = bytearray([kind])
    for i, x in enumerate(row):
        a = row[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        pred = [0, a, b, (a + b) // 2, paeth(a, b, c)][kind]
        out.append((x - pred) & 255)
    return bytes(out)


def scanlines(pixels, width, height, colour, depth, interlace, filters):
    """pixels[y][x] is a tuple of samples; returns the filtered scanline bytes."""
    ch = CHANNELS[colour]
    bpp = max(1, ch * depth // 8)
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    out = bytearray()
    for x0, y0, dx, dy in passes:
        xs, ys = list(range(x0, width, dx)), list(range(y0, height, dy))
        if not xs or not ys:
            continue
        prev = None
        for r, y in enumerate(ys):
            row = pack_row([s for x in xs for s in pixels[y][x]], depth)
            if prev is None:
                prev = bytes(len(row))
            out += filter_row(filters(r), row, prev, bpp)
            prev = row
    return bytes(out)


def expected_rgb(pixels, colour, depth, palette):
    out = bytearray()
    for row in pixels:
        for px in row:
            if colour == 3:
                out += bytes(palette[px[0]])
                continue
            s = [v >> 8 if depth == 16 else v * 255 // ((1 << depth) - 1) for v in px]
            out += bytes([s[0]] * 3) if colour in (0, 4) else bytes(s[:3])
    return bytes(out)


def random_pixels(rng, width, height, colour, depth, n_palette):
    ch = CHANNELS[colour]
    top = n_palette - 1 if colour == 3 else (1 << depth) - 1
    # smooth gradients plus noise, so that every filter type has work to do
    pixels = []
    for y in range(height):
        row = []
        for x in range(width):
            px = []
            for c in range(ch):
                base = (x * 37 + y * 11 + c * 53) % (top + 1)
                px.append(min(top, max(0, base + rng.randint(-top // 8, top // 8))) if rng.random() < 0.7
                          else rng.randint(0, top))
            row.append(tuple(px))
        pixels.append(row)
    return pixels


def write_case(outdir, manifest, name, width, height, colour, depth, interlace=0, filters=lambda r: r % 5,
               compress=lambda d: zlib.compress(d, 6), idat_split=0, extra_chunks=(), pixels=None, seed=0):
    rng = random.Random(zlib.crc32(name.encode()) + seed)
    palette = None
    n_palette = 0
    if colour == 3:
        n_palette = min(1 << depth, 200)
        palette = [(rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255)) for _ in range(n_palette)]
    if pixels is None:
        pixels = random_pixels(rng, width, height, colour, depth, n_palette)
    data = scanlines(pixels, width, height, colour, depth, interlace, filters)
    z = compress(data)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace))
    png += chunk(b"gAMA", struct.pack(">I", 45455))
    if palette:
        png += chunk(b"PLTE", b"".join(bytes(p) for p in palette))
        png += chunk(b"tRNS", bytes([255, 0, 128][: n_palette]))
    for kind, body in extra_chunks:
        png += chunk(kind, body)
    if idat_split:
        for i in range(0, len(z), idat_split):
            png += chunk(b"IDAT", z[i:i + idat_split])
    else:
        png += chunk(b"IDAT", z)
    png += chunk(b"tEXt", b"Comment\x00test image") + chunk(b"IEND", b"")
    with open(os.path.join(outdir, name + ".png"), "wb") as f:
        f.write(png)
    with open(os.path.join(outdir, name + ".rgb"), "wb") as f:
        f.write(expected_rgb(pixels, colour, depth, palette))
    manifest.append("%s %d %d" % (name, width, height))


def fixed_huffman(data):
    c = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_FIXED)
    return c.compress(data) + c.flush()


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_png.py OUTDIR")
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    manifest = []
    combos = [(0, 1), (0, 2), (0, 4), (0, 8), (0, 16), (2, 8), (2, 16), (3, 1), (3, 2), (3, 4), (3, 8),
              (4, 8), (4, 16), (6, 8), (6, 16)]
    for colour, depth in combos:
        for interlace in (0, 1):
            for w, h in ((13, 11), (1, 1), (3, 9), (33, 5)):
                name = "c%d_d%d_i%d_%dx%d" % (colour, depth, interlace, w, h)
                write_case(outdir, manifest, name, w, h, colour, depth, interlace)
    for kind in range(5):  # one image per filter type, for each kind of bpp
        for colour, depth in ((0, 8), (2, 8), (6, 16), (0, 1)):
            write_case(outdir, manifest, "filter%d_c%d_d%d" % (kind, colour, depth), 17, 9, colour, depth,
                       filters=lambda r, k=kind: k)
    write_case(outdir, manifest, "stored_rgb", 40, 30, 2, 8, compress=lambda d: zlib.compress(d, 0))
    write_case(outdir, manifest, "stored_big_rgb", 200, 150, 2, 8, compress=lambda d: zlib.compress(d, 0))
    write_case(outdir, manifest, "fixed_rgb", 40, 30, 2, 8, compress=fixed_huffman)
    write_case(outdir, manifest, "fixed_grey16_adam7", 29, 23, 0, 16, interlace=1, compress=fixed_huffman)
    write_case(outdir, manifest, "level9_rgb", 300, 220, 2, 8, compress=lambda d: zlib.compress(d, 9))
    write_case(outdir, manifest, "split_idat", 50, 40, 6, 8, idat_split=7)
    write_case(outdir, manifest, "face112_rgb", 112, 112, 2, 8)
    # skewed byte values: rare symbols get 11..15-bit codes (the decoder's slow path)
    rng = random.Random(7)
    sparse = [[(min(255, int(rng.expovariate(0.7))),) for _ in range(256)] for _ in range(160)]
    write_case(outdir, manifest, "skewed_grey", 256, 160, 0, 8, filters=lambda r: 0, pixels=sparse,
               compress=lambda d: zlib.compress(d, 9))
    with open(os.path.join(outdir, "manifest.txt"), "w") as f:
        f.write("\n".join(manifest) + "\n")
    print(len(manifest))


if __name__ == "__main__":
    main()
