#!/usr/bin/env python3
"""make_bins.py -- insightface .bin verification sets (a pickle of
(bins, issame_list)) written the ways real ones were, for tests/test_binset.c.
Standard library only; nothing here needs numpy or insightface.

    make_bins.py write DIR NPAIRS   the expected set as DIR/p2.bin, p3.bin, p4.bin,
                                    p5.bin (Python 3 pickle.dump at that protocol),
                                    py2.bin (the bytes Python 2's cPickle writes at
                                    protocol 2, assembled by hand) and hand.bin
                                    (every accepted opcode form mixed in one stream)
    make_bins.py check FILE NPAIRS  pickle.load FILE both plainly and with
                                    encoding='bytes' (as insightface does) and compare
                                    with the expected set; for Python 3 forms (our
                                    writer's), since a plain load refuses py2 strings
    make_bins.py bad DIR            pickles the reader must refuse, as DIR/<case>.bin

The expected set is a formula the C test computes too: image i (of 2 * NPAIRS)
has expected_len(i) bytes, byte j being (131 i + 7 j + j // 32) mod 256, and
pair p is a same-person pair when (7 p + p // 3) is even. Exit status 0 on
success, 1 (with a message) on any mismatch.
"""
import os
import pickle
import struct
import sys


def expected_len(i):
    return 70000 + i if i % 499 == 11 else 1 + (i * 37) % 700


def expected_image(i):
    return bytes((131 * i + 7 * j + (j >> 5)) & 0xFF for j in range(expected_len(i)))


