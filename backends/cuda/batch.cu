// Per-step bookkeeping and batch gathering, so that the rest of the step can be
// one captured CUDA graph: everything that changes from step to step passes
// through begin_step_f32 into device memory.
#include "xpnet.cuh"

// The per-step scalars and this batch's sample indices, written into static
// device buffers. Launched before every (replayed) step, outside the graph.
extern "C" __global__ void begin_step_f32(
    float* step_f32, unsigned* step_u32, int* batch_idx, const int* idx,
    int count, float lr, unsigned step_no, unsigned slot) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < count; i += gridDim.x * blockDim.x)
        batch_idx[i] = idx[i];
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        step_f32[XPNET_LR] = lr;
        step_u32[XPNET_STEP] = step_no;
        step_u32[XPNET_COUNT] = (unsigned)count;
        step_u32[XPNET_SLOT] = slot;
    }
}

// x[r] = x_all[batch_idx[r]], y[r] = y_all[batch_idx[r]] for the valid rows;
// the padding rows of a partial batch are zeros (their gradient is zero anyway).
extern "C" __global__ void gather_batch_f32(
    float* x, int* y, const float* x_all, const int* y_all, const int* batch_idx, const unsigned* step_u32,
    int rows, int cols) {
    const int count = (int)step_u32[XPNET_COUNT];
    const size_t size = (size_t)rows * cols;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < size; i += (size_t)gridDim.x * blockDim.x) {
        const int r = (int)(i / cols);
        const int c = (int)(i % cols);
        x[i] = r < count ? x_all[(size_t)batch_idx[r] * cols + c] : 0.0f;
        if (c == 0) y[r] = r < count ? y_all[batch_idx[r]] : 0;
    }
}
