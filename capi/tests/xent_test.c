/* The C ABI from C: every function and every error code it can return, built by .ci/run:
 *   cc -std=c99 -Wall -Wextra -Werror -Iinclude capi/tests/xent_test.c \
 *      target/release/libxent_capi.a -lpthread -ldl -lm -o target/xent_test && target/xent_test
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xent.h"

static int failures = 0;

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                    \
        }                                                                  \
    } while (0)

#define CODE(expr, want)                                                   \
    do {                                                                   \
        int got_ = (expr);                                                 \
        if (got_ != (want)) {                                              \
            fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d\n", __FILE__, \
                    __LINE__, #expr, got_, xent_strerror(got_), (want));   \
            failures++;                                                    \
        }                                                                  \
    } while (0)

static int close_to(float a, float b, float tol) { return fabsf(a - b) <= tol; }

int main(void) {
    /* Two rows of three classes; the second row is ignored. */
    const float z[6] = {2.0f, 0.5f, -1.0f, 0.0f, 0.0f, 0.0f};
    const int64_t t[2] = {0, -100};
    xent_loss out;
    memset(&out, 0, sizeof out);

    xent_ce *ce = xent_ce_new(3);
    CHECK(ce != NULL);
    CODE(xent_ce_set_ignore_index(ce, -100), XENT_OK);

    /* forward: the loss of row 0 only. */
    CODE(xent_forward(ce, z, 6, t, 2, &out), XENT_OK);
    float lse = logf(expf(2.0f) + expf(0.5f) + expf(-1.0f));
    CHECK(close_to(out.value, lse - 2.0f, 1e-5f));
    CHECK(out.rows == 1 && out.correct == 1 && out.z_loss == 0.0f);

    /* forward_backward_into: softmax - onehot in grad, logits unchanged. */
    float grad[6];
    CODE(xent_forward_backward_into(ce, z, 6, t, 2, grad, 6, &out), XENT_OK);
    CHECK(close_to(grad[0], expf(2.0f - lse) - 1.0f, 1e-6f));
    CHECK(close_to(grad[1], expf(0.5f - lse), 1e-6f));
    CHECK(grad[3] == 0.0f && grad[4] == 0.0f && grad[5] == 0.0f);
    CHECK(z[0] == 2.0f);

    /* forward_backward in place gives the same bits; so does _into with grad == logits. */
    float w[6];
    memcpy(w, z, sizeof w);
    CODE(xent_forward_backward(ce, w, 6, t, 2, &out), XENT_OK);
    CHECK(memcmp(w, grad, sizeof w) == 0);
    memcpy(w, z, sizeof w);
    CODE(xent_forward_backward_into(ce, w, 6, t, 2, w, 6, &out), XENT_OK);
    CHECK(memcmp(w, grad, sizeof w) == 0);

    /* Every setter, and its error. */
    CODE(xent_ce_set_reduction(ce, 1), XENT_OK);
    CODE(xent_ce_set_reduction(ce, 3), XENT_E_REDUCTION);
    CODE(xent_ce_set_label_smoothing(ce, 0.1f), XENT_OK);
    CODE(xent_ce_set_label_smoothing(ce, 1.5f), XENT_E_LABEL_SMOOTHING);
    const float weights[3] = {1.0f, 2.0f, 0.5f};
    const float bad_weights[3] = {1.0f, NAN, 1.0f};
    CODE(xent_ce_set_class_weights(ce, weights, 3), XENT_OK);
    CODE(xent_ce_set_class_weights(ce, weights, 2), XENT_E_WEIGHTS_LENGTH);
    CODE(xent_ce_set_class_weights(ce, bad_weights, 3), XENT_E_NON_FINITE_WEIGHT);
    CODE(xent_ce_set_class_weights(ce, NULL, 3), XENT_E_NULL);
    CODE(xent_ce_set_z_loss(ce, 1e-3f), XENT_OK);
    CODE(xent_ce_set_z_loss(ce, -1.0f), XENT_E_Z_LOSS);
    CODE(xent_ce_set_softcap(ce, 30.0f), XENT_OK);
    CODE(xent_ce_set_softcap(ce, 0.0f), XENT_E_SOFTCAP);
    CODE(xent_forward(ce, z, 6, t, 2, &out), XENT_OK);
    CHECK(out.rows == 1 && out.z_loss > 0.0f && isfinite(out.value));
    CODE(xent_ce_set_class_weights(ce, NULL, 0), XENT_OK); /* removes them */
    CODE(xent_ce_set_reduction(ce, 2), XENT_OK);
    CODE(xent_forward(ce, z, 6, t, 2, &out), XENT_OK);

    /* Errors of the calls: nothing written, *out untouched. */
    xent_loss before = out;
    float g2[6] = {9, 9, 9, 9, 9, 9};
    const int64_t bad_t[2] = {0, 3};
    CODE(xent_forward(ce, z, 5, t, 2, &out), XENT_E_LOGITS_SHAPE);
    CODE(xent_forward(ce, z, 6, t, 1, &out), XENT_E_TARGETS_LENGTH);
    CODE(xent_forward_backward_into(ce, z, 6, bad_t, 2, g2, 6, &out), XENT_E_TARGET_OUT_OF_RANGE);
    CODE(xent_forward_backward_into(ce, z, 6, t, 2, g2, 5, &out), XENT_E_OUTPUT_LENGTH);
    CODE(xent_forward_backward_into(ce, z, 6, t, 2, (float *)z + 1, 5, &out), XENT_E_OVERLAP);
    CHECK(g2[0] == 9.0f && g2[5] == 9.0f);
    CHECK(memcmp(&before, &out, sizeof out) == 0);
    CODE(xent_forward(NULL, z, 6, t, 2, &out), XENT_E_NULL);
    CODE(xent_forward(ce, NULL, 6, t, 2, &out), XENT_E_NULL);
    CODE(xent_forward(ce, z, 6, NULL, 2, &out), XENT_E_NULL);
    CODE(xent_forward(ce, z, 6, t, 2, NULL), XENT_E_NULL);
    CODE(xent_forward_backward(ce, NULL, 6, t, 2, &out), XENT_E_NULL);
    CODE(xent_forward_backward_into(ce, z, 6, t, 2, NULL, 6, &out), XENT_E_NULL);
    CODE(xent_ce_set_reduction(NULL, 0), XENT_E_NULL);
    CODE(xent_forward(ce, NULL, 0, NULL, 0, &out), XENT_OK); /* an empty batch */
    CHECK(out.rows == 0);

    xent_ce *zero = xent_ce_new(0);
    CODE(xent_forward(zero, z, 6, t, 2, &out), XENT_E_ZERO_CLASSES);
    xent_ce_free(zero);

    /* Threads: a pool of 2, and back to the global pool; the same bits either way. */
    xent_ce *big = xent_ce_new(1000);
    size_t rows = 64, len = rows * 1000;
    float *a = malloc(len * sizeof(float)), *b = malloc(len * sizeof(float));
    int64_t *tt = malloc(rows * sizeof(int64_t));
    CHECK(a && b && tt);
    for (size_t i = 0; i < len; i++) a[i] = b[i] = (float)((i * 7919) % 1000) * 0.01f;
    for (size_t i = 0; i < rows; i++) tt[i] = (int64_t)(i * 13 % 1000);
    xent_loss la, lb;
    CODE(xent_set_num_threads(2), XENT_OK);
    CODE(xent_forward_backward(big, a, len, tt, rows, &la), XENT_OK);
    CODE(xent_set_num_threads(0), XENT_OK);
    CODE(xent_forward_backward(big, b, len, tt, rows, &lb), XENT_OK);
    CHECK(la.value == lb.value && memcmp(a, b, len * sizeof(float)) == 0);
    free(a);
    free(b);
    free(tt);
    xent_ce_free(big);

    /* Messages: static, non-empty, distinct for distinct codes. */
    for (int c = XENT_OK; c >= XENT_E_OTHER; c--) {
        CHECK(xent_strerror(c) != NULL && strlen(xent_strerror(c)) > 0);
        if (c < XENT_OK) CHECK(strcmp(xent_strerror(c), xent_strerror(c + 1)) != 0);
    }
    CHECK(strcmp(xent_strerror(-99), "unknown error code") == 0);

    xent_ce_free(ce);
    xent_ce_free(NULL);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("xent C ABI: all checks passed\n");
    return 0;
}