def expected_set(npairs):
    bins = [expected_image(i) for i in range(2 * npairs)]
    issame = [(7 * p + p // 3) % 2 == 0 for p in range(npairs)]
    return bins, issame


class Stream:
    """Hand assembly of pickle opcodes (numbers from Lib/pickletools.py)."""

    def __init__(self, proto):
        self.out = bytearray(b'\x80' + bytes([proto]))
        self.memo = 0

    def op(self, code, arg=b''):
        self.out += bytes([code]) + arg

    def put(self, long_form=False):
        """BINPUT / LONG_BINPUT as cPickle numbers them (long past 255)."""
        if self.memo < 256 and not long_form:
            self.op(0x71, bytes([self.memo]))
        else:
            self.op(0x72, struct.pack('<I', self.memo))
        self.memo += 1

    def memoize(self):
        self.op(0x94)
        self.memo += 1

    def py2_str(self, data):
        if len(data) < 256:
            self.op(0x55, bytes([len(data)]) + data)  # SHORT_BINSTRING
        else:
            self.op(0x54, struct.pack('<i', len(data)) + data)  # BINSTRING

    def batched(self, items, emit):
        """Python's batch_appends: APPEND for a lone item, else MARK .. APPENDS per 1000."""
        for start in range(0, len(items), 1000):
            batch = items[start:start + 1000]
            if len(batch) == 1:
                emit(batch[0])
                self.op(0x61)
            else:
                self.op(0x28)
                for item in batch:
                    emit(item)
                self.op(0x65)


def py2_pickle(bins, issame):
    """What Python 2's cPickle.dump((bins, issame), f, protocol=2) writes."""
    s = Stream(2)
    s.op(0x5D)
    s.put()

    def emit_str(data):
        s.py2_str(data)
        s.put()

    s.batched(bins, emit_str)
    s.op(0x5D)
    s.put()
    s.batched(issame, lambda b: s.op(0x88 if b else 0x89))
    s.op(0x86)
    s.put()
    s.op(0x2E)
    return bytes(s.out)


def hand_pickle(bins, issame):
    """Every form the reader accepts, mixed: FRAME, MEMOIZE, LONG_BINPUT/GET,
    BINBYTES8, py2 strings, _codecs.encode of SHORT_BINUNICODE and BINUNICODE8
    text, single APPENDs, the tuple as MARK ... TUPLE."""
    s = Stream(4)
    s.op(0x95, struct.pack('<Q', 0))  # an empty frame is legal
    s.op(0x28)  # MARK for the tuple
    s.op(0x5D)
    s.memoize()
    encode_at = latin1_at = None
    for i, data in enumerate(bins):
        kind = i % 4
        if i == 0:
            s.op(0x63, b'_codecs\nencode\n')
            s.put(long_form=True)
            encode_at = s.memo - 1
            text = data.decode('latin1').encode('utf-8')
            s.op(0x8D, struct.pack('<Q', len(text)) + text)  # BINUNICODE8
            s.op(0x8C, bytes([6]) + b'latin1')  # SHORT_BINUNICODE
            s.memoize()
            latin1_at = s.memo - 1
            s.op(0x86)  # TUPLE2 (text, 'latin1')
            s.op(0x52)  # REDUCE
            s.memoize()
            s.op(0x61)  # APPEND to the list
        elif kind == 0:
            s.op(0x8E, struct.pack('<Q', len(data)) + data)  # BINBYTES8
            s.op(0x61)
        elif kind == 1:
            s.py2_str(data)
            s.put(long_form=True)
            s.op(0x61)
        elif kind == 2:
            text = data.decode('latin1').encode('utf-8')
            s.op(0x6A, struct.pack('<I', encode_at))  # LONG_BINGET
            if len(text) < 256:
                s.op(0x8C, bytes([len(text)]) + text)
            else:
                s.op(0x58, struct.pack('<I', len(text)) + text)
            s.op(0x68, bytes([latin1_at]))  # BINGET
            s.op(0x86)
            s.op(0x52)
            s.op(0x61)
        else:
            if len(data) < 256:
                s.op(0x43, bytes([len(data)]) + data)
            else:
                s.op(0x42, struct.pack('<I', len(data)) + data)
            s.op(0x61)
    s.op(0x5D)
    s.memoize()
    s.batched(issame, lambda b: s.op(0x88 if b else 0x89))
    s.op(0x74)  # TUPLE
    s.op(0x2E)
    return bytes(s.out)


def fail(msg):
    print('make_bins.py: ' + msg, file=sys.stderr)
    sys.exit(1)


def write(directory, npairs):
    bins, issame = expected_set(npairs)
    for proto in (2, 3, 4, 5):
        with open(os.path.join(directory, 'p%d.bin' % proto), 'wb') as f:
            pickle.dump((bins, issame), f, protocol=proto)
    for name, data in (('py2', py2_pickle(bins, issame)), ('hand', hand_pickle(bins, issame))):
        # What Python 3 makes of the hand-assembled streams must be the set too.
        got = pickle.loads(data, encoding='bytes')
        if got != (bins, issame):
            fail('%s: the hand-assembled stream does not load as the expected set' % name)
        with open(os.path.join(directory, name + '.bin'), 'wb') as f:
            f.write(data)


def check(path, npairs):
    want = expected_set(npairs)
    for kwargs in ({}, {'encoding': 'bytes'}):
        with open(path, 'rb') as f:
            got = pickle.load(f, **kwargs)
        if not isinstance(got, tuple) or len(got) != 2:
            fail('%s: not a 2-tuple' % path)
        bins, issame = got
        if not isinstance(bins, list) or not all(isinstance(b, bytes) for b in bins):
            fail('%s: bins is not a list of bytes' % path)
        if not isinstance(issame, list) or not all(isinstance(b, bool) for b in issame):
            fail('%s: issame_list is not a list of bool' % path)
        if len(bins) != len(want[0]) or len(issame) != len(want[1]):
            fail('%s: %d images and %d flags, expected %d and %d' %
                 (path, len(bins), len(issame), len(want[0]), len(want[1])))
        for i, (a, b) in enumerate(zip(bins, want[0])):
            if a != b:
                fail('%s: image %d differs (%d bytes, expected %d)' % (path, i, len(a), len(b)))
        for p, (a, b) in enumerate(zip(issame, want[1])):
            if a != b:
                fail('%s: flag %d is %s, expected %s' % (path, p, a, b))


class System:
    """Pickles as a call of os.system, the classic malicious pickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ('touch ' + self.marker,))


def bad(directory):
    two = [b'\xff\xd8a', b'\xff\xd8b']
    cases = {
        'dict': pickle.dumps({'bins': two, 'issame': [True]}, protocol=2),
        'tuple3': pickle.dumps((two, [True], b'extra'), protocol=4),
        'ints': pickle.dumps((two, [1]), protocol=3),
        'strs': pickle.dumps((['a', 'b'], [True]), protocol=4),
        'odd': pickle.dumps((two + [b'c'], [True]), protocol=4),
        'mismatch': pickle.dumps((two + two, [True]), protocol=2),
        'system': pickle.dumps(([System(os.path.join(directory, 'pwned'))] + two, [True]), protocol=2),
        'bytearray': pickle.dumps(([bytearray(b'x'), bytearray(b'y')], [True]), protocol=5),
    }
    # issame as a numpy bool array, as numpy pickles it (numpy itself is not needed).
    s = Stream(2)
    s.op(0x28)
    s.op(0x5D)
    s.put()
    s.op(0x28)
    for data in two:
        s.py2_str(data)
    s.op(0x65)
    s.op(0x63, b'numpy.core.multiarray\n_reconstruct\n')
    cases['numpy'] = bytes(s.out)
    for name, data in cases.items():
        with open(os.path.join(directory, name + '.bin'), 'wb') as f:
            f.write(data)


def main(argv):
    if len(argv) == 4 and argv[1] == 'write':
        write(argv[2], int(argv[3]))
    elif len(argv) == 4 and argv[1] == 'check':
        check(argv[2], int(argv[3]))
    elif len(argv) == 3 and argv[1] == 'bad':
        bad(argv[2])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
