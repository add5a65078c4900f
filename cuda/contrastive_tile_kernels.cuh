// NT-Xent and SupCon on the tile engine (tile_engine.cuh has the schedule): the forward's and the
// backward's similarity passes for f16 and bf16 inputs with D ≤ 256, sm_80 and later, as two
// epilogues of the engine's walk. contrastive_fused.cu launches them (when tile_dispatch.h says
// the device and the loaded binary allow) in place of the WMMA or SIMT kernels; the side stages
// (norms, classes, losses, weights, the factors of G) are shared.
//
// Math (fused_math.h for the names). Raw 16-bit rows z are multiplied (exact products, float
// accumulation), never ẑ = r·z; with r_i = 1/max(‖z_i‖, eps) (1 without normalisation) and
// s_ij = z_i·z_j, on the accumulator registers:
//   x_ij·log2 e = s_ij·(r_i·log2e/τ)·r_j           the rank-1 scale
//   fixed shift:  Σ_j 2^(x_ij·log2e − c·log2e) = Σ_j e^(x_ij − c), lse_i = c + ln Σ (c = 1/τ)
//   online max:   (max, Σ 2^(t − max)) per lane in base 2, a tile's maximum first, merged over
//                 the quad in base e
//   positives:    Σ_{k∈P(i)} x_ik, summed where key_j = key_i (NT-Xent: j is i's partner; SupCon:
//                 j is in i's class), left in row_loss for anchor_loss_kernel
//   backward:     dẑ_i = Σ_{j≠i} G_ij ẑ_j = β·Σ_j G'_ij z_j with G'_ij = G_ij·r_j/β (β = max |w|:
//                 MEAN's small weights would otherwise fall below f16's normal range) and
//                 G_ij = (1/τ)·(E_ij·(b_i + b_j) − [j∈P(i)]·(a_i + a_j))            fixed shift
//                      = (1/τ)·(w_i e^(x_ij − lse_i) + w_j e^(x_ij − lse_j) − …)     online max
//                 (positives folded in: a confident positive's two terms cancel in one float).
//                 G' becomes 16-bit A fragments straight from the accumulators (two adjacent
//                 8-column n-tiles of S are one k step of the second product), rounded once (no
//                 second, residue part: bench/NOTES.md, "G′'s low half"), and dZ_i += G'·Z_tile by
//                 mma with B = the staged column tile read by ldmatrix.trans.
//   f16 with normalisation: the backward runs on z′ = z·2^e and r′ = r·2^−e (backward_job(),
//                 contrastive_kernels.cuh), which change no product but keep G' of a near-zero
//                 row within f16's range; dz's last factor is then r_i itself.
//   dz_i  = (dẑ_i − ẑ_i(ẑ_i·dẑ_i))·r_i, from dZ's registers and the anchor fragments (whose
//           registers hold exactly the z elements of the lane's dZ columns), one store per element.
// Masks: a column tile that passes M or holds one of the warp's own anchors (j = i) runs the
// masked element loop; one that may hold a positive (SupCon: every tile; NT-Xent: when a lane's
// partner falls inside, a warp vote) the loop with the key compare; the others neither.
//
// Shapes (TileShape), one CTA of 8 warps per SM, its registers up to 255 a thread (the SASS has
// no spills; bench/NOTES.md has the counts):
//   forward, D ≤ 128   32 anchor rows a warp (two m-tiles: each B fragment feeds 4 MMAs, half the
//                      shared-memory reads of 16 rows), 256 a CTA (half the L2 reads of z of 128),
//                      anchors in registers (64 of A fragments, 64 of S at D = 128);
//   forward, D = 256   16 rows a warp, 128 a CTA (the A fragments of 32 rows would take 128);
//   backward           16 rows a warp (dZ takes D/2 registers), 128 a CTA; anchors in registers
//                      for D ≤ 128, re-loaded from shared memory at D = 256, whose column tiles
//                      are 32 rows (S and G' in 16 + 8 registers; 100 KB of shared memory).
#pragma once

#include <stdint.h>

