// Test-only kernels that exercise the harness itself (not shipped, not for GPUs).
#include "xpnet.cuh"

// out[t] = the value lane t receives from a warp shuffle of in[].
extern "C" __global__ void shuffle_probe_f32(float* out, const float* in, int xor_kind, int lane_arg, int width) {
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    const float v = in[t];
    out[t] = xor_kind ? __shfl_xor_sync(XPNET_FULL_MASK, v, lane_arg, width)
                      : __shfl_down_sync(XPNET_FULL_MASK, v, (unsigned)lane_arg, width);
}

// Thread 0 leaves before the barrier the others wait at: undefined on a GPU.
extern "C" __global__ void early_exit_probe_f32(float* out) {
    if (threadIdx.x == 0) return;
    out[threadIdx.x] = 1.0f;
    __syncthreads();
}
