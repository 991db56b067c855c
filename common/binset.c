/* binset.c -- a strict, non-executing reader of insightface's pickled .bin
 * verification sets, and their writer. Opcode numbers and argument encodings
 * are those documented in CPython's Lib/pickletools.py. */
#include "binset.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"

#define STRUCTURE "a .bin set is a pickled (list of bytes, list of bool)"
#define APPENDS_BATCH 1000 /* what Python's pickler puts in one APPENDS */

typedef unsigned long long ull;

enum {
    OP_MARK = 0x28, OP_STOP = 0x2e, OP_BINBYTES = 0x42, OP_SHORT_BINBYTES = 0x43, OP_REDUCE = 0x52,
    OP_BINSTRING = 0x54, OP_SHORT_BINSTRING = 0x55, OP_BINUNICODE = 0x58, OP_EMPTY_LIST = 0x5d,
    OP_APPEND = 0x61, OP_GLOBAL = 0x63, OP_APPENDS = 0x65, OP_BINGET = 0x68, OP_LONG_BINGET = 0x6a,
    OP_BINPUT = 0x71, OP_LONG_BINPUT = 0x72, OP_TUPLE = 0x74, OP_PROTO = 0x80, OP_TUPLE2 = 0x86,
    OP_NEWTRUE = 0x88, OP_NEWFALSE = 0x89, OP_SHORT_BINUNICODE = 0x8c, OP_BINUNICODE8 = 0x8d,
    OP_BINBYTES8 = 0x8e, OP_MEMOIZE = 0x94, OP_FRAME = 0x95,
};

/* Every opcode pickletools knows, so that refusals can name it. */
static const char *op_name(unsigned op) {
    switch (op) {
    case 0x28: return "MARK";
    case 0x29: return "EMPTY_TUPLE";
    case 0x2e: return "STOP";
    case 0x30: return "POP";
    case 0x31: return "POP_MARK";
    case 0x32: return "DUP";
    case 0x42: return "BINBYTES";
    case 0x43: return "SHORT_BINBYTES";
    case 0x46: return "FLOAT";
    case 0x47: return "BINFLOAT";
    case 0x49: return "INT";
    case 0x4a: return "BININT";
    case 0x4b: return "BININT1";
    case 0x4c: return "LONG";
    case 0x4d: return "BININT2";
    case 0x4e: return "NONE";
    case 0x50: return "PERSID";
    case 0x51: return "BINPERSID";
    case 0x52: return "REDUCE";
    case 0x53: return "STRING";
    case 0x54: return "BINSTRING";
    case 0x55: return "SHORT_BINSTRING";
    case 0x56: return "UNICODE";
    case 0x58: return "BINUNICODE";
    case 0x5d: return "EMPTY_LIST";
    case 0x61: return "APPEND";
    case 0x62: return "BUILD";
    case 0x63: return "GLOBAL";
    case 0x64: return "DICT";
    case 0x65: return "APPENDS";
    case 0x67: return "GET";
    case 0x68: return "BINGET";
    case 0x69: return "INST";
    case 0x6a: return "LONG_BINGET";
    case 0x6c: return "LIST";
    case 0x6f: return "OBJ";
    case 0x70: return "PUT";
    case 0x71: return "BINPUT";
    case 0x72: return "LONG_BINPUT";
    case 0x73: return "SETITEM";
    case 0x74: return "TUPLE";
    case 0x75: return "SETITEMS";
    case 0x7d: return "EMPTY_DICT";
    case 0x80: return "PROTO";
    case 0x81: return "NEWOBJ";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 0x85: return "TUPLE1";
    case 0x86: return "TUPLE2";
    case 0x87: return "TUPLE3";
    case 0x88: return "NEWTRUE";
    case 0x89: return "NEWFALSE";
    case 0x8a: return "LONG1";
    case 0x8b: return "LONG4";
    case 0x8c: return "SHORT_BINUNICODE";
    case 0x8d: return "BINUNICODE8";
    case 0x8e: return "BINBYTES8";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case 0x92: return "NEWOBJ_EX";
    case 0x93: return "STACK_GLOBAL";
    case 0x94: return "MEMOIZE";
    case 0x95: return "FRAME";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    }
    return NULL;
}