#include "contrastive_tensor_common.cuh"
#include "tile_engine.cuh"

namespace closs {
namespace {

template <int kDim> using TileForwardShape = TileShape<kDim, 8, kDim <= 128 ? 2 : 1, 64, true, 2>;
template <int kDim> using TileBackwardShape = TileShape<kDim, 8, 1, kDim <= 128 ? 64 : 32, kDim <= 128, 5>;
constexpr int kTileBlocksPerSM = 1; // __launch_bounds__' register budget: 255 a thread

// Which element loop a column tile needs (see the top).
enum class TileKind { plain, positives, masked };

// The epilogues' common part: the warp's anchor rows and the tile classification.
template <class Shape> struct ContrastiveTiles {
    static constexpr int kSlots = 2 * Shape::kMTiles; // anchor rows per lane
    const closs_contrastive_launch &job;
    int64_t warp_first; // the warp's first anchor row
    LaneAnchor anchor[kSlots];

    __device__ __forceinline__ ContrastiveTiles(const closs_contrastive_launch &launch, int64_t first)
        : job(launch), warp_first(first) {
#pragma unroll
        for (int slot = 0; slot < kSlots; ++slot) anchor[slot] = lane_anchor(job, first + slot_row(slot));
    }

    // Slot (mt, h) = 2mt + h: row 16mt + l/4 + 8h of the warp's rows.
    __device__ static int slot_row(int slot) { return 16 * (slot / 2) + fragment_row(2 * (slot % 2)); }

    // The element loop the tile at j0 needs; the same in every lane of the warp.
    __device__ __forceinline__ TileKind kind(int64_t j0) const {
        const bool past_end = j0 + Shape::kColumnRows > job.rows;
        const bool diagonal = j0 < warp_first + Shape::kWarpRows && warp_first < j0 + Shape::kColumnRows;
        if (past_end || diagonal) return TileKind::masked;
        if (job.supcon) return TileKind::positives;
        bool partner = false; // NT-Xent: the key is the partner's index
#pragma unroll
        for (int slot = 0; slot < kSlots; ++slot)
            partner |= anchor[slot].key >= j0 && anchor[slot].key < j0 + Shape::kColumnRows;
        return warp_any(partner) ? TileKind::positives : TileKind::plain;
    }

    // The epilogue's element loop for the tile at j0 (tile_of_kind<kind(j0)>).
    template <class Epilogue, class S, typename T>
    __device__ __forceinline__ void dispatch(Epilogue &epilogue, S &s, int64_t j0, const float *vectors,
                                             const T *staged_tile) const {
        switch (kind(j0)) {
        case TileKind::masked: epilogue.template tile_of_kind<TileKind::masked>(s, j0, vectors, staged_tile); break;
        case TileKind::positives:
            epilogue.template tile_of_kind<TileKind::positives>(s, j0, vectors, staged_tile);
            break;
        default: epilogue.template tile_of_kind<TileKind::plain>(s, j0, vectors, staged_tile); break;
        }
    }

    // A masked tile's bounds in 32 bits: its columns below M, and each slot's own column (−1: not
    // in this tile).
    struct Mask {
        int end, own[kSlots];
    };
    __device__ __forceinline__ Mask mask(int64_t j0) const {
        Mask m;
        m.end = job.rows - j0 < Shape::kColumnRows ? (int)(job.rows - j0) : Shape::kColumnRows;
#pragma unroll
        for (int slot = 0; slot < kSlots; ++slot) {
            const int64_t own = anchor[slot].i - j0;
            m.own[slot] = own >= 0 && own < Shape::kColumnRows ? (int)own : -1;
        }
        return m;
    }

    // Column c (within the tile) pairs with the slot's anchor (j < M, j ≠ i): masked tiles only.
    template <TileKind kKind> __device__ __forceinline__ static bool pairs(const Mask &m, int slot, int c) {
        return kKind != TileKind::masked || (c < m.end && c != m.own[slot]);
    }
};

// ---- forward -----------------------------------------------------------------------------------

// Column vectors: r_j, key_j.
template <typename T, bool kFixed, class Shape> struct ForwardEpilogue : ContrastiveTiles<Shape> {
    using Base = ContrastiveTiles<Shape>;
    using Base::anchor, Base::job, Base::kSlots;
    struct Fetched {
        float r;
        int key;
    };
    float shift2, sum[kSlots], positive_sum[kSlots];
    closs_lse_partial partial[kSlots];

    __device__ __forceinline__ ForwardEpilogue(const closs_contrastive_launch &launch, int64_t first)
        : Base(launch, first) {
        shift2 = launch.inv_temperature * kLog2e;
#pragma unroll
        for (int slot = 0; slot < kSlots; ++slot) {
            sum[slot] = positive_sum[slot] = 0.0f;
            partial[slot] = closs_cm_lse_empty();
        }
    }

    __device__ __forceinline__ Fetched fetch(int64_t j) const {
        return {j < job.rows ? job.inv_norm[j] : 0.0f, column_key(job, j)};
    }
    __device__ __forceinline__ void stage(float *vectors, int c, const Fetched &f) const {
        tile::shared_store(vectors + c, f.r);
        tile::shared_store(reinterpret_cast<int *>(vectors + Shape::kColumnRows) + c, f.key);
    }

    template <TileKind kKind>
    __device__ __forceinline__ void terms(float (&s)[Shape::kMTiles][Shape::kNTiles][4], int64_t j0,
                                          const float *vectors) {
        const int *keys = reinterpret_cast<const int *>(vectors + Shape::kColumnRows);
        const typename Base::Mask m = kKind == TileKind::masked ? Base::mask(j0) : typename Base::Mask{};
        float tile_max[kSlots];
#pragma unroll
        for (int slot = 0; slot < kSlots; ++slot) tile_max[slot] = -INFINITY;
#pragma unroll
        for (int n = 0; n < Shape::kNTiles; ++n) {
            const int c0 = 8 * n + fragment_column(0);
            const float2 r = tile::shared_load(reinterpret_cast<const float2 *>(vectors + c0));
            int2 key = make_int2(0, 0);
            if constexpr (kKind != TileKind::plain) key = tile::shared_load(reinterpret_cast<const int2 *>(keys + c0));
#pragma unroll
            for (int mt = 0; mt < Shape::kMTiles; ++mt)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int slot = 2 * mt + e / 2, c = c0 + e % 2;
                    const float r_j = e % 2 ? r.y : r.x;
                    const bool pair = Base::template pairs<kKind>(m, slot, c);
                    if constexpr (kKind != TileKind::plain) { // Σ s_ij·r_j; ·r_i/τ in finish()
                        if (pair && (e % 2 ? key.y : key.x) == anchor[slot].key)
                            positive_sum[slot] = fmaf(s[mt][n][e], r_j, positive_sum[slot]);
                    }
                    if constexpr (kFixed) {
                        const float term = exp2_fast(fmaf(s[mt][n][e] * anchor[slot].scale2, r_j, -shift2));
                        if (pair) sum[slot] += term;
                    } else {
                        const float t = pair ? s[mt][n][e] * anchor[slot].scale2 * r_j : -INFINITY;
                        s[mt][n][e] = t;
                        tile_max[slot] = fmaxf(tile_max[slot], t);
                    }
                }
        }
        if constexpr (!kFixed) {
#pragma unroll
            for (int slot = 0; slot < kSlots; ++slot) {
                closs_lse_partial &p = partial[slot];
                if (tile_max[slot] == -INFINITY) continue;
                if (tile_max[slot] > p.max) {
                    p.sum *= exp2_fast(p.max - tile_max[slot]);
                    p.max = tile_max[slot];
                }
                const int mt = slot / 2, h = slot % 2;
#pragma unroll
                for (int n = 0; n < Shape::kNTiles; ++n)
#pragma unroll
                    for (int e = 2 * h; e < 2 * h + 2; ++e) p.sum += exp2_fast(s[mt][n][e] - p.max);
            }
        }
    }

