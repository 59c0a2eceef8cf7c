// Optimizer updates: one launch over the flat parameter buffer of the whole
// model (weights first, then biases: elements below n_weights are weights).
// The rules are nn/optimizers.py's, with nn/regularizers.py's penalty gradient
// (weights only) added to the gradient first:
//   g = dW + l1 * sign(W) + l2 * W
// Each block also writes (sum |w|, sum w^2) of its share of the old weights to
// penalty_partials[2 * blockIdx.x ...], which loss_finalize_f32 turns into the
// penalty term of the loss. blockDim.x is a power of two; shared memory is
// blockDim.x floats.
#include "xpnet.cuh"

__device__ __forceinline__ float penalized_grad(float g, float w, float l1, float l2) {
    float extra = 0.0f;
    if (l1 != 0.0f) extra = extra + l1 * (float)((w > 0.0f) - (w < 0.0f));
    if (l2 != 0.0f) extra = extra + l2 * w;
    return (l1 != 0.0f || l2 != 0.0f) ? g + extra : g;
}

// The weight's share of the penalty sums, and the decoupled decay added to its step.
__device__ __forceinline__ float decayed(float step, float w, bool is_weight, float weight_decay,
                                         float& abs_sum, float& square_sum) {
    if (!is_weight) return step;
    abs_sum += fabsf(w);
    square_sum += w * w;
    return weight_decay != 0.0f ? step + weight_decay * w : step;
}

// smem: the kernel's dynamic shared memory. Declared in the extern "C" kernels
// only: a declaration here too would give smem C++ linkage beside their C one,
// which NVRTC warns of when it compiles all files as one module.
__device__ __forceinline__ void write_penalty_partials(float* penalty_partials, float abs_sum, float square_sum,
                                                       float* smem) {
    abs_sum = block_sum(abs_sum, smem);
    square_sum = block_sum(square_sum, smem);
    if (threadIdx.x == 0) {
        penalty_partials[2 * blockIdx.x] = abs_sum;
        penalty_partials[2 * blockIdx.x + 1] = square_sum;
    }
}

// Plain:    w -= lr * (g + wd w)
// Momentum: v = mu v + g;  w -= lr * (v + wd w)
// Nesterov: v = mu v + g;  w -= lr * (g + mu v + wd w)
// (wd, the decoupled weight decay, on weights only.)
extern "C" __global__ void sgd_update_f32(
    float* params, float* velocity, float* penalty_partials, const float* grads, const float* step_f32,
    int n, int n_weights, float momentum, int nesterov, float weight_decay, float l1, float l2) {
    const float lr = step_f32[XPNET_LR];
    float abs_sum = 0.0f, square_sum = 0.0f;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const float w = params[i];
        const bool is_weight = i < n_weights;
        const float g = is_weight ? penalized_grad(grads[i], w, l1, l2) : grads[i];
        float direction = g;
        if (momentum != 0.0f) {
            const float v = momentum * velocity[i] + g;
            velocity[i] = v;
            direction = nesterov ? g + momentum * v : v;
        }
        params[i] = w - lr * decayed(direction, w, is_weight, weight_decay, abs_sum, square_sum);
    }
    extern __shared__ float smem[];
    write_penalty_partials(penalty_partials, abs_sum, square_sum, smem);
}

// m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  t = t_old + 1
// w -= lr * ( m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps) + wd w )
// adam_t holds t_old; loss_finalize_f32 advances it after this launch.
// 1 - b^t as -expm1(t log b), log b rounded once on the host (nn.optimizers.Adam.bias_scales):
// written as it reads, it loses five digits to cancellation in float32.
extern "C" __global__ void adam_update_f32(
    float* params, float* m, float* v, float* penalty_partials, const float* grads, const float* adam_t,
    const float* step_f32, int n, int n_weights, float beta1, float one_minus_beta1, float beta2,
    float one_minus_beta2, float log_beta1, float log_beta2, float eps, float weight_decay, float l1, float l2) {
    const float lr = step_f32[XPNET_LR];
    const float t = adam_t[0] + 1.0f;
    const float m_scale = 1.0f / -expm1f(t * log_beta1);
    const float v_scale = 1.0f / -expm1f(t * log_beta2);
    float abs_sum = 0.0f, square_sum = 0.0f;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const float w = params[i];
        const bool is_weight = i < n_weights;
        const float g = is_weight ? penalized_grad(grads[i], w, l1, l2) : grads[i];
        const float mi = beta1 * m[i] + one_minus_beta1 * g;
        const float vi = beta2 * v[i] + one_minus_beta2 * (g * g);
        m[i] = mi;
        v[i] = vi;
        const float step = (mi * m_scale) / (sqrtf(vi * v_scale) + eps);
        params[i] = w - lr * decayed(step, w, is_weight, weight_decay, abs_sum, square_sum);
    }
    extern __shared__ float smem[];
    write_penalty_partials(penalty_partials, abs_sum, square_sum, smem);
}
