/*
 * Calls made while the calling thread is being torn down: from an atexit
 * handler and from a pthread key destructor, where the library's
 * thread-local error message is gone. Each call must return its status
 * (never abort the process), and sml_last_error_message must still answer.
 * The handler runs after main has printed its summary, so a failure there
 * exits with status 1 (and an abort with SIGABRT), which the harness sees.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <unistd.h>

#include "common.h"

/* Valid and invalid calls and the message; returns the number of failures. */
static int calls(const char *where) {
    int failures = 0;
    float z[4] = {1.0f, 2.0f, 0.5f, -1.0f};
    unsigned char y[2] = {1, 0}, bad[2] = {1, 7};
    double loss = 0.0;
    sml_status st = sml_softmax_loss_f32(z, y, 2, 2, &loss);
    if (st != SML_OK || !(loss > 0.0)) {
        fprintf(stderr, "%s: valid call gave %s, loss %g\n", where, sml_status_str(st), loss);
        failures++;
    }
    st = sml_softmax_loss_f32(z, bad, 2, 2, &loss);
    if (st != SML_LABEL_OUT_OF_RANGE) {
        fprintf(stderr, "%s: label 7 of 2 classes gave %s\n", where, sml_status_str(st));
        failures++;
    }
    char buf[256];
    size_t needed = 0;
    st = sml_last_error_message(buf, sizeof buf, &needed);
    if (st != SML_OK || needed == 0 || strlen(buf) + 1 != needed) {
        fprintf(stderr, "%s: sml_last_error_message gave %s (needs %zu)\n", where,
                sml_status_str(st), needed);
        failures++;
    }
    /* A multi-threaded kernel: a softmax epoch big enough for two threads. */
    enum { M = 4000, N = 64, K = 4 };
    float *X = xcalloc((size_t)M * N, sizeof *X), *theta = xcalloc((size_t)N * K, sizeof *theta);
    unsigned char *labels = xcalloc(M, 1);
    for (size_t i = 0; i < (size_t)M * N; i++) X[i] = (float)((i * 7919) % 97) / 97.0f;
    for (size_t i = 0; i < M; i++) labels[i] = (unsigned char)(i % K);
    sml_set_num_threads(2);
    st = sml_softmax_regression_epoch(X, labels, theta, M, N, K, 0.1f, 100);
    if (st != SML_OK || norm_f32(theta, (size_t)N * K) == 0.0) {
        fprintf(stderr, "%s: softmax epoch gave %s\n", where, sml_status_str(st));
        failures++;
    }
    free(X);
    free(theta);
    free(labels);
    return failures;
}

static void at_exit(void) {
    if (calls("atexit handler") != 0) {
        _exit(1);
    }
    fprintf(stderr, "atexit handler: calls returned their statuses\n");
}

static pthread_key_t key;
static int destructor_failures = -1;

static void on_thread_exit(void *value) {
    (void)value;
    destructor_failures = calls("pthread key destructor");
}

static void *worker(void *arg) {
    (void)arg;
    /* The thread's first call sets up its thread-local state. */
    CHECK(calls("worker") == 0, "calls on a live thread");
    pthread_setspecific(key, (void *)1);
    return NULL;
}

int main(int argc, char **argv) {
    (void)parse_args(argc, argv);
    REQUIRE(pthread_key_create(&key, on_thread_exit) == 0, "pthread_key_create");
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, worker, NULL) == 0, "pthread_create");
    REQUIRE(pthread_join(t, NULL) == 0, "pthread_join");
    CHECK(destructor_failures == 0, "calls from a pthread key destructor: %d failed",
          destructor_failures);
    CHECK(calls("main") == 0, "calls on the main thread");
    REQUIRE(atexit(at_exit) == 0, "atexit");
    return finish("teardown");
}
