// The CUDA-on-CPU scheduler, kernel registry and the C API that Python's ctypes
// calls. Included once, after the kernel sources, by the generated translation
// unit (see __init__.py).
#ifndef CUDA_ON_CPU_RUNTIME_H
#define CUDA_ON_CPU_RUNTIME_H

#include <ucontext.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "cuda_on_cpu.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define CUDA_ON_CPU_ASAN 1
#else
#define CUDA_ON_CPU_ASAN 0
#endif

// The one dynamic shared-memory buffer: 48 KiB, the default per-block limit.
#define CUDA_ON_CPU_SHARED_BYTES (48 * 1024)
extern "C" {
alignas(16) float smem[CUDA_ON_CPU_SHARED_BYTES / sizeof(float)];
}

namespace cuda_on_cpu {

enum State { RUNNABLE, AT_BARRIER, AT_SHUFFLE, DONE };

struct Fiber {
    ucontext_t context;
    uint3 idx;
    State state;
    // The pending warp exchange, while state == AT_SHUFFLE.
    ShuffleKind kind;
    unsigned mask;
    uint32_t bits;
    int lane_arg, width;
    void* stack;
    void* fake_stack;
};

const size_t STACK_BYTES = 256 * 1024;
Fiber* current = nullptr;
dim3 block_dim, grid_dim;
uint3 block_idx;

static ucontext_t scheduler_context;
static void* scheduler_fake_stack = nullptr;
static const void* scheduler_stack_bottom = nullptr;
static size_t scheduler_stack_size = 0;
static std::vector<Fiber> fibers;
static void (*launch_invoke)(void*, void**) = nullptr;
static void* launch_fn = nullptr;
static void** launch_args = nullptr;

const uint3& thread_idx() { return current->idx; }

// -- switching, with AddressSanitizer told about every stack change ---------------
static void enter_fiber(Fiber& f) {
    current = &f;
#if CUDA_ON_CPU_ASAN
    __sanitizer_start_switch_fiber(&scheduler_fake_stack, f.stack, STACK_BYTES);
#endif
    swapcontext(&scheduler_context, &f.context);
#if CUDA_ON_CPU_ASAN
    __sanitizer_finish_switch_fiber(scheduler_fake_stack, nullptr, nullptr);
#endif
}

static void arrived_in_fiber(Fiber& f) {
#if CUDA_ON_CPU_ASAN
    __sanitizer_finish_switch_fiber(f.fake_stack, &scheduler_stack_bottom, &scheduler_stack_size);
#else
    (void)f;
#endif
}

static void leave_fiber(Fiber& f, bool finished) {
#if CUDA_ON_CPU_ASAN
    __sanitizer_start_switch_fiber(finished ? nullptr : &f.fake_stack, scheduler_stack_bottom, scheduler_stack_size);
#else
    (void)finished;
#endif
    swapcontext(&f.context, &scheduler_context);
    arrived_in_fiber(f);
}

static void fiber_main() {
    Fiber& self = *current;
    arrived_in_fiber(self);
    launch_invoke(launch_fn, launch_args);
    self.state = DONE;
    leave_fiber(self, true);
}

void sync_block() {
    Fiber& self = *current;
    self.state = AT_BARRIER;
    leave_fiber(self, false);
}

uint32_t shuffle(ShuffleKind kind, unsigned mask, uint32_t bits, int lane_arg, int width) {
    Fiber& self = *current;
    self.state = AT_SHUFFLE;
    self.kind = kind;
    self.mask = mask;
    self.bits = bits;
    self.lane_arg = lane_arg;
    self.width = width;
    leave_fiber(self, false);
    return self.bits;  // the scheduler left the exchanged value here
}

#ifdef CUDA_ON_CPU_RACES
static std::mt19937 race_rng;

// Every other access through a kernel pointer, at random, lets the next fiber run.
void maybe_switch() {
    if (current != nullptr && (race_rng() & 1u)) leave_fiber(*current, false);
}
#endif

// -- the scheduler ---------------------------------------------------------------------
enum Order { FORWARD = 0, REVERSE = 1, SHUFFLED = 2, WARPS_REVERSED = 3 };
enum Poison { POISON_NAN = 0, POISON_HUGE = 1, POISON_MINUS_HUGE = 2 };
const uint32_t CANARY = 0xFFC0DEADu;  // a NaN with a recognisable payload

struct LaunchError {
    std::string message;
};

static std::string describe_block() {
    char text[96];
    std::snprintf(text, sizeof text, "block (%u,%u,%u)", block_idx.x, block_idx.y, block_idx.z);
    return text;
}

// Complete the exchange of warp `w` if every live lane waits at a shuffle.
static bool release_warp(int w, int threads) {
    const int first = 32 * w, last = std::min(first + 32, threads);
    unsigned live = 0, waiting = 0;
    for (int t = first; t < last; ++t) {
        if (fibers[t].state != DONE) live |= 1u << (t - first);
        if (fibers[t].state == AT_SHUFFLE) waiting |= 1u << (t - first);
    }
    if (waiting == 0 || waiting != live) return false;
    uint32_t posted[32];
    for (int t = first; t < last; ++t) {
        Fiber& f = fibers[t];
        if (f.state != AT_SHUFFLE) continue;
        if (f.mask != live)
            throw LaunchError{describe_block() + ": a warp shuffle names lanes mask 0x" + [&] {
                char hex[16]; std::snprintf(hex, sizeof hex, "%08x", f.mask); return std::string(hex);
            }() + " but the lanes that reached it are a different set (divergent or partial warp)"};
        if (f.kind != fibers[first].kind || f.width != fibers[first].width)
            throw LaunchError{describe_block() + ": lanes of one warp met at different shuffle kinds"};
        posted[t - first] = f.bits;
    }
    for (int t = first; t < last; ++t) {
        Fiber& f = fibers[t];
        if (f.state != AT_SHUFFLE) continue;
        const int lane = t - first, group = lane / f.width;
        int source = f.kind == SHUFFLE_DOWN ? lane + f.lane_arg : lane ^ f.lane_arg;
        if (f.kind == SHUFFLE_DOWN && (lane % f.width) + f.lane_arg >= f.width) source = lane;
        if (f.kind == SHUFFLE_XOR && source / f.width > group) source = lane;
        if (source < 0 || source >= last - first || !(live >> source & 1u))
            throw LaunchError{describe_block() + ": a warp shuffle reads a lane that does not take part"};
        f.bits = posted[source];
        f.state = RUNNABLE;
    }
    return true;
}

static void run_block(int threads, Order order, std::mt19937& rng) {
    std::vector<int> sequence(threads);
    for (int t = 0; t < threads; ++t) sequence[t] = t;
    if (order == REVERSE) std::reverse(sequence.begin(), sequence.end());
    if (order == WARPS_REVERSED) {
        sequence.clear();
        for (int w = (threads - 1) / 32; w >= 0; --w)
            for (int t = 32 * w; t < std::min(32 * w + 32, threads); ++t) sequence.push_back(t);
    }
    for (int t = 0; t < threads; ++t) {
        Fiber& f = fibers[t];
        f.idx = {t % block_dim.x, (t / block_dim.x) % block_dim.y, t / (block_dim.x * block_dim.y)};
        f.state = RUNNABLE;
        getcontext(&f.context);
        f.context.uc_stack.ss_sp = f.stack;
        f.context.uc_stack.ss_size = STACK_BYTES;
        f.context.uc_link = nullptr;
        makecontext(&f.context, fiber_main, 0);
    }
    for (;;) {
        if (order == SHUFFLED) std::shuffle(sequence.begin(), sequence.end(), rng);
        for (int t : sequence)
            if (fibers[t].state == RUNNABLE) enter_fiber(fibers[t]);
        int done = 0, at_barrier = 0, runnable = 0;
        for (const Fiber& f : fibers) {
            if (&f - fibers.data() >= threads) break;
            done += f.state == DONE;
            at_barrier += f.state == AT_BARRIER;
            runnable += f.state == RUNNABLE;  // switched away from at a memory access (race mode)
        }
        if (done == threads) return;
        if (runnable) continue;
        bool released = false;
        for (int w = 0; w * 32 < threads; ++w) released |= release_warp(w, threads);
        if (released) continue;
        if (at_barrier == threads) {
            for (int t = 0; t < threads; ++t) fibers[t].state = RUNNABLE;
            continue;
        }
        if (at_barrier + done == threads)
            throw LaunchError{describe_block() + ": " + std::to_string(done) +
                              " threads exited while the others wait at __syncthreads()"};
        throw LaunchError{describe_block() + ": deadlock: threads wait at __syncthreads() and at warp shuffles at the same time"};
    }
}

static void poison_shared(size_t shared_bytes, Poison poison) {
    const float value = poison == POISON_NAN ? NAN : poison == POISON_HUGE ? 3.4e38f : -3.4e38f;
    const size_t words = shared_bytes / 4;
    for (size_t i = 0; i < words; ++i) smem[i] = value;
    unsigned char* bytes = reinterpret_cast<unsigned char*>(smem);
    for (size_t i = words * 4; i < CUDA_ON_CPU_SHARED_BYTES; ++i) {
        const uint32_t canary = CANARY;
        bytes[i] = reinterpret_cast<const unsigned char*>(&canary)[i % 4];
    }
#if CUDA_ON_CPU_ASAN
    ASAN_POISON_MEMORY_REGION(bytes + shared_bytes, CUDA_ON_CPU_SHARED_BYTES - shared_bytes);
#endif
}

static void check_shared_tail(size_t shared_bytes) {
    unsigned char* bytes = reinterpret_cast<unsigned char*>(smem);
#if CUDA_ON_CPU_ASAN
    ASAN_UNPOISON_MEMORY_REGION(bytes + shared_bytes, CUDA_ON_CPU_SHARED_BYTES - shared_bytes);
#endif
    const uint32_t canary = CANARY;
    for (size_t i = shared_bytes; i < CUDA_ON_CPU_SHARED_BYTES; ++i)
        if (bytes[i] != reinterpret_cast<const unsigned char*>(&canary)[i % 4])
            throw LaunchError{describe_block() + " wrote shared memory at byte " + std::to_string(i) +
                              ", past the " + std::to_string(shared_bytes) +
                              " bytes of dynamic shared memory it was launched with"};
}

static void check_configuration(const unsigned* grid, const unsigned* block, size_t shared_bytes) {
    const unsigned long long threads = 1ull * block[0] * block[1] * block[2];
    if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0 || threads == 0)
        throw LaunchError{"invalid configuration: a grid or block dimension is 0"};
    if (grid[0] > 2147483647u || grid[1] > 65535u || grid[2] > 65535u)
        throw LaunchError{"invalid configuration: grid dimensions exceed (2^31-1, 65535, 65535)"};
    if (threads > 1024 || block[0] > 1024 || block[1] > 1024 || block[2] > 64)
        throw LaunchError{"invalid configuration: more than 1024 threads per block, or a block dimension too large"};
    if (shared_bytes > CUDA_ON_CPU_SHARED_BYTES)
        throw LaunchError{"too much dynamic shared memory: " + std::to_string(shared_bytes) +
                          " bytes asked, 49152 is the default limit per block"};
}

