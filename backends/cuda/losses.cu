// Losses fused with their gradients: one warp per row, the row's values and
// gradient in one pass over the logits. Rows at or past step_u32[XPNET_COUNT]
// are padding of a partial batch: they get a zero gradient and add nothing.
// Per-row losses and hits go to buffers that loss_finalize_f32 sums in a fixed
// order, so the batch loss is the same on every run.
#include "xpnet.cuh"

// The first index of the row's maximum (NumPy's argmax rule), spread to every lane.
__device__ __forceinline__ int warp_argmax(float best, int best_index) {
    for (int offset = 16; offset > 0; offset >>= 1) {
        const float other = __shfl_xor_sync(XPNET_FULL_MASK, best, offset);
        const int other_index = __shfl_xor_sync(XPNET_FULL_MASK, best_index, offset);
        if (other > best || (other == best && other_index < best_index)) {
            best = other;
            best_index = other_index;
        }
    }
    return best_index;
}

// The loop both losses share: each warp takes rows with a grid stride, clears
// padding rows, finds the row's maximum and argmax, and calls
// row_fn(z, dz, label, zmax, lane, count) for the row's loss (every lane gets
// the same value back; blockDim.x is a multiple of 32).
template <typename RowFn>
__device__ __forceinline__ void for_each_row(float* dlogits, float* row_loss, int* row_correct, const float* logits,
                                             const int* labels, const unsigned* step_u32, int rows, int classes,
                                             RowFn row_fn) {
    const int lane = threadIdx.x & 31;
    const int warps = (gridDim.x * blockDim.x) >> 5;
    const int count = (int)step_u32[XPNET_COUNT];
    for (int r = (int)((blockIdx.x * blockDim.x + threadIdx.x) >> 5); r < rows; r += warps) {
        const float* z = logits + (size_t)r * classes;
        float* dz = dlogits + (size_t)r * classes;
        if (r >= count) {  // padding: zero gradient, no loss, no hit
            for (int k = lane; k < classes; k += 32) dz[k] = 0.0f;
            if (lane == 0) {
                row_loss[r] = 0.0f;
                row_correct[r] = 0;
            }
            continue;
        }
        float best = -XPNET_INFINITY;
        int best_index = classes;
        for (int k = lane; k < classes; k += 32)
            if (z[k] > best) { best = z[k]; best_index = k; }
        const int predicted = warp_argmax(best, best_index);
        const float zmax = warp_max(best);
        const int label = labels[r];
        const float loss = row_fn(z, dz, label, zmax, lane, count);
        if (lane == 0) {
            row_loss[r] = loss;
            row_correct[r] = predicted == label;
        }
    }
}

__device__ __forceinline__ float row_exp_sum(const float* z, float zmax, int classes, int lane) {
    float sum = 0.0f;
    for (int k = lane; k < classes; k += 32) sum += expf(z[k] - zmax);
    return warp_sum(sum);
}

// Loss and dlogits of a stable softmax cross-entropy, batch mean:
//   loss_n = log sum_k exp(z_nk - max_n) - (z_n,y_n - max_n)
//   dz_nk  = (softmax(z_n)_k - [k == y_n]) / count
extern "C" __global__ void softmax_ce_f32(
    float* dlogits, float* row_loss, int* row_correct, const float* logits, const int* labels,
    const unsigned* step_u32, int rows, int classes) {
    for_each_row(dlogits, row_loss, row_correct, logits, labels, step_u32, rows, classes,
                 [&](const float* z, float* dz, int label, float zmax, int lane, int count) {
                     const float sum = row_exp_sum(z, zmax, classes, lane);
                     for (int k = lane; k < classes; k += 32) {
                         const float p = expf(z[k] - zmax) / sum;
                         dz[k] = (p - (k == label ? 1.0f : 0.0f)) / (float)count;
                     }
                     return logf(sum) - (z[label] - zmax);
                 });
}

// Mean squared error against one-hot targets, the mean over all N * K entries:
//   loss_n = sum_k (out_nk - [k == y_n])^2,  dout = 2 (out - onehot) / (N K)
// With softmax_output the outputs are softmax(z) and the gradient goes on through
// the softmax: dz = p * (dout - sum_k dout_k p_k).
extern "C" __global__ void mse_f32(
    float* dlogits, float* row_loss, int* row_correct, const float* logits, const int* labels,
    const unsigned* step_u32, int rows, int classes, int softmax_output) {
    for_each_row(dlogits, row_loss, row_correct, logits, labels, step_u32, rows, classes,
                 [&](const float* z, float* dz, int label, float zmax, int lane, int count) {
                     // 2 / (N K) rounded once from double, as NumPy does with a Python float.
                     const float scale = (float)(2.0 / ((double)count * (double)classes));
                     const float sum = softmax_output ? row_exp_sum(z, zmax, classes, lane) : 1.0f;
                     float squares = 0.0f, dot = 0.0f;
                     for (int k = lane; k < classes; k += 32) {
                         const float out = softmax_output ? expf(z[k] - zmax) / sum : z[k];
                         const float diff = out - (k == label ? 1.0f : 0.0f);
                         const float g = diff * scale;
                         squares += diff * diff;
                         dot += g * out;
                         dz[k] = g;
                     }
                     if (softmax_output) {
                         dot = warp_sum(dot);
                         for (int k = lane; k < classes; k += 32) {
                             const float p = expf(z[k] - zmax) / sum;
                             dz[k] = p * (dz[k] - dot);
                         }
                     }
                     return warp_sum(squares);
                 });
}

// The batch loss and correct count of one step, written to slot step_u32[XPNET_SLOT]
// of the result rings: loss = sum(row_loss) / (count * row_divisor) + penalty, where
// penalty = l1 * sum|W| + l2 / 2 * sum W^2 from the optimizer's per-block partials
// (pairs of sum|w|, sum w^2). Also advances Adam's step counter t when asked:
// this kernel runs after the update, which read the old t.
// One block; blockDim.x a power of two; shared memory 2 * blockDim.x floats.
extern "C" __global__ void loss_finalize_f32(
    float* loss_ring, int* correct_ring, float* adam_t, const float* row_loss, const int* row_correct,
    const float* penalty_partials, const unsigned* step_u32,
    int rows, int row_divisor, int n_partials, float l1, float l2, int advance_t) {
    extern __shared__ float smem[];
    int* ismem = (int*)(smem + blockDim.x);
    const int count = (int)step_u32[XPNET_COUNT];
    float loss = 0.0f, abs_sum = 0.0f, square_sum = 0.0f;
    int hits = 0;
    for (int r = threadIdx.x; r < rows && r < count; r += blockDim.x) {
        loss += row_loss[r];
        hits += row_correct[r];
    }
    for (int p = threadIdx.x; p < n_partials; p += blockDim.x) {
        abs_sum += penalty_partials[2 * p];
        square_sum += penalty_partials[2 * p + 1];
    }
    loss = block_sum(loss, smem);
    abs_sum = block_sum(abs_sum, smem);
    square_sum = block_sum(square_sum, smem);
    hits = block_sum(hits, ismem);
    if (threadIdx.x == 0) {
        const unsigned slot = step_u32[XPNET_SLOT];
        loss_ring[slot] = loss / ((float)count * (float)row_divisor) + (l1 * abs_sum + 0.5f * l2 * square_sum);
        correct_ring[slot] = hits;
        if (advance_t) adam_t[0] += 1.0f;
    }
}
