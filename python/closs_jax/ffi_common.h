// What closs_jax's two FFI handlers share (ffi.cc: the five losses of target "closs";
// two_tower_ffi.cc: CLIP and SigLIP, target "closs_two_tower"): closs's errors as FFI errors, the
// dtypes, reading attributes, and one closs handle per device for both.
#ifndef CLOSS_JAX_FFI_COMMON_H
#define CLOSS_JAX_FFI_COMMON_H

#include <closs.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "xla/ffi/api/ffi.h"

namespace closs_jax {

namespace ffi = xla::ffi;

inline ffi::Error closs_failure(const char *function) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      std::string(function) + ": " + closs_last_error());
}

inline bool to_closs_dtype(ffi::DataType type, closs_dtype_t *dtype) {
    switch (type) {
    case ffi::DataType::F32: *dtype = CLOSS_F32; return true;
    case ffi::DataType::F64: *dtype = CLOSS_F64; return true;
    case ffi::DataType::F16: *dtype = CLOSS_F16; return true;
    case ffi::DataType::BF16: *dtype = CLOSS_BF16; return true;
    case ffi::DataType::S32: *dtype = CLOSS_I32; return true;
    case ffi::DataType::S64: *dtype = CLOSS_I64; return true;
    default: return false;
    }
}

template <typename T> ffi::Error read(const ffi::Dictionary &attrs, const char *name, T *value) {
    ffi::ErrorOr<T> got = attrs.get<T>(name);
    if (got.has_error()) {
        return ffi::Error::InvalidArgument(std::string("closs_jax: attribute ") + name + ": " +
                                           got.error().message());
    }
    *value = *got;
    return ffi::Error::Success();
}

template <typename E>
ffi::Error read_enum(const ffi::Dictionary &attrs, const char *name, E *value) {
    int32_t raw = 0;
    ffi::Error error = read(attrs, name, &raw);
    *value = static_cast<E>(raw);
    return error;
}

#define CLOSS_JAX_TRY(expression)                                                                  \
    do {                                                                                           \
        ffi::Error closs_jax_error = (expression);                                                 \
        if (closs_jax_error.failure()) return closs_jax_error;                                     \
    } while (0)

// One closs handle per thread and device: closs.h lets a handle serve one thread at a time, and
// XLA may run two computations on one GPU from two of its threads at once (they would race on a
// shared handle's cuBLAS context and check flags). Created on first use (closs_create binds the
// calling thread's current device, which XLA has set to the call's device), destroyed when the
// thread ends. An inline function: one table per thread for the whole library.
struct ThreadHandles {
    std::map<int32_t, closs_handle_t> by_device;
    ThreadHandles() = default;
    ThreadHandles(const ThreadHandles &) = delete;
    ThreadHandles &operator=(const ThreadHandles &) = delete;
    ~ThreadHandles() {
        for (auto &entry : by_device) closs_destroy(entry.second);
    }
};

inline ffi::Error handle_for(int32_t device, closs_handle_t *handle) {
    thread_local ThreadHandles handles;
    auto found = handles.by_device.find(device);
    if (found == handles.by_device.end()) {
        closs_handle_t created = nullptr;
        if (closs_create(&created) != CLOSS_STATUS_SUCCESS) return closs_failure("closs_create");
        found = handles.by_device.emplace(device, created).first;
    }
    *handle = found->second;
    return ffi::Error::Success();
}

// XLA's scratch allocator refuses any alignment above 16 ("Unsupported alignment",
// xla/ffi/ffi_api.cc); closs takes a workspace of any alignment and aligns its pieces inside the
// slack its size query adds (host/gpu.h), so 16 is all it asks for.
constexpr size_t kScratchAlignment = 16;

// `bytes` of workspace from XLA's scratch allocator (nothing for 0 bytes).
inline ffi::Error scratch_workspace(ffi::ScratchAllocator &scratch, size_t bytes,
                                    void **workspace) {
    *workspace = nullptr;
    if (bytes == 0) return ffi::Error::Success();
    std::optional<void *> allocated = scratch.Allocate(bytes, kScratchAlignment);
    if (!allocated.has_value()) {
        return ffi::Error(ffi::ErrorCode::kResourceExhausted,
                          "closs_jax: XLA's scratch allocator gave no workspace of " +
                              std::to_string(bytes) + " bytes (" +
                              std::to_string(kScratchAlignment) + "-byte aligned)");
    }
    *workspace = *allocated;
    return ffi::Error::Success();
}

// The bindings of both targets' handlers: host buffers only (the CPU reference), or CUDA buffers
// with XLA's stream, scratch allocator and device.
inline auto cpu_binding() {
    return ffi::Ffi::Bind().Attrs<ffi::Dictionary>().RemainingArgs().RemainingRets();
}
inline auto cuda_binding() {
    return ffi::Ffi::Bind()
        .Ctx<ffi::PlatformStream<closs_stream_t>>()
        .Ctx<ffi::ScratchAllocator>()
        .Ctx<ffi::DeviceOrdinal>()
        .Attrs<ffi::Dictionary>()
        .RemainingArgs()
        .RemainingRets();
}

} // namespace closs_jax

#endif // CLOSS_JAX_FFI_COMMON_H
