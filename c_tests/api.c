/*
 * The library's own API around the maths: version, status names, the
 * per-thread last error and its buffer protocol, panics stopped at the
 * boundary, and the data set's ownership (free with NULL, accessors on NULL).
 */
#include <limits.h>

#include "common.h"

static void check_version(void) {
    char expected[64];
    snprintf(expected, sizeof expected, "%d.%d.%d", SML_VERSION_MAJOR, SML_VERSION_MINOR,
             SML_VERSION_PATCH);
    const char *v = sml_version();
    REQUIRE(v != NULL, "sml_version() is NULL");
    CHECK(strcmp(v, expected) == 0, "sml_version() = \"%s\", the header says %s", v, expected);
    CHECK(sml_version() == v, "sml_version() is not one static string");
}

static void check_status_names(void) {
    /* The numbers are part of the ABI: they must never change. */
    static const struct {
        sml_status status;
        int number;
        const char *name;
    } STATUSES[] = {
        {SML_OK, 0, "SML_OK"},
        {SML_NULL_POINTER, 1, "SML_NULL_POINTER"},
        {SML_INVALID_ARGUMENT, 2, "SML_INVALID_ARGUMENT"},
        {SML_SIZE_OVERFLOW, 3, "SML_SIZE_OVERFLOW"},
        {SML_LABEL_OUT_OF_RANGE, 4, "SML_LABEL_OUT_OF_RANGE"},
        {SML_SHAPE_MISMATCH, 5, "SML_SHAPE_MISMATCH"},
        {SML_IO, 6, "SML_IO"},
        {SML_BAD_FORMAT, 7, "SML_BAD_FORMAT"},
        {SML_BUFFER_TOO_SMALL, 8, "SML_BUFFER_TOO_SMALL"},
        {SML_PANIC, 9, "SML_PANIC"},
    };
    for (size_t i = 0; i < sizeof STATUSES / sizeof STATUSES[0]; i++) {
        CHECK(STATUSES[i].status == STATUSES[i].number, "%s is %d, not %d", STATUSES[i].name,
              STATUSES[i].status, STATUSES[i].number);
        const char *name = sml_status_str(STATUSES[i].status);
        CHECK(name != NULL && strcmp(name, STATUSES[i].name) == 0, "sml_status_str(%d) = %s",
              STATUSES[i].number, name ? name : "NULL");
    }
    const sml_status unknown[] = {10, -1, INT_MAX, INT_MIN};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *name = sml_status_str(unknown[i]);
        CHECK(name != NULL && strcmp(name, "SML_UNKNOWN_STATUS") == 0, "sml_status_str(%d) = %s",
              unknown[i], name ? name : "NULL");
    }
}

static sml_status make_error(void) {
    float theta[6] = {0};
    unsigned char y[2] = {0, 1};
    return sml_softmax_regression_epoch(NULL, y, theta, 2, 3, 2, 0.1f, 1);
}

static void check_last_error_buffer(void) {
    static const char MESSAGE[] = "X is NULL but must hold 6 elements";
    const size_t needed_len = sizeof MESSAGE; /* including the NUL */
    char buf[256];
    size_t needed = 0;

    /* Nothing has failed on this thread yet. */
    CHECK(sml_last_error_message(buf, sizeof buf, &needed) == SML_OK && buf[0] == '\0' &&
              needed == 1,
          "fresh thread: \"%s\", needed %zu", buf, needed);

    CHECK(make_error() == SML_NULL_POINTER, "expected SML_NULL_POINTER");

    /* The size query: no buffer at all. */
    needed = 0;
    CHECK(sml_last_error_message(NULL, 0, &needed) == SML_BUFFER_TOO_SMALL, "len 0");
    CHECK(needed == needed_len, "needed %zu, expected %zu", needed, needed_len);

    /* Exactly large enough; the bytes after it stay untouched. */
    memset(buf, 'Z', sizeof buf);
    needed = 0;
    CHECK(sml_last_error_message(buf, needed_len, &needed) == SML_OK, "exact size");
    CHECK(strcmp(buf, MESSAGE) == 0, "message \"%s\"", buf);
    CHECK(needed == needed_len && buf[needed_len] == 'Z', "needed %zu, wrote past the end",
          needed);

    /* One byte short: truncated, NUL-terminated, still reports the full length. */
    memset(buf, 'Z', sizeof buf);
    needed = 0;
    CHECK(sml_last_error_message(buf, needed_len - 1, &needed) == SML_BUFFER_TOO_SMALL,
          "one byte short");
    CHECK(needed == needed_len, "needed %zu", needed);
    CHECK(strlen(buf) == needed_len - 2 && strncmp(buf, MESSAGE, needed_len - 2) == 0 &&
              buf[needed_len - 1] == 'Z',
          "truncated copy \"%s\"", buf);

    /* A one-byte buffer holds just the NUL. */
    buf[0] = 'Z';
    CHECK(sml_last_error_message(buf, 1, NULL) == SML_BUFFER_TOO_SMALL && buf[0] == '\0',
          "one-byte buffer");

    /* NULL with a length is refused, but the length is still reported. */
    needed = 0;
    CHECK(sml_last_error_message(NULL, 10, &needed) == SML_NULL_POINTER && needed == needed_len,
          "NULL buffer: needed %zu", needed);

    /* out_len may be NULL; reading the message does not change it. */
    CHECK(sml_last_error_message(buf, sizeof buf, NULL) == SML_OK && strcmp(buf, MESSAGE) == 0,
          "after reads: \"%s\"", buf);

    /* A success clears it. */
    double z = 1.0, loss = 0.0;
    unsigned char label = 0;
    CHECK(sml_softmax_loss_f64(&z, &label, 1, 1, &loss) == SML_OK && loss == 0.0, "loss %g",
          loss);
    CHECK(sml_last_error_message(buf, sizeof buf, &needed) == SML_OK && buf[0] == '\0' &&
              needed == 1,
          "after success: \"%s\"", buf);

    /* The course entry points leave the reason the same way. */
    float nan_loss = softmax_loss_cpp(NULL, &label, 1, 1);
    CHECK(isnan(nan_loss), "softmax_loss_cpp(NULL) = %g", (double)nan_loss);
    CHECK(strcmp(last_error(), "Z is NULL but must hold 1 elements") == 0, "\"%s\"",
          last_error());
}

