// augment.c's warp as an XLA FFI handler, so that a jitted JAX step on the
// CPU warps its batch in one pass per image too, inside the compiled step
// and the whole-epoch scan (jax.ffi.ffi_call), instead of the few dozen
// gathers and fusions XLA makes of nn.augment.warp. Written against XLA's C
// API (xla/ffi/api/c_api.h, in jaxlib's include folder). Arguments, all
// float32, as warp_f32 and warp_elastic_f32 take them: x (batch, 784),
// params (batch, 8) and, for the elastic kind, the field's noise (batch, 2,
// k, k), left (28, k) and right (k, 28); one result shaped like x.
// The batch is warped in chunks that the calling thread and one task on
// XLA's own thread pool take in turn, so both cores work while the step
// waits for its batch.
#define _POSIX_C_SOURCE 200809L  // sched_yield under -std=c99
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "xla/ffi/api/c_api.h"

void warp_f32(const float* x, float* out, ptrdiff_t batch, const float* params, const float* dx, const float* dy);
void warp_elastic_f32(const float* x, float* out, ptrdiff_t batch, const float* params, const float* noise,
                      const float* left, const float* right, int k);

static XLA_FFI_Error* refuse(const XLA_FFI_Api* api, const char* message) {
    XLA_FFI_Error_Create_Args args = {XLA_FFI_Error_Create_Args_STRUCT_SIZE, NULL, message,
                                      XLA_FFI_Error_Code_INVALID_ARGUMENT};
    return api->XLA_FFI_Error_Create(&args);
}

// The buffer ``buffer`` if it is float32 of this shape; NULL otherwise.
static float* array(void* buffer, int64_t rank, const int64_t* dims) {
    XLA_FFI_Buffer* b = (XLA_FFI_Buffer*)buffer;
    if (b->dtype != XLA_FFI_DataType_F32 || b->rank != rank) return NULL;
    for (int64_t i = 0; i < rank; i++)
        if (b->dims[i] != dims[i]) return NULL;
    return (float*)b->data;
}

#define CHUNK 8  // images a thread takes at a time

typedef struct {
    const float *x, *params, *noise, *left, *right;  // noise NULL: no elastic field
    int k;
    float* out;
    int64_t batch;
    int64_t next;  // the first image nobody has taken yet
    int64_t done;  // images warped, by either thread
    int owners;    // the calling thread, and the pool's task until it has run
} Work;

static void warp(const Work* w, int64_t start, int64_t n) {
    if (w->noise == NULL)
        warp_f32(w->x + start * 784, w->out + start * 784, n, w->params + start * 8, NULL, NULL);
    else
        warp_elastic_f32(w->x + start * 784, w->out + start * 784, n, w->params + start * 8,
                         w->noise + start * 2 * w->k * w->k, w->left, w->right, w->k);
}

static void take_chunks(Work* w) {
    for (;;) {
        const int64_t start = __atomic_fetch_add(&w->next, CHUNK, __ATOMIC_RELAXED);
        if (start >= w->batch) return;
        const int64_t n = w->batch - start < CHUNK ? w->batch - start : CHUNK;
        warp(w, start, n);
        __atomic_fetch_add(&w->done, n, __ATOMIC_RELEASE);
    }
}

static void forget(const XLA_FFI_Api* api, XLA_FFI_Error* error) {
    XLA_FFI_Error_Destroy_Args destroy = {XLA_FFI_Error_Destroy_Args_STRUCT_SIZE, NULL, error};
    api->XLA_FFI_Error_Destroy(&destroy);
}

static void let_go(Work* w) {
    if (__atomic_sub_fetch(&w->owners, 1, __ATOMIC_ACQ_REL) == 0) free(w);
}

static void pool_task(void* data) {
    take_chunks((Work*)data);
    let_go((Work*)data);
}

