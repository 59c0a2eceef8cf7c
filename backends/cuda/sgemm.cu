// Our own tiled SGEMM in the three forms a dense layer needs, so that a whole
// training step can be captured in a CUDA graph (CuPy refuses cuBLAS calls
// during capture, cupy/cupy#6290). Row-major throughout; no transposed copies:
//   sgemm_nn_f32  C (M,N) = A (M,K)   B (K,N)     forward      z  = a W
//   sgemm_nt_f32  C (M,N) = A (M,K)   B (N,K)^T   input grad   dx = dz W^T
//   sgemm_tn_f32  C (M,N) = A (K,M)^T B (K,N)     weight grad  dW = a^T dz
// Block (16, 16) computes a 64 x 64 tile of C, 4 x 4 values per thread, from
// 16-deep slices of A and B staged in shared memory. Edges are zero-filled, so
// any M, N, K works. Grid (ceil(N/64), ceil(M/64)).
#include "xpnet.cuh"

#define SGEMM_TILE 64
#define SGEMM_DEPTH 16
#define SGEMM_THREADS 16
// One padding column keeps the column-wise tile stores free of bank conflicts.
#define SGEMM_PITCH (SGEMM_TILE + 1)
// Dynamic shared memory per block, in floats: the A slice, then the B slice.
#define SGEMM_SHARED_FLOATS (2 * SGEMM_DEPTH * SGEMM_PITCH)

// smem: the kernel's dynamic shared memory, declared by the extern "C" callers
// (a declaration in this C++ function would clash with their C linkage).
template <bool TRANS_A, bool TRANS_B>
__device__ __forceinline__ void sgemm_tiled(float* C, const float* A, const float* B, int M, int N, int K,
                                            float* smem) {
    float* a_tile = smem;                              // [depth][m]
    float* b_tile = smem + SGEMM_DEPTH * SGEMM_PITCH;  // [depth][n]
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int tid = ty * SGEMM_THREADS + tx;
    const int m0 = blockIdx.y * SGEMM_TILE, n0 = blockIdx.x * SGEMM_TILE;
    float acc[4][4];
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

    for (int k0 = 0; k0 < K; k0 += SGEMM_DEPTH) {
        // 1024 values of each slice, 4 per thread; consecutive threads read
        // consecutive addresses of whichever layout the operand has.
        for (int part = 0; part < 4; ++part) {
            const int l = tid + part * SGEMM_THREADS * SGEMM_THREADS;
            int m, k;
            if (TRANS_A) { k = l / SGEMM_TILE; m = l % SGEMM_TILE; }
            else { m = l / SGEMM_DEPTH; k = l % SGEMM_DEPTH; }
            const int gm = m0 + m, gk = k0 + k;
            float value = 0.0f;
            if (gm < M && gk < K) value = TRANS_A ? A[(size_t)gk * M + gm] : A[(size_t)gm * K + gk];
            a_tile[k * SGEMM_PITCH + m] = value;

            int n;
            if (TRANS_B) { n = l / SGEMM_DEPTH; k = l % SGEMM_DEPTH; }
            else { k = l / SGEMM_TILE; n = l % SGEMM_TILE; }
            const int gn = n0 + n, gk2 = k0 + k;
            value = 0.0f;
            if (gn < N && gk2 < K) value = TRANS_B ? B[(size_t)gn * K + gk2] : B[(size_t)gk2 * N + gn];
            b_tile[k * SGEMM_PITCH + n] = value;
        }
        __syncthreads();
        for (int k = 0; k < SGEMM_DEPTH; ++k) {
            float a[4], b[4];
            for (int i = 0; i < 4; ++i) a[i] = a_tile[k * SGEMM_PITCH + ty + SGEMM_THREADS * i];
            for (int j = 0; j < 4; ++j) b[j] = b_tile[k * SGEMM_PITCH + tx + SGEMM_THREADS * j];
            for (int i = 0; i < 4; ++i)
                for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
    for (int i = 0; i < 4; ++i) {
        const int m = m0 + ty + SGEMM_THREADS * i;
        for (int j = 0; j < 4; ++j) {
            const int n = n0 + tx + SGEMM_THREADS * j;
            if (m < M && n < N) C[(size_t)m * N + n] = acc[i][j];
        }
    }
}

extern "C" __global__ void sgemm_nn_f32(float* C, const float* A, const float* B, int M, int N, int K) {
    extern __shared__ float smem[];
    sgemm_tiled<false, false>(C, A, B, M, N, K, smem);
}

extern "C" __global__ void sgemm_nt_f32(float* C, const float* A, const float* B, int M, int N, int K) {
    extern __shared__ float smem[];
    sgemm_tiled<false, true>(C, A, B, M, N, K, smem);
}

extern "C" __global__ void sgemm_tn_f32(float* C, const float* A, const float* B, int M, int N, int K) {
    extern __shared__ float smem[];
    sgemm_tiled<true, false>(C, A, B, M, N, K, smem);
}
