/* Saved fuzz inputs replayed through the fuzz targets' own entry points and checks
 * (fuzz/npy_input.c, fuzz/cli_input.c), in the normal build with any compiler: every input a
 * fuzzer found a bug with (tests/regressions/npy/, tests/regressions/cli/, kept once the bug was
 * fixed) and the seed corpora (fuzz/corpus/npy/, fuzz/corpus/cli/). Each must be accepted or
 * refused cleanly: no crash, and no broken promise. The folders are listed when the test runs, so
 * a new file is replayed without a rebuild. */
#define _POSIX_C_SOURCE 200809L /* opendir, stat */

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_inputs.h"

typedef const char *(*fuzz_input_fn)(const uint8_t *data, size_t size);

/* The whole file in a buffer of exactly its size, as libFuzzer passes inputs, so that a
 * sanitizer build sees a read past the end. */
static uint8_t *read_whole(const char *path, size_t *size) {
    FILE *file = fopen(path, "rb");
    cr_assert_not_null(file, "cannot open %s: %s", path, strerror(errno));
    cr_assert_eq(fseek(file, 0, SEEK_END), 0);
    long length = ftell(file);
    cr_assert_geq(length, 0);
    rewind(file);
    uint8_t *bytes = malloc(length > 0 ? (size_t)length : 1);
    cr_assert_not_null(bytes);
    cr_assert_eq(fread(bytes, 1, (size_t)length, file), (size_t)length, "cannot read %s", path);
    fclose(file);
    *size = (size_t)length;
    return bytes;
}

/* Replays every regular file in dir whose name does not start with '.'; returns how many. A
 * missing dir holds nothing (git keeps no empty folder). */
static int replay_directory(const char *dir, fuzz_input_fn replay) {
    DIR *handle = opendir(dir);
    if (!handle && errno == ENOENT) return 0;
    cr_assert_not_null(handle, "cannot list %s: %s", dir, strerror(errno));
    int count = 0;
    for (struct dirent *entry; (entry = readdir(handle));) {
        if (entry->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, entry->d_name);
        struct stat info;
        if (stat(path, &info) != 0 || !S_ISREG(info.st_mode)) continue;
        size_t size;
        uint8_t *bytes = read_whole(path, &size);
        const char *problem = replay(bytes, size);
        cr_expect_null(problem, "%s: %s", path, problem ? problem : "");
        free(bytes);
        ++count;
    }
    closedir(handle);
    return count;
}

Test(fuzz_regressions, npy_inputs_that_found_bugs) {
    replay_directory(CLOSS_REGRESSIONS_DIR "/npy", closs_fuzz_npy_input);
}

Test(fuzz_regressions, cli_inputs_that_found_bugs) {
    replay_directory(CLOSS_REGRESSIONS_DIR "/cli", closs_fuzz_cli_input);
}

/* The seeds: valid and broken files and command lines of every kind (fuzz/make_corpus.py). The
 * counts guard against replaying an empty or misplaced folder. */
Test(fuzz_corpus, npy_seeds) {
    cr_expect_geq(replay_directory(CLOSS_FUZZ_CORPUS_DIR "/npy", closs_fuzz_npy_input), 30);
}

Test(fuzz_corpus, cli_seeds) {
    cr_expect_geq(replay_directory(CLOSS_FUZZ_CORPUS_DIR "/cli", closs_fuzz_cli_input), 25);
}