/* ---- the restricted pickle machine ---------------------------------------- */

/* K_EMPTY marks an unused memo slot. K_ENCODE is the function _codecs.encode,
 * which only REDUCE may consume. */
typedef enum { K_EMPTY, K_BOOL, K_BYTES, K_TEXT, K_LIST, K_TUPLE, K_ENCODE } Kind;

static const char *kind_name(Kind k) {
    switch (k) {
    case K_EMPTY: return "nothing";
    case K_BOOL: return "bool";
    case K_BYTES: return "bytes";
    case K_TEXT: return "str";
    case K_LIST: return "list";
    case K_TUPLE: return "tuple";
    case K_ENCODE: return "_codecs.encode";
    }
    return "?";
}

/* A stack, memo or container entry: a bool by value, anything else by its
 * index in objs (so that memo references share one object, as in Python). */
typedef struct {
    Kind kind;
    size_t ref;
} Value;

/* K_BYTES, K_TEXT: bytes [off, off + len) of the file buffer. A K_TEXT whose
 * latin-1 form was made (in place) has decoded = 1 and ref = that bytes object.
 * K_TUPLE: ref indexes pairs (every accepted tuple has two items). K_LIST: ref
 * indexes lists. */
typedef struct {
    Kind kind;
    int decoded;
    size_t off, len, ref;
} Obj;

typedef struct {
    Value *items;
    size_t n, cap;
    Kind elem; /* K_BYTES or K_BOOL once the first item is in */
} List;

typedef struct {
    const char *path;
    uint8_t *data;
    size_t size, pos;
    size_t op_at;     /* offset of the opcode being run */
    unsigned op;
    char global[160]; /* "module name" of the GLOBAL being run, for messages */
    Obj *objs;
    size_t n_objs, cap_objs;
    Value *stack;
    size_t n_stack, cap_stack;
    size_t *marks; /* stack heights at each open MARK */
    size_t n_marks, cap_marks;
    Value *memo;
    size_t cap_memo, memo_count;
    Value (*pairs)[2];
    size_t n_pairs, cap_pairs;
    List lists[2]; /* a valid set has exactly two lists */
    int n_lists;
    char *err;
    size_t errlen;
} Parser;

/* "opcode 0x63 (GLOBAL 'os system')" for the opcode being run. */
static void op_desc(const Parser *ps, char *out, size_t len) {
    const char *name = op_name(ps->op);
    if (!name)
        snprintf(out, len, "unknown opcode 0x%02x", ps->op);
    else if (ps->op == OP_GLOBAL && ps->global[0])
        snprintf(out, len, "opcode 0x%02x (GLOBAL '%s')", ps->op, ps->global);
    else
        snprintf(out, len, "opcode 0x%02x (%s)", ps->op, name);
}

