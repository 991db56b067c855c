/* test_pairs.c -- LFW pairs files: both header forms, both line forms, tabs
 * or spaces, CRLF, blank lines, the people of a fold, and every class of error
 * named with file and line; leaving the people of a fold (and of a name list)
 * out of an image-folder training set; one fold as a verification set; then
 * the real LFW View 2 pairs.txt when ARCFACE_SOURCE_DIR/../shared/data/faces
 * holds it (skipped with a message otherwise). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "dataset.h"
#include "log.h"
#include "pairs.h"
#include "testutil.h"
#include "verify_set.h"

static char g_dir[64];
static char g_root[128]; /* the image folder */

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    CHECK(f, "fopen %s", path);
    fputs(text, f);
    CHECK(fclose(f) == 0, "fclose");
}

/* root/Name/Name_000k.jpg for k = 1 .. count, empty. */
static void make_person(const char *name, int count) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_root, name);
    CHECK(mkdir(path, 0755) == 0, "mkdir %s", path);
    for (int k = 1; k <= count; k++) {
        snprintf(path, sizeof path, "%s/%s/%s_%04d.jpg", g_root, name, name, k);
        write_text(path, "");
    }
}

/* Writes text as name in the temp dir and loads it against g_root. */
static int load_text(PairList *pl, const char *name, const char *text, char *err, size_t errlen) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    write_text(path, text);
    err[0] = '\0';
    return pairs_load(pl, path, g_root, err, errlen);
}

static void test_good(void) {
    char err[512];
    PairList pl;
    /* 2 folds of 2 same + 2 different; tabs, spaces, CRLF, blank lines,
     * trailing blanks, and a root given with a trailing slash. */
    const char *text = "2\t2\r\n"
                       "Alice\t1\t2\r\n"
                       "Bob 1   2\n"
                       "Alice\t3\tBob\t1\r\n"
                       "  Carol 1 Dave_X 1  \n"
                       "\n"
                       "Carol\t1\t2\n"
                       "Alice 2\t3\n"
                       "Bob\t2\tCarol\t2\n"
                       "Dave_X\t1\tAlice\t1\n"
                       "\r\n";
    char root_slash[160];
    snprintf(root_slash, sizeof root_slash, "%s/", g_root);
    char path[256];
    snprintf(path, sizeof path, "%s/two_folds.txt", g_dir);
    write_text(path, text);
    int rc = pairs_load(&pl, path, root_slash, err, sizeof err);
    EXPECT(rc == 0, "two folds: %s", err);
    if (rc == 0) {
        EXPECT(pl.n_pairs == 8 && pl.n_folds == 2 && pl.fold_pairs == 4, "%d pairs %d folds %d per fold",
               pl.n_pairs, pl.n_folds, pl.fold_pairs);
        static const uint8_t same[8] = {1, 1, 0, 0, 1, 1, 0, 0};
        static const int line[8] = {2, 3, 4, 5, 7, 8, 9, 10};
        for (int i = 0; i < 8; i++)
            EXPECT(pl.same[i] == same[i] && pl.line[i] == line[i], "pair %d: same %d line %d", i, pl.same[i],
                   pl.line[i]);
        char want[256];
        snprintf(want, sizeof want, "%s/Alice/Alice_0003.jpg", g_root);
        EXPECT(strcmp(pl.path[4], want) == 0, "path[4] = %s, expected %s", pl.path[4], want);
        snprintf(want, sizeof want, "%s/Dave_X/Dave_X_0001.jpg", g_root);
        EXPECT(strcmp(pl.path[7], want) == 0, "path[7] = %s, expected %s", pl.path[7], want);
        EXPECT(strcmp(pl.person[5], "Bob") == 0 && pl.number[5] == 1 && strcmp(pl.person[2], "Bob") == 0 &&
                   pl.number[3] == 2,
               "person/number fields");

        const char **names;
        int n;
        EXPECT(pairs_people_of_fold(&pl, 0, &names, &n, err, sizeof err) == 0, "%s", err);
        EXPECT(n == 4 && strcmp(names[0], "Alice") == 0 && strcmp(names[1], "Bob") == 0 &&
                   strcmp(names[2], "Carol") == 0 && strcmp(names[3], "Dave_X") == 0,
               "fold 0 people: %d", n);
        free(names);
        EXPECT(pairs_people_of_fold(&pl, 1, &names, &n, err, sizeof err) == 0, "%s", err);
        EXPECT(n == 4, "fold 1 people: %d", n);
        free(names);
        EXPECT(pairs_people_of_fold(&pl, 2, &names, &n, err, sizeof err) == -1 && names == NULL &&
                   strstr(err, "fold 2 does not exist"),
               "fold 2: %s", err);
        EXPECT(pairs_people_of_fold(&pl, -1, &names, &n, err, sizeof err) == -1, "fold -1");
    }
    pairs_free(&pl);
    pairs_free(&pl);
    pairs_free(NULL);

    /* The one-number header (View 1 files): one fold; no final newline. */
    rc = load_text(&pl, "one_fold.txt",
                   "3\nAlice 1 2\nBob 1 2\nCarol 1 2\nAlice 1 Bob 2\nBob 1 Carol 1\nCarol 2 Alice 3", err,
                   sizeof err);
    EXPECT(rc == 0, "one fold: %s", err);
    if (rc == 0) {
        EXPECT(pl.n_pairs == 6 && pl.n_folds == 1 && pl.fold_pairs == 6, "%d pairs %d folds", pl.n_pairs,
               pl.n_folds);
        const char **names;
        int n;
        EXPECT(pairs_people_of_fold(&pl, 0, &names, &n, err, sizeof err) == 0 && n == 3, "one fold people: %d", n);
        free(names);
    }
    pairs_free(&pl);
}

