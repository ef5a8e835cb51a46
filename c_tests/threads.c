/*
 * Thread safety: 8 threads call every entry point at the same time, each on
 * its own outputs over shared read-only inputs, and must get the same bits
 * as one thread calling them in sequence. The last error is per thread: a
 * failure in one thread never shows in another.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>

#include "common.h"

#define THREADS 8
#define N 784
#define K 10
#define D 32      /* hidden units of the network epochs */
#define HIDDEN 16 /* hidden units of the training run */
#define MAX_M 1000

/* Inputs every thread reads; set up once by main. */
static struct {
    const float *X;         /* m x N */
    const unsigned char *y; /* m */
    size_t m;
    sml_data train, test;
    const float *Z;   /* m x K logits (the first m*K pixels) */
    double *Z64;      /* the same in double */
    float *theta;     /* a trained N x K model */
    float *W1, *W2;   /* a network: N x D, D x K */
    const char *data_dir;
    const sml_dataset *reference_ds; /* t10k, read by main */
    int read_files;
} in;

/* What one run of the job produces: compared bit for bit. No pointers. */
struct results {
    float theta_cpp[N * K], theta_sml[N * K];
    float W1_cpp[N * D], W2_cpp[D * K], W1_sml[N * D], W2_sml[D * K];
    float loss_cpp;
    double loss_f32, loss_f64, le_f32[2], le_f64[2], sr_le[2], nn_le[2];
    uint32_t sr_pred[MAX_M], nn_pred[MAX_M];
    float W1_init[N * D], W2_init[D * K];
    float theta_train[N * K];
    sml_epoch_report softmax_reports[2];
    float W1_train[N * HIDDEN], W2_train[HIDDEN * K];
    sml_epoch_report nn_reports[1];
    size_t ds_count;
    int ds_same;
    sml_status statuses[32];
};

struct reports {
    size_t count;
    sml_epoch_report *out;
    size_t capacity;
};

static void keep_report(const sml_epoch_report *r, void *user) {
    struct reports *reports = user;
    if (reports->count < reports->capacity) {
        reports->out[reports->count] = *r;
    }
    reports->count++;
}

/* Runs step `s` of the job for thread `tid`, writing only into `r`, and
 * checks the thread's last error afterwards: empty after a success (an
 * error leaking from another thread would show here), exactly this
 * thread's own message after a failure. */