static void launch(void (*invoke)(void*, void**), void* fn, void** args, const unsigned* grid,
                   const unsigned* block, size_t shared_bytes, Order order, unsigned seed, Poison poison) {
    check_configuration(grid, block, shared_bytes);
    const int threads = (int)(block[0] * block[1] * block[2]);
    while ((int)fibers.size() < threads) {
        Fiber f{};
        f.stack = mmap(nullptr, STACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (f.stack == MAP_FAILED) throw LaunchError{"could not allocate fiber stacks"};
        fibers.push_back(f);
    }
    launch_invoke = invoke;
    launch_fn = fn;
    launch_args = args;
    grid_dim = {grid[0], grid[1], grid[2]};
    block_dim = {block[0], block[1], block[2]};
    std::mt19937 rng(seed);
#ifdef CUDA_ON_CPU_RACES
    race_rng.seed(seed ^ 0x5eedu);
#endif
    for (unsigned z = 0; z < grid[2]; ++z)
        for (unsigned y = 0; y < grid[1]; ++y)
            for (unsigned x = 0; x < grid[0]; ++x) {
                block_idx = {x, y, z};
                poison_shared(shared_bytes, poison);
                try {
                    run_block(threads, order, rng);
                } catch (...) {
                    check_shared_tail(shared_bytes);  // unpoisons; a tail error explains more
                    throw;
                }
                check_shared_tail(shared_bytes);
            }
}

// -- the kernel registry: name, C++ parameter types, and a typed invoker ----------------
template <typename T> const char* type_name();
#define CUDA_ON_CPU_TYPE(T) template <> inline const char* type_name<T>() { return #T; }
CUDA_ON_CPU_TYPE(float*)
CUDA_ON_CPU_TYPE(const float*)
CUDA_ON_CPU_TYPE(int*)
CUDA_ON_CPU_TYPE(const int*)
CUDA_ON_CPU_TYPE(unsigned*)
CUDA_ON_CPU_TYPE(const unsigned*)
CUDA_ON_CPU_TYPE(int)
CUDA_ON_CPU_TYPE(unsigned)
CUDA_ON_CPU_TYPE(float)
#undef CUDA_ON_CPU_TYPE
#ifdef CUDA_ON_CPU_RACES
#define CUDA_ON_CPU_PTR(T) template <> inline const char* type_name<Ptr<T>>() { return #T "*"; }
CUDA_ON_CPU_PTR(float)
CUDA_ON_CPU_PTR(const float)
CUDA_ON_CPU_PTR(int)
CUDA_ON_CPU_PTR(const int)
CUDA_ON_CPU_PTR(unsigned)
CUDA_ON_CPU_PTR(const unsigned)
#undef CUDA_ON_CPU_PTR
#endif

struct Kernel {
    const char* name;
    std::string signature;
    void (*invoke)(void*, void**);
    void* fn;
};

template <typename... A, size_t... I>
void call_unpacked(void (*f)(A...), void** args, std::index_sequence<I...>) {
    f(*static_cast<A*>(args[I])...);
}

template <typename... A>
Kernel make_kernel(const char* name, void (*f)(A...)) {
    std::string signature;
    ((signature += (signature.empty() ? "" : ","), signature += type_name<A>()), ...);
    auto invoke = [](void* fn, void** args) {
        call_unpacked(reinterpret_cast<void (*)(A...)>(fn), args, std::index_sequence_for<A...>{});
    };
    return Kernel{name, signature, invoke, reinterpret_cast<void*>(f)};
}

}  // namespace cuda_on_cpu

