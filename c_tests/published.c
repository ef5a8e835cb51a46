/*
 * The course's published numbers on the real MNIST files, through the C API
 * alone: reading, softmax regression and network epochs, the loss, the
 * training table; plus bit-identity of the course entry points with the
 * sml_ ones, and the final partial batch against a plain C reference.
 */
#include "common.h"

#define N_FEATURES 784
#define K_CLASSES 10

static const char *const SOFTMAX_TABLE[2] = {
    "|     0 |    0.35134 |   0.10182 |   0.33588 |  0.09400 |",
    "|     1 |    0.32142 |   0.09268 |   0.31086 |  0.08730 |",
};

/* ---- plain C references, double precision, obvious loops ---- */

static void softmax_row(const double *z, size_t k, double *p) {
    double max = z[0];
    for (size_t c = 1; c < k; c++) {
        max = z[c] > max ? z[c] : max;
    }
    double sum = 0.0;
    for (size_t c = 0; c < k; c++) {
        p[c] = exp(z[c] - max);
        sum += p[c];
    }
    for (size_t c = 0; c < k; c++) {
        p[c] /= sum;
    }
}

/* One epoch of softmax regression; when keep_partial is 0 the last partial
 * batch is dropped (the course's `range(m // batch)`), to show the test can
 * tell the difference. */
static void reference_softmax_epoch(const float *X, const unsigned char *y, double *theta,
                                    size_t m, size_t n, size_t k, double lr, size_t batch,
                                    int keep_partial) {
    double *grad = xcalloc(n * k, sizeof *grad);
    double *z = xcalloc(k, sizeof *z), *p = xcalloc(k, sizeof *p);
    for (size_t start = 0; start < m; start += batch) {
        size_t end = start + batch < m ? start + batch : m;
        if (!keep_partial && end - start < batch) {
            break;
        }
        memset(grad, 0, n * k * sizeof *grad);
        for (size_t i = start; i < end; i++) {
            for (size_t c = 0; c < k; c++) {
                z[c] = 0.0;
                for (size_t j = 0; j < n; j++) {
                    z[c] += (double)X[i * n + j] * theta[j * k + c];
                }
            }
            softmax_row(z, k, p);
            p[y[i]] -= 1.0;
            for (size_t j = 0; j < n; j++) {
                for (size_t c = 0; c < k; c++) {
                    grad[j * k + c] += (double)X[i * n + j] * p[c];
                }
            }
        }
        for (size_t e = 0; e < n * k; e++) {
            theta[e] -= lr / (double)(end - start) * grad[e];
        }
    }
    free(grad);
    free(z);
    free(p);
}

static void reference_nn_epoch(const float *X, const unsigned char *y, double *W1, double *W2,
                               size_t m, size_t n, size_t d, size_t k, double lr, size_t batch) {
    double *g1 = xcalloc(n * d, sizeof *g1), *g2 = xcalloc(d * k, sizeof *g2);
    double *h = xcalloc(d, sizeof *h), *z = xcalloc(k, sizeof *z), *p = xcalloc(k, sizeof *p);
    double *back = xcalloc(d, sizeof *back);
    for (size_t start = 0; start < m; start += batch) {
        size_t end = start + batch < m ? start + batch : m;
        memset(g1, 0, n * d * sizeof *g1);
        memset(g2, 0, d * k * sizeof *g2);
        for (size_t i = start; i < end; i++) {
            for (size_t a = 0; a < d; a++) {
                h[a] = 0.0;
                for (size_t j = 0; j < n; j++) {
                    h[a] += (double)X[i * n + j] * W1[j * d + a];
                }
                h[a] = h[a] > 0.0 ? h[a] : 0.0;
            }
            for (size_t c = 0; c < k; c++) {
                z[c] = 0.0;
                for (size_t a = 0; a < d; a++) {
                    z[c] += h[a] * W2[a * k + c];
                }
            }
            softmax_row(z, k, p);
            p[y[i]] -= 1.0;
            for (size_t a = 0; a < d; a++) {
                back[a] = 0.0;
                for (size_t c = 0; c < k; c++) {
                    g2[a * k + c] += h[a] * p[c];
                    back[a] += p[c] * W2[a * k + c];
                }
                back[a] = h[a] > 0.0 ? back[a] : 0.0;
            }
            for (size_t j = 0; j < n; j++) {
                for (size_t a = 0; a < d; a++) {
                    g1[j * d + a] += (double)X[i * n + j] * back[a];
                }
            }
        }
        double scale = lr / (double)(end - start);
        for (size_t e = 0; e < n * d; e++) {
            W1[e] -= scale * g1[e];
        }
        for (size_t e = 0; e < d * k; e++) {
            W2[e] -= scale * g2[e];
        }
    }
    free(g1);
    free(g2);
    free(h);
    free(z);
    free(p);
    free(back);
}

