#!/usr/bin/env python3
"""mxrecordio.py -- a stdlib-only re-implementation of MXNet's RecordIO
(mxnet.recordio.MXRecordIO / MXIndexedRecordIO / pack / unpack on top of
dmlc-core's recordio framing) and of insightface's face2rec2.py layout, written
from the documented format. tests/test_recordio.c runs it to check that our C
reader and writer agree with it in both directions.

    mxrecordio.py frame LIST.hex OUT.rec      one record per hex line (+ OUT.idx)
    mxrecordio.py readframe LIST.hex IN.rec   check IN.rec / IN.idx hold those records
    mxrecordio.py makeset [--plain] LIST PREFIX
    mxrecordio.py checkset LIST PREFIX

LIST has one image per line, "label<TAB>hex bytes", in key order. makeset
writes PREFIX.rec/.idx as face2rec2.py does (images 1..N, header record 0 after
them, identity records; `property` beside them), alternating the two image
label styles insightface sets contain (flag 0 with a float label, flag 2 with
[label, 1.0]); --plain writes im2rec's layout instead (every key an image,
flag 0, keys N-1..0 in that line order, no property). checkset reads PREFIX the
way insightface's MXFaceDataset does, checks every field against the face2rec2
layout, and compares PREFIX.rec/.idx byte for byte with its own writer's.
Exit status 0 when everything matches, 1 (with a message) otherwise.
"""
import collections
import os
import struct
import sys

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack('<I', MAGIC)
LEN_MASK = (1 << 29) - 1

IRHeader = collections.namedtuple('IRHeader', ['flag', 'label', 'id', 'id2'])
IR_FORMAT = '<IfQQ'
IR_SIZE = struct.calcsize(IR_FORMAT)  # 24


class Mismatch(Exception):
    pass


def expect(cond, *msg):
    if not cond:
        raise Mismatch(' '.join(str(m) for m in msg))


# ---- dmlc framing ----------------------------------------------------------

def write_record(f, buf):
    """dmlc::RecordIOWriter::WriteRecord: split at every 4-aligned magic word."""
    n = len(buf)
    if n >= 1 << 29:
        raise ValueError('record too long')
    start = 0
    pos = buf.find(MAGIC_BYTES)
    while 0 <= pos and pos + 4 <= n:
        if pos % 4 == 0:
            cflag = 1 if start == 0 else 2
            f.write(MAGIC_BYTES + struct.pack('<I', (cflag << 29) | (pos - start)))
            f.write(buf[start:pos])
            start = pos + 4
            pos = buf.find(MAGIC_BYTES, pos + 4)
        else:
            pos = buf.find(MAGIC_BYTES, pos + 1)
    cflag = 3 if start else 0
    f.write(MAGIC_BYTES + struct.pack('<I', (cflag << 29) | (n - start)))
    f.write(buf[start:])
    f.write(b'\0' * (-n % 4))


def read_record(f):
    """dmlc::RecordIOReader::NextRecord, with the part sequence checked.
    Returns None at the end of the file."""
    out = bytearray()
    first = True
    while True:
        head = f.read(8)
        if not head and first:
            return None
        expect(len(head) == 8, 'truncated part header')
        magic, lrec = struct.unpack('<II', head)
        expect(magic == MAGIC, 'bad magic 0x%08x' % magic)
        cflag, n = lrec >> 29, lrec & LEN_MASK
        expect(cflag in ((0, 1) if first else (2, 3)), 'bad cflag %d' % cflag)
        data = f.read((n + 3) & ~3)
        expect(len(data) == (n + 3) & ~3, 'truncated part')
        out += data[:n]
        if cflag in (0, 3):
            return bytes(out)
        out += MAGIC_BYTES
        first = False


class MXRecordIO(object):
    def __init__(self, uri, flag):
        self.uri, self.flag = uri, flag
        self.f = open(uri, 'wb' if flag == 'w' else 'rb')

    def close(self):
        self.f.close()

    def tell(self):
        return self.f.tell()

    def write(self, buf):
        write_record(self.f, buf)

    def read(self):
        return read_record(self.f)