static void check_panic(void) {
    for (int i = 0; i < 3; i++) {
        sml_status st = sml_test_panic();
        CHECK(st == SML_PANIC, "sml_test_panic() = %s", sml_status_str(st));
        const char *message = last_error();
        CHECK(strstr(message, "panic inside simple_ml") != NULL &&
                  strstr(message, "sml_test_panic was called") != NULL,
              "message \"%s\"", message);
    }
    /* The process and the library carry on normally. */
    float theta[4] = {0};
    const float X[4] = {1, 2, 3, 4};
    const unsigned char y[2] = {0, 1};
    CHECK(sml_softmax_regression_epoch(X, y, theta, 2, 2, 2, 0.5f, 2) == SML_OK, "%s",
          last_error());
    CHECK(last_error()[0] == '\0' && theta[0] != 0.0f, "after a panic: \"%s\"", last_error());
}

static void check_dataset_ownership(const char *data_dir) {
    sml_dataset_free(NULL);
    CHECK(sml_dataset_count(NULL) == 0 && sml_dataset_features(NULL) == 0 &&
              sml_dataset_image_rows(NULL) == 0 && sml_dataset_image_cols(NULL) == 0,
          "accessors on NULL");
    CHECK(sml_dataset_images(NULL) == NULL && sml_dataset_labels(NULL) == NULL,
          "array accessors on NULL");
    CHECK(sml_dataset_images_mut(NULL) == NULL && sml_dataset_labels_mut(NULL) == NULL,
          "writable array accessors on NULL");
    /* Read and free twice: leak checkers see both. */
    for (int i = 0; i < 2; i++) {
        sml_dataset *ds = read_mnist(data_dir, "t10k");
        CHECK(sml_dataset_count(ds) == 10000, "count %zu", sml_dataset_count(ds));
        CHECK(sml_dataset_labels(ds)[0] == 7, "first test label %d", sml_dataset_labels(ds)[0]);
        /* The images start on a cache line, so 16-float chunks of rows of
           784 never straddle two. */
        CHECK((uintptr_t)sml_dataset_images(ds) % 64 == 0, "images at %p",
              (const void *)sml_dataset_images(ds));
        /* The writable accessors give the same arrays, which the caller
           may change. */
        float *X = sml_dataset_images_mut(ds);
        unsigned char *y = sml_dataset_labels_mut(ds);
        CHECK(X == sml_dataset_images(ds) && y == sml_dataset_labels(ds),
              "writable accessors give other arrays");
        size_t last = sml_dataset_count(ds) * sml_dataset_features(ds) - 1;
        X[last] = 2.0f;
        y[0] = 3;
        CHECK(sml_dataset_images(ds)[last] == 2.0f && sml_dataset_labels(ds)[0] == 3,
              "writes through the writable accessors are not seen");
        sml_dataset_free(ds);
    }
}

/* Thread count and code path: settable, reported, and without effect on results. */
static void check_threads_and_simd(void) {
    const char *level = sml_simd_level();
    CHECK(level != NULL && (strcmp(level, "avx512") == 0 || strcmp(level, "avx2") == 0 ||
                            strcmp(level, "portable") == 0),
          "sml_simd_level() = \"%s\"", level ? level : "(null)");
    size_t before = sml_num_threads();
    CHECK(before >= 1, "sml_num_threads() = %zu", before);
    /* big enough (m·n > 4M) that the library really splits the work 3 ways */
    enum { M = 6000, N = 800, K = 10 };
    static float X[M * N], theta1[N * K], theta3[N * K];
    static unsigned char y[M];
    for (size_t i = 0; i < M * N; i++) X[i] = (i * 7919 % 13 < 4) ? (float)(i % 255) / 255.0f : 0.0f;
    for (size_t i = 0; i < M; i++) y[i] = (unsigned char)(i * 31 % K);
    sml_set_num_threads(1);
    CHECK(sml_num_threads() == 1, "after set 1: %zu", sml_num_threads());
    CHECK(sml_softmax_regression_epoch(X, y, theta1, M, N, K, 0.5f, 50) == SML_OK, "%s", last_error());
    sml_set_num_threads(3);
    CHECK(sml_num_threads() == 3, "after set 3: %zu", sml_num_threads());
    CHECK(sml_softmax_regression_epoch(X, y, theta3, M, N, K, 0.5f, 50) == SML_OK, "%s", last_error());
    CHECK(memcmp(theta1, theta3, sizeof theta1) == 0, "1 and 3 threads differ");
    sml_set_num_threads(0);
    CHECK(sml_num_threads() >= 1, "after reset: %zu", sml_num_threads());
}

int main(int argc, char **argv) {
    struct test_args args = parse_args(argc, argv);
    check_threads_and_simd();
    check_version();
    check_status_names();
    check_last_error_buffer();
    check_panic();
    check_dataset_ownership(args.data_dir);
    return finish("api");
}
