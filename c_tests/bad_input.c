/*
 * The bad-input matrix: every refusal path of every entry point, through the
 * C API alone. Each case starts from a valid call, changes one thing, and
 * checks the status, the calling thread's last error message, and that no
 * byte of any array (outputs and inputs) changed unless the case succeeds
 * and says it writes.
 *
 * `bad_input --print-table` prints the matrix as the markdown table that
 * docs/C_API.md carries (tests/c_api.rs checks the two agree).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <sys/stat.h>

#include "common.h"

_Static_assert(sizeof(size_t) == 8, "the overflow cases assume a 64-bit size_t");

#define M 8
#define N 5
#define D 4
#define K 3

/* Everything a call may touch, in one block so that one memcmp shows
 * whether anything changed. Outputs start as a sentinel byte pattern. */
struct workspace {
    float X[M * N];
    _Alignas(float) unsigned char y[M];
    unsigned char y_test[M];
    float Z[M * K];
    double Z64[M * K];
    float theta[N * K];
    float W1[N * D];
    float W2[D * K];
    double loss;
    double err;
    uint32_t out[M];
    size_t epochs_run;
    sml_data train;
    sml_data test;
    sml_data test_narrow;
    sml_dataset *ds;
};

static const struct {
    const char *name;
    size_t offset, size;
} FIELDS[] = {
#define FIELD(f) {#f, offsetof(struct workspace, f), sizeof(((struct workspace *)0)->f)}
    FIELD(X),     FIELD(y),  FIELD(y_test), FIELD(Z),     FIELD(Z64),  FIELD(theta),
    FIELD(W1),    FIELD(W2), FIELD(loss),   FIELD(err),   FIELD(out),  FIELD(epochs_run),
    FIELD(train), FIELD(test),              FIELD(test_narrow),       FIELD(ds),
#undef FIELD
};

#define SENTINEL 0xA5

static void reset_workspace(struct workspace *w) {
    memset(w, SENTINEL, sizeof *w);
    for (size_t e = 0; e < M * N; e++) {
        w->X[e] = (float)sin(0.37 * (double)e + 0.1); /* dense: no zero entries */
    }
    for (size_t i = 0; i < M; i++) {
        w->y[i] = w->y_test[i] = (unsigned char)((i * 2 + 1) % K);
    }
    for (size_t e = 0; e < M * K; e++) {
        w->Z[e] = (float)cos(0.91 * (double)e);
        w->Z64[e] = cos(0.91 * (double)e);
    }
    w->train = (sml_data){w->X, w->y, M, N};
    w->test = (sml_data){w->X, w->y_test, M, N};
    w->test_narrow = (sml_data){w->X, w->y_test, M / 2, N - 1};
}

static const char *changed_field(const struct workspace *a, const struct workspace *b) {
    for (size_t f = 0; f < sizeof FIELDS / sizeof FIELDS[0]; f++) {
        if (memcmp((const char *)a + FIELDS[f].offset, (const char *)b + FIELDS[f].offset,
                   FIELDS[f].size) != 0) {
            return FIELDS[f].name;
        }
    }
    return "padding";
}

/* ---- small IDX files, plain and gzip, written into the scratch directory ---- */

enum file_id {
    F_IMAGES, F_LABELS, F_LABELS9, F_IMAGES_GZ, F_LABELS_GZ, F_MISSING, F_DIRECTORY, F_EMPTY,
    F_SHORT_HEADER, F_SHORT_BODY, F_TRAILING, F_BAD_MAGIC, F_ZERO_DIM, F_HUGE, F_HUGE_GZ,
    F_CORRUPT_GZ, F_CUT_GZ, F_TRAILING_GZ, F_COUNT
};
static char paths[F_COUNT][4096];

static const unsigned char IMAGE_BODY[12] = {0, 51, 102, 153, 204, 255, 1, 2, 3, 254, 128, 7};
static const unsigned char LABEL_BODY[9] = {1, 2, 0, 9, 8, 7, 6, 5, 4};

static size_t put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
    return 4;
}

static size_t put_le32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
    return 4;
}

/* An IDX file: magic, dimensions, then `body_len` bytes of `body`. */
static size_t idx_file(unsigned char *buf, uint32_t magic, const uint32_t *dims, size_t ndims,
                       const unsigned char *body, size_t body_len) {
    size_t len = put_be32(buf, magic);
    for (size_t i = 0; i < ndims; i++) {
        len += put_be32(buf + len, dims[i]);
    }
    memcpy(buf + len, body, body_len);
    return len + body_len;
}

static uint32_t crc32_ieee(const unsigned char *p, size_t len) {
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) {
        crc ^= p[i];
        for (int b = 0; b < 8; b++) {
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
        }
    }
    return ~crc;
}

/* A gzip member holding `data` in one stored (uncompressed) deflate block. */
static size_t gzip_stored(unsigned char *out, const unsigned char *data, size_t len) {
    static const unsigned char header[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff};
    size_t n = 0;
    memcpy(out, header, sizeof header);
    n += sizeof header;
    out[n++] = 0x01; /* BFINAL = 1, BTYPE = stored */
    out[n++] = (unsigned char)len;
    out[n++] = (unsigned char)(len >> 8);
    out[n++] = (unsigned char)~len;
    out[n++] = (unsigned char)(~len >> 8);
    memcpy(out + n, data, len);
    n += len;
    n += put_le32(out + n, crc32_ieee(data, len));
    n += put_le32(out + n, (uint32_t)len);
    return n;
}

static void set_path(enum file_id id, const char *dir, const char *name) {
    int len = snprintf(paths[id], sizeof paths[id], "%s%s%s", dir, name[0] ? "/" : "", name);
    REQUIRE(len > 0 && (size_t)len < sizeof paths[id], "path too long: %s/%s", dir, name);
}

static void write_file(enum file_id id, const char *dir, const char *name,
                       const unsigned char *bytes, size_t len) {
    set_path(id, dir, name);
    FILE *f = fopen(paths[id], "wb");
    REQUIRE(f != NULL, "cannot create %s: %s", paths[id], strerror(errno));
    REQUIRE(fwrite(bytes, 1, len, f) == len && fclose(f) == 0, "cannot write %s", paths[id]);
}