    template <TileKind kKind>
    __device__ __forceinline__ void tile_of_kind(float (&s)[Shape::kMTiles][Shape::kNTiles][4], int64_t j0,
                                                 const float *vectors, const T *) {
        terms<kKind>(s, j0, vectors);
    }
    __device__ __forceinline__ void tile(float (&s)[Shape::kMTiles][Shape::kNTiles][4], int64_t j0,
                                         const float *vectors, const T *staged_tile) {
        Base::dispatch(*this, s, j0, vectors, staged_tile);
    }

    // lse_i and Σ_{k∈P(i)} x_ik of the anchors below row_end (lse from lse[0] = row lse_begin).
    __device__ __forceinline__ void finish(const AnchorFragments<T, Shape> &, int64_t row_end) {
        const bool nonfinite = *job.nonfinite != 0;
#pragma unroll
        for (int slot = 0; slot < kSlots; ++slot) {
            float lse;
            if constexpr (kFixed) {
                lse = closs_fm_lse_fixed(quad_sum(sum[slot]), job.inv_temperature);
            } else {
                const closs_lse_partial natural = {partial[slot].max * kLn2, partial[slot].sum}; // 2^m = e^(m·ln 2)
                lse = closs_cm_lse_value(quad_merge(natural));
            }
            const float positives = quad_sum(positive_sum[slot]) * anchor[slot].scale;
            const int64_t i = anchor[slot].i;
            if (tile_lane() % 4 == 0 && i < row_end && i < job.rows) {
                job.lse[i - job.lse_begin] = nonfinite ? __int_as_float(0x7fc00000) : lse;
                job.row_loss[i] = positives; // anchor_loss_kernel turns it into ℓ_i
            }
        }
    }
};

// ---- backward ----------------------------------------------------------------------------------

// Column vectors: r_j, the factor, lse·log2 e, a_j·σ, key_j (column_terms).
template <typename T, bool kFixed, class Shape> struct BackwardEpilogue : ContrastiveTiles<Shape> {
    static_assert(Shape::kMTiles == 1, "dZ holds one m-tile per warp");
    using Base = ContrastiveTiles<Shape>;
    using Base::anchor, Base::job, Base::kSlots;
    using Fetched = ColumnTerms;
    static constexpr int kDTiles = Shape::kDim / 8; // 8-column n-tiles of dZ
    float shift2, beta, sigma;
    AnchorTerms terms[kSlots];
    float dz[kDTiles][4]; // β·dZ = dẑ of the warp's 16 rows, in the accumulator layout

    __device__ __forceinline__ BackwardEpilogue(const closs_contrastive_launch &launch, int64_t first)
        : Base(launch, first) {
        shift2 = launch.inv_temperature * kLog2e;
        beta = __uint_as_float(*launch.factor_max);
        sigma = coefficient_scale(launch, beta);
#pragma unroll
        for (int slot = 0; slot < kSlots; ++slot) terms[slot] = anchor_terms(job, anchor[slot], sigma);
#pragma unroll
        for (int d = 0; d < kDTiles; ++d)
#pragma unroll
            for (int e = 0; e < 4; ++e) dz[d][e] = 0.0f;
    }

    __device__ __forceinline__ Fetched fetch(int64_t j) const { return column_terms<kFixed>(job, j, sigma); }
    __device__ __forceinline__ void stage(float *vectors, int c, const Fetched &f) const {
        constexpr int n = Shape::kColumnRows;
        tile::shared_store(vectors + c, f.r);
        tile::shared_store(vectors + n + c, f.f);
        tile::shared_store(vectors + 2 * n + c, f.l);
        tile::shared_store(vectors + 3 * n + c, f.a);
        tile::shared_store(reinterpret_cast<int *>(vectors + 4 * n) + c, f.key);
    }

    // G' of the tile into s, in place.
    template <TileKind kKind>
    __device__ __forceinline__ void coefficients(float (&s)[1][Shape::kNTiles][4], int64_t j0, const float *vectors) {
        constexpr int kRows = Shape::kColumnRows;
        const typename Base::Mask m = kKind == TileKind::masked ? Base::mask(j0) : typename Base::Mask{};
#pragma unroll
        for (int n = 0; n < Shape::kNTiles; ++n) {
            const int c0 = 8 * n + fragment_column(0);
            const float2 r = tile::shared_load(reinterpret_cast<const float2 *>(vectors + c0));
            const float2 f = tile::shared_load(reinterpret_cast<const float2 *>(vectors + kRows + c0));
            float2 l = make_float2(0.0f, 0.0f), a = make_float2(0.0f, 0.0f);
            int2 key = make_int2(0, 0);
            if constexpr (!kFixed) l = tile::shared_load(reinterpret_cast<const float2 *>(vectors + 2 * kRows + c0));
            if constexpr (kKind != TileKind::plain) {
                a = tile::shared_load(reinterpret_cast<const float2 *>(vectors + 3 * kRows + c0));
                key = tile::shared_load(
                    reinterpret_cast<const int2 *>(reinterpret_cast<const int *>(vectors + 4 * kRows) + c0));
            }
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int slot = e / 2, c = c0 + e % 2;
                const bool odd = e % 2;
                const float r_j = odd ? r.y : r.x, f_j = odd ? f.y : f.x;
                float g;
                if constexpr (kFixed) {
                    const float x = exp2_fast(fmaf(s[0][n][e] * anchor[slot].scale2, r_j, -shift2));
                    g = x * fmaf(terms[slot].f, r_j, f_j); // (b_i·r_j + b_j·r_j)·σ, e^(x − c) of it
                } else {
                    const float t = s[0][n][e] * anchor[slot].scale2 * r_j;
                    g = fmaf(terms[slot].f, exp2_fast(t - terms[slot].l), f_j * exp2_fast(t - (odd ? l.y : l.x))) * r_j;
                }
                if constexpr (kKind != TileKind::plain) {
                    if ((odd ? key.y : key.x) == anchor[slot].key)
                        g = fmaf(-(terms[slot].a + (odd ? a.y : a.x)), r_j, g);
                }
                if (!Base::template pairs<kKind>(m, slot, c)) g = 0.0f;
                s[0][n][e] = g;
            }
        }
    }

