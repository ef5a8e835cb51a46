// The naive C++ a student writes for the course's simple_ml_ext extension:
// plain triple loops over each minibatch, one thread, no blocking, no
// intrinsics, no BLAS. bench/compare.py compiles it with
// `g++ -O3 -march=native -shared -fPIC` and times it beside the library and
// numpy on the same data; it is a benchmark baseline, not part of the
// library.
//
// Loop orders put the contiguous index innermost (i-l-j rather than the
// dot-product i-j-l), so that -O3 vectorises every inner loop: this is the
// best plain loops can do, which keeps the comparison against them honest
// rather than flattering. Semantics follow python/tests/numpy_reference.py:
// minibatches in order, a final partial batch divided by its own size,
// softmax without max-subtraction, float arithmetic throughout.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace {

// Row-wise softmax of the b×k logits in place, then subtract the one-hot
// labels: the gradient of the softmax loss with respect to the logits
// (before dividing by b).
void softmax_minus_onehot(float* Z, const unsigned char* y, size_t b, size_t k) {
    for (size_t i = 0; i < b; ++i) {
        float* z = Z + i * k;
        float sum = 0.0f;
        for (size_t j = 0; j < k; ++j) {
            z[j] = std::exp(z[j]);
            sum += z[j];
        }
        for (size_t j = 0; j < k; ++j) z[j] /= sum;
        z[y[i]] -= 1.0f;
    }
}

// C (r×c) = A (r×s) B (s×c), all row-major.
void matmul(const float* A, const float* B, float* C, size_t r, size_t s, size_t c) {
    std::fill(C, C + r * c, 0.0f);
    for (size_t i = 0; i < r; ++i)
        for (size_t l = 0; l < s; ++l) {
            const float a = A[i * s + l];
            for (size_t j = 0; j < c; ++j) C[i * c + j] += a * B[l * c + j];
        }
}

// C (s×c) = Aᵀ B, with A r×s and B r×c row-major.
void matmul_at_b(const float* A, const float* B, float* C, size_t r, size_t s, size_t c) {
    std::fill(C, C + s * c, 0.0f);
    for (size_t i = 0; i < r; ++i)
        for (size_t l = 0; l < s; ++l) {
            const float a = A[i * s + l];
            for (size_t j = 0; j < c; ++j) C[l * c + j] += a * B[i * c + j];
        }
}

// W -= scale * G over `len` floats.
void sgd_step(float* W, const float* G, size_t len, float scale) {
    for (size_t i = 0; i < len; ++i) W[i] -= scale * G[i];
}

}  // namespace

extern "C" {

// One epoch of softmax regression SGD: theta (n×k) updated in place.
void naive_softmax_regression_epoch(const float* X, const unsigned char* y, float* theta,
                                    size_t m, size_t n, size_t k, float lr, size_t batch) {
    std::vector<float> Z(batch * k), grad(n * k);
    for (size_t start = 0; start < m; start += batch) {
        const size_t b = std::min(batch, m - start);
        const float* Xb = X + start * n;
        matmul(Xb, theta, Z.data(), b, n, k);                 // logits = X_b θ
        softmax_minus_onehot(Z.data(), y + start, b, k);      // Z − I_y
        matmul_at_b(Xb, Z.data(), grad.data(), b, n, k);      // X_bᵀ (Z − I_y)
        sgd_step(theta, grad.data(), n * k, lr / static_cast<float>(b));
    }
}

// One epoch of the two-layer ReLU network: W1 (n×d) and W2 (d×k) updated
// in place.
void naive_nn_epoch(const float* X, const unsigned char* y, float* W1, float* W2,
                    size_t m, size_t n, size_t d, size_t k, float lr, size_t batch) {
    std::vector<float> Z1(batch * d), G2(batch * k), G1(batch * d), dW1(n * d), dW2(d * k);
    for (size_t start = 0; start < m; start += batch) {
        const size_t b = std::min(batch, m - start);
        const float* Xb = X + start * n;
        matmul(Xb, W1, Z1.data(), b, n, d);                    // Z1 = ReLU(X_b W1)
        for (size_t i = 0; i < b * d; ++i) Z1[i] = std::max(Z1[i], 0.0f);
        matmul(Z1.data(), W2, G2.data(), b, d, k);             // G2 = softmax(Z1 W2) − I_y
        softmax_minus_onehot(G2.data(), y + start, b, k);
        for (size_t i = 0; i < b; ++i)                         // G1 = 1{Z1 > 0} ∘ (G2 W2ᵀ)
            for (size_t h = 0; h < d; ++h) {
                float s = 0.0f;
                for (size_t j = 0; j < k; ++j) s += G2[i * k + j] * W2[h * k + j];
                G1[i * d + h] = Z1[i * d + h] > 0.0f ? s : 0.0f;
            }
        matmul_at_b(Xb, G1.data(), dW1.data(), b, n, d);       // X_bᵀ G1
        matmul_at_b(Z1.data(), G2.data(), dW2.data(), b, d, k); // Z1ᵀ G2
        const float scale = lr / static_cast<float>(b);
        sgd_step(W1, dW1.data(), n * d, scale);
        sgd_step(W2, dW2.data(), d * k, scale);
    }
}

}  // extern "C"
