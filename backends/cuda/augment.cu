// Training-data augmentation of a gathered 28x28 batch, in place: nn/augment.py's
// augment_batch, one block per image, in the same order of operations.
//
// Per image: nine per-sample uniforms (clean, rotation, shear, x/y scale, x/y
// shift, stroke choice and amount) and, for elastic, two k x k noise matrices,
// all from the counter hash keyed by (seed, step, sample) with the step read
// from step_u32 (a replayed graph draws new numbers); the stroke blended
// toward its 4-neighbour dilation or erosion; each field B @ Z @ B^T times
// alpha, B (28 x k) the smoothing's eigenbasis (nn.augment.field_basis); one
// bilinear sampling through the composed coordinate map, 0 outside; clip to
// [0, 1]; clean rows and padding rows left as they are.
#include "xpnet.cuh"

#define AUG_SIDE 28
#define AUG_PIXELS 784
#define AUG_CENTRE 13.5f
#define AUG_PARAMS_LAYER 0xA000u
#define AUG_FIELD_LAYER 0xA001u
#define AUG_N_PARAMS 9
#define AUG_THICKEN_P 0.5f
#define AUG_THIN_P 0.2f
// Shared floats per block: the image, its stroke-changed copy, the two noise
// matrices (then the two fields) and the two half products B @ Z; k <= 28.
// 6 * AUG_PIXELS, written out: backends/cupy_kernels.py reads the number from here.
#define AUG_SHARED_FLOATS 4704

__device__ __forceinline__ float aug_pixel(const float* image, int r, int c) {
    return (r >= 0 && r < AUG_SIDE && c >= 0 && c < AUG_SIDE) ? image[r * AUG_SIDE + c] : 0.0f;
}

