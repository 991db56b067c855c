/* fuzz_config.c -- fuzz target for the configuration parser: a config file
 * and command-line overrides through config_from_args (file parsing, every
 * value parser, config_finalize), then lr_epochs through config_parse_epochs.
 *
 * Input: the config file's text up to the first NUL byte, then up to
 * MAX_OVERRIDES NUL-separated command-line arguments. A configuration that
 * is accepted must round-trip: config_print's text, loaded as a config file,
 * is accepted and prints the same (checkpoints store that text). */
#define _GNU_SOURCE
#include <string.h>

#include "config.h"
#include "fuzz_util.h"

#define MAX_OVERRIDES 16

/* config_print's text into a malloc'ed string. */
static char *printed(const TrainConfig *c, size_t *len) {
    char *text = NULL;
    FILE *f = open_memstream(&text, len);
    FUZZ_ASSERT(f, "open_memstream failed");
    config_print(c, f);
    FUZZ_ASSERT(fclose(f) == 0 && text, "config_print to memory failed");
    return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t file_len = nul ? (size_t)(nul - data) : size;
    const char *path = fuzz_write_file("fuzz.conf", data, file_len);

    /* A copy with a NUL after the last argument. */
    char *args = malloc(size + 1);
    FUZZ_ASSERT(args, "out of memory");
    memcpy(args, data, size);
    args[size] = '\0';
    char *argv[2 + MAX_OVERRIDES + 1] = {"arcface-fuzz", (char *)path};
    int argc = 2;
    for (size_t at = file_len + 1; at <= size && argc < 2 + MAX_OVERRIDES; at += strlen(args + at) + 1)
        argv[argc++] = args + at;
    argv[argc] = NULL;

    char err[2048];
    /* Static, not malloc'ed per input: ASan fills the first 4 KiB of every
     * malloc, and these are several KiB each. */
    static TrainConfig config, reloaded;
    TrainConfig *c = &config, *again = &reloaded;
    int rc = config_from_args(c, argc, argv, err, sizeof err);
    fuzz_note("config: %d arguments: %s", argc - 2, rc == 0 ? "accepted" : err);
    if (rc == 0) {
        double epochs[CONFIG_MAX_LR_EPOCHS];
        (void)config_parse_epochs(c->lr_epochs, epochs, CONFIG_MAX_LR_EPOCHS, err, sizeof err);
        size_t len1, len2;
        char *text = printed(c, &len1);
        const char *again_path = fuzz_write_file("again.conf", text, len1);
        char *argv2[3] = {"arcface-fuzz", (char *)again_path, NULL};
        FUZZ_ASSERT(config_from_args(again, 2, argv2, err, sizeof err) == 0,
                    "config_print's output is refused: %s\n--- printed ---\n%s", err, text);
        char *text2 = printed(again, &len2);
        FUZZ_ASSERT(len1 == len2 && memcmp(text, text2, len1) == 0,
                    "config changed in the round trip\n--- first ---\n%s--- reloaded ---\n%s", text,
                    text2);
        free(text);
        free(text2);
    } else {
        FUZZ_ASSERT(err[0], "config refused without a reason");
    }
    free(args);
    return 0;
}