    // dZ += G'·Z_tile, G' rounded to 16 bits once (bench/NOTES.md, "G′'s low half": the positives'
    // fold made a second, residue part unnecessary).
    __device__ __forceinline__ void product(const float (&g)[1][Shape::kNTiles][4], const T *staged_tile) {
        second_product<T, Shape>(dz, g, staged_tile, [](float x) { return operand_range<T>(x); });
    }

    template <TileKind kKind>
    __device__ __forceinline__ void tile_of_kind(float (&s)[1][Shape::kNTiles][4], int64_t j0, const float *vectors,
                                                 const T *staged_tile) {
        coefficients<kKind>(s, j0, vectors);
        product(s, staged_tile);
    }
    __device__ __forceinline__ void tile(float (&s)[1][Shape::kNTiles][4], int64_t j0, const float *vectors,
                                         const T *staged_tile) {
        Base::dispatch(*this, s, j0, vectors, staged_tile);
    }

    // Calls visit(slot, c, unit, g) for each pair of the lane's dZ elements (each_anchor_pair), with
    // the anchor's ẑ = z·r_i (unit).
    template <class Visit>
    __device__ __forceinline__ void each_pair(const AnchorFragments<T, Shape> &anchors, Visit visit) {
        each_anchor_pair(anchors, dz, [&](int slot, int c, float2 z, float *g) {
            visit(slot, c, make_float2(z.x * anchor[slot].r, z.y * anchor[slot].r), g);
        });
    }

