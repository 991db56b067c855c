/* fs_dirs.h -- creating folders. */
#ifndef ARCFACE_FS_DIRS_H
#define ARCFACE_FS_DIRS_H

#include <stddef.h>

/* mkdir -p path (mode 0755): every missing folder on the way is created, ones
 * that exist are fine. Returns 0, or -1 with err naming the folder that could
 * not be made and why (a file of that name exists, or the system's reason). */
int fs_make_dirs(const char *path, char *err, size_t errlen);

#endif
