// nn/augment.py's warp, one pass per image: the elastic field's products,
// the stroke change, the coordinate map and the bilinear sampling that
// NumPy does as a few dozen whole-batch passes (gathers and temporaries of
// 100,000 values each). The random draws stay in nn/augment.py (``draw``):
// this file only warps by them. Given the fields, every value goes through
// the same float32 operations, in the same order, as the NumPy path
// (compiled with -ffp-contract=off, no fused multiply-add), so the two give
// the same bits (tests/test_cpu_warp.py). The field itself is summed here
// in a fixed order of our own, where BLAS or XLA sum theirs: a float32
// rounding apart from nn.augment's, the same bits on every machine.
#include <math.h>
#include <stddef.h>
#include <string.h>

#define SIDE 28
#define PIXELS (SIDE * SIDE)
// The source for sampling sits in a zero frame, one pixel before and two
// after each axis (nn.augment.bilinear_sample's padding), so that no read
// needs a bounds check and the loops have no branches (they vectorize, the
// sampling's four reads as gathers).
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

// One image's warp (``warped``) by its params row ``p`` and displacements.
// restrict: unsure that ``warped`` is not the source, GCC leaves the
// sampling loop scalar, three times slower (measured).
static void warp_image(const float* image, const float* p, const float* restrict move_x,
                       const float* restrict move_y, float* restrict framed, float* restrict warped) {
    const float centre = (SIDE - 1) / 2.0f;
    stroke(image, p[6], framed);
    const float a = p[0], b = p[1], c = p[2], d = p[3], shift_x = p[4], shift_y = p[5];
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

// Eight floats that each operation works on lane by lane, every lane
// rounding as the scalar would: the same bits wherever the vector unit is
// wider, narrower or absent (GCC's and Clang's vector extension).
typedef float lanes __attribute__((vector_size(32)));
#define LANES 8
#define BLOCKS 4  // a row of 28 in four blocks of eight, the last half padding

// nn.augment.Field's ``right`` (k, 28), each row padded to four blocks of zeros.
typedef struct {
    int k;
    const float* left;  // (28, k)
    lanes right[SIDE][BLOCKS];
} Products;

static void prepare(Products* products, const float* left, const float* right, int k) {
    float* padded = (float*)products->right;
    products->k = k, products->left = left;
    for (int j = 0; j < k; j++)
        for (int q = 0; q < BLOCKS * LANES; q++) padded[j * BLOCKS * LANES + q] = q < SIDE ? right[j * SIDE + q] : 0.0f;
}

// The sum over i < k of weights[i] times rows[i], from i = 0 up, in four
// independent sums so that no addition waits for the one before it, in
// registers (written out through memcpy: a local array that GCC sees cast
// to floats stays in memory, three times slower); its first ``count``
// floats (28 or 32) go to ``out``.
static void weigh_rows(const float* weights, const lanes (*rows)[BLOCKS], int k, float* out, int count) {
    lanes a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    for (int i = 0; i < k; i++) {
        const float w = weights[i];
        a0 += w * rows[i][0], a1 += w * rows[i][1], a2 += w * rows[i][2], a3 += w * rows[i][3];
    }
    memcpy(out, &a0, sizeof a0);
    memcpy(out + LANES, &a1, sizeof a1);
    memcpy(out + 2 * LANES, &a2, sizeof a2);
    memcpy(out + 3 * LANES, &a3, (size_t)(count - 3 * LANES) * sizeof(float));
}

// nn.augment.Field.smoothed for one image: each axis's field left @ (noise @ right), noise (2, k, k).
static void smooth(const float* noise, const Products* products, float* dx, float* dy) {
    const int k = products->k;
    for (int axis = 0; axis < 2; axis++) {
        const float* z = noise + axis * k * k;
        float* field = axis ? dy : dx;
        lanes half[SIDE][BLOCKS];  // noise @ right, k rows
        for (int i = 0; i < k; i++) weigh_rows(z + i * k, products->right, k, (float*)half[i], BLOCKS * LANES);
        for (int r = 0; r < SIDE; r++)
            weigh_rows(products->left + r * k, (const lanes (*)[BLOCKS])half, k, field + r * SIDE, SIDE);
    }
}

// Each image's warp, its displacements read from dx, dy (NULL: none) or,
// with ``products``, made from its noise (batch, 2, k, k) on the way, where
// they are small; a clean row is copied and makes none.
static void warp_batch(const float* x, float* out, ptrdiff_t batch, const float* params, const float* dx,
                       const float* dy, const float* noise, const Products* products) {
    static const float still[PIXELS];  // no displacement: x + 0 is x
    float framed[FRAMED * FRAMED] = {0};  // only the inside is ever written
    float made_x[PIXELS], made_y[PIXELS];
    for (ptrdiff_t i = 0; i < batch; i++) {
        const float* image = x + i * PIXELS;
        float* warped = out + i * PIXELS;
        if (params[i * 8 + 7] != 0.0f) {
            for (int p = 0; p < PIXELS; p++) warped[p] = image[p];
            continue;
        }
        const float* move_x = dx ? dx + i * PIXELS : still;
        const float* move_y = dy ? dy + i * PIXELS : still;
        if (products != NULL) {
            smooth(noise + i * 2 * products->k * products->k, products, made_x, made_y);
            move_x = made_x, move_y = made_y;
        }
        warp_image(image, params + i * 8, move_x, move_y, framed, warped);
    }
}

// x, out: (batch, 784). params: (batch, 8) rows of the inverse matrix a, b,
// c, d, the shift (x, y), the stroke blend and 1 for a clean row (else 0).
// dx, dy: (batch, 784) elastic displacements, or NULL for none.
void warp_f32(const float* x, float* out, ptrdiff_t batch, const float* params, const float* dx, const float* dy) {
    warp_batch(x, out, batch, params, dx, dy, NULL, NULL);
}

// warp_f32 with each image's field made from its noise (batch, 2, k, k), left (28, k) and right (k, 28).
void warp_elastic_f32(const float* x, float* out, ptrdiff_t batch, const float* params, const float* noise,
                      const float* left, const float* right, int k) {
    Products products;
    prepare(&products, left, right, k);
    warp_batch(x, out, batch, params, NULL, NULL, noise, &products);
}

// The fields of ``batch`` images from their noise, as warp_elastic_f32 makes them.
void elastic_field_f32(const float* noise, ptrdiff_t batch, const float* left, const float* right, int k, float* dx,
                       float* dy) {
    Products products;
    prepare(&products, left, right, k);
    for (ptrdiff_t i = 0; i < batch; i++) smooth(noise + i * 2 * k * k, &products, dx + i * PIXELS, dy + i * PIXELS);
}