/* The load of text must fail with every fragment in err. */
static void expect_error(const char *name, const char *text, const char *frag1, const char *frag2) {
    char err[512];
    PairList pl;
    int rc = load_text(&pl, name, text, err, sizeof err);
    EXPECT(rc == -1, "%s: accepted", name);
    EXPECT(strstr(err, name) && strstr(err, frag1) && (!frag2 || strstr(err, frag2)), "%s: expected '%s' and '%s' in: %s",
           name, frag1, frag2 ? frag2 : "", err);
    EXPECT(pl.n_pairs == 0 && pl.path == NULL && pl.text == NULL, "%s: a failed load leaves a zeroed list", name);
    if (rc == -1) fprintf(stderr, "  refused as expected: %s\n", err);
    pairs_free(&pl);
}

static void test_errors(void) {
    expect_error("same_4_fields.txt", "1 1\nAlice 1 Bob 2\nAlice 1 Bob 1\n", "same_4_fields.txt:2:",
                 "expected a same-person line 'Name i j' (fold 1, pair 1 of 2), got 4 fields");
    expect_error("diff_3_fields.txt", "1 1\nAlice 1 2\nBob 1 2\n", "diff_3_fields.txt:3:",
                 "expected a different-person line 'NameA i NameB j' (fold 1, pair 2 of 2), got 3 fields");
    expect_error("non_numeric.txt", "1 1\nAlice 1 x2\nAlice 1 Bob 1\n", "non_numeric.txt:2:",
                 "image number 'x2' is not a positive integer");
    expect_error("zero.txt", "1 1\nAlice 1 2\nAlice 0 Bob 1\n", "zero.txt:3:", "image number '0'");
    expect_error("negative.txt", "1 1\nAlice -1 2\nAlice 1 Bob 1\n", "negative.txt:2:", "image number '-1'");
    expect_error("huge_number.txt", "1 1\nAlice 1 2\nAlice 1 Bob 123456789012\n", "huge_number.txt:3:",
                 "not a positive integer");
    expect_error("slash.txt", "1 1\nAlice 1 2\n../x 1 Bob 1\n", "slash.txt:3:", "'../x' cannot be");
    expect_error("dotdot.txt", "1 1\n.. 1 2\nAlice 1 Bob 1\n", "dotdot.txt:2:", "'..' cannot be");
    expect_error("missing.txt", "2 1\nAlice 1 2\nAlice 1 Bob 1\nAlice 1 9\nZed 1 Bob 1\n", "missing.txt:4:",
                 "2 of the 8 images it names are missing");
    expect_error("missing1.txt", "1 1\nAlice 1 2\nAlice 4 Bob 1\n", "Alice/Alice_0004.jpg",
                 "1 of the 4 images it names is missing");
    expect_error("few_lines.txt", "10\t1\nAlice 1 2\nAlice 1 Bob 1\nBob 1 2\nBob 1 Carol 1\n",
                 "asks for 10 folds of 1 same + 1 different pairs = 20 pair lines", "but the file has 4");
    expect_error("many_lines.txt", "1 1\nAlice 1 2\nAlice 1 Bob 1\nBob 1 2\n", "= 2 pair lines",
                 "but the file has 3");
    expect_error("bad_header.txt", "ten 300\nAlice 1 2\n", "bad_header.txt:1:", "expected a header");
    expect_error("header_3.txt", "10 300 1\nAlice 1 2\n", "header_3.txt:1:", "got 3 fields");
    expect_error("header_0.txt", "0\n", "header_0.txt:1:", "expected a header");
    expect_error("empty.txt", "", "empty or blank file", NULL);
    expect_error("blank.txt", "\r\n  \n\t\n", "empty or blank file", NULL);
    expect_error("too_many_fields.txt", "1 1\nAlice 1 2\nAlice 1 Bob 1 Carol 1\n", "too_many_fields.txt:3:",
                 "got 6 fields");

    char err[512], path[256];
    PairList pl;
    snprintf(path, sizeof path, "%s/no_such_file.txt", g_dir);
    EXPECT(pairs_load(&pl, path, g_root, err, sizeof err) == -1 && strstr(err, "no_such_file.txt") &&
               strstr(err, "cannot open"),
           "missing pairs file: %s", err);
    pairs_free(&pl);
}

