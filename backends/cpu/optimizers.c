// The optimizer updates of nn/optimizers.py's update_flat, fused into one
// pass over the flat buffers (backends/flat.py: weights first, then biases
// from n_weights on). Every number goes through the same float32 operations,
// in the same order, as the ufunc path (a product, then a sum: each rounded,
// compiled with -ffp-contract=off so no fused multiply-add merges them), so
// the two give the same bits (tests/test_cpu_kernels.py). The scalars come
// rounded to float32 from the caller, as NumPy rounds Python floats.
#include <float.h>
#include <math.h>
#include <stddef.h>

// A moment below float32's smallest normal number becomes 0 (nn.optimizers._flushed says why).
static inline float flushed(float x) { return fabsf(x) < FLT_MIN ? 0.0f : x; }

// w -= lr * (direction + decay * w): the decoupled decay, 0 for biases (nn.optimizers._step_in_place).
static inline float stepped(float w, float direction, float lr, float decay) {
    return w - (decay != 0.0f ? w * decay + direction : direction) * lr;
}

// Plain:     w -= lr * (g + wd w)
// Momentum:  v = mu v + g;  w -= lr * (v + wd w)                    (v flushed every step)
// Nesterov:  v = mu v + g;  w -= lr * (g + mu v + wd w)
static void sgd_span(float* restrict params, float* restrict velocity, const float* restrict grads, ptrdiff_t n,
                     float momentum, int nesterov, float lr, float decay) {
    if (momentum == 0.0f) {
        for (ptrdiff_t i = 0; i < n; i++) params[i] = stepped(params[i], grads[i], lr, decay);
        return;
    }
    for (ptrdiff_t i = 0; i < n; i++) {
        const float v = flushed(velocity[i] * momentum + grads[i]);
        velocity[i] = v;
        params[i] = stepped(params[i], nesterov ? v * momentum + grads[i] : v, lr, decay);
    }
}

void sgd_update_f32(float* params, float* velocity, const float* grads, ptrdiff_t n, ptrdiff_t n_weights,
                    float momentum, int nesterov, float lr, float weight_decay) {
    sgd_span(params, velocity, grads, n_weights, momentum, nesterov, lr, weight_decay);
    sgd_span(params + n_weights, velocity ? velocity + n_weights : NULL, grads + n_weights, n - n_weights,
             momentum, nesterov, lr, 0.0f);
}

// m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
// w -= lr * ( m m_scale / (sqrt(v v_scale) + eps) + wd w ),  m_scale = 1 / (1 - b1^t), v_scale likewise
// (the caller advances t and works out the scales: nn.optimizers.Adam.advance_flat).
// flush is a constant of each inlined copy: the compiler vectorizes both loops.
static inline void adam_span(float* restrict params, float* restrict m, float* restrict v,
                             const float* restrict grads, ptrdiff_t n, float beta1, float one_minus_beta1,
                             float beta2, float one_minus_beta2, float m_scale, float v_scale, float eps, float lr,
                             float decay, const int flush) {
    for (ptrdiff_t i = 0; i < n; i++) {
        const float g = grads[i];
        float mi = m[i] * beta1 + g * one_minus_beta1;
        float vi = v[i] * beta2 + (g * g) * one_minus_beta2;
        if (flush) {
            mi = flushed(mi);
            vi = flushed(vi);
        }
        m[i] = mi;
        v[i] = vi;
        params[i] = stepped(params[i], (mi * m_scale) / (sqrtf(vi * v_scale) + eps), lr, decay);
    }
}

void adam_update_f32(float* params, float* m, float* v, const float* grads, ptrdiff_t n, ptrdiff_t n_weights,
                     float beta1, float one_minus_beta1, float beta2, float one_minus_beta2, float m_scale,
                     float v_scale, float eps, float lr, float weight_decay, int flush) {
    const ptrdiff_t b = n_weights;
    if (flush) {
        adam_span(params, m, v, grads, b, beta1, one_minus_beta1, beta2, one_minus_beta2, m_scale, v_scale, eps,
                  lr, weight_decay, 1);
        adam_span(params + b, m + b, v + b, grads + b, n - b, beta1, one_minus_beta1, beta2, one_minus_beta2,
                  m_scale, v_scale, eps, lr, 0.0f, 1);
    } else {
        adam_span(params, m, v, grads, b, beta1, one_minus_beta1, beta2, one_minus_beta2, m_scale, v_scale, eps,
                  lr, weight_decay, 0);
        adam_span(params + b, m + b, v + b, grads + b, n - b, beta1, one_minus_beta1, beta2, one_minus_beta2,
                  m_scale, v_scale, eps, lr, 0.0f, 0);
    }
}
