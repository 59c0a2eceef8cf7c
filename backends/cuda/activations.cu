// A dense layer's bias + activation (+ inverted dropout), forward beside backward.
// The matrix product itself is sgemm.cu's; these kernels are its epilogue and prologue.
#include "xpnet.cuh"

// z += b (row broadcast); y = f(z); a = y * dropout_scale when keep_prob < 1.
// Keeps z and y for the backward; a is the next layer's input (a may be y, y may be z).
// The dropout mask is never stored: the backward recomputes it from the same counter.
extern "C" __global__ void bias_act_forward_f32(
    float* z, float* y, float* a, const float* b, const unsigned* step_u32,
    int rows, int cols, int act, unsigned seed_hash, unsigned layer, float keep_prob, float inv_keep) {
    const size_t size = (size_t)rows * cols;
    const bool dropout = keep_prob < 1.0f;
    const unsigned key = dropout ? stream_key(seed_hash, step_u32[XPNET_STEP], layer) : 0u;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < size; i += (size_t)gridDim.x * blockDim.x) {
        const float zi = z[i] + b[i % cols];
        const float yi = act_forward(act, zi);
        z[i] = zi;
        y[i] = yi;
        if (dropout) a[i] = yi * dropout_scale(key, (unsigned)i, keep_prob, inv_keep);
    }
}

// dz = (da * dropout_scale) * f'(z, y) and db = sum over rows of dz, in one pass.
// Block (32, BY): a thread owns one column and every BY-th row; the BY partial
// column sums meet in shared memory (32 * BY floats) and thread row 0 adds them
// in a fixed order, so db is the same on every run.
extern "C" __global__ void act_backward_f32(
    float* dz, float* db, const float* da, const float* z, const float* y, const unsigned* step_u32,
    int rows, int cols, int act, unsigned seed_hash, unsigned layer, float keep_prob, float inv_keep) {
    const bool dropout = keep_prob < 1.0f;
    const unsigned key = dropout ? stream_key(seed_hash, step_u32[XPNET_STEP], layer) : 0u;
    const int col = blockIdx.x * blockDim.x + threadIdx.x;
    float partial = 0.0f;
    if (col < cols) {
        for (int r = threadIdx.y; r < rows; r += blockDim.y) {
            const size_t i = (size_t)r * cols + col;
            float g = da[i];
            if (dropout) g = g * dropout_scale(key, (unsigned)i, keep_prob, inv_keep);
            const float d = act_backward(act, g, z[i], y[i]);
            dz[i] = d;
            partial += d;
        }
    }
    extern __shared__ float smem[];
    smem[threadIdx.y * blockDim.x + threadIdx.x] = partial;
    __syncthreads();
    if (threadIdx.y == 0 && col < cols) {
        float total = 0.0f;
        for (int k = 0; k < (int)blockDim.y; ++k) total += smem[k * blockDim.x + threadIdx.x];
        db[col] = total;
    }
}

// A 0/1 keep-mask of `size` elements for one (seed, step, layer) stream key:
// what Backend.keep_mask gives, computed on the device.
extern "C" __global__ void keep_mask_f32(float* mask, unsigned key, int size, float keep_prob) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < size; i += gridDim.x * blockDim.x)
        mask[i] = uniform_from_counter(key, (unsigned)i) < keep_prob ? 1.0f : 0.0f;
}
