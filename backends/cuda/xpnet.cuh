// Device helpers shared by every xpnet kernel file.
//
// House rules for the kernels (the CPU harness under tests/ relies on them):
// - entry points are `extern "C" __global__` with `_f32` names;
// - all shared memory is the one dynamic array `extern __shared__ float smem[]`,
//   sized by the launcher, so every kernel's shared memory can be poisoned and
//   bounds-checked;
// - per-step values that change between graph replays (learning rate, step
//   number, rows in the batch, result slot) are read from device memory, never
//   passed by value, so one captured graph serves every step.
#ifndef XPNET_CUH
#define XPNET_CUH

#define XPNET_FULL_MASK 0xffffffffu
// NVRTC has no <cmath> and so no INFINITY: build +inf from its bits.
#define XPNET_INFINITY __int_as_float(0x7f800000)

// Activation codes: backends/cupy_kernels.py ACTIVATION_CODES uses the same numbers.
#define XPNET_LINEAR 0
#define XPNET_RELU 1
#define XPNET_LEAKY_RELU 2
#define XPNET_SIGMOID 3
#define XPNET_TANH 4
#define XPNET_LEAKY_SLOPE 0.01f

// Slots of the per-step device scalars written by begin_step_f32.
#define XPNET_LR 0          // step_f32[0]: learning rate
#define XPNET_STEP 0        // step_u32[0]: global step number (dropout stream)
#define XPNET_COUNT 1       // step_u32[1]: valid rows in this batch (the rest is padding)
#define XPNET_SLOT 2        // step_u32[2]: where this step writes its loss and correct count

__device__ __forceinline__ float act_forward(int act, float z) {
    switch (act) {
    case XPNET_RELU: return z > 0.0f ? z : 0.0f;
    case XPNET_LEAKY_RELU: return z > 0.0f ? z : z * XPNET_LEAKY_SLOPE;
    case XPNET_SIGMOID: {
        // exp of a non-positive number never overflows (as nn.activations.sigmoid).
        float e = expf(-fabsf(z));
        return z >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    }
    case XPNET_TANH: return tanhf(z);
    default: return z;
    }
}

// dz from dy, the input z and the output y, in nn.activations' order of operations.
__device__ __forceinline__ float act_backward(int act, float dy, float z, float y) {
    switch (act) {
    case XPNET_RELU: return dy * (z > 0.0f ? 1.0f : 0.0f);
    case XPNET_LEAKY_RELU: return dy * (z > 0.0f ? 1.0f : XPNET_LEAKY_SLOPE);
    case XPNET_SIGMOID: return dy * y * (1.0f - y);
    case XPNET_TANH: return dy * (1.0f - y * y);
    default: return dy;
    }
}

// -- counter-based random numbers: the same hash as backends/random.py ------------
__device__ __forceinline__ unsigned mix32(unsigned h) {
    h ^= h >> 16;
    h *= 0x7FEB352Du;
    h ^= h >> 15;
    h *= 0x846CA68Bu;
    return h ^ (h >> 16);
}

// random.stream_key(seed, step, layer), given seed_hash = mix32(seed) from the host.
__device__ __forceinline__ unsigned stream_key(unsigned seed_hash, unsigned step, unsigned layer) {
    return mix32(mix32(seed_hash ^ step) ^ (layer * 0x9E3779B9u));
}

// A float32 uniform in [0, 1): the top 24 bits of the hash fill the mantissa exactly.
__device__ __forceinline__ float uniform_from_counter(unsigned key, unsigned counter) {
    unsigned bits = mix32(mix32(counter ^ key) + key);
    return (float)(bits >> 8) * 5.9604644775390625e-8f;  // 2^-24
}

// The inverted-dropout factor of one element: 1/p where kept, 0 where dropped.
__device__ __forceinline__ float dropout_scale(unsigned key, unsigned counter, float keep_prob, float inv_keep) {
    return uniform_from_counter(key, counter) < keep_prob ? inv_keep : 0.0f;
}

// -- reductions ------------------------------------------------------------------------
__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(XPNET_FULL_MASK, v, offset);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(XPNET_FULL_MASK, v, offset));
    return v;
}

// The sum over a block whose blockDim.x is a power of two; buf holds blockDim.x
// values. Every thread gets the total, and buf may be reused afterwards.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* buf) {
    const unsigned t = threadIdx.x;
    buf[t] = v;
    __syncthreads();
    for (unsigned stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (t < stride) buf[t] += buf[t + stride];
        __syncthreads();
    }
    T total = buf[0];
    __syncthreads();
    return total;
}

#endif  // XPNET_CUH
