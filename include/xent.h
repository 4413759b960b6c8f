/* xent: fused softmax cross-entropy for C and C++ (the C ABI of the Rust crate).
 *
 * Build: cargo build --release -p xent-capi, then link target/release/libxent_capi.a
 * (with -lpthread -ldl -lm) or libxent_capi.so.
 *
 * Every function returns 0 or a negative XENT_E_* code (xent_strerror gives its
 * message). A NULL pointer where data is required is XENT_E_NULL; nothing is written on
 * error. A configuration may be shared by threads that only call; its setters must not
 * race with calls on it. The layout and signatures here are checked against the Rust
 * code by capi/tests/header.rs. */
#ifndef XENT_H
#define XENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct xent_ce xent_ce; /* opaque, thread-safe to share */

typedef struct {
    float value;    /* the reduced loss (z-loss included) */
    size_t rows;    /* rows counted (targets other than the ignore index) */
    size_t correct; /* counted rows whose argmax is the target */
    float z_loss;   /* the z-loss part of value */
} xent_loss;

#define XENT_OK 0
#define XENT_E_NULL (-1)
#define XENT_E_ZERO_CLASSES (-2)
#define XENT_E_LOGITS_SHAPE (-3)
#define XENT_E_TARGETS_LENGTH (-4)
#define XENT_E_TARGET_OUT_OF_RANGE (-5)
#define XENT_E_OUTPUT_LENGTH (-6)
#define XENT_E_WEIGHTS_LENGTH (-7)
#define XENT_E_NON_FINITE_WEIGHT (-8)
#define XENT_E_LABEL_SMOOTHING (-9)
#define XENT_E_Z_LOSS (-10)
#define XENT_E_SOFTCAP (-11)
#define XENT_E_REDUCTION (-12)
#define XENT_E_OVERLAP (-13)
#define XENT_E_THREADS (-14)
#define XENT_E_PANIC (-15)
#define XENT_E_OTHER (-16)

/* A configuration for `classes` classes: mean reduction, no ignore index. NULL only if
 * out of memory. Zero classes is accepted here and reported by the calls. */
xent_ce *xent_ce_new(size_t classes);
void xent_ce_free(xent_ce *ce); /* NULL is ignored */

int xent_ce_set_reduction(xent_ce *ce, int reduction); /* 0 mean, 1 sum, 2 none */
int xent_ce_set_ignore_index(xent_ce *ce, int64_t index);
int xent_ce_set_label_smoothing(xent_ce *ce, float eps); /* [0, 1] */
/* One weight per class, copied; (NULL, 0) removes them. */
int xent_ce_set_class_weights(xent_ce *ce, const float *weights, size_t len);
int xent_ce_set_z_loss(xent_ce *ce, float coefficient); /* >= 0 */
int xent_ce_set_softcap(xent_ce *ce, float cap);        /* [2^-126, 2^126] */

/* logits: len floats, len / classes rows, row-major; targets: n class indices. */
int xent_forward(const xent_ce *ce, const float *logits, size_t len,
                 const int64_t *targets, size_t n, xent_loss *out);
/* The gradient dLoss/dlogits is written over the logits. */
int xent_forward_backward(const xent_ce *ce, float *logits, size_t len,
                          const int64_t *targets, size_t n, xent_loss *out);
/* The gradient into grad (grad_len == len); grad == logits is the in-place call, any
 * other overlap is XENT_E_OVERLAP. */
int xent_forward_backward_into(const xent_ce *ce, const float *logits, size_t len,
                               const int64_t *targets, size_t n, float *grad,
                               size_t grad_len, xent_loss *out);

const char *xent_strerror(int code); /* a static string */

/* Calls run on a pool of `threads` threads from now on; 0: rayon's global pool. */
int xent_set_num_threads(size_t threads);

#ifdef __cplusplus
}
#endif

#endif /* XENT_H */
