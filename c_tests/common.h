/*
 * What the C test programs share: failure counting, the calling thread's
 * last error, reading MNIST, norms and the command line.
 *
 * Every program is run as `PROGRAM DATA_DIR SCRATCH_DIR [--quick]`:
 * DATA_DIR holds the four MNIST files, SCRATCH_DIR is an empty directory the
 * program may write to, and --quick (used under valgrind) replaces the
 * full-training-set checks by the same code paths on small subsets.
 */
#ifndef SML_C_TESTS_COMMON_H
#define SML_C_TESTS_COMMON_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "simple_ml.h"

static int test_failures;

/* Records a failure (with a printf-style explanation) and carries on, so one
 * run reports every broken check. */
#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, \
                    #cond);                                                 \
            fprintf(stderr, __VA_ARGS__);                                   \
            fputc('\n', stderr);                                            \
            test_failures++;                                                \
        }                                                                   \
    } while (0)

/* Stops the program: used when later checks would be meaningless. */
#define REQUIRE(cond, ...)                                                  \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: requirement failed: %s: ", __FILE__,     \
                    __LINE__, #cond);                                       \
            fprintf(stderr, __VA_ARGS__);                                   \
            fputc('\n', stderr);                                            \
            exit(2);                                                        \
        }                                                                   \
    } while (0)

struct test_args {
    const char *data_dir;
    const char *scratch_dir;
    int quick;
};

static inline struct test_args parse_args(int argc, char **argv) {
    struct test_args args = {NULL, NULL, 0};
    if (argc < 3 || argc > 4 || (argc == 4 && strcmp(argv[3], "--quick") != 0)) {
        fprintf(stderr, "usage: %s DATA_DIR SCRATCH_DIR [--quick]\n", argv[0]);
        exit(2);
    }
    args.data_dir = argv[1];
    args.scratch_dir = argv[2];
    args.quick = argc == 4;
    return args;
}

/* The calling thread's last error message, copied into a thread-local buffer. */
static inline const char *last_error(void) {
    static _Thread_local char buf[4096];
    size_t needed = 0;
    sml_status st = sml_last_error_message(buf, sizeof buf, &needed);
    if (st != SML_OK) {
        snprintf(buf, sizeof buf, "<sml_last_error_message returned %s, needs %zu bytes>",
                 sml_status_str(st), needed);
    }
    return buf;
}

/* Reads DIR/PREFIX-images-idx3-ubyte.gz and its labels, or stops the program. */
static inline sml_dataset *read_mnist(const char *dir, const char *prefix) {
    char images[4096], labels[4096];
    snprintf(images, sizeof images, "%s/%s-images-idx3-ubyte.gz", dir, prefix);
    snprintf(labels, sizeof labels, "%s/%s-labels-idx1-ubyte.gz", dir, prefix);
    sml_dataset *ds = NULL;
    sml_status st = sml_mnist_read(images, labels, &ds);
    REQUIRE(st == SML_OK && ds != NULL, "sml_mnist_read(%s) = %s: %s", images,
            sml_status_str(st), last_error());
    return ds;
}

/* Euclidean norm, accumulated in double. */
static inline double norm_f32(const float *a, size_t len) {
    double s = 0.0;
    for (size_t i = 0; i < len; i++) {
        s += (double)a[i] * (double)a[i];
    }
    return sqrt(s);
}

static inline int rel_close(double actual, double expected, double rtol) {
    return fabs(actual - expected) <= rtol * fabs(expected);
}

static inline void *xcalloc(size_t count, size_t size) {
    void *p = calloc(count, size);
    REQUIRE(p != NULL, "out of memory for %zu x %zu bytes", count, size);
    return p;
}

static inline int finish(const char *program) {
    if (test_failures != 0) {
        fprintf(stderr, "%s: %d check(s) failed\n", program, test_failures);
        return 1;
    }
    printf("%s: all checks passed\n", program);
    return 0;
}

#endif /* SML_C_TESTS_COMMON_H */
