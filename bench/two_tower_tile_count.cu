// CLIP's and SigLIP's walks on the tile engine with one element loop each (the plain one: a tile
// off the diagonal, inside the walk's columns), for bench/two_tower_sass_count.py: compiled to SASS
// and counted, never run. The library's kernels hold the plain and the masked loop (and the
// backward's one-off pair terms) behind branches per tile, so their loop's static count is no
// tile's count; here each kernel runs the plain loop on every tile.
#include "two_tower_tile_kernels.cuh"

namespace closs {
namespace {

template <class Epilogue> struct PlainForward : Epilogue {
    using Epilogue::Epilogue;
    template <class S, typename T>
    __device__ __forceinline__ void tile(S &s, int64_t j0, const float *vectors, const T *) {
        this->template terms<false>(s, j0, vectors);
    }
};

template <class Epilogue, class Shape> struct PlainBackward : Epilogue {
    using Epilogue::Epilogue;
    template <class S, typename T>
    __device__ __forceinline__ void tile(S &s, int64_t j0, const float *vectors, const T *staged_tile) {
        this->template coefficients<false>(s, j0, vectors);
        this->product(s, staged_tile);
    }
};

template <bool kSiglip, int kDim>
__global__ void __launch_bounds__(TtForwardShape<kDim>::kThreads, 1)
    count_forward_walk_kernel(const closs_two_tower_launch job, const TwoTowerWalk walk) {
    using Shape = TtForwardShape<kDim>;
    two_tower_tile_pass<__nv_bfloat16, Shape,
                        PlainForward<TwoTowerForwardEpilogue<__nv_bfloat16, kSiglip, Shape>>>(job, walk);
}

template <bool kSiglip, int kDim>
__global__ void __launch_bounds__(TtBackwardShape<kDim>::kThreads, 1)
    count_backward_walk_kernel(const closs_two_tower_launch job, const TwoTowerWalk walk) {
    using Shape = TtBackwardShape<kDim>;
    two_tower_tile_pass<__nv_bfloat16, Shape,
                        PlainBackward<TwoTowerBackwardEpilogue<__nv_bfloat16, kSiglip, Shape>, Shape>>(job, walk);
}

template <int kDim> void add(const void **&out) {
    *out++ = (const void *)count_forward_walk_kernel<false, kDim>;
    *out++ = (const void *)count_forward_walk_kernel<true, kDim>;
    *out++ = (const void *)count_backward_walk_kernel<false, kDim>;
    *out++ = (const void *)count_backward_walk_kernel<true, kDim>;
}

} // namespace
} // namespace closs

// Takes every kernel's address, so that each is compiled.
int two_tower_tile_count_kernels(const void **out) {
    const void **next = out;
    closs::add<64>(next);
    closs::add<128>(next);
    closs::add<256>(next);
    closs::add<512>(next);
    return (int)(next - out);
}