/* Largest |actual - expected| beyond atol + rtol * |expected|; 0 when all are close. */
static double excess(const float *actual, const double *expected, size_t len, double rtol,
                     double atol) {
    double worst = 0.0;
    for (size_t i = 0; i < len; i++) {
        double over = fabs((double)actual[i] - expected[i]) - (atol + rtol * fabs(expected[i]));
        worst = over > worst ? over : worst;
    }
    return worst;
}

static double max_abs_diff(const float *a, const double *b, size_t len) {
    double worst = 0.0;
    for (size_t i = 0; i < len; i++) {
        double diff = fabs((double)a[i] - b[i]);
        worst = diff > worst ? diff : worst;
    }
    return worst;
}

/* ---- the checks ---- */

static void check_dataset_shape(const sml_dataset *ds, size_t count) {
    CHECK(sml_dataset_count(ds) == count, "count %zu", sml_dataset_count(ds));
    CHECK(sml_dataset_features(ds) == N_FEATURES, "features %zu", sml_dataset_features(ds));
    CHECK(sml_dataset_image_rows(ds) == 28 && sml_dataset_image_cols(ds) == 28,
          "image %zu x %zu", sml_dataset_image_rows(ds), sml_dataset_image_cols(ds));
    CHECK(sml_dataset_images(ds) != NULL && sml_dataset_labels(ds) != NULL, "arrays are NULL");
}

static void check_mnist_contents(const float *X, const unsigned char *y) {
    static const unsigned char first_labels[10] = {5, 0, 4, 1, 9, 2, 1, 3, 1, 4};
    CHECK(memcmp(y, first_labels, sizeof first_labels) == 0, "first labels differ");
    double n10 = norm_f32(X, 10 * N_FEATURES);
    CHECK(rel_close(n10, 27.892084, 1e-7), "|X[:10]| = %.9g", n10);
    int bad_pixel = 0;
    for (size_t i = 0; i < 50 * N_FEATURES; i++) {
        float byte = roundf(X[i] * 255.0f);
        bad_pixel += X[i] != byte / 255.0f;
    }
    CHECK(bad_pixel == 0, "%d pixels are not byte / 255", bad_pixel);
}

static void check_softmax_epoch(const float *X, const unsigned char *y) {
    float *theta = xcalloc(N_FEATURES * K_CLASSES, sizeof *theta);
    float *theta_sml = xcalloc(N_FEATURES * K_CLASSES, sizeof *theta_sml);
    softmax_regression_epoch_cpp(X, y, theta, 100, N_FEATURES, K_CLASSES, 0.1f, 10);
    CHECK(last_error()[0] == '\0', "the epoch left an error: %s", last_error());
    double norm = norm_f32(theta, N_FEATURES * K_CLASSES);
    CHECK(fabs(norm - 1.0947356) <= 1e-5, "|theta| = %.9g, expected 1.0947356", norm);
    sml_status st = sml_softmax_regression_epoch(X, y, theta_sml, 100, N_FEATURES, K_CLASSES,
                                                 0.1f, 10);
    CHECK(st == SML_OK, "sml_softmax_regression_epoch = %s: %s", sml_status_str(st),
          last_error());
    CHECK(memcmp(theta, theta_sml, N_FEATURES * K_CLASSES * sizeof *theta) == 0,
          "softmax_regression_epoch_cpp and sml_softmax_regression_epoch differ");
    free(theta);
    free(theta_sml);
}