static void write_files(const char *scratch) {
    char dir[4096];
    int dir_len = snprintf(dir, sizeof dir, "%s/idx", scratch);
    REQUIRE(dir_len > 0 && (size_t)dir_len < sizeof dir, "scratch path too long");
    REQUIRE(mkdir(dir, 0700) == 0 || errno == EEXIST, "mkdir %s: %s", dir, strerror(errno));
    unsigned char img[64], lab[64], buf[256];
    const uint32_t img_dims[3] = {3, 2, 2}, lab_dims[1] = {3}, lab9_dims[1] = {9};
    size_t img_len = idx_file(img, 0x803, img_dims, 3, IMAGE_BODY, 12);
    size_t lab_len = idx_file(lab, 0x801, lab_dims, 1, LABEL_BODY, 3);
    write_file(F_IMAGES, dir, "images.idx", img, img_len);
    write_file(F_LABELS, dir, "labels.idx", lab, lab_len);
    size_t n = idx_file(buf, 0x801, lab9_dims, 1, LABEL_BODY, 9);
    write_file(F_LABELS9, dir, "labels9.idx", buf, n);
    n = gzip_stored(buf, img, img_len);
    write_file(F_IMAGES_GZ, dir, "images.idx.gz", buf, n);
    write_file(F_CUT_GZ, dir, "cut.idx.gz", buf, 22);
    n = gzip_stored(buf, lab, lab_len);
    write_file(F_LABELS_GZ, dir, "labels.idx.gz", buf, n);
    set_path(F_MISSING, dir, "missing.idx");
    set_path(F_DIRECTORY, dir, "");
    write_file(F_EMPTY, dir, "empty.idx", img, 0);
    write_file(F_SHORT_HEADER, dir, "short-header.idx", img, 10);
    write_file(F_SHORT_BODY, dir, "short-body.idx", img, img_len - 1);
    memcpy(buf, img, img_len);
    buf[img_len] = 42;
    write_file(F_TRAILING, dir, "trailing.idx", buf, img_len + 1);
    unsigned char trailing[64];
    memcpy(trailing, buf, img_len + 1);
    n = gzip_stored(buf, trailing, img_len + 1);
    write_file(F_TRAILING_GZ, dir, "trailing.idx.gz", buf, n);
    const uint32_t dims804[4] = {3, 2, 2, 1};
    n = idx_file(buf, 0x804, dims804, 3, IMAGE_BODY, 12);
    write_file(F_BAD_MAGIC, dir, "bad-magic.idx", buf, n);
    const uint32_t zero_dims[3] = {3, 0, 2};
    n = idx_file(buf, 0x803, zero_dims, 3, IMAGE_BODY, 12);
    write_file(F_ZERO_DIM, dir, "zero-dim.idx", buf, n);
    const uint32_t huge_dims[3] = {1u << 30, 28, 28};
    unsigned char huge[64];
    size_t huge_len = idx_file(huge, 0x803, huge_dims, 3, IMAGE_BODY, 12);
    write_file(F_HUGE, dir, "huge.idx", huge, huge_len);
    n = gzip_stored(buf, huge, huge_len);
    write_file(F_HUGE_GZ, dir, "huge.idx.gz", buf, n);
    static const unsigned char corrupt[24] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff,
                                              0xff, 0xff, 0x13, 0x37, 0, 1, 2, 3, 4, 5, 6, 7};
    write_file(F_CORRUPT_GZ, dir, "corrupt.idx.gz", corrupt, sizeof corrupt);
}

/* ---- the calls ---- */

enum entry {
    SR_EPOCH, SR_EPOCH_CPP, NN_EPOCH, NN_EPOCH_CPP, LOSS_F32, LOSS_F64, LOSS_CPP, LOSS_ERR_F32,
    LOSS_ERR_F64, SR_LOSS_ERR, NN_LOSS_ERR, SR_PREDICT, NN_PREDICT, INIT_WEIGHTS, TRAIN_SOFTMAX,
    TRAIN_NN, TRAIN_SOFTMAX_STOPPABLE, TRAIN_NN_STOPPABLE, MNIST_READ
};

static const char *const ENTRY_NAME[] = {
    "sml_softmax_regression_epoch", "softmax_regression_epoch_cpp", "sml_nn_epoch",
    "nn_epoch_cpp", "sml_softmax_loss_f32", "sml_softmax_loss_f64", "softmax_loss_cpp",
    "sml_loss_err_f32", "sml_loss_err_f64", "sml_softmax_regression_loss_err",
    "sml_nn_loss_err", "sml_softmax_regression_predict", "sml_nn_predict",
    "sml_nn_init_weights", "sml_train_softmax", "sml_train_nn", "sml_train_softmax_stoppable",
    "sml_train_nn_stoppable", "sml_mnist_read",
};

/* The arguments of any entry point; a case edits the valid default. */
struct call {
    const float *X;
    const unsigned char *y;
    const float *Z;
    const double *Z64;
    float *theta, *W1, *W2;
    size_t m, n, d, k, epochs;
    float lr;
    size_t batch;
    double *out_loss, *out_err;
    uint32_t *out;
    size_t *epochs_run;
    sml_epoch_control control;
    const sml_data *train, *test;
    const char *image_path, *label_path;
    sml_dataset **ds_out;
};

static size_t callback_calls;

static void count_epochs(const sml_epoch_report *report, void *user) {
    (void)report;
    (void)user;
    callback_calls++;
}

static int count_and_go_on(const sml_epoch_report *report, void *user) {
    count_epochs(report, user);
    return 0;
}

static int count_and_stop(const sml_epoch_report *report, void *user) {
    count_epochs(report, user);
    return 1;
}

static struct call default_call(struct workspace *w) {
    struct call c = {0};
    c.X = w->X;
    c.y = w->y;
    c.Z = w->Z;
    c.Z64 = w->Z64;
    c.theta = w->theta;
    c.W1 = w->W1;
    c.W2 = w->W2;
    c.m = M;
    c.n = N;
    c.d = D;
    c.k = K;
    c.epochs = 2;
    c.lr = 0.1f;
    c.batch = 3;
    c.out_loss = &w->loss;
    c.out_err = &w->err;
    c.out = w->out;
    c.epochs_run = &w->epochs_run;
    c.control = count_and_go_on;
    c.train = &w->train;
    c.test = &w->test;
    c.image_path = paths[F_IMAGES];
    c.label_path = paths[F_LABELS];
    c.ds_out = &w->ds;
    return c;
}

static int is_void_entry(enum entry e) {
    return e == SR_EPOCH_CPP || e == NN_EPOCH_CPP || e == LOSS_CPP;
}

/* Calls the entry point; the course entry points report -1 (no status). */
static sml_status dispatch(enum entry e, const struct call *c, float *cpp_loss) {
    switch (e) {
    case SR_EPOCH:
        return sml_softmax_regression_epoch(c->X, c->y, c->theta, c->m, c->n, c->k, c->lr,
                                            c->batch);
    case SR_EPOCH_CPP:
        softmax_regression_epoch_cpp(c->X, c->y, c->theta, c->m, c->n, c->k, c->lr, c->batch);
        return -1;
    case NN_EPOCH:
        return sml_nn_epoch(c->X, c->y, c->W1, c->W2, c->m, c->n, c->d, c->k, c->lr, c->batch);
    case NN_EPOCH_CPP:
        nn_epoch_cpp(c->X, c->y, c->W1, c->W2, c->m, c->n, c->d, c->k, c->lr, c->batch);
        return -1;
    case LOSS_F32:
        return sml_softmax_loss_f32(c->Z, c->y, c->m, c->k, c->out_loss);
    case LOSS_F64:
        return sml_softmax_loss_f64(c->Z64, c->y, c->m, c->k, c->out_loss);
    case LOSS_CPP:
        *cpp_loss = softmax_loss_cpp(c->Z, c->y, c->m, c->k);
        return -1;
    case LOSS_ERR_F32:
        return sml_loss_err_f32(c->Z, c->y, c->m, c->k, c->out_loss, c->out_err);
    case LOSS_ERR_F64:
        return sml_loss_err_f64(c->Z64, c->y, c->m, c->k, c->out_loss, c->out_err);
    case SR_LOSS_ERR:
        return sml_softmax_regression_loss_err(c->X, c->y, c->theta, c->m, c->n, c->k,
                                               c->out_loss, c->out_err);
    case NN_LOSS_ERR:
        return sml_nn_loss_err(c->X, c->y, c->W1, c->W2, c->m, c->n, c->d, c->k, c->out_loss,
                               c->out_err);
    case SR_PREDICT:
        return sml_softmax_regression_predict(c->X, c->theta, c->m, c->n, c->k, c->out);
    case NN_PREDICT:
        return sml_nn_predict(c->X, c->W1, c->W2, c->m, c->n, c->d, c->k, c->out);
    case INIT_WEIGHTS:
        return sml_nn_init_weights(0, c->n, c->d, c->k, c->W1, c->W2);
    case TRAIN_SOFTMAX:
        return sml_train_softmax(c->train, c->test, c->k, c->epochs, c->lr, c->batch, c->theta,
                                 count_epochs, NULL);
    case TRAIN_NN:
        return sml_train_nn(c->train, c->test, c->k, c->d, c->epochs, c->lr, c->batch, 0, c->W1,
                            c->W2, count_epochs, NULL);
    case TRAIN_SOFTMAX_STOPPABLE:
        return sml_train_softmax_stoppable(c->train, c->test, c->k, c->epochs, c->lr, c->batch,
                                           c->theta, c->control, NULL, c->epochs_run);
    case TRAIN_NN_STOPPABLE:
        return sml_train_nn_stoppable(c->train, c->test, c->k, c->d, c->epochs, c->lr, c->batch,
                                      0, c->W1, c->W2, c->control, NULL, c->epochs_run);
    case MNIST_READ:
        return sml_mnist_read(c->image_path, c->label_path, c->ds_out);
    }
    return -2;
}

