/*
 * Softmax regression on MNIST through the simple_ml C API: read the data,
 * train for 10 epochs, print the course's table after each epoch.
 *
 *   cargo build --release
 *   cc examples/example.c -Iinclude -Ltarget/release -lsimple_ml \
 *      -Wl,-rpath,$PWD/target/release -o example
 *   ./example data
 */
#include <stdio.h>
#include <stdlib.h>

#include "simple_ml.h"

/* Prints the reason for the last failure on this thread and exits. */
static void fail(const char *what, sml_status status) {
    char message[512];
    sml_last_error_message(message, sizeof message, NULL); /* truncates if longer */
    fprintf(stderr, "%s failed: %s: %s\n", what, sml_status_str(status), message);
    exit(1);
}

static sml_dataset *read_set(const char *dir, const char *prefix) {
    char images[1024], labels[1024];
    snprintf(images, sizeof images, "%s/%s-images-idx3-ubyte.gz", dir, prefix);
    snprintf(labels, sizeof labels, "%s/%s-labels-idx1-ubyte.gz", dir, prefix);
    sml_dataset *ds = NULL;
    sml_status status = sml_mnist_read(images, labels, &ds);
    if (status != SML_OK) {
        fail("sml_mnist_read", status);
    }
    return ds;
}

/* Called by sml_train_softmax after every epoch. */
static void print_epoch(const sml_epoch_report *r, void *user) {
    (void)user;
    printf("|  %4zu |    %.5f |   %.5f |   %.5f |  %.5f |\n", r->epoch, r->train_loss,
           r->train_err, r->test_loss, r->test_err);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "data";
    printf("simple_ml %s\n", sml_version());

    /* The data sets belong to the library until sml_dataset_free. */
    sml_dataset *train_set = read_set(dir, "train");
    sml_dataset *test_set = read_set(dir, "t10k");
    size_t n = sml_dataset_features(train_set), k = 10;
    sml_data train = {sml_dataset_images(train_set), sml_dataset_labels(train_set),
                      sml_dataset_count(train_set), n};
    sml_data test = {sml_dataset_images(test_set), sml_dataset_labels(test_set),
                     sml_dataset_count(test_set), n};

    /* theta (n x k, row-major) is ours; the library writes it on success. */
    float *theta = calloc(n * k, sizeof *theta);
    if (theta == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    printf("| Epoch | Train Loss | Train Err | Test Loss | Test Err |\n");
    sml_status status = sml_train_softmax(&train, &test, k, 10, 0.2f, 100, theta, print_epoch, NULL);
    if (status != SML_OK) {
        fail("sml_train_softmax", status);
    }

    free(theta);
    sml_dataset_free(train_set);
    sml_dataset_free(test_set);
    return 0;
}