// Warps the whole batch before it returns. The caller waits only for chunks
// the pool's task has taken, never for the task to start: on a pool whose
// threads are all busy, the caller warps every image itself, and the task,
// when it runs, finds nothing left and frees the shared record.
static void warp_in_two(XLA_FFI_CallFrame* frame, Work job) {
    const XLA_FFI_Api* api = frame->api;
    const int64_t batch = job.batch;
    int64_t threads = 1;
    XLA_FFI_ThreadPool_NumThreads_Args count = {XLA_FFI_ThreadPool_NumThreads_Args_STRUCT_SIZE, NULL, frame->ctx,
                                                &threads};
    XLA_FFI_Error* error = api->XLA_FFI_ThreadPool_NumThreads(&count);
    Work* w = NULL;
    if (error == NULL && threads > 1 && batch > CHUNK) w = malloc(sizeof(Work));
    if (error != NULL) forget(api, error);  // no pool to ask: one thread
    if (w == NULL) {
        warp(&job, 0, batch);
        return;
    }
    *w = job;
    w->owners = 2;
    XLA_FFI_ThreadPool_Schedule_Args task = {XLA_FFI_ThreadPool_Schedule_Args_STRUCT_SIZE, NULL, frame->ctx,
                                             pool_task, w};
    error = api->XLA_FFI_ThreadPool_Schedule(&task);
    if (error != NULL) {
        forget(api, error);
        w->owners = 1;  // no task will run
    }
    take_chunks(w);
    while (__atomic_load_n(&w->done, __ATOMIC_ACQUIRE) < batch) sched_yield();
    let_go(w);
}

XLA_FFI_Error* xpnet_warp_f32(XLA_FFI_CallFrame* frame) {
    // XLA first asks each handler which version of the API it was built for.
    XLA_FFI_Extension_Base* extension = frame->extension_start;
    if (extension != NULL && extension->type == XLA_FFI_Extension_Metadata) {
        XLA_FFI_Metadata* metadata = ((XLA_FFI_Metadata_Extension*)extension)->metadata;
        XLA_FFI_Api_Version version = {XLA_FFI_Api_Version_STRUCT_SIZE, NULL, XLA_FFI_API_MAJOR, XLA_FFI_API_MINOR};
        metadata->api_version = version;
        metadata->traits = 0;
        return NULL;
    }
    if (frame->stage != XLA_FFI_ExecutionStage_EXECUTE) return NULL;
    const XLA_FFI_Api* api = frame->api;
    const int64_t n_args = frame->args.size;
    if ((n_args != 2 && n_args != 5) || frame->rets.size != 1)
        return refuse(api, "xpnet_warp_f32 takes (x, params) or (x, params, noise, left, right) and makes one result");
    for (int64_t i = 0; i < n_args; i++)
        if (frame->args.types[i] != XLA_FFI_ArgType_BUFFER) return refuse(api, "xpnet_warp_f32 takes buffers");
    if (frame->rets.types[0] != XLA_FFI_RetType_BUFFER) return refuse(api, "xpnet_warp_f32 makes a buffer");
    void* const* args = frame->args.args;
    const XLA_FFI_Buffer* first = (const XLA_FFI_Buffer*)args[0];
    const int64_t batch = first->rank == 2 ? first->dims[0] : -1;
    const XLA_FFI_Buffer* basis = n_args == 5 ? (const XLA_FFI_Buffer*)args[3] : NULL;
    const int64_t k = basis != NULL && basis->rank == 2 ? basis->dims[1] : 0;
    const int64_t images[2] = {batch, 784}, rows[2] = {batch, 8};
    const int64_t noise_dims[4] = {batch, 2, k, k}, left_dims[2] = {28, k}, right_dims[2] = {k, 28};
    Work job = {array(args[0], 2, images), array(args[1], 2, rows), NULL, NULL, NULL, (int)k,
                array(frame->rets.rets[0], 2, images), batch, 0, 0, 1};
    if (job.x == NULL || job.params == NULL || job.out == NULL)
        return refuse(api, "xpnet_warp_f32 takes float32 images (batch, 784) and params (batch, 8)");
    if (n_args == 5) {
        job.noise = array(args[2], 4, noise_dims);
        job.left = array(args[3], 2, left_dims);
        job.right = array(args[4], 2, right_dims);
        if (k < 1 || k > 28 || job.noise == NULL || job.left == NULL || job.right == NULL)
            return refuse(api, "xpnet_warp_f32 takes a float32 field: noise (batch, 2, k, k), left (28, k), right (k, 28)");
    }
    warp_in_two(frame, job);
    return NULL;
}
