/* A temporary directory per test (SQLite files), shared by the Criterion suites that need one. */
#ifndef TXM_TMPDIR_H
#define TXM_TMPDIR_H

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Creates /tmp/txm-<tag>-XXXXXX into dir (size >= 64); fails the test if it cannot. */
static inline void txm_tmpdir_make(char *dir, size_t size, const char *tag)
{
    snprintf(dir, size, "/tmp/txm-%s-XXXXXX", tag);
    cr_assert(mkdtemp(dir) != NULL, "mkdtemp %s failed", dir);
}

/* Removes the files of dir and dir itself (no subdirectories are made by the tests). */
static inline void txm_tmpdir_remove(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[512];
    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

#endif