/* ---- the edits: each changes one thing in a valid call ---- */

#define EDIT(name, body)                                                  \
    static void name(struct call *c, struct workspace *w) {               \
        (void)c;                                                          \
        (void)w;                                                          \
        body;                                                             \
    }

#define HALF_SIZE ((SIZE_MAX >> 1) + 1) /* times 2 overflows size_t */
#define HUGE_F32 ((SIZE_MAX >> 3) + 1)  /* times 4 bytes exceeds PTRDIFF_MAX */
#define TWO_32 ((size_t)1 << 32)        /* squared overflows size_t */

/* Small, distinct, deterministic weights for the cases that train. */
static void fill_weights(struct workspace *w) {
    for (size_t e = 0; e < N * K; e++) {
        w->theta[e] = (float)(0.05 * sin(1.3 * (double)e));
    }
    for (size_t e = 0; e < N * D; e++) {
        w->W1[e] = (float)(0.5 * cos(0.7 * (double)e + 0.2));
    }
    for (size_t e = 0; e < D * K; e++) {
        w->W2[e] = (float)(0.5 * sin(0.9 * (double)e + 0.4));
    }
}

EDIT(none, )
EDIT(x_null, c->X = NULL)
EDIT(y_null, c->y = NULL)
EDIT(z_null, c->Z = NULL)
EDIT(z64_null, c->Z64 = NULL)
EDIT(theta_null, c->theta = NULL)
EDIT(w1_null, c->W1 = NULL)
EDIT(w2_null, c->W2 = NULL)
EDIT(out_loss_null, c->out_loss = NULL)
EDIT(out_err_null, c->out_err = NULL)
EDIT(out_null, c->out = NULL)
EDIT(n_zero, c->n = 0)
EDIT(d_zero, c->d = 0)
EDIT(k_zero, c->k = 0)
EDIT(m_zero_nulls, c->m = 0; c->X = NULL; c->y = NULL; c->Z = NULL; c->out = NULL)
EDIT(m_zero, c->m = 0)
EDIT(m_times_n_overflows, c->m = HALF_SIZE; c->n = 2)
EDIT(x_bytes_overflow, c->m = HUGE_F32; c->n = 1)
EDIT(n_times_k_overflows, c->m = 0; c->n = TWO_32; c->k = TWO_32)
EDIT(n_times_d_overflows, c->m = 0; c->n = TWO_32; c->d = TWO_32)
EDIT(zero_times_huge, c->m = 0; c->n = HALF_SIZE)
EDIT(d_times_k_overflows, c->m = 0; c->n = 1; c->d = TWO_32; c->k = TWO_32)
EDIT(w1_bytes_overflow, c->m = 0; c->n = 1; c->d = HUGE_F32)
EDIT(m_times_k_overflows, c->m = HALF_SIZE; c->k = 2)
EDIT(z64_bytes_overflow, c->m = (SIZE_MAX >> 4) + 1; c->k = 1)
EDIT(label_k, w->y[5] = K)
EDIT(label_255, w->y[0] = 255)
EDIT(lr_nan, c->lr = NAN)
EDIT(lr_inf, c->lr = INFINITY)
EDIT(lr_minus_inf, c->lr = -INFINITY)
EDIT(batch_zero, c->batch = 0)
EDIT(batch_over_m, c->batch = 100; fill_weights(w))
EDIT(theta_over_x, c->theta = w->X + 2)
EDIT(theta_over_y, c->theta = (float *)(void *)w->y)
EDIT(w2_over_w1, c->W2 = w->W1 + 3)
EDIT(w1_over_x, c->W1 = w->X + 10)
EDIT(w2_over_y, c->W2 = (float *)(void *)w->y)
EDIT(out_over_x, c->out = (uint32_t *)(void *)(w->X + 1))
EDIT(out_over_theta, c->out = (uint32_t *)(void *)w->theta)
EDIT(nan_in_x, w->X[1] = NAN; fill_weights(w))
EDIT(nan_in_z, w->Z[4] = NAN)
EDIT(nan_in_z64, w->Z64[4] = NAN)
EDIT(train_null, c->train = NULL)
EDIT(test_null, c->test = NULL)
EDIT(test_narrow, c->test = &w->test_narrow)
EDIT(train_y_null, w->train.y = NULL)
EDIT(test_x_null, w->test.X = NULL)
EDIT(test_label_k, w->y_test[2] = K)
EDIT(theta_over_train_x, c->theta = w->X + 1)
EDIT(w1_over_test_y, w->test.y = (const unsigned char *)(void *)w->W1)
EDIT(epochs_zero, c->epochs = 0)
EDIT(epochs_run_over_theta, c->epochs_run = (size_t *)(void *)(w->theta + 2))
EDIT(epochs_run_over_train_x, c->epochs_run = (size_t *)(void *)w->X)
EDIT(epochs_run_misaligned, c->epochs_run = (size_t *)(void *)((char *)&w->epochs_run + 1))
EDIT(stop_after_first, c->control = count_and_stop)
EDIT(epochs_run_null, c->epochs_run = NULL)
EDIT(image_path_null, c->image_path = NULL)
EDIT(label_path_null, c->label_path = NULL)
EDIT(ds_out_null, c->ds_out = NULL)
EDIT(gzip_pair, c->image_path = paths[F_IMAGES_GZ]; c->label_path = paths[F_LABELS_GZ])
EDIT(missing_file, c->image_path = paths[F_MISSING])
EDIT(directory, c->label_path = paths[F_DIRECTORY])
EDIT(empty_file, c->image_path = paths[F_EMPTY])
EDIT(short_header, c->image_path = paths[F_SHORT_HEADER])
EDIT(short_body, c->image_path = paths[F_SHORT_BODY])
EDIT(trailing_byte, c->image_path = paths[F_TRAILING])
EDIT(bad_magic, c->image_path = paths[F_BAD_MAGIC])
EDIT(labels_as_images, c->image_path = paths[F_LABELS9])
EDIT(images_as_labels, c->label_path = paths[F_IMAGES])
EDIT(count_mismatch, c->label_path = paths[F_LABELS9])
EDIT(zero_dimension, c->image_path = paths[F_ZERO_DIM])
EDIT(huge_count, c->image_path = paths[F_HUGE])
EDIT(huge_count_gz, c->image_path = paths[F_HUGE_GZ])
EDIT(corrupt_gz, c->image_path = paths[F_CORRUPT_GZ])
EDIT(cut_gz, c->image_path = paths[F_CUT_GZ])
EDIT(trailing_gz, c->image_path = paths[F_TRAILING_GZ])

