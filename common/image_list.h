/* image_list.h -- the images an inference tool works on: every image under a
 * folder, or the paths of a list file. */
#ifndef ARCFACE_IMAGE_LIST_H
#define ARCFACE_IMAGE_LIST_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t n;
    char **paths; /* (n) the files to open */
    char **names; /* (n) how to report them: relative to the folder, or as the list wrote them */
} ImageList;

/* Fills l from source:
 *   a folder: every file named *.jpg, *.jpeg, *.png, *.ppm or *.pgm (any case)
 *     in it and its sub-folders, recursively, sorted by path relative to the
 *     folder (byte order); names and files starting with '.' are skipped;
 *   a file: one image path per line; blank lines and lines starting with '#'
 *     are skipped, a trailing '\r' is dropped; a relative path is relative to
 *     the list file's folder. Names keep the order and spelling of the list.
 * Returns 0, or -1 with err naming the folder or file (cannot be read, holds
 * no images, nested more than 64 folders deep). l is empty on failure. */
int image_list_open(ImageList *l, const char *source, char *err, size_t errlen);

/* Frees the lists and zeroes l. Accepts NULL. */
void image_list_free(ImageList *l);

#endif
