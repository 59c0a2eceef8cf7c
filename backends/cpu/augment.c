// nn/augment.py's warp, one pass per image: the stroke change, the
// coordinate map and the bilinear sampling that NumPy does as a few dozen
// whole-batch passes (gathers and temporaries of 100,000 values each). The
// random draws stay in nn/augment.py (``draw``): this file only warps by
// them. Every value goes through the same float32 operations, in the same
// order, as the NumPy path (compiled with -ffp-contract=off, no fused
// multiply-add), so the two give the same bits (tests/test_cpu_warp.py).
#include <math.h>
#include <stddef.h>

#define SIDE 28
#define PIXELS (SIDE * SIDE)
// The source for sampling sits in a zero frame, one pixel before and two
// after each axis (nn.augment.bilinear_sample's padding), so that no read
// needs a bounds check and the loops have no branches (the stroke's loop
// vectorizes; GCC leaves the sampling's four gathers scalar).
#define FRAMED (SIDE + 3)

static inline float larger(float a, float b) { return a > b ? a : b; }
static inline float smaller(float a, float b) { return a < b ? a : b; }
static inline float clamp(float v, float low, float high) { return v < low ? low : (v > high ? high : v); }

// nn.augment.stroke_width for one image, written into ``framed``'s inside:
// a blend toward the 4-neighbour dilation (blend > 0) or erosion (< 0).
static void stroke(const float* image, float blend, float* framed) {
    float edged[(SIDE + 2) * (SIDE + 2)] = {0};  // the image in a zero frame of one pixel
    for (int r = 0; r < SIDE; r++)
        for (int q = 0; q < SIDE; q++) edged[(r + 1) * (SIDE + 2) + q + 1] = image[r * SIDE + q];
    const float thicken = blend > 0.0f ? blend : 0.0f, thin = -blend > 0.0f ? -blend : 0.0f;
    for (int r = 0; r < SIDE; r++) {
        const float* row = edged + (r + 1) * (SIDE + 2) + 1;
        for (int q = 0; q < SIDE; q++) {
            const float centre = row[q], up = row[q - (SIDE + 2)], down = row[q + SIDE + 2];
            const float left = row[q - 1], right = row[q + 1];
            const float dilated = larger(larger(larger(larger(centre, up), down), left), right);
            const float eroded = smaller(smaller(smaller(smaller(centre, up), down), left), right);
            const float thicker = centre + thicken * (dilated - centre);
            framed[(r + 1) * FRAMED + q + 1] = thicker + thin * (eroded - centre);
        }
    }
}

// x, out: (batch, 784). params: (batch, 8) rows of the inverse matrix a, b,
// c, d, the shift (x, y), the stroke blend and 1 for a clean row (else 0).
// dx, dy: (batch, 784) elastic displacements, or NULL for none.
void warp_f32(const float* x, float* out, ptrdiff_t batch, const float* params, const float* dx, const float* dy) {
    static const float still[PIXELS];  // no displacement: x + 0 is x
    const float centre = (SIDE - 1) / 2.0f;
    float framed[FRAMED * FRAMED] = {0};  // only the inside is ever written
    for (ptrdiff_t i = 0; i < batch; i++) {
        const float* image = x + i * PIXELS;
        const float* p = params + i * 8;
        float* warped = out + i * PIXELS;
        if (p[7] != 0.0f) {
            for (int k = 0; k < PIXELS; k++) warped[k] = image[k];
            continue;
        }
        stroke(image, p[6], framed);
        const float a = p[0], b = p[1], c = p[2], d = p[3], shift_x = p[4], shift_y = p[5];
        const float* move_x = dx ? dx + i * PIXELS : still;
        const float* move_y = dy ? dy + i * PIXELS : still;
        for (int r = 0; r < SIDE; r++) {
            const float py = (float)r - centre;
            for (int q = 0; q < SIDE; q++) {
                const float px = (float)q - centre;
                // Clipped to [-1, 28]: beyond an edge the point reads the frame's 0 with weight 1.
                const float sx = clamp(a * px + b * py + centre - shift_x + move_x[r * SIDE + q], -1.0f, (float)SIDE);
                const float sy = clamp(c * px + d * py + centre - shift_y + move_y[r * SIDE + q], -1.0f, (float)SIDE);
                const float x0 = floorf(sx), y0 = floorf(sy);
                const float fx = sx - x0, fy = sy - y0;
                const int k = ((int)y0 + 1) * FRAMED + (int)x0 + 1;
                const float top = framed[k] * (1.0f - fx) + framed[k + 1] * fx;
                const float bottom = framed[k + FRAMED] * (1.0f - fx) + framed[k + FRAMED + 1] * fx;
                warped[r * SIDE + q] = clamp(top * (1.0f - fy) + bottom * fy, 0.0f, 1.0f);
            }
        }
    }
}