    // dz of the anchors [row_begin, row_end): β·dZ = dẑ, the radial component ẑ·dẑ over the quad,
    // then the normalisation's backward and the store, element by element.
    __device__ __forceinline__ void finish(const AnchorFragments<T, Shape> &anchors, int64_t row_end) {
        const int64_t row_begin = job.row_begin; // grad's row 0
        const float softmax_scale = beta > 0.0f ? beta : 1.0f;
        float radial[kSlots] = {0.0f, 0.0f};
        each_pair(anchors, [&](int slot, int, float2 unit, float *g) {
            g[0] *= softmax_scale;
            g[1] *= softmax_scale;
            radial[slot] = fmaf(unit.y, g[1], fmaf(unit.x, g[0], radial[slot]));
        });
        // closs_fm_unnormalize() with its division by max(‖z‖, eps) as the product with r_i (1 ulp
        // apart): a division is a call, whose saved registers cost the kernel a stack frame.
        bool store[kSlots], projected[kSlots];
        float scale[kSlots]; // r_i (anchor.r may be r′_i: backward_job())
        T *out[kSlots];
#pragma unroll
        for (int slot = 0; slot < kSlots; ++slot) {
            radial[slot] = quad_sum(radial[slot]);
            const int64_t i = anchor[slot].i;
            store[slot] = i < row_end && i < job.rows;
            projected[slot] = store[slot] && job.normalize && job.norms[i] > kNormalizeEps;
            scale[slot] = store[slot] ? unscaled_inv_norm(job, i) : 0.0f;
            out[slot] = static_cast<T *>(job.grad) + (i - row_begin) * job.grad_ld;
        }
        each_pair(anchors, [&](int slot, int c, float2 unit, float *g) {
            if (!store[slot]) return;
            if (c < job.dim)
                out[slot][c] =
                    from_float<T>((projected[slot] ? fmaf(-unit.x, radial[slot], g[0]) : g[0]) * scale[slot]);
            if (c + 1 < job.dim)
                out[slot][c + 1] =
                    from_float<T>((projected[slot] ? fmaf(-unit.y, radial[slot], g[1]) : g[1]) * scale[slot]);
        });
    }
};