#define STEPS 19
static void run_step(int s, int tid, struct results *r) {
    const size_t m = in.m;
    sml_status st = SML_OK;
    int expect_error = 0;
    char expected_message[128] = "";
    switch (s) {
    case 0:
        softmax_regression_epoch_cpp(in.X, in.y, r->theta_cpp, m, N, K, 0.1f, 50);
        break;
    case 1:
        st = sml_softmax_regression_epoch(in.X, in.y, r->theta_sml, m, N, K, 0.1f, 50);
        break;
    case 2:
        memcpy(r->W1_cpp, in.W1, sizeof r->W1_cpp);
        memcpy(r->W2_cpp, in.W2, sizeof r->W2_cpp);
        nn_epoch_cpp(in.X, in.y, r->W1_cpp, r->W2_cpp, m, N, D, K, 0.2f, 50);
        break;
    case 3:
        memcpy(r->W1_sml, in.W1, sizeof r->W1_sml);
        memcpy(r->W2_sml, in.W2, sizeof r->W2_sml);
        st = sml_nn_epoch(in.X, in.y, r->W1_sml, r->W2_sml, m, N, D, K, 0.2f, 50);
        break;
    case 4:
        r->loss_cpp = softmax_loss_cpp(in.Z, in.y, m, K);
        break;
    case 5:
        st = sml_softmax_loss_f32(in.Z, in.y, m, K, &r->loss_f32);
        break;
    case 6:
        st = sml_softmax_loss_f64(in.Z64, in.y, m, K, &r->loss_f64);
        break;
    case 7:
        st = sml_loss_err_f32(in.Z, in.y, m, K, &r->le_f32[0], &r->le_f32[1]);
        break;
    case 8:
        st = sml_loss_err_f64(in.Z64, in.y, m, K, &r->le_f64[0], &r->le_f64[1]);
        break;
    case 9:
        st = sml_softmax_regression_loss_err(in.X, in.y, in.theta, m, N, K, &r->sr_le[0],
                                             &r->sr_le[1]);
        break;
    case 10:
        st = sml_nn_loss_err(in.X, in.y, in.W1, in.W2, m, N, D, K, &r->nn_le[0], &r->nn_le[1]);
        break;
    case 11:
        st = sml_softmax_regression_predict(in.X, in.theta, m, N, K, r->sr_pred);
        break;
    case 12:
        st = sml_nn_predict(in.X, in.W1, in.W2, m, N, D, K, r->nn_pred);
        break;
    case 13:
        st = sml_nn_init_weights(7, N, D, K, r->W1_init, r->W2_init);
        break;
    case 14: {
        struct reports reports = {0, r->softmax_reports, 2};
        st = sml_train_softmax(&in.train, &in.test, K, 2, 0.2f, 100, r->theta_train, keep_report,
                               &reports);
        CHECK(reports.count == 2, "thread %d: %zu softmax reports", tid, reports.count);
        break;
    }
    case 15: {
        struct reports reports = {0, r->nn_reports, 1};
        st = sml_train_nn(&in.train, &in.test, K, HIDDEN, 1, 0.2f, 100, 3, r->W1_train,
                          r->W2_train, keep_report, &reports);
        CHECK(reports.count == 1, "thread %d: %zu network reports", tid, reports.count);
        break;
    }
    case 16:
        if (in.read_files) {
            sml_dataset *ds = read_mnist(in.data_dir, "t10k");
            r->ds_count = sml_dataset_count(ds);
            r->ds_same = r->ds_count == sml_dataset_count(in.reference_ds) &&
                         memcmp(sml_dataset_images(ds), sml_dataset_images(in.reference_ds),
                                r->ds_count * N * sizeof(float)) == 0 &&
                         memcmp(sml_dataset_labels(ds), sml_dataset_labels(in.reference_ds),
                                r->ds_count) == 0;
            sml_dataset_free(ds);
        }
        break;
    case 17: {
        /* A failure whose message names this thread: a label out of range at row tid. */
        unsigned char y[THREADS + 1];
        float theta[2 * 3] = {0};
        const float X[(THREADS + 1) * 2] = {0};
        memset(y, 0, sizeof y);
        y[tid] = 3;
        st = sml_softmax_regression_epoch(X, y, theta, THREADS + 1, 2, 3, 0.1f, 4);
        expect_error = 1;
        snprintf(expected_message, sizeof expected_message,
                 "label 3 at row %d is out of range for 3 classes", tid);
        break;
    }
    case 18:
        st = sml_test_panic();
        expect_error = 1;
        snprintf(expected_message, sizeof expected_message,
                 "panic inside simple_ml: sml_test_panic was called");
        break;
    default:
        REQUIRE(0, "no step %d", s);
    }
    r->statuses[s] = st;
    const char *message = last_error();
    if (expect_error) {
        CHECK(strcmp(message, expected_message) == 0, "thread %d step %d: \"%s\", expected \"%s\"",
              tid, s, message, expected_message);
    } else {
        CHECK(st == SML_OK && message[0] == '\0', "thread %d step %d: %s \"%s\"", tid, s,
              sml_status_str(st), message);
    }
    /* Pure functions, called often. */
    CHECK(strcmp(sml_status_str(SML_IO), "SML_IO") == 0 && sml_version()[0] != '\0',
          "status names or version");
}

static pthread_barrier_t barrier;
static struct results *thread_results[THREADS];
static char final_message[THREADS][256];

