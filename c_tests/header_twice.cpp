// The header from C++: included twice, compiled with -std=c++11 -Wall
// -Wextra -Werror, and its functions called with C linkage.
#include "simple_ml.h"
#include "simple_ml.h"

#include <cstdio>
#include <cstring>

int main() {
    char expected[32];
    std::snprintf(expected, sizeof expected, "%d.%d.%d", SML_VERSION_MAJOR, SML_VERSION_MINOR,
                  SML_VERSION_PATCH);
    const float X[4] = {1.0f, 2.0f, 3.0f, 4.0f};
    const unsigned char y[2] = {0, 1};
    float theta[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    sml_status status = sml_softmax_regression_epoch(X, y, theta, 2, 2, 2, 0.5f, 2);
    if (status != SML_OK || theta[0] == 0.0f || std::strcmp(sml_version(), expected) != 0) {
        std::fprintf(stderr, "C++: %s, theta[0] = %g, version %s\n", sml_status_str(status),
                     static_cast<double>(theta[0]), sml_version());
        return 1;
    }
    std::printf("header_twice: all checks passed\n");
    return 0;
}