extern "C" __global__ void augment_f32(
    float* x, const unsigned* step_u32, unsigned seed_hash, int rows, int elastic,
    float rotate_rad, float shear, float scale, float shift, const float* basis, int modes, float alpha,
    float thicken, float thin, float clean_fraction) {
    extern __shared__ float smem[];
    float* image = smem;
    float* stroked = smem + AUG_PIXELS;
    float* noise = smem + 2 * AUG_PIXELS;
    float* half = smem + 4 * AUG_PIXELS;
    const int r = blockIdx.x;
    if (r >= rows || r >= (int)step_u32[XPNET_COUNT]) return;  // padding rows stay zero
    const unsigned step = step_u32[XPNET_STEP];
    const unsigned params_key = stream_key(seed_hash, step, AUG_PARAMS_LAYER);
    float u[AUG_N_PARAMS];
    for (int j = 0; j < AUG_N_PARAMS; ++j)
        u[j] = uniform_from_counter(params_key, (unsigned)(r * AUG_N_PARAMS + j));
    if (u[0] < clean_fraction) return;  // a clean row: the gathered image as it is

    float* row = x + (size_t)r * AUG_PIXELS;
    const unsigned field_key = stream_key(seed_hash, step, AUG_FIELD_LAYER);
    const int noise_size = 2 * modes * modes;  // nn.augment's (batch, 2, k, k) counters, row-major
    for (int p = threadIdx.x; p < AUG_PIXELS; p += blockDim.x) image[p] = row[p];
    if (elastic) {
        for (int q = threadIdx.x; q < noise_size; q += blockDim.x)
            noise[q] = uniform_from_counter(field_key, (unsigned)(r * noise_size + q)) * 2.0f - 1.0f;
    }
    __syncthreads();

    // Per-sample parameters, as nn.augment.sample_parameters.
    const float theta = (u[1] * 2.0f - 1.0f) * rotate_rad;
    const float k = (u[2] * 2.0f - 1.0f) * shear;
    const float sx = 1.0f + (u[3] * 2.0f - 1.0f) * scale;
    const float sy = 1.0f + (u[4] * 2.0f - 1.0f) * scale;
    const float tx = (u[5] * 2.0f - 1.0f) * shift;
    const float ty = (u[6] * 2.0f - 1.0f) * shift;
    const float cs = cosf(theta), sn = sinf(theta);
    const float det = sx * sy;
    const float a = (cs - sn * k) * sy / det, b = -(cs * k + sn) * sy / det;
    const float c = sn * sx / det, d = cs * sx / det;
    const float blend = u[7] < AUG_THICKEN_P ? u[8] * thicken
                      : (u[7] < AUG_THICKEN_P + AUG_THIN_P ? -u[8] * thin : 0.0f);

    // Stroke width, on the source: toward the dilation (blend > 0) or the erosion.
    for (int p = threadIdx.x; p < AUG_PIXELS; p += blockDim.x) {
        const int i = p / AUG_SIDE, j = p % AUG_SIDE;
        const float v = image[p];
        const float n0 = aug_pixel(image, i - 1, j), n1 = aug_pixel(image, i + 1, j);
        const float n2 = aug_pixel(image, i, j - 1), n3 = aug_pixel(image, i, j + 1);
        const float dilated = fmaxf(fmaxf(fmaxf(fmaxf(v, n0), n1), n2), n3);
        const float eroded = fminf(fminf(fminf(fminf(v, n0), n1), n2), n3);
        stroked[p] = v + fmaxf(blend, 0.0f) * (dilated - v) + fmaxf(-blend, 0.0f) * (eroded - v);
    }

    // The elastic fields, B @ Z @ B^T times alpha: first H = B @ Z (28 x k), then H @ B^T.
    const int half_size = AUG_SIDE * modes;
    if (elastic) {
        for (int q = threadIdx.x; q < 2 * half_size; q += blockDim.x) {
            const int axis = q / half_size, i = (q % half_size) / modes, l = q % modes;
            float sum = 0.0f;
            for (int m = 0; m < modes; ++m)
                sum += basis[i * modes + m] * noise[axis * modes * modes + m * modes + l];
            half[q] = sum;
        }
    }
    __syncthreads();
    if (elastic) {
        for (int q = threadIdx.x; q < 2 * AUG_PIXELS; q += blockDim.x) {
            const int axis = q / AUG_PIXELS, i = (q % AUG_PIXELS) / AUG_SIDE, j = q % AUG_SIDE;
            float sum = 0.0f;
            for (int l = 0; l < modes; ++l)
                sum += half[axis * half_size + i * modes + l] * (basis[j * modes + l] * alpha);
            noise[q] = sum;  // the noise is read no more: the field takes its place
        }
    }
    __syncthreads();

    // One bilinear sampling through the composed map; coordinates clipped to [-1, 28].
    for (int p = threadIdx.x; p < AUG_PIXELS; p += blockDim.x) {
        const float py = (float)(p / AUG_SIDE) - AUG_CENTRE, px = (float)(p % AUG_SIDE) - AUG_CENTRE;
        float src_x = a * px + b * py + AUG_CENTRE - tx;
        float src_y = c * px + d * py + AUG_CENTRE - ty;
        if (elastic) {
            src_x += noise[p];
            src_y += noise[AUG_PIXELS + p];
        }
        src_x = fminf(fmaxf(src_x, -1.0f), (float)AUG_SIDE);
        src_y = fminf(fmaxf(src_y, -1.0f), (float)AUG_SIDE);
        const float x0 = floorf(src_x), y0 = floorf(src_y);
        const float fx = src_x - x0, fy = src_y - y0;
        const int ix = (int)x0, iy = (int)y0;
        const float top = aug_pixel(stroked, iy, ix) * (1.0f - fx) + aug_pixel(stroked, iy, ix + 1) * fx;
        const float bottom = aug_pixel(stroked, iy + 1, ix) * (1.0f - fx) + aug_pixel(stroked, iy + 1, ix + 1) * fx;
        row[p] = fminf(fmaxf(top * (1.0f - fy) + bottom * fy, 0.0f), 1.0f);
    }
}
