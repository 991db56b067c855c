/* pairs.h -- LFW's View 2 pairs.txt (and View 1 pairsDevTrain/DevTest.txt)
 * beside an image folder.
 *
 * The first line is "FOLDS<TAB>P" (pairs.txt: "10	300") or just "P" (the
 * View 1 files: one fold). Each fold then has P same-person lines
 * "Name<TAB>i<TAB>j" followed by P different-person lines
 * "NameA<TAB>i<TAB>NameB<TAB>j". Fields may be separated by any run of tabs or
 * spaces, lines may end in CRLF, blank lines are ignored. Image n of Name is
 * IMAGE_ROOT/Name/Name_%04d.jpg (n >= 1), as in LFW's folders. */
#ifndef ARCFACE_PAIRS_H
#define ARCFACE_PAIRS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int n_pairs;          /* n_folds * fold_pairs */
    int n_folds;
    int fold_pairs;       /* pairs per fold: the first half same-person, then the different ones */
    uint8_t *same;        /* (n_pairs) 1 for a same-person pair; pair i is in fold i / fold_pairs */
    char **path;          /* (2 * n_pairs) image paths, pair i is path[2i] and path[2i+1]; NULL when
                           * loaded without an image root */
    const char **person;  /* (2 * n_pairs) the name of each image's person */
    int *number;          /* (2 * n_pairs) each image's number in its person's folder */
    int *line;            /* (n_pairs) the pairs file line that named pair i */
    char *text;           /* owns the names (the file's text, cut into fields) */
    char *path_text;      /* owns the paths */
} PairList;

/* Reads pairs_path and checks it whole: the header against the number of pair
 * lines, 3 fields on every same-person line and 4 on every different-person
 * line (by position within the fold), image numbers positive integers, names
 * usable as folder names, and that every image it names exists under
 * image_root. With image_root NULL only the names are read (path and
 * path_text stay NULL, no image is looked for), e.g. to leave the people of a
 * fold out of a training set. Returns 0, or -1 with "pairs_path:LINE: ..." in
 * err (for missing images: how many and the first one); on failure *pl is
 * zeroed, so pairs_free is harmless either way. */
int pairs_load(PairList *pl, const char *pairs_path, const char *image_root, char *err, size_t errlen);

/* The people who appear in any pair of fold (0 <= fold < n_folds), sorted by
 * strcmp without repeats, e.g. to train on LFW without the people of the fold
 * being tested. *names is malloc'ed (free() it); its strings belong to pl and
 * live until pairs_free. Returns 0, or -1 with a reason in err (bad fold). */
int pairs_people_of_fold(const PairList *pl, int fold, const char ***names, int *n_names, char *err,
                         size_t errlen);

/* Frees what pairs_load allocated and zeroes *pl. Accepts a zeroed list and
 * NULL. */
void pairs_free(PairList *pl);

#endif