/* ---- checks of what a successful case wrote ---- */

typedef void (*verify_fn)(const struct workspace *before, const struct workspace *after,
                          const struct call *c);

static size_t count_nan(const float *a, size_t len) {
    size_t nan = 0;
    for (size_t i = 0; i < len; i++) {
        nan += isnan(a[i]) != 0;
    }
    return nan;
}

/* batch > m is one batch of all m rows: the same bits as batch = m. */
static void same_as_batch_m(const struct workspace *before, const struct workspace *after,
                            const struct call *c) {
    struct workspace ref = *before;
    float theta[N * K], W1[N * D], W2[D * K];
    memcpy(theta, ref.theta, sizeof theta);
    memcpy(W1, ref.W1, sizeof W1);
    memcpy(W2, ref.W2, sizeof W2);
    CHECK(sml_softmax_regression_epoch(ref.X, ref.y, theta, M, N, K, c->lr, M) == SML_OK, "%s",
          last_error());
    CHECK(sml_nn_epoch(ref.X, ref.y, W1, W2, M, N, D, K, c->lr, M) == SML_OK, "%s",
          last_error());
    int theta_changed = memcmp(after->theta, before->theta, sizeof theta) != 0;
    int nn_changed = memcmp(after->W1, before->W1, sizeof W1) != 0 ||
                     memcmp(after->W2, before->W2, sizeof W2) != 0;
    CHECK(theta_changed != nn_changed, "expected exactly one model to be trained");
    if (theta_changed) {
        CHECK(memcmp(after->theta, theta, sizeof theta) == 0, "batch > m differs from batch = m");
    } else {
        CHECK(memcmp(after->W1, W1, sizeof W1) == 0 && memcmp(after->W2, W2, sizeof W2) == 0,
              "batch > m differs from batch = m");
    }
}

static void theta_all_nan(const struct workspace *before, const struct workspace *after,
                          const struct call *c) {
    (void)before;
    (void)c;
    CHECK(count_nan(after->theta, N * K) == N * K, "%zu of %d theta entries are NaN",
          count_nan(after->theta, N * K), N * K);
}

static void weights_have_nan(const struct workspace *before, const struct workspace *after,
                             const struct call *c) {
    (void)before;
    (void)c;
    CHECK(count_nan(after->W1, N * D) > 0 && count_nan(after->W2, D * K) > 0,
          "NaN reached %zu entries of W1 and %zu of W2", count_nan(after->W1, N * D),
          count_nan(after->W2, D * K));
}

static void loss_is_nan(const struct workspace *before, const struct workspace *after,
                        const struct call *c) {
    (void)before;
    (void)c;
    CHECK(isnan(after->loss), "loss %g", after->loss);
}

static void theta_is_zero(const struct workspace *before, const struct workspace *after,
                          const struct call *c) {
    (void)before;
    (void)c;
    for (size_t e = 0; e < N * K; e++) {
        CHECK(after->theta[e] == 0.0f, "theta[%zu] = %g after 0 epochs", e, (double)after->theta[e]);
    }
    CHECK(callback_calls == 0, "the callback ran %zu times for 0 epochs", callback_calls);
}

/* Stopped by its callback after the first of 2 epochs: *epochs_run = 1 and
 * the weights of one epoch, as a 1-epoch sml_train_* call gives them. */
static void stopped_after_one(const struct workspace *after, const struct workspace *one) {
    CHECK(callback_calls == 1, "the callback ran %zu times", callback_calls);
    CHECK(after->epochs_run == 1, "epochs_run = %zu", after->epochs_run);
    CHECK(memcmp(after->theta, one->theta, sizeof one->theta) == 0, "theta differs");
    CHECK(memcmp(after->W1, one->W1, sizeof one->W1) == 0, "W1 differs");
    CHECK(memcmp(after->W2, one->W2, sizeof one->W2) == 0, "W2 differs");
}

static void softmax_stopped_after_one(const struct workspace *before,
                                      const struct workspace *after, const struct call *c) {
    (void)before;
    static struct workspace one;
    reset_workspace(&one);
    REQUIRE(sml_train_softmax(&one.train, &one.test, c->k, 1, c->lr, c->batch, one.theta, NULL,
                              NULL) == SML_OK,
            "%s", last_error());
    stopped_after_one(after, &one);
}

static void nn_stopped_after_one(const struct workspace *before, const struct workspace *after,
                                 const struct call *c) {
    (void)before;
    static struct workspace one;
    reset_workspace(&one);
    REQUIRE(sml_train_nn(&one.train, &one.test, c->k, c->d, 1, c->lr, c->batch, 0, one.W1, one.W2,
                         NULL, NULL) == SML_OK,
            "%s", last_error());
    stopped_after_one(after, &one);
}

/* Never stopped: both epochs run, *epochs_run = 2 unless it is NULL. */
static void ran_both_epochs(const struct workspace *before, const struct workspace *after,
                            const struct call *c) {
    CHECK(callback_calls == 2, "the callback ran %zu times", callback_calls);
    if (c->epochs_run != NULL) {
        CHECK(after->epochs_run == 2, "epochs_run = %zu", after->epochs_run);
    } else {
        CHECK(after->epochs_run == before->epochs_run, "epochs_run written through NULL?");
    }
}

static void read_the_small_files(const struct workspace *before, const struct workspace *after,
                                 const struct call *c) {
    (void)before;
    (void)c;
    sml_dataset *ds = after->ds;
    CHECK(sml_dataset_count(ds) == 3 && sml_dataset_features(ds) == 4 &&
              sml_dataset_image_rows(ds) == 2 && sml_dataset_image_cols(ds) == 2,
          "shape %zu x %zu", sml_dataset_count(ds), sml_dataset_features(ds));
    const float *X = sml_dataset_images(ds);
    const unsigned char *y = sml_dataset_labels(ds);
    for (size_t i = 0; X != NULL && i < 12; i++) {
        CHECK(X[i] == (float)IMAGE_BODY[i] / 255.0f, "pixel %zu = %g", i, (double)X[i]);
    }
    CHECK(y != NULL && memcmp(y, LABEL_BODY, 3) == 0, "labels differ");
    sml_dataset_free(ds);
}

/* ---- the matrix ---- */

enum writes { UNTOUCHED, WRITES };

struct bad_case {
    enum entry entry;
    const char *input;   /* what is wrong with the call, for the table */
    void (*edit)(struct call *, struct workspace *);
    sml_status expected; /* for the course entry points: SML_OK or "refused" */
    const char *message; /* substring of the last error; "" for success */
    enum writes writes;
    verify_fn verify;
    const char *outcome; /* for the table */
};

#define REFUSED SML_INVALID_ARGUMENT /* a course entry point refuses: status unknown */