/* A training folder train/<Name>/<Name>_000k.pgm of 2x2 grey images whose
 * value is the person's `value`, so a loaded sample shows whose it is. */
static void make_training_person(const char *train, const char *name, int count, int value) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", train, name);
    CHECK(mkdir(path, 0755) == 0, "mkdir %s", path);
    for (int k = 1; k <= count; k++) {
        snprintf(path, sizeof path, "%s/%s/%s_%04d.pgm", train, name, name, k);
        FILE *f = fopen(path, "wb");
        CHECK(f, "fopen %s", path);
        fprintf(f, "P5 2 2 255\n");
        for (int i = 0; i < 4; i++) fputc(value, f);
        CHECK(fclose(f) == 0, "fclose");
    }
}

/* Opens train with the overrides; on success checks the identity count, the
 * images of each kept identity in label order (their pixel values), and that
 * the description holds `says`. */
static void expect_training_set(const char *train, const char *const *overrides, int n_over, int classes,
                                const int *values, const char *says) {
    TrainConfig c;
    char err[1024];
    config_defaults(&c);
    CHECK(config_set(&c, "dataset", "folder", err, sizeof err) == 0, "%s", err);
    CHECK(config_set(&c, "data_path", train, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < n_over; i++) {
        char key[64];
        const char *eq = strchr(overrides[i], '=');
        snprintf(key, sizeof key, "%.*s", (int)(eq - overrides[i]), overrides[i]);
        CHECK(config_set(&c, key, eq + 1, err, sizeof err) == 0, "%s", err);
    }
    CHECK(config_finalize(&c, err, sizeof err) == 0, "%s", err);
    Dataset *d;
    int rc = dataset_open(&d, &c, err, sizeof err);
    EXPECT(rc == 0, "%s: %s", overrides[0], err);
    if (rc != 0) return;
    fprintf(stderr, "  %s\n", dataset_describe(d));
    EXPECT(dataset_classes(d) == classes, "%s: %lld classes, expected %d", overrides[0],
           (long long)dataset_classes(d), classes);
    EXPECT(strstr(dataset_describe(d), says), "%s: description lacks '%s'", overrides[0], says);
    DatasetScratch scratch;
    dataset_scratch_init(&scratch);
    static uint8_t rgb[112 * 112 * 3];
    for (int64_t i = 0; i < dataset_size(d); i++) {
        int64_t label;
        EXPECT(dataset_load(d, i, &scratch, rgb, &label, err, sizeof err) == 0, "%s", err);
        EXPECT(label >= 0 && label < classes && rgb[0] == values[label] && rgb[112 * 112 * 3 - 1] == values[label],
               "%s: sample %lld has label %lld and value %d", overrides[0], (long long)i, (long long)label, rgb[0]);
        EXPECT(i == 0 || label >= 0, "labels");
    }
    dataset_scratch_free(&scratch);
    dataset_close(&d);
}

static void expect_training_error(const char *train, const char *key, const char *value, const char *frag) {
    TrainConfig c;
    char err[1024] = "";
    config_defaults(&c);
    CHECK(config_set(&c, "dataset", "folder", err, sizeof err) == 0 &&
              config_set(&c, "data_path", train, err, sizeof err) == 0,
          "%s", err);
    CHECK(config_set(&c, "exclude_pairs", "", err, sizeof err) == 0, "%s", err);
    if (strcmp(key, "exclude_fold") == 0) {
        char pairs[256];
        snprintf(pairs, sizeof pairs, "%s/exclude_pairs.txt", g_dir);
        CHECK(config_set(&c, "exclude_pairs", pairs, err, sizeof err) == 0, "%s", err);
    }
    CHECK(config_set(&c, key, value, err, sizeof err) == 0, "%s", err);
    Dataset *d = NULL;
    EXPECT(dataset_open(&d, &c, err, sizeof err) == -1 && d == NULL && strstr(err, frag),
           "%s=%s: expected '%s' in: %s", key, value, frag, err);
    fprintf(stderr, "  refused as expected: %s\n", err);
    dataset_close(&d);
}

/* Leaving out the people of a fold: the pairs file names people with and
 * without folders (Zed has none, and no image of the pairs need exist: the
 * training set is not where the pairs' images live). */
static void test_exclude(void) {
    char train[160], pairs[256], list[256], arg_pairs[300], arg_list[300];
    snprintf(train, sizeof train, "%s/train", g_dir);
    CHECK(mkdir(train, 0755) == 0, "mkdir %s", train);
    make_training_person(train, "Alice", 3, 10);
    make_training_person(train, "Bob", 2, 20);
    make_training_person(train, "Carol", 2, 30);
    make_training_person(train, "Dave_X", 1, 40);
    snprintf(pairs, sizeof pairs, "%s/exclude_pairs.txt", g_dir);
    write_text(pairs, "2 1\nAlice 1 2\nAlice 1 Zed 1\nBob 1 2\nBob 9 Carol 1\n");
    snprintf(list, sizeof list, "%s/exclude_list.txt", g_dir);
    write_text(list, "# people to leave out\n  Carol \r\n\nNobody\n");
    snprintf(arg_pairs, sizeof arg_pairs, "exclude_pairs=%s", pairs);
    snprintf(arg_list, sizeof arg_list, "exclude_list=%s", list);

    /* A names-only load: no paths, no image looked for. */
    PairList pl;
    char err[512];
    EXPECT(pairs_load(&pl, pairs, NULL, err, sizeof err) == 0, "names only: %s", err);
    EXPECT(pl.n_pairs == 4 && pl.path == NULL && strcmp(pl.person[3], "Zed") == 0, "names only");
    pairs_free(&pl);

    const int all[] = {10, 20, 30, 40}, no_fold1[] = {20, 30, 40}, only_dave[] = {40}, alice_dave[] = {10, 40},
              alice[] = {10};
    expect_training_set(train, (const char *[]){"data_class_limit=0"}, 1, 4, all, "(8 images of 4 identities)");
    expect_training_set(train, (const char *[]){arg_pairs, "exclude_fold=1"}, 2, 3, no_fold1,
                        "(5 images of 3 identities); left out 1 identity (3 images): the 2 people of fold 1 of");
    expect_training_set(train, (const char *[]){arg_pairs, "exclude_fold=1"}, 2, 3, no_fold1,
                        "; 1 of these names matches no folder");
    expect_training_set(train, (const char *[]){arg_pairs}, 1, 1, only_dave,
                        "left out 3 identities (7 images): the 4 people of all 2 folds of");
    expect_training_set(train, (const char *[]){arg_pairs, "exclude_fold=2", arg_list}, 3, 2, alice_dave,
                        "left out 2 identities (4 images): the 2 people of fold 2 of");
    expect_training_set(train, (const char *[]){arg_list, arg_pairs, "exclude_fold=2"}, 3, 2, alice_dave,
                        "and the 2 names of");
    expect_training_set(train, (const char *[]){arg_list, arg_pairs, "exclude_fold=2"}, 3, 2, alice_dave,
                        "; 1 of these names matches no folder");
    expect_training_set(train, (const char *[]){arg_list, arg_pairs, "exclude_fold=2", "data_class_limit=1"}, 4, 1,
                        alice, "(3 images of 1 identities)");

    expect_training_error(train, "exclude_fold", "3", "key 'exclude_fold': ");
    expect_training_error(train, "exclude_fold", "3", "has 2 folds (1 to 2), there is no fold 3");
    char missing[300];
    snprintf(missing, sizeof missing, "%s/no_such_list.txt", g_dir);
    expect_training_error(train, "exclude_list", missing, "key 'exclude_list': cannot open");
    snprintf(missing, sizeof missing, "%s/no_such_pairs.txt", g_dir);
    expect_training_error(train, "exclude_pairs", missing, "key 'exclude_pairs': ");
    char bad_list[300];
    snprintf(bad_list, sizeof bad_list, "%s/bad_list.txt", g_dir);
    write_text(bad_list, "Alice\n../etc\n");
    expect_training_error(train, "exclude_list", bad_list, "bad_list.txt:2: '../etc' is not an identity folder name");
}

/* A pairs.txt verification set narrowed to one fold (":fold=K"): 2 folds of
 * 10 same + 10 different pairs; fold 2 alone is 20 pairs in the balanced
 * order (same, different, same, ...: one of each per cross-validation part). */
static void test_verify_fold(void) {
    char pairs[256], spec[600], err[1024];
    snprintf(pairs, sizeof pairs, "%s/tenpairs.txt", g_dir);
    FILE *f = fopen(pairs, "wb");
    CHECK(f, "fopen %s", pairs);
    fprintf(f, "2\t10\n");
    for (int fold = 0; fold < 2; fold++) {
        for (int i = 0; i < 10; i++) fprintf(f, "Alice\t%d\t%d\n", 1 + i % 3, 1 + (i + 1) % 3);
        for (int i = 0; i < 10; i++) fprintf(f, "Bob\t%d\tCarol\t%d\n", 1 + i % 2, 1 + (i + fold) % 2);
    }
    CHECK(fclose(f) == 0, "fclose");
    TrainConfig c;
    config_defaults(&c);
    VerifySet *v = NULL;
    snprintf(spec, sizeof spec, "%s@%s:fold=2", pairs, g_root);
    EXPECT(verify_set_open(&v, spec, &c, err, sizeof err) == 0, "%s: %s", spec, err);
    if (v) {
        EXPECT(verify_set_pairs(v) == 20 && strcmp(verify_set_name(v), "tenpairs-fold2") == 0,
               "%d pairs, name %s", verify_set_pairs(v), verify_set_name(v));
        for (int i = 0; i < 20; i++) EXPECT(verify_set_same(v, i) == (i % 2 == 0), "pair %d", i);
        EXPECT(strcmp(verify_set_protocol(v),
                      "20 pairs: fold 2 of 2 only, threshold by 10-fold cross-validation within the fold") == 0,
               "protocol '%s'", verify_set_protocol(v));
        verify_set_close(&v);
    }
    snprintf(spec, sizeof spec, "ten=%s@%s", pairs, g_root);
    EXPECT(verify_set_open(&v, spec, &c, err, sizeof err) == 0, "%s: %s", spec, err);
    if (v) {
        EXPECT(verify_set_pairs(v) == 40 && strcmp(verify_set_name(v), "ten") == 0 && verify_set_same(v, 9) &&
                   !verify_set_same(v, 10),
               "whole set: %d pairs, name %s", verify_set_pairs(v), verify_set_name(v));
        EXPECT(strcmp(verify_set_protocol(v), "40 pairs: 10 folds, threshold chosen on the other 9") == 0,
               "protocol '%s'", verify_set_protocol(v));
        verify_set_close(&v);
    }
    const char *bad[][2] = {{":fold=3", "fold 3 does not exist (the set has 2 folds: 1 to 2)"},
                            {":fold=0", "needs a positive fold number"},
                            {":fold=", "needs a positive fold number"},
                            {":fold=1x", "needs a positive fold number"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(spec, sizeof spec, "%s@%s%s", pairs, g_root, bad[i][0]);
        err[0] = '\0';
        EXPECT(verify_set_open(&v, spec, &c, err, sizeof err) == -1 && v == NULL && strstr(err, bad[i][1]),
               "%s: expected '%s' in: %s", bad[i][0], bad[i][1], err);
    }
}

static void test_real_lfw(void) {
    const char *src = getenv("ARCFACE_SOURCE_DIR");
    char pairs[600], root[600];
    snprintf(pairs, sizeof pairs, "%s/../shared/data/faces/lfw_pairs.txt", src ? src : ".");
    snprintf(root, sizeof root, "%s/../shared/data/faces/lfw", src ? src : ".");
    struct stat st;
    if (stat(pairs, &st) != 0 || stat(root, &st) != 0) {
        fprintf(stderr, "test_pairs: %s or %s not found (set ARCFACE_SOURCE_DIR): skipping the real LFW pairs\n",
                pairs, root);
        return;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    PairList pl;
    char err[1024];
    int rc = pairs_load(&pl, pairs, root, err, sizeof err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    EXPECT(rc == 0, "real LFW: %s", err);
    if (rc == 0) {
        int same = 0, pattern_ok = 1;
        for (int i = 0; i < pl.n_pairs; i++) {
            same += pl.same[i];
            pattern_ok &= pl.same[i] == (i % 600 < 300);
        }
        EXPECT(pl.n_pairs == 6000 && pl.n_folds == 10 && pl.fold_pairs == 600 && same == 3000 && pattern_ok,
               "real LFW: %d pairs, %d folds of %d, %d same", pl.n_pairs, pl.n_folds, pl.fold_pairs, same);
        char want[700];
        snprintf(want, sizeof want, "%s/Abel_Pacheco/Abel_Pacheco_0001.jpg", root);
        EXPECT(strcmp(pl.path[0], want) == 0, "first path %s", pl.path[0]);
        int total = 0;
        for (int f = 0; f < pl.n_folds; f++) {
            const char **names;
            int n;
            EXPECT(pairs_people_of_fold(&pl, f, &names, &n, err, sizeof err) == 0, "%s", err);
            for (int k = 1; k < n; k++) EXPECT(strcmp(names[k - 1], names[k]) < 0, "fold %d not sorted/unique", f);
            EXPECT(n > 0 && n <= 1800, "fold %d: %d people", f, n);
            total += n;
            free(names);
        }
        fprintf(stderr, "test_pairs: real LFW: %d pairs, %d folds, %d same, all %d images present, %d people over "
                "the folds, loaded in %.3f s\n", pl.n_pairs, pl.n_folds, same, 2 * pl.n_pairs, total,
                (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    }
    pairs_free(&pl);
}

int main(void) {
    log_set_role("test", -1);
    snprintf(g_dir, sizeof g_dir, "/tmp/test_pairs_XXXXXX");
    CHECK(mkdtemp(g_dir), "mkdtemp");
    snprintf(g_root, sizeof g_root, "%s/img", g_dir);
    CHECK(mkdir(g_root, 0755) == 0, "mkdir %s", g_root);
    make_person("Alice", 3);
    make_person("Bob", 2);
    make_person("Carol", 2);
    make_person("Dave_X", 1);
    test_good();
    test_errors();
    test_exclude();
    test_verify_fold();
    test_real_lfw();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (test_failures == 0 && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return test_finish("test_pairs");
}