static void *thread_main(void *arg) {
    int tid = (int)(intptr_t)arg;
    struct results *r = thread_results[tid];
    pthread_barrier_wait(&barrier);
    /* Each thread walks the steps from a different start, so that different
     * entry points overlap in time. */
    for (int i = 0; i < STEPS; i++) {
        run_step((tid * 5 + i) % STEPS, tid, r);
    }

    /* The last error phase: odd threads fail, even threads succeed, all at
     * once; then each reads its own last error. */
    pthread_barrier_wait(&barrier);
    if (tid % 2 == 1) {
        run_step(17, tid, r);
    } else {
        double loss;
        unsigned char label = 0;
        const double z = 0.0;
        CHECK(sml_softmax_loss_f64(&z, &label, 1, 1, &loss) == SML_OK, "thread %d", tid);
    }
    pthread_barrier_wait(&barrier);
    sml_status st = sml_last_error_message(final_message[tid], sizeof final_message[tid], NULL);
    CHECK(st == SML_OK, "thread %d: sml_last_error_message = %s", tid, sml_status_str(st));
    return NULL;
}

int main(int argc, char **argv) {
    struct test_args args = parse_args(argc, argv);
    /* Under valgrind (--quick) decompressing the 60000 training images
     * alone takes seconds: the test set serves as both sets there. */
    sml_dataset *test = read_mnist(args.data_dir, "t10k");
    sml_dataset *train = args.quick ? NULL : read_mnist(args.data_dir, "train");
    if (args.quick) {
        train = test;
    }
    in.m = args.quick ? 200 : MAX_M;
    in.X = sml_dataset_images(train);
    in.y = sml_dataset_labels(train);
    in.train = (sml_data){in.X, in.y, in.m, N};
    in.test = (sml_data){sml_dataset_images(test), sml_dataset_labels(test), in.m / 2, N};
    in.Z = in.X;
    in.Z64 = xcalloc(in.m * K, sizeof(double));
    for (size_t e = 0; e < in.m * K; e++) {
        in.Z64[e] = (double)in.Z[e] * 3.0 - 1.0;
    }
    in.theta = xcalloc(N * K, sizeof(float));
    REQUIRE(sml_softmax_regression_epoch(in.X, in.y, in.theta, in.m, N, K, 0.2f, 100) == SML_OK,
            "%s", last_error());
    in.W1 = xcalloc(N * D, sizeof(float));
    in.W2 = xcalloc(D * K, sizeof(float));
    REQUIRE(sml_nn_init_weights(0, N, D, K, in.W1, in.W2) == SML_OK, "%s", last_error());
    in.data_dir = args.data_dir;
    in.reference_ds = test;
    in.read_files = !args.quick;

    /* The sequential reference. */
    struct results *sequential = xcalloc(1, sizeof *sequential);
    for (int s = 0; s < STEPS; s++) {
        run_step(s, 0, sequential);
    }
    CHECK(!in.read_files || (sequential->ds_same && sequential->ds_count == 10000),
          "re-reading t10k gave different data");

    pthread_t threads[THREADS];
    REQUIRE(pthread_barrier_init(&barrier, NULL, THREADS) == 0, "barrier");
    for (int t = 0; t < THREADS; t++) {
        thread_results[t] = xcalloc(1, sizeof *thread_results[t]);
        REQUIRE(pthread_create(&threads[t], NULL, thread_main, (void *)(intptr_t)t) == 0,
                "pthread_create");
    }
    for (int t = 0; t < THREADS; t++) {
        REQUIRE(pthread_join(threads[t], NULL) == 0, "pthread_join");
    }
    pthread_barrier_destroy(&barrier);

    for (int t = 0; t < THREADS; t++) {
        CHECK(memcmp(thread_results[t], sequential, sizeof *sequential) == 0,
              "thread %d: results differ from the sequential run", t);
        char expected[128] = "";
        if (t % 2 == 1) {
            snprintf(expected, sizeof expected, "label 3 at row %d is out of range for 3 classes",
                     t);
        }
        CHECK(strcmp(final_message[t], expected) == 0, "thread %d's last error is \"%s\", not \"%s\"",
              t, final_message[t], expected);
        free(thread_results[t]);
    }
    /* The main thread's own last error is untouched by all of that: its
     * last call was step 18, the panic. */
    CHECK(strcmp(last_error(), "panic inside simple_ml: sml_test_panic was called") == 0,
          "main thread's last error \"%s\"", last_error());

    free(sequential);
    free(in.Z64);
    free(in.theta);
    free(in.W1);
    free(in.W2);
    if (train != test) {
        sml_dataset_free(train);
    }
    sml_dataset_free(test);
    return finish("threads");
}