class MXIndexedRecordIO(MXRecordIO):
    def __init__(self, idx_path, uri, flag):
        super(MXIndexedRecordIO, self).__init__(uri, flag)
        self.idx, self.keys = {}, []
        self.fidx = open(idx_path, flag)
        if flag == 'r':
            for line in iter(self.fidx.readline, ''):
                key, off = line.strip().split('\t')
                self.idx[int(key)] = int(off)
                self.keys.append(int(key))

    def close(self):
        super(MXIndexedRecordIO, self).close()
        self.fidx.close()

    def read_idx(self, key):
        self.f.seek(self.idx[key])
        return self.read()

    def write_idx(self, key, buf):
        pos = self.tell()
        self.write(buf)
        self.fidx.write('%s\t%d\n' % (str(key), pos))
        self.idx[key] = pos
        self.keys.append(key)


# ---- mxnet.recordio.pack / unpack --------------------------------------------

def pack(header, s):
    header = IRHeader(*header)
    if isinstance(header.label, (int, float)):
        header = header._replace(flag=0)
    else:
        labels = list(header.label)
        header = header._replace(flag=len(labels), label=0)
        s = struct.pack('<%df' % len(labels), *labels) + s
    return struct.pack(IR_FORMAT, *header) + s


def unpack(s):
    header = IRHeader(*struct.unpack(IR_FORMAT, s[:IR_SIZE]))
    s = s[IR_SIZE:]
    if header.flag > 0:
        expect(len(s) >= 4 * header.flag, 'flag larger than the record')
        header = header._replace(label=list(struct.unpack('<%df' % header.flag, s[:4 * header.flag])))
        s = s[4 * header.flag:]
    return header, s


# ---- helpers -------------------------------------------------------------------

def read_hex_list(path):
    with open(path) as f:
        return [bytes.fromhex(line.strip()) for line in f]


def read_image_list(path):
    items = []
    with open(path) as f:
        for line in f:
            label, hexbytes = line.rstrip('\n').split('\t')
            items.append((int(label), bytes.fromhex(hexbytes)))
    return items


def idx_path_of(rec):
    return rec[:-4] + '.idx' if rec.endswith('.rec') else rec + '.idx'


def property_path(prefix):
    return os.path.join(os.path.dirname(prefix), 'property')


def face2rec2(items, prefix, alternate_styles, write_property=True):
    """Writes items as insightface's face2rec2.py read_list + image_encode do."""
    rec = MXIndexedRecordIO(prefix + '.idx', prefix + '.rec', 'w')
    identities, last, key = [], [-1, -1], 1
    for i, (label, data) in enumerate(items):
        if alternate_styles and i % 2 == 0:
            rec.write_idx(key, pack(IRHeader(0, float(label), key, 0), data))
        else:
            rec.write_idx(key, pack(IRHeader(0, [float(label), 1.0], key, 0), data))
        if label != last[0]:
            if last[1] >= 0:
                identities.append((last[1], key))
            last = [label, key]
        key += 1
    identities.append((last[1], key))
    rec.write_idx(0, pack(IRHeader(2, [float(key), float(key + len(identities))], 0, 0), b''))
    for first, end in identities:
        rec.write_idx(key, pack(IRHeader(2, [float(first), float(end)], key, 0), b''))
        key += 1
    rec.close()
    if write_property:
        with open(property_path(prefix), 'w') as f:
            f.write('%d,112,112\n' % len(identities))


def im2rec(items, prefix):
    rec = MXIndexedRecordIO(prefix + '.idx', prefix + '.rec', 'w')
    for key in reversed(range(len(items))):
        label, data = items[key]
        rec.write_idx(key, pack(IRHeader(0, float(label), key, 0), data))
    rec.close()


# ---- commands ---------------------------------------------------------------------

def cmd_frame(list_path, out_rec):
    rec = MXIndexedRecordIO(idx_path_of(out_rec), out_rec, 'w')
    for key, data in enumerate(read_hex_list(list_path)):
        rec.write_idx(key, data)
    rec.close()


