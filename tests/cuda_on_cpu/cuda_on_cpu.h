// CUDA-on-CPU: just enough of the CUDA C++ device API for g++ to compile and
// run xpnet's .cu kernels unchanged on a CPU, each CUDA thread a ucontext fiber.
//
// A block runs as blockDim fibers that are switched cooperatively: a fiber runs
// until it reaches __syncthreads() or a warp shuffle, then the scheduler runs
// the next one in a configurable order. Blocks run one after another. Dynamic
// shared memory is one buffer poisoned before every block. runtime.h has the
// scheduler; this header is what the kernel source sees.
#ifndef CUDA_ON_CPU_H
#define CUDA_ON_CPU_H

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

struct uint3 { unsigned x, y, z; };
struct dim3 { unsigned x, y, z; };

namespace cuda_on_cpu {

struct Fiber;
extern Fiber* current;
extern dim3 block_dim, grid_dim;
extern uint3 block_idx;
const uint3& thread_idx();

void sync_block();
// A warp-wide exchange: every lane in `mask` posts `bits` and gets the value
// of lane source(lane) (its own where the source is out of range).
enum ShuffleKind { SHUFFLE_DOWN = 1, SHUFFLE_XOR = 2 };
uint32_t shuffle(ShuffleKind kind, unsigned mask, uint32_t bits, int lane_arg, int width);

template <typename T>
T shuffle_as(ShuffleKind kind, unsigned mask, T value, int lane_arg, int width) {
    static_assert(sizeof(T) == 4, "warp shuffles of 4-byte values only");
    uint32_t bits;
    std::memcpy(&bits, &value, 4);
    bits = shuffle(kind, mask, bits, lane_arg, width);
    std::memcpy(&value, &bits, 4);
    return value;
}

#ifdef CUDA_ON_CPU_RACES
// Race mode: the harness rewrites every pointer declaration of the kernel
// sources (T* name -> Ptr<T> name), so each read and write of memory through
// a pointer may switch to another fiber (runtime.h, maybe_switch), and a
// read-modify-write switches between its read and its write. Without it,
// fibers switch only at barriers and shuffles, so a plain += from many
// threads where an atomic is needed still adds up right.
void maybe_switch();

template <typename T>
struct Same {
    using type = T;
};

template <typename T>
struct Ref {
    T* p;
    operator T() const { maybe_switch(); return *p; }
    Ref& operator=(T v) { maybe_switch(); *p = v; return *this; }
    Ref& operator=(const Ref& other) { return *this = static_cast<T>(other); }
    template <typename U>
    Ref& operator=(const Ref<U>& other) { return *this = static_cast<T>(static_cast<U>(other)); }
    Ref& operator+=(T v) { T old = *this; maybe_switch(); *p = old + v; return *this; }
    Ref& operator-=(T v) { T old = *this; maybe_switch(); *p = old - v; return *this; }
    Ref& operator*=(T v) { T old = *this; maybe_switch(); *p = old * v; return *this; }
};

template <typename T>
struct Ptr {
    T* p;
    Ptr() = default;
    Ptr(T* raw) : p(raw) {}
    template <typename U>
    Ptr(Ptr<U> other) : p(other.p) {}
    template <typename I>
    Ref<T> operator[](I i) const { return Ref<T>{p + static_cast<std::ptrdiff_t>(i)}; }
    template <typename I>
    Ptr operator+(I i) const { return Ptr(p + static_cast<std::ptrdiff_t>(i)); }
};
#endif

}  // namespace cuda_on_cpu

#define threadIdx (cuda_on_cpu::thread_idx())
#define blockIdx (cuda_on_cpu::block_idx)
#define blockDim (cuda_on_cpu::block_dim)
#define gridDim (cuda_on_cpu::grid_dim)
#define warpSize 32

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
// Only `extern __shared__ float smem[]` is supported: it names the harness's
// one dynamic shared-memory buffer (a static __shared__ array would silently
// become per-thread here, so tests check that no kernel declares one).
#define __shared__

#define __syncthreads() cuda_on_cpu::sync_block()

inline float __int_as_float(int bits) {
    float value;
    std::memcpy(&value, &bits, 4);
    return value;
}

template <typename T>
inline T __shfl_down_sync(unsigned mask, T value, unsigned delta, int width = 32) {
    return cuda_on_cpu::shuffle_as(cuda_on_cpu::SHUFFLE_DOWN, mask, value, (int)delta, width);
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = 32) {
    return cuda_on_cpu::shuffle_as(cuda_on_cpu::SHUFFLE_XOR, mask, value, lane_mask, width);
}

#endif  // CUDA_ON_CPU_H