static void check_nn_epoch(const float *X, const unsigned char *y, size_t m, int published) {
    const size_t n = N_FEATURES, d = 100, k = K_CLASSES;
    float *W1 = xcalloc(n * d, sizeof *W1), *W2 = xcalloc(d * k, sizeof *W2);
    float *W1s = xcalloc(n * d, sizeof *W1s), *W2s = xcalloc(d * k, sizeof *W2s);
    sml_status st = sml_nn_init_weights(0, n, d, k, W1, W2);
    REQUIRE(st == SML_OK, "sml_nn_init_weights = %s: %s", sml_status_str(st), last_error());
    memcpy(W1s, W1, n * d * sizeof *W1);
    memcpy(W2s, W2, d * k * sizeof *W2);
    nn_epoch_cpp(X, y, W1, W2, m, n, d, k, 0.2f, 100);
    CHECK(last_error()[0] == '\0', "nn_epoch_cpp left an error: %s", last_error());
    st = sml_nn_epoch(X, y, W1s, W2s, m, n, d, k, 0.2f, 100);
    CHECK(st == SML_OK, "sml_nn_epoch = %s: %s", sml_status_str(st), last_error());
    CHECK(memcmp(W1, W1s, n * d * sizeof *W1) == 0 && memcmp(W2, W2s, d * k * sizeof *W2) == 0,
          "nn_epoch_cpp and sml_nn_epoch differ (m = %zu)", m);
    double loss = NAN, err = NAN;
    st = sml_nn_loss_err(X, y, W1, W2, m, n, d, k, &loss, &err);
    CHECK(st == SML_OK, "sml_nn_loss_err = %s: %s", sml_status_str(st), last_error());
    if (published) {
        double n1 = norm_f32(W1, n * d), n2 = norm_f32(W2, d * k);
        CHECK(rel_close(n1, 28.437788, 1e-5), "|W1| = %.9g, expected 28.437788", n1);
        CHECK(rel_close(n2, 10.455095, 1e-5), "|W2| = %.9g, expected 10.455095", n2);
        CHECK(fabs(loss - 0.19770025) <= 1e-4, "loss %.9g, expected 0.19770025", loss);
        CHECK(fabs(err - 0.06006667) <= 1e-4, "err %.9g, expected 0.06006667", err);
    } else {
        CHECK(isfinite(loss) && loss < log(10.0), "loss %.9g after one epoch", loss);
        CHECK(err >= 0.0 && err < 0.9, "err %.9g after one epoch", err);
    }
    free(W1);
    free(W2);
    free(W1s);
    free(W2s);
}

static void check_loss_of_zeros(const unsigned char *y, size_t m) {
    float *Z = xcalloc(m * K_CLASSES, sizeof *Z);
    double *Z64 = xcalloc(m * K_CLASSES, sizeof *Z64);
    float loss = softmax_loss_cpp(Z, y, m, K_CLASSES);
    CHECK(rel_close(loss, 2.3025850, 1e-7), "softmax_loss_cpp(zeros) = %.9g", (double)loss);
    double l32 = NAN, l64 = NAN;
    CHECK(sml_softmax_loss_f32(Z, y, m, K_CLASSES, &l32) == SML_OK, "%s", last_error());
    CHECK(sml_softmax_loss_f64(Z64, y, m, K_CLASSES, &l64) == SML_OK, "%s", last_error());
    CHECK((float)l32 == loss, "f32 loss %.9g vs softmax_loss_cpp %.9g", l32, (double)loss);
    CHECK(rel_close(l64, 2.3025850, 1e-7), "f64 loss of zeros = %.12g", l64);
    double le[2] = {NAN, NAN};
    CHECK(sml_loss_err_f64(Z64, y, m, K_CLASSES, &le[0], &le[1]) == SML_OK, "%s", last_error());
    CHECK(le[0] == l64, "sml_loss_err_f64 loss %.12g vs %.12g", le[0], l64);
    free(Z);
    free(Z64);
}