// ---- the kernels -------------------------------------------------------------------------------

// One block's walk: anchors [row_begin + blockIdx.x·kAnchorRows, …) against all M rows of z, then
// the epilogue's finish for the anchors below row_end: the forward's lse_i and Σ_{k∈P(i)} x_ik (lse
// from lse[0] = row job.lse_begin), the backward's dz (grad's row 0 is job.row_begin; it needs
// softmax_factors_kernel and β from anchor_weights_kernel first).
template <typename T, class Shape, class Epilogue>
__device__ __forceinline__ void tile_pass(const closs_contrastive_launch &job, int64_t row_begin, int64_t row_end) {
    const int64_t i0 = row_begin + (int64_t)blockIdx.x * Shape::kAnchorRows;
    const TileOperand<T> z = tile_operand<T>(job.z, job.rows, job.ld, job.dim);
    Epilogue epilogue(job, i0 + threadIdx.x / kWarpSize * Shape::kWarpRows);
    AnchorFragments<T, Shape> anchors;
    walk_tiles<T, Shape>(z, z, i0, anchors, epilogue);
    epilogue.finish(anchors, row_end);
}

template <typename T, bool kFixed, int kDim>
__global__ void __launch_bounds__(TileForwardShape<kDim>::kThreads, kTileBlocksPerSM)
    tile_forward_kernel(const closs_contrastive_launch job, int64_t row_begin, int64_t row_end) {
    using Shape = TileForwardShape<kDim>;
    if constexpr (kTileEngineArch) tile_pass<T, Shape, ForwardEpilogue<T, kFixed, Shape>>(job, row_begin, row_end);
    else __trap();
}

template <typename T, bool kFixed, int kDim>
__global__ void __launch_bounds__(TileBackwardShape<kDim>::kThreads, kTileBlocksPerSM)
    tile_backward_kernel(const closs_contrastive_launch job, int64_t row_begin, int64_t row_end) {
    using Shape = TileBackwardShape<kDim>;
    if constexpr (kTileEngineArch) tile_pass<T, Shape, BackwardEpilogue<T, kFixed, Shape>>(job, row_begin, row_end);
    else __trap();
}

} // namespace
} // namespace closs
