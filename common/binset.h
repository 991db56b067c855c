/* binset.h -- insightface's .bin verification sets (lfw.bin, cfp_fp.bin,
 * agedb_30.bin, ...), read and written without running any Python.
 *
 * A .bin set is a pickle of the 2-tuple (bins, issame_list): bins is a list of
 * 2N encoded images (JPEG or PNG bytes; pair i is images 2i and 2i+1) and
 * issame_list a list of N bools. The reader is not an unpickler: it accepts
 * exactly the opcodes the writers of these files emit and builds nothing but
 * byte strings, bools, lists and tuples:
 *   - Python 2, protocol 2 (the original sets): images as str, SHORT_BINSTRING
 *     or BINSTRING;
 *   - Python 3, protocol 2: each image as GLOBAL '_codecs encode' applied by
 *     REDUCE to (its bytes as latin-1 text in BINUNICODE, 'latin1'); this call
 *     is recognised and done here (UTF-8 back to latin-1, strictly), never
 *     executed;
 *   - Python 3, protocols 3 to 5: SHORT_BINBYTES, BINBYTES, BINBYTES8, with
 *     FRAME, MEMOIZE and SHORT_BINUNICODE from protocol 4;
 * lists built with EMPTY_LIST and APPEND or MARK ... APPENDS, bools as NEWTRUE
 * or NEWFALSE, the tuple as TUPLE2 or MARK ... TUPLE, and any memo opcodes
 * (BINPUT, LONG_BINPUT, MEMOIZE, BINGET, LONG_BINGET). Anything else -- any
 * other GLOBAL, dicts, ints, numpy arrays, a 3-tuple -- is refused with the
 * byte offset and the opcode named. Every length is checked against the bytes
 * left in the file before anything is allocated for it. */
#ifndef ARCFACE_BINSET_H
#define ARCFACE_BINSET_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char name[64];            /* the file's stem: "lfw" for /data/lfw.bin */
    int n_pairs;
    uint8_t *same;            /* (n_pairs) 1 when pair i shows one person */
    const uint8_t **image;    /* (2 * n_pairs) encoded image j, inside blob */
    size_t *image_len;        /* (2 * n_pairs) its length in bytes */
    uint8_t *blob;            /* owns every image's bytes (the file's content) */
    size_t blob_len;
} BinSet;

/* Reads the .bin set at path into *set (whose previous content is ignored:
 * free it first). Returns 0, or -1 with "path: offset N: ..." in err (or a
 * read error); on failure *set is zeroed, so binset_free is harmless either
 * way. Images are not decoded: image[j] holds the bytes as stored. */
int binset_load(BinSet *set, const char *path, char *err, size_t errlen);

/* Frees what binset_load allocated and zeroes *set. Accepts a zeroed set and
 * NULL. */
void binset_free(BinSet *set);

/* Writes n_pairs > 0 pairs (images[2i], images[2i+1], same[i] != 0) as a .bin
 * set that insightface's readers load: pickle protocol 4, images as
 * SHORT_BINBYTES / BINBYTES / BINBYTES8, APPENDS in batches of 1000 as Python
 * writes them. Python 3 reads it with pickle.load(f) with or without
 * encoding='bytes'; Python 2 cannot read protocol 4 (no Python 3 writer can
 * produce bytes that Python 2 reads as str without the _codecs call, and
 * that form doubles the size of every byte >= 0x80). The file is written to
 * path.tmp and renamed over path, so readers never see half a file. Returns 0,
 * or -1 with a reason in err (path.tmp is removed then). */
int binset_write(const char *path, const uint8_t *const *images, const size_t *lens, const uint8_t *same,
                 int n_pairs, char *err, size_t errlen);

#endif