// Defined by the generated translation unit: the kernels it registered.
extern const cuda_on_cpu::Kernel cuda_on_cpu_kernels[];
extern const int cuda_on_cpu_kernel_total;

extern "C" {
int cuda_on_cpu_kernel_count() { return cuda_on_cpu_kernel_total; }
const char* cuda_on_cpu_kernel_name(int i) { return cuda_on_cpu_kernels[i].name; }
const char* cuda_on_cpu_kernel_signature(int i) { return cuda_on_cpu_kernels[i].signature.c_str(); }
int cuda_on_cpu_asan() { return CUDA_ON_CPU_ASAN; }

// 0 on success; otherwise 1 and the reason in `error`.
int cuda_on_cpu_launch(int kernel, const unsigned* grid, const unsigned* block, size_t shared_bytes, void** args,
                       int order, unsigned seed, int poison, char* error, size_t error_size) {
    using namespace cuda_on_cpu;
    try {
        const Kernel& k = cuda_on_cpu_kernels[kernel];
        launch(k.invoke, k.fn, args, grid, block, shared_bytes, (Order)order, seed, (Poison)poison);
        return 0;
    } catch (const LaunchError& e) {
        std::snprintf(error, error_size, "%s", e.message.c_str());
        return 1;
    }
}
}

#endif  // CUDA_ON_CPU_RUNTIME_H