/* m = 25 with batch 10: the last batch of 5 rows is used and divided by 5. */
static void check_partial_batch(const float *mnist_X, const unsigned char *mnist_y) {
    const size_t m = 25, n = N_FEATURES, k = K_CLASSES, batch = 10;
    float *theta = xcalloc(n * k, sizeof *theta);
    double *ref = xcalloc(n * k, sizeof *ref), *dropped = xcalloc(n * k, sizeof *dropped);
    sml_status st = sml_softmax_regression_epoch(mnist_X, mnist_y, theta, m, n, k, 0.1f, batch);
    CHECK(st == SML_OK, "%s", last_error());
    reference_softmax_epoch(mnist_X, mnist_y, ref, m, n, k, 0.1, batch, 1);
    reference_softmax_epoch(mnist_X, mnist_y, dropped, m, n, k, 0.1, batch, 0);
    double over = excess(theta, ref, n * k, 1e-4, 1e-5);
    CHECK(over == 0.0, "softmax partial batch: theta is %.3g beyond tolerance of the reference",
          over);
    CHECK(max_abs_diff(theta, dropped, n * k) > 1e-3,
          "softmax: dropping the partial batch would give the same theta");

    /* The network on a small synthetic problem, from the course's initial weights. */
    const size_t sn = 7, sd = 5, sk = 4;
    float X[25 * 7], W1[7 * 5], W2[5 * 4];
    unsigned char y[25];
    double rW1[7 * 5], rW2[5 * 4];
    for (size_t i = 0; i < m; i++) {
        for (size_t j = 0; j < sn; j++) {
            X[i * sn + j] = (float)sin(0.7 * (double)(i * sn + j) + 0.3);
        }
        y[i] = (unsigned char)((i * 7 + 3) % sk);
    }
    st = sml_nn_init_weights(3, sn, sd, sk, W1, W2);
    REQUIRE(st == SML_OK, "%s", last_error());
    for (size_t e = 0; e < sn * sd; e++) {
        rW1[e] = W1[e];
    }
    for (size_t e = 0; e < sd * sk; e++) {
        rW2[e] = W2[e];
    }
    nn_epoch_cpp(X, y, W1, W2, m, sn, sd, sk, 0.5f, batch);
    CHECK(last_error()[0] == '\0', "%s", last_error());
    reference_nn_epoch(X, y, rW1, rW2, m, sn, sd, sk, 0.5, batch);
    double over1 = excess(W1, rW1, sn * sd, 1e-4, 1e-5);
    double over2 = excess(W2, rW2, sd * sk, 1e-4, 1e-5);
    CHECK(over1 == 0.0 && over2 == 0.0, "nn partial batch: W1 %.3g, W2 %.3g beyond tolerance",
          over1, over2);
    free(theta);
    free(ref);
    free(dropped);
}

struct table {
    size_t rows;
    char row[16][128];
    sml_epoch_report reports[16];
};

static void print_row(const sml_epoch_report *r, void *user) {
    struct table *t = user;
    if (t->rows < 16) {
        snprintf(t->row[t->rows], sizeof t->row[0], "|  %4zu |    %.5f |   %.5f |   %.5f |  %.5f |",
                 r->epoch, r->train_loss, r->train_err, r->test_loss, r->test_err);
        t->reports[t->rows] = *r;
        printf("%s\n", t->row[t->rows]);
    }
    t->rows++;
}

