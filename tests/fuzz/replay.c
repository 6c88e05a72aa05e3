/*
 * Replay driver for the libFuzzer targets, built with any compiler so every build exercises them
 * as a unit test: `fuzz-replay-sql [--mutations N] [--seed S] PATH...` runs LLVMFuzzerTestOneInput
 * on every file (directories are read one level deep), then on N deterministic mutants of each
 * (bytes inserted from an alphabet of SQL/URL delimiters, deleted, or replaced; splices of two
 * inputs). A broken invariant aborts inside the target.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct input {
    unsigned char *data;
    size_t size;
} input;

static input *inputs;
static size_t ninputs, cap;

static void add_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    unsigned char buf[65536];
    size_t n;
    if (!f) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        exit(2);
    }
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    if (ninputs == cap) {
        cap = cap ? cap * 2 : 64;
        inputs = realloc(inputs, cap * sizeof *inputs);
        if (!inputs)
            exit(2);
    }
    inputs[ninputs].data = malloc(n ? n : 1);
    if (!inputs[ninputs].data)
        exit(2);
    memcpy(inputs[ninputs].data, buf, n);
    inputs[ninputs].size = n;
    ninputs++;
}

static void add_path(const char *path)
{
    struct stat st;
    DIR *d;
    struct dirent *e;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay: no such file or directory: %s\n", path);
        exit(2);
    }
    if (!S_ISDIR(st.st_mode)) {
        add_file(path);
        return;
    }
    d = opendir(path);
    if (!d)
        exit(2);
    while ((e = readdir(d)) != NULL) {
        char full[4096];
        if (e->d_name[0] == '.')
            continue;
        snprintf(full, sizeof full, "%s/%s", path, e->d_name);
        if (stat(full, &st) == 0 && S_ISREG(st.st_mode))
            add_file(full);
    }
    closedir(d);
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1Dull;
}

int main(int argc, char **argv)
{
    static const char alphabet[] = "?'\"`[]-/*#$E\\\n :@%&=!M(;0aZ_\x80";
    unsigned long mutations = 0, runs = 0, k;
    unsigned char buf[8192];
    int i;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--mutations") == 0 && i + 1 < argc)
            mutations = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            rng = strtoull(argv[++i], NULL, 0) | 1;
        else
            add_path(argv[i]);
    }
    if (ninputs == 0) {
        fprintf(stderr, "usage: %s [--mutations N] [--seed S] FILE|DIR...\n", argv[0]);
        return 2;
    }
    for (k = 0; k < ninputs; k++, runs++)
        LLVMFuzzerTestOneInput(inputs[k].data, inputs[k].size);
    for (k = 0; k < ninputs * mutations; k++, runs++) {
        const input *in = &inputs[k % ninputs];
        size_t n = in->size < sizeof buf / 2 ? in->size : sizeof buf / 2, edits = 1 + next() % 4, e;
        memcpy(buf, in->data, n);
        for (e = 0; e < edits; e++) {
            size_t pos = n ? (size_t)(next() % (n + 1)) : 0;
            switch (next() % 4) {
            case 0: /* insert */
                if (n + 1 < sizeof buf) {
                    memmove(buf + pos + 1, buf + pos, n - pos);
                    buf[pos] = (unsigned char)alphabet[next() % (sizeof alphabet - 1)];
                    n++;
                }
                break;
            case 1: /* delete */
                if (pos < n) {
                    memmove(buf + pos, buf + pos + 1, n - pos - 1);
                    n--;
                }
                break;
            case 2: /* replace */
                if (pos < n)
                    buf[pos] = (unsigned char)alphabet[next() % (sizeof alphabet - 1)];
                break;
            default: { /* splice: keep buf[0, pos), append the tail of another input */
                const input *o = &inputs[next() % ninputs];
                size_t from = o->size ? (size_t)(next() % o->size) : 0, len = o->size - from;
                if (pos + len > sizeof buf / 2)
                    len = sizeof buf / 2 - pos;
                memcpy(buf + pos, o->data + from, len);
                n = pos + len;
                break;
            }
            }
        }
        LLVMFuzzerTestOneInput(buf, n);
    }
    printf("replay: %lu inputs run (%zu files, %lu mutants each), all invariants held\n", runs, ninputs, mutations);
    for (k = 0; k < ninputs; k++)
        free(inputs[k].data);
    free(inputs);
    return 0;
}
