// The tile engine's NT-Xent/SupCon kernels with one element loop each, for bench/tile_sass_count.py:
// compiled to SASS and counted, never run. A kernel of the library holds all three loops (plain,
// positives, masked: contrastive_tile_kernels.cuh) behind a branch per tile, so its loop's static
// count is no tile's count; here each kernel runs one of them on every tile, and its column-walk
// loop is what one such tile costs a warp.
#include "contrastive_tile_kernels.cuh"

namespace closs {
namespace {

template <class Epilogue, TileKind kKind> struct OneLoop : Epilogue {
    using Epilogue::Epilogue;
    template <class S, typename T>
    __device__ __forceinline__ void tile(S &s, int64_t j0, const float *vectors, const T *staged_tile) {
        this->template tile_of_kind<kKind>(s, j0, vectors, staged_tile);
    }
};

template <typename T, bool kFixed, int kDim, TileKind kKind>
__global__ void __launch_bounds__(TileForwardShape<kDim>::kThreads, kTileBlocksPerSM)
    count_forward_kernel(const closs_contrastive_launch job, int64_t row_begin, int64_t row_end) {
    using Shape = TileForwardShape<kDim>;
    tile_pass<T, Shape, OneLoop<ForwardEpilogue<T, kFixed, Shape>, kKind>>(job, row_begin, row_end);
}

template <typename T, bool kFixed, int kDim, TileKind kKind>
__global__ void __launch_bounds__(TileBackwardShape<kDim>::kThreads, kTileBlocksPerSM)
    count_backward_kernel(const closs_contrastive_launch job, int64_t row_begin, int64_t row_end) {
    using Shape = TileBackwardShape<kDim>;
    tile_pass<T, Shape, OneLoop<BackwardEpilogue<T, kFixed, Shape>, kKind>>(job, row_begin, row_end);
}

// The four kernels (forward, backward × both shifts) of one D and element loop, bf16 (f16 differs
// only in its conversions).
template <int kDim, TileKind kKind> void add(const void **&out) {
    *out++ = (const void *)count_forward_kernel<__nv_bfloat16, true, kDim, kKind>;
    *out++ = (const void *)count_forward_kernel<__nv_bfloat16, false, kDim, kKind>;
    *out++ = (const void *)count_backward_kernel<__nv_bfloat16, true, kDim, kKind>;
    *out++ = (const void *)count_backward_kernel<__nv_bfloat16, false, kDim, kKind>;
}

template <int kDim> void add_all(const void **&out) {
    add<kDim, TileKind::plain>(out);
    add<kDim, TileKind::positives>(out);
    add<kDim, TileKind::masked>(out);
}

} // namespace
} // namespace closs

// Takes every kernel's address, so that each is compiled.
int tile_count_kernels(const void **out) {
    const void **next = out;
    closs::add_all<64>(next);
    closs::add_all<128>(next);
    closs::add_all<256>(next);
    return (int)(next - out);
}