/* sml_train_softmax is two epochs of sml_softmax_regression_epoch, each
 * followed by sml_softmax_regression_loss_err on both sets: same bits. */
static void check_train_softmax(const sml_data *train, const sml_data *test, int published) {
    const size_t n = N_FEATURES, k = K_CLASSES;
    struct table table = {0};
    float *theta = xcalloc(n * k, sizeof *theta), *manual = xcalloc(n * k, sizeof *manual);
    printf("| Epoch | Train Loss | Train Err | Test Loss | Test Err |\n");
    sml_status st = sml_train_softmax(train, test, k, 2, 0.2f, 100, theta, print_row, &table);
    CHECK(st == SML_OK, "sml_train_softmax = %s: %s", sml_status_str(st), last_error());
    CHECK(table.rows == 2, "the callback ran %zu times", table.rows);
    if (published) {
        for (size_t e = 0; e < 2 && e < table.rows; e++) {
            CHECK(strcmp(table.row[e], SOFTMAX_TABLE[e]) == 0, "row %zu is\n  %s\nexpected\n  %s",
                  e, table.row[e], SOFTMAX_TABLE[e]);
        }
    }
    for (size_t e = 0; e < 2 && e < table.rows; e++) {
        st = sml_softmax_regression_epoch(train->X, train->y, manual, train->m, n, k, 0.2f, 100);
        CHECK(st == SML_OK, "%s", last_error());
        double tr[2], te[2];
        CHECK(sml_softmax_regression_loss_err(train->X, train->y, manual, train->m, n, k, &tr[0],
                                              &tr[1]) == SML_OK, "%s", last_error());
        CHECK(sml_softmax_regression_loss_err(test->X, test->y, manual, test->m, n, k, &te[0],
                                              &te[1]) == SML_OK, "%s", last_error());
        const sml_epoch_report *r = &table.reports[e];
        CHECK(r->epoch == e && r->train_loss == tr[0] && r->train_err == tr[1] &&
                  r->test_loss == te[0] && r->test_err == te[1],
              "epoch %zu report differs from epoch + loss_err", e);
    }
    CHECK(memcmp(theta, manual, n * k * sizeof *theta) == 0,
          "sml_train_softmax's theta differs from two epochs");
    free(theta);
    free(manual);
}

int main(int argc, char **argv) {
    struct test_args args = parse_args(argc, argv);
    sml_dataset *train_ds = read_mnist(args.data_dir, "train");
    check_dataset_shape(train_ds, 60000);
    /* Under valgrind (--quick) the full-set epoch and table take too long:
     * the same code paths run on subsets, rows 500..799 standing in for
     * the test set. */
    sml_dataset *test_ds = args.quick ? NULL : read_mnist(args.data_dir, "t10k");
    if (!args.quick) {
        check_dataset_shape(test_ds, 10000);
    }
    const float *X = sml_dataset_images(train_ds);
    const unsigned char *y = sml_dataset_labels(train_ds);
    check_mnist_contents(X, y);

    check_softmax_epoch(X, y);
    check_partial_batch(X, y);
    size_t m_train = args.quick ? 500 : 60000, m_test = args.quick ? 300 : 10000;
    check_nn_epoch(X, y, m_train, !args.quick);
    check_loss_of_zeros(y, m_train);
    sml_data train = {X, y, m_train, N_FEATURES};
    sml_data test = {X + 500 * N_FEATURES, y + 500, m_test, N_FEATURES};
    if (!args.quick) {
        test = (sml_data){sml_dataset_images(test_ds), sml_dataset_labels(test_ds), m_test,
                          N_FEATURES};
    }
    check_train_softmax(&train, &test, !args.quick);

    sml_dataset_free(train_ds);
    sml_dataset_free(test_ds);
    return finish("published");
}