static const struct bad_case CASES[] = {
    /* softmax regression epoch */
    {SR_EPOCH, "`X = NULL`", x_null, SML_NULL_POINTER, "X is NULL", UNTOUCHED, NULL, ""},
    {SR_EPOCH, "`y = NULL`", y_null, SML_NULL_POINTER, "y is NULL", UNTOUCHED, NULL, ""},
    {SR_EPOCH, "`theta = NULL`", theta_null, SML_NULL_POINTER, "theta is NULL", UNTOUCHED, NULL, ""},
    {SR_EPOCH, "`n = 0`", n_zero, SML_INVALID_ARGUMENT, "n (columns of X) must be positive", UNTOUCHED, NULL, ""},
    {SR_EPOCH, "`k = 0`", k_zero, SML_INVALID_ARGUMENT, "k (columns of theta) must be positive", UNTOUCHED, NULL, ""},
    {SR_EPOCH, "`m*n` overflows `size_t`", m_times_n_overflows, SML_SIZE_OVERFLOW, "X: 9223372036854775808 x 2 elements overflow", UNTOUCHED, NULL, ""},
    {SR_EPOCH, "`m*n*sizeof(float)` > `PTRDIFF_MAX`", x_bytes_overflow, SML_SIZE_OVERFLOW, "X: 2305843009213693952 x 1 elements overflow", UNTOUCHED, NULL, ""},
    {SR_EPOCH, "`n = k = 2^32`: `n*k` overflows (`m = 0`)", n_times_k_overflows, SML_SIZE_OVERFLOW, "theta: 4294967296 x 4294967296 elements overflow", UNTOUCHED, NULL, ""},
    {SR_EPOCH, "`m = 0`, `n = 2^63` (no element, absurd size)", zero_times_huge, SML_SIZE_OVERFLOW, "X: 0 x 9223372036854775808 elements overflow", UNTOUCHED, NULL, ""},
    {SR_EPOCH, "label `y[5] = k`", label_k, SML_LABEL_OUT_OF_RANGE, "label 3 at row 5 is out of range for 3 classes", UNTOUCHED, NULL, ""},
    {SR_EPOCH, "label `y[0] = 255`", label_255, SML_LABEL_OUT_OF_RANGE, "label 255 at row 0", UNTOUCHED, NULL, ""},
    {SR_EPOCH, "`lr = NaN`", lr_nan, SML_INVALID_ARGUMENT, "learning rate must be finite, got NaN", UNTOUCHED, NULL, ""},
    {SR_EPOCH, "`lr = +inf`", lr_inf, SML_INVALID_ARGUMENT, "learning rate must be finite, got inf", UNTOUCHED, NULL, ""},
    {SR_EPOCH, "`lr = -inf`", lr_minus_inf, SML_INVALID_ARGUMENT, "learning rate must be finite, got -inf", UNTOUCHED, NULL, ""},
    {SR_EPOCH, "`batch = 0`", batch_zero, SML_INVALID_ARGUMENT, "batch must be positive", UNTOUCHED, NULL, ""},
    {SR_EPOCH, "`batch = 100 > m = 8`", batch_over_m, SML_OK, "", WRITES, same_as_batch_m, "one batch of all m rows: same bits as `batch = m`"},
    {SR_EPOCH, "`m = 0`, `X = y = NULL`", m_zero_nulls, SML_OK, "", UNTOUCHED, NULL, "no-op: theta untouched"},
    {SR_EPOCH, "`theta` inside `X`", theta_over_x, SML_INVALID_ARGUMENT, "theta overlaps X in memory", UNTOUCHED, NULL, ""},
    {SR_EPOCH, "`theta` over `y`", theta_over_y, SML_INVALID_ARGUMENT, "theta overlaps y in memory", UNTOUCHED, NULL, ""},
    {SR_EPOCH, "`X[0][1] = NaN`", nan_in_x, SML_OK, "", WRITES, theta_all_nan, "every entry of theta becomes NaN"},
    /* the course's softmax entry point */
    {SR_EPOCH_CPP, "`theta = NULL`", theta_null, REFUSED, "theta is NULL", UNTOUCHED, NULL, ""},
    {SR_EPOCH_CPP, "`X = NULL`", x_null, REFUSED, "X is NULL", UNTOUCHED, NULL, ""},
    {SR_EPOCH_CPP, "label `y[5] = k`", label_k, REFUSED, "label 3 at row 5", UNTOUCHED, NULL, ""},
    {SR_EPOCH_CPP, "`batch = 0`", batch_zero, REFUSED, "batch must be positive", UNTOUCHED, NULL, ""},
    {SR_EPOCH_CPP, "`lr = NaN`", lr_nan, REFUSED, "learning rate must be finite", UNTOUCHED, NULL, ""},
    {SR_EPOCH_CPP, "`m*n` overflows `size_t`", m_times_n_overflows, REFUSED, "elements overflow", UNTOUCHED, NULL, ""},
    {SR_EPOCH_CPP, "`theta` inside `X`", theta_over_x, REFUSED, "theta overlaps X", UNTOUCHED, NULL, ""},
    {SR_EPOCH_CPP, "`m = 0`, `X = y = NULL`", m_zero_nulls, SML_OK, "", UNTOUCHED, NULL, "no-op, no error"},
    /* two-layer network epoch */
    {NN_EPOCH, "`X = NULL`", x_null, SML_NULL_POINTER, "X is NULL", UNTOUCHED, NULL, ""},
    {NN_EPOCH, "`y = NULL`", y_null, SML_NULL_POINTER, "y is NULL", UNTOUCHED, NULL, ""},
    {NN_EPOCH, "`W1 = NULL`", w1_null, SML_NULL_POINTER, "W1 is NULL", UNTOUCHED, NULL, ""},
    {NN_EPOCH, "`W2 = NULL`", w2_null, SML_NULL_POINTER, "W2 is NULL", UNTOUCHED, NULL, ""},
    {NN_EPOCH, "`n = 0`", n_zero, SML_INVALID_ARGUMENT, "n (columns of X) must be positive", UNTOUCHED, NULL, ""},
    {NN_EPOCH, "`d = 0`", d_zero, SML_INVALID_ARGUMENT, "d (hidden units) must be positive", UNTOUCHED, NULL, ""},
    {NN_EPOCH, "`k = 0`", k_zero, SML_INVALID_ARGUMENT, "k (columns of W2) must be positive", UNTOUCHED, NULL, ""},
    {NN_EPOCH, "`n = d = 2^32`: `n*d` overflows (`m = 0`)", n_times_d_overflows, SML_SIZE_OVERFLOW, "W1: 4294967296 x 4294967296 elements overflow", UNTOUCHED, NULL, ""},
    {NN_EPOCH, "`d = k = 2^32`: `d*k` overflows (`m = 0`, `n = 1`)", d_times_k_overflows, SML_SIZE_OVERFLOW, "W2: 4294967296 x 4294967296 elements overflow", UNTOUCHED, NULL, ""},
    {NN_EPOCH, "`n*d*sizeof(float)` > `PTRDIFF_MAX`", w1_bytes_overflow, SML_SIZE_OVERFLOW, "W1: 1 x 2305843009213693952 elements overflow", UNTOUCHED, NULL, ""},
    {NN_EPOCH, "label `y[5] = k`", label_k, SML_LABEL_OUT_OF_RANGE, "label 3 at row 5 is out of range for 3 classes", UNTOUCHED, NULL, ""},
    {NN_EPOCH, "`lr = +inf`", lr_inf, SML_INVALID_ARGUMENT, "learning rate must be finite", UNTOUCHED, NULL, ""},
    {NN_EPOCH, "`batch = 0`", batch_zero, SML_INVALID_ARGUMENT, "batch must be positive", UNTOUCHED, NULL, ""},
    {NN_EPOCH, "`batch = 100 > m = 8`", batch_over_m, SML_OK, "", WRITES, same_as_batch_m, "one batch of all m rows: same bits as `batch = m`"},
    {NN_EPOCH, "`m = 0`, `X = y = NULL`", m_zero_nulls, SML_OK, "", UNTOUCHED, NULL, "no-op: W1, W2 untouched"},
    {NN_EPOCH, "`W2` overlaps `W1`", w2_over_w1, SML_INVALID_ARGUMENT, "W1 overlaps W2 in memory", UNTOUCHED, NULL, ""},
    {NN_EPOCH, "`W1` inside `X`", w1_over_x, SML_INVALID_ARGUMENT, "W1 overlaps X in memory", UNTOUCHED, NULL, ""},
    {NN_EPOCH, "`W2` over `y`", w2_over_y, SML_INVALID_ARGUMENT, "W2 overlaps y in memory", UNTOUCHED, NULL, ""},
    {NN_EPOCH, "`X[0][1] = NaN`", nan_in_x, SML_OK, "", WRITES, weights_have_nan, "NaN reaches W1 and W2"},
    /* the course's network entry point */
    {NN_EPOCH_CPP, "`W2 = NULL`", w2_null, REFUSED, "W2 is NULL", UNTOUCHED, NULL, ""},
    {NN_EPOCH_CPP, "label `y[0] = 255`", label_255, REFUSED, "label 255 at row 0", UNTOUCHED, NULL, ""},
    {NN_EPOCH_CPP, "`lr = -inf`", lr_minus_inf, REFUSED, "learning rate must be finite", UNTOUCHED, NULL, ""},
    {NN_EPOCH_CPP, "`d = 0`", d_zero, REFUSED, "d (hidden units) must be positive", UNTOUCHED, NULL, ""},
    {NN_EPOCH_CPP, "`W2` overlaps `W1`", w2_over_w1, REFUSED, "W1 overlaps W2", UNTOUCHED, NULL, ""},
    /* losses */
    {LOSS_F32, "`Z = NULL`", z_null, SML_NULL_POINTER, "Z is NULL", UNTOUCHED, NULL, ""},
    {LOSS_F32, "`y = NULL`", y_null, SML_NULL_POINTER, "y is NULL", UNTOUCHED, NULL, ""},
    {LOSS_F32, "`out_loss = NULL`", out_loss_null, SML_NULL_POINTER, "out_loss is NULL", UNTOUCHED, NULL, ""},
    {LOSS_F32, "`m = 0`", m_zero, SML_INVALID_ARGUMENT, "logits has no rows", UNTOUCHED, NULL, ""},
    {LOSS_F32, "`k = 0`", k_zero, SML_INVALID_ARGUMENT, "the number of classes must be positive", UNTOUCHED, NULL, ""},
    {LOSS_F32, "`m*k` overflows `size_t`", m_times_k_overflows, SML_SIZE_OVERFLOW, "Z: 9223372036854775808 x 2 elements overflow", UNTOUCHED, NULL, ""},
    {LOSS_F32, "label `y[5] = k`", label_k, SML_LABEL_OUT_OF_RANGE, "label 3 at row 5", UNTOUCHED, NULL, ""},
    {LOSS_F32, "`Z[1][1] = NaN`", nan_in_z, SML_OK, "", WRITES, loss_is_nan, "the loss is NaN"},
    {LOSS_F64, "`m*k*sizeof(double)` > `PTRDIFF_MAX`", z64_bytes_overflow, SML_SIZE_OVERFLOW, "Z: 1152921504606846976 x 1 elements overflow", UNTOUCHED, NULL, ""},
    {LOSS_F64, "label `y[0] = 255`", label_255, SML_LABEL_OUT_OF_RANGE, "label 255 at row 0", UNTOUCHED, NULL, ""},
    {LOSS_F64, "`Z[1][1] = NaN`", nan_in_z64, SML_OK, "", WRITES, loss_is_nan, "the loss is NaN"},
    {LOSS_CPP, "`y = NULL`", y_null, REFUSED, "y is NULL", UNTOUCHED, NULL, ""},
    {LOSS_CPP, "`m = 0`", m_zero, REFUSED, "logits has no rows", UNTOUCHED, NULL, ""},
    {LOSS_CPP, "label `y[5] = k`", label_k, REFUSED, "label 3 at row 5", UNTOUCHED, NULL, ""},
    {LOSS_ERR_F32, "`out_err = NULL`", out_err_null, SML_NULL_POINTER, "out_err is NULL", UNTOUCHED, NULL, ""},
    {LOSS_ERR_F32, "`out_loss = NULL`", out_loss_null, SML_NULL_POINTER, "out_loss is NULL", UNTOUCHED, NULL, ""},
    {LOSS_ERR_F64, "`Z = NULL`", z64_null, SML_NULL_POINTER, "Z is NULL", UNTOUCHED, NULL, ""},
    {LOSS_ERR_F64, "label `y[5] = k`", label_k, SML_LABEL_OUT_OF_RANGE, "label 3 at row 5", UNTOUCHED, NULL, ""},
    /* evaluation and prediction */
    {SR_LOSS_ERR, "`theta = NULL`", theta_null, SML_NULL_POINTER, "theta is NULL", UNTOUCHED, NULL, ""},
    {SR_LOSS_ERR, "`n = 0`", n_zero, SML_INVALID_ARGUMENT, "n must be positive", UNTOUCHED, NULL, ""},
    {SR_LOSS_ERR, "`k = 0`", k_zero, SML_INVALID_ARGUMENT, "k must be positive", UNTOUCHED, NULL, ""},
    {SR_LOSS_ERR, "`m = 0`", m_zero, SML_INVALID_ARGUMENT, "X has no rows", UNTOUCHED, NULL, ""},
    {NN_LOSS_ERR, "`W2 = NULL`", w2_null, SML_NULL_POINTER, "W2 is NULL", UNTOUCHED, NULL, ""},
    {NN_LOSS_ERR, "`d = 0`", d_zero, SML_INVALID_ARGUMENT, "d must be positive", UNTOUCHED, NULL, ""},
    {NN_LOSS_ERR, "`out_loss = NULL`", out_loss_null, SML_NULL_POINTER, "out_loss is NULL", UNTOUCHED, NULL, ""},
    {NN_LOSS_ERR, "label `y[5] = k`", label_k, SML_LABEL_OUT_OF_RANGE, "label 3 at row 5", UNTOUCHED, NULL, ""},
    {SR_PREDICT, "`out = NULL`", out_null, SML_NULL_POINTER, "out is NULL", UNTOUCHED, NULL, ""},
    {SR_PREDICT, "`X = NULL`", x_null, SML_NULL_POINTER, "X is NULL", UNTOUCHED, NULL, ""},
    {SR_PREDICT, "`n = 0`", n_zero, SML_INVALID_ARGUMENT, "n must be positive", UNTOUCHED, NULL, ""},
    {SR_PREDICT, "`k = 0`", k_zero, SML_INVALID_ARGUMENT, "k must be positive", UNTOUCHED, NULL, ""},
    {SR_PREDICT, "`out` over `X`", out_over_x, SML_INVALID_ARGUMENT, "out overlaps X in memory", UNTOUCHED, NULL, ""},
    {SR_PREDICT, "`out` over `theta`", out_over_theta, SML_INVALID_ARGUMENT, "out overlaps theta in memory", UNTOUCHED, NULL, ""},
    {SR_PREDICT, "`m = 0`, `X = out = NULL`", m_zero_nulls, SML_OK, "", UNTOUCHED, NULL, "no-op"},
    {NN_PREDICT, "`W1 = NULL`", w1_null, SML_NULL_POINTER, "W1 is NULL", UNTOUCHED, NULL, ""},
    {NN_PREDICT, "`d = 0`", d_zero, SML_INVALID_ARGUMENT, "d must be positive", UNTOUCHED, NULL, ""},
    {NN_PREDICT, "`d = k = 2^32`: `d*k` overflows (`m = 0`, `n = 1`)", d_times_k_overflows, SML_SIZE_OVERFLOW, "W2: 4294967296 x 4294967296 elements overflow", UNTOUCHED, NULL, ""},
    /* initial weights */
    {INIT_WEIGHTS, "`W1 = NULL`", w1_null, SML_NULL_POINTER, "W1 is NULL", UNTOUCHED, NULL, ""},
    {INIT_WEIGHTS, "`W2 = NULL`", w2_null, SML_NULL_POINTER, "W2 is NULL", UNTOUCHED, NULL, ""},
    {INIT_WEIGHTS, "`d = 0`", d_zero, SML_INVALID_ARGUMENT, "d must be positive", UNTOUCHED, NULL, ""},
    {INIT_WEIGHTS, "`n = d = 2^32`: `n*d` overflows", n_times_d_overflows, SML_SIZE_OVERFLOW, "W1: 4294967296 x 4294967296 elements overflow", UNTOUCHED, NULL, ""},
    {INIT_WEIGHTS, "`W2` overlaps `W1`", w2_over_w1, SML_INVALID_ARGUMENT, "W1 overlaps W2 in memory", UNTOUCHED, NULL, ""},
    /* whole training runs */
    {TRAIN_SOFTMAX, "`train = NULL`", train_null, SML_NULL_POINTER, "train is NULL", UNTOUCHED, NULL, ""},
    {TRAIN_SOFTMAX, "`test = NULL`", test_null, SML_NULL_POINTER, "test is NULL", UNTOUCHED, NULL, ""},
    {TRAIN_SOFTMAX, "`train->y = NULL`", train_y_null, SML_NULL_POINTER, "train->y is NULL", UNTOUCHED, NULL, ""},
    {TRAIN_SOFTMAX, "`test->X = NULL`", test_x_null, SML_NULL_POINTER, "test->X is NULL", UNTOUCHED, NULL, ""},
    {TRAIN_SOFTMAX, "`theta = NULL`", theta_null, SML_NULL_POINTER, "theta is NULL", UNTOUCHED, NULL, ""},
    {TRAIN_SOFTMAX, "`test->n = 4`, `train->n = 5`", test_narrow, SML_SHAPE_MISMATCH, "the training set has 5 features but the test set 4", UNTOUCHED, NULL, ""},
    {TRAIN_SOFTMAX, "label `test->y[2] = k`", test_label_k, SML_LABEL_OUT_OF_RANGE, "label 3 at row 2", UNTOUCHED, NULL, ""},
    {TRAIN_SOFTMAX, "`batch = 0`", batch_zero, SML_INVALID_ARGUMENT, "batch must be positive", UNTOUCHED, NULL, ""},
    {TRAIN_SOFTMAX, "`lr = NaN`", lr_nan, SML_INVALID_ARGUMENT, "learning rate must be finite", UNTOUCHED, NULL, ""},
    {TRAIN_SOFTMAX, "`k = 0`", k_zero, SML_INVALID_ARGUMENT, "k must be positive", UNTOUCHED, NULL, ""},
    {TRAIN_SOFTMAX, "`theta` inside `train->X`", theta_over_train_x, SML_INVALID_ARGUMENT, "theta overlaps train->X in memory", UNTOUCHED, NULL, ""},
    {TRAIN_SOFTMAX, "`epochs = 0`", epochs_zero, SML_OK, "", WRITES, theta_is_zero, "theta = 0, callback never called"},
    {TRAIN_NN, "`hidden = 0`", d_zero, SML_INVALID_ARGUMENT, "hidden must be positive", UNTOUCHED, NULL, ""},
    {TRAIN_NN, "`W2` overlaps `W1`", w2_over_w1, SML_INVALID_ARGUMENT, "W1 overlaps W2 in memory", UNTOUCHED, NULL, ""},
    {TRAIN_NN, "`test->y` inside `W1`", w1_over_test_y, SML_INVALID_ARGUMENT, "W1 overlaps test->y in memory", UNTOUCHED, NULL, ""},
    {TRAIN_NN, "`lr = +inf`", lr_inf, SML_INVALID_ARGUMENT, "learning rate must be finite", UNTOUCHED, NULL, ""},
    {TRAIN_SOFTMAX_STOPPABLE, "`train = NULL`", train_null, SML_NULL_POINTER, "train is NULL", UNTOUCHED, NULL, ""},
    {TRAIN_SOFTMAX_STOPPABLE, "`epochs_run` inside `theta`", epochs_run_over_theta, SML_INVALID_ARGUMENT, "epochs_run overlaps theta in memory", UNTOUCHED, NULL, ""},
    {TRAIN_SOFTMAX_STOPPABLE, "`epochs_run` misaligned", epochs_run_misaligned, SML_INVALID_ARGUMENT, "epochs_run is misaligned", UNTOUCHED, NULL, ""},
    {TRAIN_SOFTMAX_STOPPABLE, "callback returns 1 after epoch 0 of 2", stop_after_first, SML_OK, "", WRITES, softmax_stopped_after_one, "theta after 1 epoch, `*epochs_run = 1`"},
    {TRAIN_SOFTMAX_STOPPABLE, "`epochs_run = NULL`", epochs_run_null, SML_OK, "", WRITES, ran_both_epochs, "theta after 2 epochs"},
    {TRAIN_NN_STOPPABLE, "`W1 = NULL`", w1_null, SML_NULL_POINTER, "W1 is NULL", UNTOUCHED, NULL, ""},
    {TRAIN_NN_STOPPABLE, "`epochs_run` inside `train->X`", epochs_run_over_train_x, SML_INVALID_ARGUMENT, "epochs_run overlaps train->X in memory", UNTOUCHED, NULL, ""},
    {TRAIN_NN_STOPPABLE, "callback returns 0", none, SML_OK, "", WRITES, ran_both_epochs, "W1, W2 after 2 epochs, `*epochs_run = 2`"},
    {TRAIN_NN_STOPPABLE, "callback returns 1 after epoch 0 of 2", stop_after_first, SML_OK, "", WRITES, nn_stopped_after_one, "W1, W2 after 1 epoch, `*epochs_run = 1`"},
    /* reading MNIST */
    {MNIST_READ, "`image_path = NULL`", image_path_null, SML_NULL_POINTER, "image_path is NULL", UNTOUCHED, NULL, ""},
    {MNIST_READ, "`label_path = NULL`", label_path_null, SML_NULL_POINTER, "label_path is NULL", UNTOUCHED, NULL, ""},
    {MNIST_READ, "`out = NULL`", ds_out_null, SML_NULL_POINTER, "out is NULL", UNTOUCHED, NULL, ""},
    {MNIST_READ, "valid 3-image IDX pair", none, SML_OK, "", WRITES, read_the_small_files, "`*out` holds 3 images of 2x2"},
    {MNIST_READ, "valid pair, gzip-compressed", gzip_pair, SML_OK, "", WRITES, read_the_small_files, "`*out` holds 3 images of 2x2"},
    {MNIST_READ, "image file missing", missing_file, SML_IO, "missing.idx: cannot read file", UNTOUCHED, NULL, ""},
    {MNIST_READ, "label path is a directory", directory, SML_IO, "cannot read file", UNTOUCHED, NULL, ""},
    {MNIST_READ, "empty image file", empty_file, SML_BAD_FORMAT, "truncated IDX header: needed 16 bytes, found 0", UNTOUCHED, NULL, ""},
    {MNIST_READ, "image header cut at 10 bytes", short_header, SML_BAD_FORMAT, "truncated IDX header: needed 16 bytes, found 10", UNTOUCHED, NULL, ""},
    {MNIST_READ, "image body one byte short", short_body, SML_BAD_FORMAT, "truncated IDX data: header declares 12 bytes, file holds 11", UNTOUCHED, NULL, ""},
    {MNIST_READ, "one byte after the image body", trailing_byte, SML_BAD_FORMAT, "trailing bytes after the 12 bytes", UNTOUCHED, NULL, ""},
    {MNIST_READ, "image magic `0x00000804`", bad_magic, SML_BAD_FORMAT, "bad IDX magic number 0x00000804 (expected 0x00000803)", UNTOUCHED, NULL, ""},
    {MNIST_READ, "9-label file as images", labels_as_images, SML_BAD_FORMAT, "bad IDX magic number 0x00000801 (expected 0x00000803)", UNTOUCHED, NULL, ""},
    {MNIST_READ, "image file as labels", images_as_labels, SML_BAD_FORMAT, "bad IDX magic number 0x00000803 (expected 0x00000801)", UNTOUCHED, NULL, ""},
    {MNIST_READ, "3 images, 9 labels", count_mismatch, SML_BAD_FORMAT, "image file holds 3 images but label file holds 9 labels", UNTOUCHED, NULL, ""},
    {MNIST_READ, "image header `3 x 0 x 2`", zero_dimension, SML_BAD_FORMAT, "IDX header has a zero dimension [3, 0, 2]", UNTOUCHED, NULL, ""},
    {MNIST_READ, "header claims 2^30 images, body 12 bytes", huge_count, SML_BAD_FORMAT, "truncated IDX data: header declares 841813590016 bytes, file holds 12", UNTOUCHED, NULL, ""},
    {MNIST_READ, "same, gzip-compressed", huge_count_gz, SML_BAD_FORMAT, "truncated IDX data: header declares 841813590016 bytes, file holds 12", UNTOUCHED, NULL, ""},
    {MNIST_READ, "corrupt deflate stream", corrupt_gz, SML_BAD_FORMAT, "corrupt gzip data", UNTOUCHED, NULL, ""},
    {MNIST_READ, "gzip stream cut at 22 bytes", cut_gz, SML_BAD_FORMAT, "corrupt gzip data", UNTOUCHED, NULL, ""},
    {MNIST_READ, "gzip with a byte after the image body", trailing_gz, SML_BAD_FORMAT, "trailing bytes after the 12 bytes", UNTOUCHED, NULL, ""},
};