/* "path: offset N: opcode 0xXX (NAME): message". Returns -1. */
static int bad(Parser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(Parser *ps, const char *fmt, ...) {
    if (!ps->err || !ps->errlen) return -1;
    char what[256], msg[512];
    op_desc(ps, what, sizeof what);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(ps->err, ps->errlen, "%s: offset %zu: %s: %s", ps->path, ps->op_at, what, msg);
    return -1;
}

static int not_allowed(Parser *ps) {
    char what[256];
    op_desc(ps, what, sizeof what);
    return err_set(ps->err, ps->errlen, "%s: offset %zu: %s not allowed: " STRUCTURE, ps->path, ps->op_at, what);
}

/* Makes room for need elements of size elem in *p (capacity *cap). */
static int grow(Parser *ps, void *p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 16;
    while (n < need) {
        if (n > SIZE_MAX / 2 / elem) return bad(ps, "out of memory");
        n *= 2;
    }
    void *q = realloc(*(void **)p, n * elem);
    if (!q) return bad(ps, "out of memory (%zu bytes)", n * elem);
    memset((char *)q + *cap * elem, 0, (n - *cap) * elem);
    *(void **)p = q;
    *cap = n;
    return 0;
}

/* Points *out at the next n argument bytes, or fails on a truncated file. */
static int take(Parser *ps, size_t n, const uint8_t **out) {
    if (ps->size - ps->pos < n)
        return bad(ps, "cut short: needs %zu bytes of argument, the file ends %zu bytes later "
                   "(truncated file?)", n, ps->size - ps->pos);
    *out = ps->data + ps->pos;
    ps->pos += n;
    return 0;
}

/* Reads an unsigned little-endian integer of width bytes. */
static int take_uint(Parser *ps, size_t width, uint64_t *v) {
    const uint8_t *p = NULL;
    if (take(ps, width, &p) != 0) return -1;
    *v = 0;
    for (size_t i = 0; i < width; i++) *v |= (uint64_t)p[i] << (8 * i);
    return 0;
}

/* A length-prefixed string argument: its range in the file. */
static int take_counted(Parser *ps, size_t width, int is_signed, size_t *off, size_t *len) {
    uint64_t n;
    if (take_uint(ps, width, &n) != 0) return -1;
    if (is_signed && (n & 0x80000000u)) return bad(ps, "negative length %d", (int)(int32_t)(uint32_t)n);
    if (n > ps->size - ps->pos)
        return bad(ps, "length %llu runs past the end of the file (%zu bytes left; truncated file?)", (ull)n,
                   ps->size - ps->pos);
    *off = ps->pos;
    *len = (size_t)n;
    ps->pos += (size_t)n;
    return 0;
}

static int new_obj(Parser *ps, Kind kind, size_t off, size_t len, size_t ref, Value *v) {
    if (grow(ps, &ps->objs, &ps->cap_objs, ps->n_objs + 1, sizeof *ps->objs) != 0) return -1;
    ps->objs[ps->n_objs] = (Obj){.kind = kind, .off = off, .len = len, .ref = ref};
    *v = (Value){kind, ps->n_objs++};
    return 0;
}

static int push(Parser *ps, Value v) {
    if (grow(ps, &ps->stack, &ps->cap_stack, ps->n_stack + 1, sizeof *ps->stack) != 0) return -1;
    ps->stack[ps->n_stack++] = v;
    return 0;
}

/* Entries above the topmost MARK. */
static size_t above_mark(const Parser *ps) {
    return ps->n_stack - (ps->n_marks ? ps->marks[ps->n_marks - 1] : 0);
}

static int need(Parser *ps, size_t n) {
    size_t have = above_mark(ps);
    if (have < n)
        return bad(ps, "needs %zu object%s on the stack%s, there %s %zu: " STRUCTURE, n, n == 1 ? "" : "s",
                   ps->n_marks ? " above the MARK" : "", have == 1 ? "is" : "are", have);
    return 0;
}

/* Closes the topmost MARK: *first is the stack index of its first item. */
static int pop_mark(Parser *ps, size_t *first) {
    if (!ps->n_marks) return bad(ps, "no MARK to close: " STRUCTURE);
    *first = ps->marks[--ps->n_marks];
    return 0;
}

static int list_add(Parser *ps, List *l, Value item) {
    if (item.kind != K_BYTES && item.kind != K_BOOL)
        return bad(ps, "a list item is a %s: " STRUCTURE, kind_name(item.kind));
    if (l->n && item.kind != l->elem)
        return bad(ps, "a list mixes %s and %s: " STRUCTURE, kind_name(l->elem), kind_name(item.kind));
    if (grow(ps, &l->items, &l->cap, l->n + 1, sizeof *l->items) != 0) return -1;
    l->elem = item.kind;
    l->items[l->n++] = item;
    return 0;
}

/* The list that the stack entry at index i must be. */
static int list_at(Parser *ps, size_t i, List **l) {
    Value v = ps->stack[i];
    if (v.kind != K_LIST) return bad(ps, "appends to a %s, not a list: " STRUCTURE, kind_name(v.kind));
    *l = &ps->lists[ps->objs[v.ref].ref];
    return 0;
}

static int make_tuple(Parser *ps, Value a, Value b) {
    if (grow(ps, &ps->pairs, &ps->cap_pairs, ps->n_pairs + 1, sizeof *ps->pairs) != 0) return -1;
    ps->pairs[ps->n_pairs][0] = a;
    ps->pairs[ps->n_pairs][1] = b;
    Value t;
    if (new_obj(ps, K_TUPLE, 0, 0, ps->n_pairs++, &t) != 0) return -1;
    return push(ps, t);
}

static int memo_put(Parser *ps, uint64_t idx) {
    if (need(ps, 1) != 0) return -1;
    /* Writers number memo entries from 0 as objects are made, and every object
     * takes at least one byte: a larger index cannot come from a real pickler
     * and would only make us allocate. */
    if (idx >= ps->size) return bad(ps, "memo index %llu is impossible in a file of %zu bytes", (ull)idx, ps->size);
    if (grow(ps, &ps->memo, &ps->cap_memo, (size_t)idx + 1, sizeof *ps->memo) != 0) return -1;
    if (ps->memo[idx].kind == K_EMPTY) ps->memo_count++;
    ps->memo[idx] = ps->stack[ps->n_stack - 1];
    return 0;
}

static int memo_get(Parser *ps, uint64_t idx) {
    if (idx >= ps->cap_memo || ps->memo[idx].kind == K_EMPTY)
        return bad(ps, "memo index %llu was never stored (bad memo index)", (ull)idx);
    return push(ps, ps->memo[idx]);
}

/* GLOBAL "module\nname\n": only _codecs.encode, for bytes pickled by Python 3
 * at protocol 2. */
static int op_global(Parser *ps) {
    const uint8_t *start = ps->data + ps->pos;
    size_t left = ps->size - ps->pos;
    const uint8_t *nl1 = memchr(start, '\n', left);
    const uint8_t *nl2 = nl1 ? memchr(nl1 + 1, '\n', left - (size_t)(nl1 + 1 - start)) : NULL;
    /* Printable copy of "module name" for messages. */
    size_t n = 0, end = nl2 ? (size_t)(nl2 - start) : left;
    for (size_t i = 0; i < end && n + 4 < sizeof ps->global; i++) {
        uint8_t c = start[i];
        ps->global[n++] = c == '\n' ? ' ' : (c >= 0x20 && c < 0x7f && c != '\'') ? (char)c : '?';
    }
    if (n + 4 >= sizeof ps->global) memcpy(ps->global + n, "...", 3), n += 3;
    ps->global[n] = '\0';
    if (!nl2) return bad(ps, "cut short: the module and name lines do not end (truncated file?)");
    ps->pos += (size_t)(nl2 + 1 - start);
    static const char want[] = "_codecs\nencode\n";
    if ((size_t)(nl2 + 1 - start) != sizeof want - 1 || memcmp(start, want, sizeof want - 1) != 0)
        return not_allowed(ps);
    Value v;
    if (new_obj(ps, K_ENCODE, 0, 0, 0, &v) != 0) return -1;
    return push(ps, v);
}

/* Rewrites UTF-8 text [off, off + len) in place as the latin-1 bytes it
 * encodes (each byte one code point below 256): *out_len gets their number.
 * The output never overtakes the input, so in place is safe. */
static int latin1_in_place(Parser *ps, size_t off, size_t len, size_t *out_len) {
    uint8_t *p = ps->data + off;
    size_t r = 0, w = 0;
    while (r < len) {
        uint8_t c = p[r];
        if (c < 0x80) {
            p[w++] = c;
            r++;
        } else if ((c == 0xc2 || c == 0xc3) && r + 1 < len && (p[r + 1] & 0xc0) == 0x80) {
            p[w++] = (uint8_t)(((c & 0x03) << 6) | (p[r + 1] & 0x3f));
            r += 2;
        } else {
            return bad(ps, "the text at offset %zu is not latin-1 encoded as UTF-8 (byte 0x%02x at offset %zu)", off,
                       c, off + r);
        }
    }
    *out_len = w;
    return 0;
}

/* REDUCE: only _codecs.encode(text, 'latin1'), which is how Python 3 pickles
 * bytes at protocol 2. Produces the bytes without calling anything. */
static int op_reduce(Parser *ps) {
    if (need(ps, 2) != 0) return -1;
    Value args = ps->stack[--ps->n_stack], fn = ps->stack[--ps->n_stack];
    if (fn.kind != K_ENCODE) return bad(ps, "calls a %s: " STRUCTURE, kind_name(fn.kind));
    if (args.kind != K_TUPLE) return bad(ps, "_codecs.encode applied to a %s, not (str, 'latin1')", kind_name(args.kind));
    Value text = ps->pairs[ps->objs[args.ref].ref][0], enc = ps->pairs[ps->objs[args.ref].ref][1];
    if (text.kind != K_TEXT || enc.kind != K_TEXT)
        return bad(ps, "_codecs.encode applied to (%s, %s), not (str, 'latin1')", kind_name(text.kind),
                   kind_name(enc.kind));
    const Obj *e = &ps->objs[enc.ref];
    if (e->decoded || !((e->len == 6 && memcmp(ps->data + e->off, "latin1", 6) == 0) ||
                        (e->len == 7 && memcmp(ps->data + e->off, "latin-1", 7) == 0)))
        return bad(ps, "_codecs.encode with an encoding other than 'latin1'");
    Obj *t = &ps->objs[text.ref];
    if (!t->decoded) {
        size_t len = 0;
        if (latin1_in_place(ps, t->off, t->len, &len) != 0) return -1;
        Value b;
        size_t off = t->off;
        if (new_obj(ps, K_BYTES, off, len, 0, &b) != 0) return -1; /* may move objs */
        t = &ps->objs[text.ref];
        t->decoded = 1;
        t->ref = b.ref;
    }
    return push(ps, (Value){K_BYTES, t->ref});
}

/* Runs one opcode at ps->pos. Returns 1 after STOP, 0 to go on, -1 on error. */
static int step(Parser *ps) {
    ps->op_at = ps->pos;
    ps->op = ps->data[ps->pos++];
    ps->global[0] = '\0';
    uint64_t u;
    size_t off = 0, len = 0, first = 0;
    Value v;
    if (ps->op_at == 0 && ps->op != OP_PROTO) {
        char what[256];
        op_desc(ps, what, sizeof what);
        return err_set(ps->err, ps->errlen, "%s: offset 0: %s: not a pickle of protocol 2 or later (they start with "
                    "PROTO 0x80): " STRUCTURE, ps->path, what);
    }
    switch (ps->op) {
    case OP_PROTO:
        if (ps->op_at != 0) return not_allowed(ps);
        if (take_uint(ps, 1, &u) != 0) return -1;
        if (u < 2 || u > 5) return bad(ps, "pickle protocol %llu: .bin sets use protocols 2 to 5", (ull)u);
        return 0;
    case OP_FRAME: /* framing only groups opcodes for buffered reading */
        if (take_uint(ps, 8, &u) != 0) return -1;
        if (u > ps->size - ps->pos)
            return bad(ps, "frame of %llu bytes runs past the end of the file (%zu bytes left; truncated file?)",
                       (ull)u, ps->size - ps->pos);
        return 0;
    case OP_STOP: return 1;
    case OP_MARK:
        if (grow(ps, &ps->marks, &ps->cap_marks, ps->n_marks + 1, sizeof *ps->marks) != 0) return -1;
        ps->marks[ps->n_marks++] = ps->n_stack;
        return 0;
    case OP_SHORT_BINSTRING:
    case OP_SHORT_BINBYTES:
    case OP_BINSTRING:
    case OP_BINBYTES:
    case OP_BINBYTES8:
    case OP_SHORT_BINUNICODE:
    case OP_BINUNICODE:
    case OP_BINUNICODE8: {
        int width = ps->op == OP_SHORT_BINSTRING || ps->op == OP_SHORT_BINBYTES || ps->op == OP_SHORT_BINUNICODE ? 1
                    : ps->op == OP_BINBYTES8 || ps->op == OP_BINUNICODE8                                         ? 8
                                                                                                                 : 4;
        if (take_counted(ps, (size_t)width, ps->op == OP_BINSTRING, &off, &len) != 0) return -1;
        Kind k = ps->op == OP_SHORT_BINUNICODE || ps->op == OP_BINUNICODE || ps->op == OP_BINUNICODE8 ? K_TEXT
                                                                                                      : K_BYTES;
        if (new_obj(ps, k, off, len, 0, &v) != 0) return -1;
        return push(ps, v);
    }
    case OP_NEWTRUE:
    case OP_NEWFALSE: return push(ps, (Value){K_BOOL, ps->op == OP_NEWTRUE});
    case OP_EMPTY_LIST:
        if (ps->n_lists == 2) return bad(ps, "a third list: " STRUCTURE);
        if (new_obj(ps, K_LIST, 0, 0, (size_t)ps->n_lists++, &v) != 0) return -1;
        return push(ps, v);
    case OP_APPEND: {
        if (need(ps, 2) != 0) return -1;
        List *l = NULL;
        if (list_at(ps, ps->n_stack - 2, &l) != 0) return -1;
        v = ps->stack[--ps->n_stack];
        return list_add(ps, l, v);
    }
    case OP_APPENDS: {
        if (pop_mark(ps, &first) != 0) return -1;
        if (above_mark(ps) < ps->n_stack - first + 1) return bad(ps, "no list below the MARK: " STRUCTURE);
        List *l = NULL;
        if (list_at(ps, first - 1, &l) != 0) return -1;
        for (size_t i = first; i < ps->n_stack; i++)
            if (list_add(ps, l, ps->stack[i]) != 0) return -1;
        ps->n_stack = first;
        return 0;
    }
    case OP_TUPLE:
        if (pop_mark(ps, &first) != 0) return -1;
        if (ps->n_stack - first != 2)
            return bad(ps, "makes a %zu-tuple, not a 2-tuple: " STRUCTURE, ps->n_stack - first);
        ps->n_stack -= 2;
        return make_tuple(ps, ps->stack[first], ps->stack[first + 1]);
    case OP_TUPLE2:
        if (need(ps, 2) != 0) return -1;
        ps->n_stack -= 2;
        return make_tuple(ps, ps->stack[ps->n_stack], ps->stack[ps->n_stack + 1]);
    case OP_GLOBAL: return op_global(ps);
    case OP_REDUCE: return op_reduce(ps);
    case OP_BINPUT:
    case OP_LONG_BINPUT:
        if (take_uint(ps, ps->op == OP_BINPUT ? 1 : 4, &u) != 0) return -1;
        return memo_put(ps, u);
    case OP_MEMOIZE: return memo_put(ps, ps->memo_count);
    case OP_BINGET:
    case OP_LONG_BINGET:
        if (take_uint(ps, ps->op == OP_BINGET ? 1 : 4, &u) != 0) return -1;
        return memo_get(ps, u);
    }
    if (!op_name(ps->op))
        return err_set(ps->err, ps->errlen, "%s: offset %zu: unknown opcode 0x%02x (not a pickle opcode; corrupt file?)",
                    ps->path, ps->op_at, ps->op);
    return not_allowed(ps);
}

/* After STOP: the stack must hold exactly (list of bytes, list of bool). */
static int finish(Parser *ps, BinSet *set) {
    if (ps->n_marks) return bad(ps, "%zu MARK%s left open: " STRUCTURE, ps->n_marks, ps->n_marks == 1 ? "" : "s");
    if (ps->n_stack != 1) return bad(ps, "%zu objects on the stack, not 1: " STRUCTURE, ps->n_stack);
    Value top = ps->stack[0];
    if (top.kind != K_TUPLE) return bad(ps, "the pickled object is a %s: " STRUCTURE, kind_name(top.kind));
    const Value *item = ps->pairs[ps->objs[top.ref].ref];
    if (item[0].kind != K_LIST || item[1].kind != K_LIST)
        return bad(ps, "the pickled object is a (%s, %s): " STRUCTURE, kind_name(item[0].kind), kind_name(item[1].kind));
    const List *bins = &ps->lists[ps->objs[item[0].ref].ref], *flags = &ps->lists[ps->objs[item[1].ref].ref];
    if ((bins->n && bins->elem != K_BYTES) || (flags->n && flags->elem != K_BOOL))
        return bad(ps, "the pickled object is a (list of %s, list of %s): " STRUCTURE,
                   bins->n ? kind_name(bins->elem) : "nothing", flags->n ? kind_name(flags->elem) : "nothing");
    if (ps->pos != ps->size) return bad(ps, "%zu bytes follow STOP (not a single pickle)", ps->size - ps->pos);
    if (bins->n == 0) return bad(ps, "no images: the set is empty");
    if (bins->n % 2) return bad(ps, "odd number of images (%zu): every pair needs two", bins->n);
    if (bins->n / 2 != flags->n)
        return bad(ps, "%zu images make %zu pairs but issame_list has %zu flags", bins->n, bins->n / 2, flags->n);
    if (flags->n > INT_MAX) return bad(ps, "%zu pairs is more than we can index", flags->n);

    set->n_pairs = (int)flags->n;
    set->same = malloc(flags->n);
    set->image = malloc(bins->n * sizeof *set->image);
    set->image_len = malloc(bins->n * sizeof *set->image_len);
    if (!set->same || !set->image || !set->image_len) return bad(ps, "out of memory for %zu pairs", flags->n);
    for (size_t i = 0; i < flags->n; i++) set->same[i] = (uint8_t)flags->items[i].ref;
    for (size_t i = 0; i < bins->n; i++) {
        const Obj *o = &ps->objs[bins->items[i].ref];
        set->image[i] = ps->data + o->off;
        set->image_len[i] = o->len;
    }
    return 0;
}

static void parser_free(Parser *ps) {
    free(ps->objs);
    free(ps->stack);
    free(ps->marks);
    free(ps->memo);
    free(ps->pairs);
    for (int i = 0; i < 2; i++) free(ps->lists[i].items);
}

/* Reads the whole file into a malloc'ed buffer. */
static int read_file(const char *path, uint8_t **data, size_t *size, char *err, size_t errlen) {
    *data = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return err_set(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(err, errlen, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return err_set(err, errlen, "%s: empty file (0 bytes): " STRUCTURE, path);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n);
    if (!buf) {
        close(fd);
        return err_set(err, errlen, "%s: out of memory for %zu bytes", path, n);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : 0;
            close(fd);
            free(buf);
            return err_set(err, errlen, "%s: read failed at byte %zu of %zu: %s", path, got, n,
                        e ? strerror(e) : "file shrank while reading");
        }
        got += (size_t)r;
    }
    close(fd);
    *data = buf;
    *size = n;
    return 0;
}

int binset_load(BinSet *set, const char *path, char *err, size_t errlen) {
    memset(set, 0, sizeof *set);
    Parser ps = {.path = path, .err = err, .errlen = errlen};
    if (read_file(path, &ps.data, &ps.size, err, errlen) != 0) return -1;
    int rc;
    do {
        if (ps.pos == ps.size) {
            rc = err_set(err, errlen, "%s: offset %zu: the file ends before STOP (truncated file?)", path, ps.pos);
            break;
        }
        rc = step(&ps);
    } while (rc == 0);
    if (rc == 1) rc = finish(&ps, set);
    parser_free(&ps);
    if (rc != 0) {
        binset_free(set);
        free(ps.data);
        return -1;
    }
    set->blob = ps.data;
    set->blob_len = ps.size;
    const char *base = strrchr(path, '/');
    snprintf(set->name, sizeof set->name, "%s", base ? base + 1 : path);
    char *dot = strrchr(set->name, '.');
    if (dot && dot != set->name) *dot = '\0';
    return 0;
}

void binset_free(BinSet *set) {
    if (!set) return;
    free(set->same);
    free(set->image);
    free(set->image_len);
    free(set->blob);
    memset(set, 0, sizeof *set);
}

/* ---- writer ----------------------------------------------------------------- */

static void put_u8(FILE *f, unsigned v) { fputc((int)v, f); }

static void put_uint(FILE *f, uint64_t v, int width) {
    for (int i = 0; i < width; i++) fputc((int)((v >> (8 * i)) & 0xff), f);
}

static void put_bytes(FILE *f, const uint8_t *p, size_t len) {
    if (len <= 0xff) {
        put_u8(f, OP_SHORT_BINBYTES);
        put_uint(f, len, 1);
    } else if (len <= 0xffffffffu) {
        put_u8(f, OP_BINBYTES);
        put_uint(f, len, 4);
    } else {
        put_u8(f, OP_BINBYTES8);
        put_uint(f, len, 8);
    }
    if (len) fwrite(p, 1, len, f);
}

int binset_write(const char *path, const uint8_t *const *images, const size_t *lens, const uint8_t *same,
                 int n_pairs, char *err, size_t errlen) {
    if (n_pairs <= 0) return err_set(err, errlen, "%s: cannot write a set of %d pairs", path, n_pairs);
    size_t n_images = 2 * (size_t)n_pairs;
    for (size_t i = 0; i < n_images; i++)
        if (!images[i] && lens[i]) return err_set(err, errlen, "%s: image %zu has no data", path, i);
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return err_set(err, errlen, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return err_set(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
    setvbuf(f, NULL, _IOFBF, 1 << 20);

    /* As Python's pickler does: a single item is APPENDed, longer runs go in
     * MARK ... APPENDS batches of 1000. */
    put_u8(f, OP_PROTO);
    put_u8(f, 4);
    put_u8(f, OP_EMPTY_LIST);
    for (size_t i = 0; i < n_images; i += APPENDS_BATCH) {
        size_t n = n_images - i < APPENDS_BATCH ? n_images - i : APPENDS_BATCH;
        if (n > 1) put_u8(f, OP_MARK);
        for (size_t j = i; j < i + n; j++) put_bytes(f, images[j], lens[j]);
        put_u8(f, n > 1 ? OP_APPENDS : OP_APPEND);
    }
    put_u8(f, OP_EMPTY_LIST);
    for (size_t i = 0; i < (size_t)n_pairs; i += APPENDS_BATCH) {
        size_t n = (size_t)n_pairs - i < APPENDS_BATCH ? (size_t)n_pairs - i : APPENDS_BATCH;
        if (n > 1) put_u8(f, OP_MARK);
        for (size_t j = i; j < i + n; j++) put_u8(f, same[j] ? OP_NEWTRUE : OP_NEWFALSE);
        put_u8(f, n > 1 ? OP_APPENDS : OP_APPEND);
    }
    put_u8(f, OP_TUPLE2);
    put_u8(f, OP_STOP);

    int failed = ferror(f) || fflush(f) != 0 || fsync(fileno(f)) != 0;
    int e = errno;
    if (fclose(f) != 0 && !failed) {
        failed = 1;
        e = errno;
    }
    if (failed) {
        unlink(tmp);
        return err_set(err, errlen, "%s: write failed: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        return err_set(err, errlen, "%s: cannot rename to %s: %s", tmp, path, strerror(e));
    }
    return 0;
}