def cmd_readframe(list_path, in_rec):
    want = read_hex_list(list_path)
    seq = MXRecordIO(in_rec, 'r')
    got = []
    while True:
        r = seq.read()
        if r is None:
            break
        got.append(r)
    seq.close()
    expect(len(got) == len(want), 'sequential read: %d records, expected %d' % (len(got), len(want)))
    for i, (g, w) in enumerate(zip(got, want)):
        expect(g == w, 'sequential read: record %d differs' % i)
    rec = MXIndexedRecordIO(idx_path_of(in_rec), in_rec, 'r')
    expect(rec.keys == list(range(len(want))), 'index keys', rec.keys[:10])
    for key in reversed(rec.keys):
        expect(rec.read_idx(key) == want[key], 'read_idx(%d) differs' % key)
    rec.close()


def cmd_makeset(list_path, prefix, plain):
    items = read_image_list(list_path)
    if plain:
        im2rec(items, prefix)
    else:
        face2rec2(items, prefix, alternate_styles=True)


def cmd_checkset(list_path, prefix):
    items = read_image_list(list_path)
    n = len(items)
    rec = MXIndexedRecordIO(prefix + '.idx', prefix + '.rec', 'r')
    # MXFaceDataset.__init__
    header, payload = unpack(rec.read_idx(0))
    expect(header.flag > 0, 'record 0 flag', header.flag)
    imgidx = list(range(1, int(header.label[0])))
    expect(len(imgidx) == n, 'images', len(imgidx), 'expected', n)
    classes = sorted(set(label for label, _ in items))
    c = len(classes)
    expect(header == IRHeader(2, [float(n + 1), float(n + 1 + c)], 0, 0) and payload == b'',
           'record 0', header)
    # MXFaceDataset.__getitem__
    for key in imgidx:
        header, img = unpack(rec.read_idx(key))
        label = header.label if isinstance(header.label, (int, float)) else header.label[0]
        expect(int(label) == items[key - 1][0], 'key %d label %s' % (key, label))
        expect(img == items[key - 1][1], 'key %d image bytes differ' % key)
        expect(header == IRHeader(2, [float(items[key - 1][0]), 1.0], key, 0), 'key', key, header)
    for cls in range(c):
        key = n + 1 + cls
        header, payload = unpack(rec.read_idx(key))
        first = 1 + sum(1 for label, _ in items if label < cls)
        end = first + sum(1 for label, _ in items if label == cls)
        expect(header == IRHeader(2, [float(first), float(end)], key, 0) and payload == b'',
               'identity record', key, header)
    expect(rec.keys == list(range(1, n + 1)) + [0] + list(range(n + 1, n + 1 + c)), 'index key order')
    rec.close()
    with open(property_path(prefix)) as f:
        expect(f.read() == '%d,112,112\n' % c, 'property')
    # Byte for byte what face2rec2.py (through this MXIndexedRecordIO) writes.
    ref = prefix + '_pyref'
    face2rec2(items, ref, alternate_styles=False, write_property=False)
    for ext in ('.rec', '.idx'):
        with open(prefix + ext, 'rb') as a, open(ref + ext, 'rb') as b:
            expect(a.read() == b.read(), '%s%s differs from face2rec2 output %s%s' % (prefix, ext, ref, ext))
        os.unlink(ref + ext)


def main(argv):
    try:
        if len(argv) == 4 and argv[1] == 'frame':
            cmd_frame(argv[2], argv[3])
        elif len(argv) == 4 and argv[1] == 'readframe':
            cmd_readframe(argv[2], argv[3])
        elif len(argv) in (4, 5) and argv[1] == 'makeset':
            plain = len(argv) == 5 and argv[2] == '--plain'
            cmd_makeset(argv[-2], argv[-1], plain)
        elif len(argv) == 4 and argv[1] == 'checkset':
            cmd_checkset(argv[2], argv[3])
        else:
            sys.stderr.write(__doc__)
            return 2
    except Mismatch as e:
        sys.stderr.write('mxrecordio.py %s: mismatch: %s\n' % (argv[1], e))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