#define N_CASES (sizeof CASES / sizeof CASES[0])

static void clear_last_error(void) {
    double z = 0.0, loss = 0.0;
    unsigned char label = 0;
    REQUIRE(sml_softmax_loss_f64(&z, &label, 1, 1, &loss) == SML_OK, "%s", last_error());
    REQUIRE(last_error()[0] == '\0', "a success left the error \"%s\"", last_error());
}

static void run_case(size_t index, struct workspace *w) {
    const struct bad_case *bc = &CASES[index];
    const char *fn = ENTRY_NAME[bc->entry];
    reset_workspace(w);
    struct call c = default_call(w);
    bc->edit(&c, w);
    struct workspace before = *w;
    callback_calls = 0;
    clear_last_error();
    float cpp_loss = 0.0f;
    sml_status st = dispatch(bc->entry, &c, &cpp_loss);
    const char *message = last_error();
    int should_fail = bc->expected != SML_OK;
    if (is_void_entry(bc->entry)) {
        CHECK((message[0] != '\0') == should_fail, "case %zu %s(%s): last error \"%s\"", index + 1,
              fn, bc->input, message);
        if (bc->entry == LOSS_CPP) {
            CHECK(isnan(cpp_loss) == should_fail, "case %zu %s(%s) returned %g", index + 1, fn,
                  bc->input, (double)cpp_loss);
        }
    } else {
        CHECK(st == bc->expected, "case %zu %s(%s): status %s, expected %s (%s)", index + 1, fn,
              bc->input, sml_status_str(st), sml_status_str(bc->expected), message);
    }
    if (should_fail) {
        CHECK(strstr(message, bc->message) != NULL, "case %zu %s(%s): message \"%s\" lacks \"%s\"",
              index + 1, fn, bc->input, message, bc->message);
        CHECK(callback_calls == 0, "case %zu: callback ran %zu times", index + 1, callback_calls);
    } else {
        CHECK(message[0] == '\0', "case %zu %s(%s): success left \"%s\"", index + 1, fn, bc->input,
              message);
    }
    if (bc->writes == UNTOUCHED) {
        CHECK(memcmp(&before, w, sizeof *w) == 0, "case %zu %s(%s) changed %s", index + 1, fn,
              bc->input, changed_field(&before, w));
    }
    if (bc->verify != NULL) {
        bc->verify(&before, w, &c);
    }
}

