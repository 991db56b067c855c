/* checkpoint_io.h -- helpers shared by checkpoint.c and checkpoint_dir.c
 * (not part of the checkpoint API). */
#ifndef ARCFACE_CHECKPOINT_IO_H
#define ARCFACE_CHECKPOINT_IO_H

#include <stddef.h>
#include <stdint.h>

/* buf (PATH_MAX) = dir + "/" + name; -1 when it does not fit. */
int ckpt_io_path_join(char *buf, const char *dir, const char *name);
/* fsync a directory so a rename or unlink in it is durable. */
int ckpt_io_fsync_dir(const char *dir, char *err, size_t errlen);
/* pwrite all n bytes at *offset, advancing it; retries short writes. */
int ckpt_io_pwrite_all(int fd, const void *buf, size_t n, uint64_t *offset);

#endif