static void print_table(void) {
    printf("| # | Function | Input | Expected result | Last error contains |\n");
    printf("|---|----------|-------|-----------------|---------------------|\n");
    for (size_t i = 0; i < N_CASES; i++) {
        const struct bad_case *bc = &CASES[i];
        char result[256];
        if (bc->expected == SML_OK) {
            snprintf(result, sizeof result, "%s%s", is_void_entry(bc->entry) ? "" : "`SML_OK`: ",
                     bc->outcome);
        } else if (bc->entry == LOSS_CPP) {
            snprintf(result, sizeof result, "returns NaN");
        } else if (is_void_entry(bc->entry)) {
            snprintf(result, sizeof result, "refused, nothing written");
        } else {
            snprintf(result, sizeof result, "`%s`", sml_status_str(bc->expected));
        }
        printf("| %zu | `%s` | %s | %s | %s%s%s |\n", i + 1, ENTRY_NAME[bc->entry], bc->input,
               result, bc->message[0] ? "`" : "", bc->message[0] ? bc->message : "(empty)",
               bc->message[0] ? "`" : "");
    }
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--print-table") == 0) {
        print_table();
        return 0;
    }
    struct test_args args = parse_args(argc, argv);
    write_files(args.scratch_dir);
    static struct workspace w;
    for (size_t i = 0; i < N_CASES; i++) {
        run_case(i, &w);
    }
    printf("bad_input: %zu cases\n", N_CASES);
    return finish("bad_input");
}
