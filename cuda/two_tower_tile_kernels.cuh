// CLIP's and SigLIP's walks on the tile engine (tile_engine.cuh has the schedule), D ≤ 512, sm_80
// and later, as epilogues of the engine's walk: bf16's forward and backward walks, f16's CLIP
// forward walks (below: why f16's backward and SigLIP keep the SIMT walks). two_tower_fused.cu
// runs them in place of the SIMT walks of two_tower_fused_kernels.cuh where tile_dispatch.h
// allows (tt_engine_walk() says which walks);
// the plan (TwoTowerWalk), the outputs, the workspace and the kernels around the walks are the
// same (two_tower_kernels.cuh). The math is at the top of two_tower_math.h.
//
// A walk: the anchors are rows of one tower (A), the columns the rows [column_begin, column_end)
// of the other (B, whose row 0 is column_begin). The raw 16-bit rows are multiplied (exact
// products, float accumulation), never the embedded ones; with r = 1/max(‖row‖, eps) (1 without
// normalisation) and S_ij = a_i·b_j, on the accumulator registers:
//   c_ij = S_ij·r_i·r_j                       the rank-1 scale (r_i of the lane's row, r_j of the
//                                             tile's column vector)
//   CLIP forward     n_i (walking a) or m_j (walking b): an online log-sum-exp of x = s·c over
//                    the columns but the diagonal (j = i: only a pair has one index in both
//                    towers), per lane in base 2, a tile's maximum first, merged over the quad in
//                    base e; NaN in a term stays in the sum (two-tower losses carry NaN in the
//                    arithmetic, not in a flag)
//   SigLIP forward   Σ_{j≠i} softplus(s·c_ij + β), by softplus_fast()
//   backward (bf16)  G_ij off the diagonal as the SIMT walk (two_tower_math.h: CLIP's a-side term
//                    plus the column's, SigLIP's w·σ(x)), each row's shares Σ_j G_ij·c_ij and
//                    Σ_j G_ij (and SigLIP's loss when the walk gives the forward), then
//                    G'_ij = G_ij·r_j rounded to bf16 once, straight from the accumulators to the
//                    A fragments of the second product dẐ_rows += G'·B_tile (the raw rows, staged);
//                    once, after the first tile, the pair's own term G_ii·b̂_i (float, from global
//                    memory: its G_ii is left out of the tiles); last s, the normalisation's
//                    backward dz = (dẑ − ẑ(ẑ·dẑ))·r_i and the store. At D > 256 a warp's dẐ (256
//                    floats a lane at D = 512) does not fit its registers: two warps own the same
//                    16 anchor rows, each multiplies its half of the column tile (16 columns) and
//                    computes G' and the shares there, the two pass their G' fragments through
//                    shared memory (second_product_shared), each accumulates dẐ for its half of D
//                    over all the tile's columns and adds the own term to it; ẑ·dẑ (all of D) and
//                    the shares (all columns) are the two halves' sums (through shared memory,
//                    both warps adding them in one order), stored by the first warp. SigLIP's
//                    forward at D = 512 sums each row's loss in the same order (kLossParts).
// Range: f16 and bf16 products are exact and S is a float sum, so the forward has no range limit
// of its own. The backward's G' is a 16-bit operand: in bf16 (float's exponent range) any G·r_j
// is representable; in f16 a MEAN weight of 1/N at large N puts G' below f16's normal range (6e-5)
// and a near-zero row's r_j (up to 1e12) puts it past 65504, which NT-Xent's f16 backward handles
// with β = max |w| and a scaled copy of z (launch.h, z_scaled). CLIP and SigLIP have neither, so
// f16's backward keeps the SIMT walks (float G, float rows), and so does f16's SigLIP forward: a
// SigLIP forward+backward takes its loss from the backward's walk over a, and a forward alone
// must give the same bits (the engine's forward and backward epilogues compute each x and
// softplus alike, in the same order, so bf16's do; where bf16's backward cannot take the engine,
// its forward does not either, nor its backward where its forward cannot: closs_siglip_walk_kernels
// in tile_dispatch.h).
// Masks: a column tile that passes the walk's columns or holds one of the warp's own rows (j = i)
// runs the masked element loop, the others the plain one.
// Determinism: one order for every sum (the tensor cores' over k, each lane's columns in tile
// order, fixed quad butterflies), no atomics; the per-row values have one owner.
// Shapes (TileShape, one CTA per SM as NT-Xent's): forward 8 warps of 32 anchor rows for D ≤ 128,
// of 16 at D = 256, anchors in registers (64-row column tiles); at D = 512 4 warps of 32 rows
// (128 anchor rows, 32-row column tiles), anchors in shared memory (the A fragments of a warp's
// rows at D = 512 are 128 registers a lane per m-tile: they do not fit beside the accumulators),
// 195.3 KB of shared memory. Backward 8 warps of 16 rows, anchors in registers for D ≤ 128
// (64-row column tiles), in shared memory at D = 256 (32-row tiles); at D = 512 8 warps in pairs
// sharing 16 rows (64 anchor rows, 32-row column tiles, 142.8 KB). Which shape: the shared
// memory (≤ 227 KB a block on sm_90) and the reads of it per HMMA (bench/NOTES.md).
#pragma once

#include <math.h>
#include <stdint.h>

#include <type_traits>

#include "tile_engine.cuh"
#include "tile_epilogue_math.cuh"
#include "two_tower_kernels.cuh"

namespace closs {
namespace {

constexpr int kTtEngineMaxDim = 512;
template <int kDim>
using TtForwardShape = std::conditional_t<kDim <= 256, TileShape<kDim, 8, kDim <= 128 ? 2 : 1, 64, true, 1>,
                                          TileShape<kDim, 4, 2, 32, false, 1>>;
template <int kDim>
using TtBackwardShape = TileShape<kDim, 8, 1, kDim <= 128 ? 64 : 32, kDim <= 128, 3, kDim <= 256 ? 1 : 2>;

// Whether the engine has the walk for this loss, dtype, D and direction (see the top: f16 has only
// CLIP's forward walks). The launcher still asks tile_dispatch.h whether it may run.
template <typename T, bool kSiglip>
constexpr bool kTtEngineLoss = std::is_same<T, __nv_bfloat16>::value || (std::is_same<T, __half>::value && !kSiglip);
template <typename T, bool kSiglip> inline bool tt_engine_walk(int64_t dim, bool backward) {
    return kTtEngineLoss<T, kSiglip> && dim <= kTtEngineMaxDim && (std::is_same<T, __nv_bfloat16>::value || !backward);
}

// Calls variant(std::integral_constant<int, kDim>) with the engine's padded D: 64, 128, 256 or 512.
template <typename Variant> auto with_engine_dim(int64_t dim, Variant variant) {
    if (dim <= 64) return variant(std::integral_constant<int, 64>());
    if (dim <= 128) return variant(std::integral_constant<int, 128>());
    if (dim <= 256) return variant(std::integral_constant<int, 256>());
    return variant(std::integral_constant<int, kTtEngineMaxDim>());
}

// log(1 + e^x) from e = e^(−|x|) ≤ 1: max(x, 0) + log1p(e), log1p(e) = 2·atanh(t), t = e/(2 + e)
// ≤ 1/3, by its series 2(t + t³/3 + … + t¹³/13), whose remainder is below 2t·(1/3)^14/15 (1.5e-8
// of the value): one approximate division and seven FMAs, no log. NaN in x gives NaN.
__device__ __forceinline__ float softplus_fast(float x, float e) {
    const float t = __fdividef(e, 2.0f + e), t2 = t * t;
    float series = 2.0f / 13.0f;
    series = fmaf(series, t2, 2.0f / 11.0f);
    series = fmaf(series, t2, 2.0f / 9.0f);
    series = fmaf(series, t2, 2.0f / 7.0f);
    series = fmaf(series, t2, 2.0f / 5.0f);
    series = fmaf(series, t2, 2.0f / 3.0f);
    series = fmaf(series, t2, 2.0f);
    return fmaxf(x, 0.0f) + series * t;
}

// e^(−|x|) by ex2.approx.
__device__ __forceinline__ float exp_neg_abs_fast(float x) { return exp2_fast(-fabsf(x) * kLog2e); }

// A walk's operands: the anchors' tower whole (rows past it stage as zeros), the columns' rows
// [column_begin, column_end) as rows 0.. of B.
template <typename T> struct TtOperands {
    TileOperand<T> anchors, columns;
};
template <typename T>
__device__ __forceinline__ TtOperands<T> tt_operands(const closs_two_tower_launch &job, const TwoTowerWalk &walk) {
    const bool a = walk.anchors_are_a;
    const int64_t column_ld = a ? job.ldb : job.lda;
    const T *columns = static_cast<const T *>(a ? job.b : job.a) + walk.column_begin * column_ld;
    return {tile_operand<T>(a ? job.a : job.b, a ? job.pairs : job.rows_b, a ? job.lda : job.ldb, job.dim),
            tile_operand<T>(columns, walk.column_end - walk.column_begin, column_ld, job.dim)};
}

// The epilogues' common part: the warp's anchor rows (slot 2mt + h: row 16mt + l/4 + 8h of the
// warp's), their r_i, and which element loop a tile needs.
template <class Shape> struct TwoTowerTiles {
    static constexpr int kSlots = 2 * Shape::kMTiles;
    const closs_two_tower_launch &job;
    const TwoTowerWalk &walk;
    int64_t warp_first, columns; // the warp's first anchor row; the walk's column count
    const float *column_inv_norm; // the columns' tower's r, indexed by row
    float r[kSlots]; // r_i, 0 past the anchors' tower

    __device__ __forceinline__ TwoTowerTiles(const closs_two_tower_launch &launch, const TwoTowerWalk &w,
                                             int64_t first)
        : job(launch), walk(w), warp_first(first), columns(w.column_end - w.column_begin) {
        const bool a = walk.anchors_are_a;
        const float *anchor_inv_norm = a ? job.inv_norm_a : job.inv_norm_b;
        column_inv_norm = a ? job.inv_norm_b : job.inv_norm_a;
        const int64_t rows = a ? job.pairs : job.rows_b;
#pragma unroll
        for (int slot = 0; slot < kSlots; ++slot) r[slot] = row(slot) < rows ? anchor_inv_norm[row(slot)] : 0.0f;
    }

    // The slot's row (computed, not held: registers are the backward's limit at D = 256).
    __device__ __forceinline__ int64_t row(int slot) const {
        return warp_first + 16 * (slot / 2) + fragment_row(2 * (slot % 2));
    }

    // r_j of the walk's column j (0 past its columns).
    __device__ __forceinline__ float column_r(int64_t j) const {
        return j < columns ? column_inv_norm[walk.column_begin + j] : 0.0f;
    }

    // Whether the tile at j0 passes the walk's columns or holds a column j = i of the warp's rows.
    __device__ __forceinline__ bool masked(int64_t j0) const {
        const int64_t first = walk.column_begin + j0; // the tile's first column, in the tower
        return j0 + Shape::kColumnRows > columns ||
               (first < warp_first + Shape::kWarpRows && warp_first < first + Shape::kColumnRows);
    }

    // A masked tile's bounds: its columns inside the walk, and each slot's own column (−1: none).
    struct Mask {
        int end, own[kSlots];
    };
    __device__ __forceinline__ Mask mask(int64_t j0) const {
        Mask m;
        m.end = columns - j0 < Shape::kColumnRows ? (int)(columns - j0) : Shape::kColumnRows;
#pragma unroll
        for (int slot = 0; slot < kSlots; ++slot) {
            const int64_t own = row(slot) - walk.column_begin - j0;
            m.own[slot] = own >= 0 && own < Shape::kColumnRows ? (int)own : -1;
        }
        return m;
    }
    template <bool kMasked> __device__ __forceinline__ static bool pairs(const Mask &m, int slot, int c) {
        return !kMasked || (c < m.end && c != m.own[slot]);
    }
};

// ---- forward -----------------------------------------------------------------------------------

// Column vector: r_j.
template <typename T, bool kSiglip, class Shape> struct TwoTowerForwardEpilogue : TwoTowerTiles<Shape> {
    using Base = TwoTowerTiles<Shape>;
    using Base::kSlots, Base::r, Base::walk;
    struct Fetched {
        float r;
    };
    // SigLIP's loss of a row is summed in the backward walk's order (its walk gives a forward+
    // backward's loss): per part of the column tile's n-tiles, the parts' quad sums added in order.
    static constexpr int kLossParts = TtBackwardShape<Shape::kDim>::kDimSplit;
    static_assert(kLossParts == 1 || Shape::kColumnRows == TtBackwardShape<Shape::kDim>::kColumnRows,
                  "the backward's column tiles");
    float s_value, beta, scale[kSlots]; // s, β; CLIP: s·r_i·log2 e (base 2), SigLIP: r_i
    closs_lse_partial partial[kSlots];
    float loss[kLossParts][kSlots];

    __device__ __forceinline__ TwoTowerForwardEpilogue(const closs_two_tower_launch &launch, const TwoTowerWalk &w,
                                                       int64_t first)
        : Base(launch, w, first) {
        s_value = logit_scale_of(launch);
        beta = logit_bias_of(launch);
#pragma unroll
        for (int slot = 0; slot < kSlots; ++slot) {
            scale[slot] = kSiglip ? r[slot] : s_value * r[slot] * kLog2e;
            partial[slot] = {-INFINITY, 0.0f};
#pragma unroll
            for (int part = 0; part < kLossParts; ++part) loss[part][slot] = 0.0f;
        }
    }

    __device__ __forceinline__ Fetched fetch(int64_t j) const { return {Base::column_r(j)}; }
    __device__ __forceinline__ void stage(float *vectors, int c, const Fetched &f) const {
        tile::shared_store(vectors + c, f.r);
    }

    template <bool kMasked>
    __device__ __forceinline__ void terms(float (&s)[Shape::kMTiles][Shape::kNTiles][4], int64_t j0,
                                          const float *vectors) {
        const typename Base::Mask m = kMasked ? Base::mask(j0) : typename Base::Mask{};
        float tile_max[kSlots];
#pragma unroll
        for (int slot = 0; slot < kSlots; ++slot) tile_max[slot] = -INFINITY;
#pragma unroll
        for (int n = 0; n < Shape::kNTiles; ++n) {
            const int c0 = 8 * n + fragment_column(0);
            const float2 rj = tile::shared_load(reinterpret_cast<const float2 *>(vectors + c0));
#pragma unroll
            for (int mt = 0; mt < Shape::kMTiles; ++mt)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int slot = 2 * mt + e / 2;
                    const bool pair = Base::template pairs<kMasked>(m, slot, c0 + e % 2);
                    const float scaled = s[mt][n][e] * scale[slot] * (e % 2 ? rj.y : rj.x);
                    if constexpr (kSiglip) { // c_ij, then x as the backward's epilogue has it
                        const float x = fmaf(s_value, scaled, beta);
                        const int part = n / (Shape::kNTiles / kLossParts);
                        if (pair) loss[part][slot] += softplus_fast(x, exp_neg_abs_fast(x));
                    } else {
                        const float t = pair ? scaled : -INFINITY; // x·log2 e
                        s[mt][n][e] = t;
                        tile_max[slot] = fmaxf(tile_max[slot], t); // NaN is kept by the sum below
                    }
                }
        }
        if constexpr (!kSiglip) {
#pragma unroll
            for (int slot = 0; slot < kSlots; ++slot) {
                closs_lse_partial &p = partial[slot];
                if (tile_max[slot] > p.max) {
                    p.sum *= exp2_fast(p.max - tile_max[slot]);
                    p.max = tile_max[slot];
                }
                const float shift = p.max == -INFINITY ? 0.0f : p.max; // no term yet: 2^(−∞ − 0) = 0
                const int mt = slot / 2, h = slot % 2;
#pragma unroll
                for (int n = 0; n < Shape::kNTiles; ++n)
#pragma unroll
                    for (int e = 2 * h; e < 2 * h + 2; ++e) p.sum += exp2_fast(s[mt][n][e] - shift);
            }
        }
    }

    __device__ __forceinline__ void tile(float (&s)[Shape::kMTiles][Shape::kNTiles][4], int64_t j0,
                                         const float *vectors, const T *) {
        if (Base::masked(j0)) terms<true>(s, j0, vectors);
        else terms<false>(s, j0, vectors);
    }

    // The walk's value of each anchor row: n_i or m_j (CLIP), Σ_{j≠i} softplus (SigLIP).
    __device__ __forceinline__ void finish(const AnchorFragments<T, Shape> &) {
#pragma unroll
        for (int slot = 0; slot < kSlots; ++slot) {
            float value;
            if constexpr (kSiglip) {
                value = quad_sum(loss[0][slot]);
#pragma unroll
                for (int part = 1; part < kLossParts; ++part) value += quad_sum(loss[part][slot]);
            } else {
                closs_lse_partial p = {partial[slot].max * kLn2, partial[slot].sum}; // 2^m = e^(m·ln 2)
#pragma unroll
                for (int offset = 1; offset <= 2; offset <<= 1) {
                    const closs_lse_partial other = {__shfl_xor_sync(kFullMask, p.max, offset),
                                                     __shfl_xor_sync(kFullMask, p.sum, offset)};
                    p = closs_tt_lse_merge(p, other);
                }
                value = closs_tt_lse_value(p);
            }
            const int64_t i = Base::row(slot);
            if (tile_lane() % 4 == 0 && i < walk.anchor_end) walk.out[i - walk.anchor_begin] = value;
        }
    }
};

// ---- backward ----------------------------------------------------------------------------------

// Column vectors: r_j, the column's factor of G and its lse·log2 e (two_tower_kernels.cuh,
// g_factors: CLIP's b-side or a-side terms; SigLIP's w_j when the columns are a's rows, else 0).
template <typename T, bool kSiglip, class Shape> struct TwoTowerBackwardEpilogue : TwoTowerTiles<Shape> {
    static_assert(Shape::kMTiles == 1, "dẐ holds one m-tile per warp");
    static_assert(std::is_same<T, __nv_bfloat16>::value, "f16's G' needs a range the walk does not give (top)");
    using Base = TwoTowerTiles<Shape>;
    using Base::kSlots, Base::r, Base::walk, Base::job;
    struct Fetched {
        float r, f, l;
    };
    float s, s2, beta; // s, s·log2 e, β
    bool losses;       // SigLIP's loss terms on the way (the forward of a forward+backward)
    float row_factor[kSlots], row_lse2[kSlots];
    float scale_share[kSlots], bias_share[kSlots], loss[kSlots];
    float dz[Shape::kDimPart / 8][4]; // Σ_j G_ij·b̂_j of the warp's 16 rows and part of D, accumulator layout

    __device__ __forceinline__ TwoTowerBackwardEpilogue(const closs_two_tower_launch &launch, const TwoTowerWalk &w,
                                                        int64_t first)
        : Base(launch, w, first) {
        s = logit_scale_of(launch);
        s2 = s * kLog2e;
        beta = logit_bias_of(launch);
        losses = kSiglip && walk.shares && launch.forward;
#pragma unroll
        for (int slot = 0; slot < kSlots; ++slot) {
            if (kSiglip && !walk.anchors_are_a) row_factor[slot] = 0.0f, row_lse2[slot] = INFINITY; // w is the columns'
            else g_factors(job, walk.anchors_are_a, Base::row(slot), &row_factor[slot], &row_lse2[slot]);
            row_lse2[slot] *= kLog2e;
            scale_share[slot] = bias_share[slot] = loss[slot] = 0.0f;
        }
#pragma unroll
        for (int d = 0; d < Shape::kDimPart / 8; ++d)
#pragma unroll
            for (int e = 0; e < 4; ++e) dz[d][e] = 0.0f;
    }

    // dẐ += the pair's own term G_ii·b̂_i (its partner: the same index in the other tower), the
    // element of n-tile d and element e being row slot e/2, column part·kDimPart + 8d + 2(l%4) + e%2
    // (the warp's part of D only).
    __device__ __forceinline__ void add_own_pairs() {
        const int first_column = dim_part<Shape>() * Shape::kDimPart;
        const T *partner_tower = static_cast<const T *>(walk.anchors_are_a ? job.b : job.a);
        const int64_t partner_ld = walk.anchors_are_a ? job.ldb : job.lda;
#pragma unroll
        for (int slot = 0; slot < kSlots; ++slot) {
            const int64_t i = Base::row(slot);
            if (i >= job.pairs) continue;
            const float diagonal = diagonal_term(i), partner_r = Base::column_inv_norm[i];
            const T *partner = partner_tower + i * partner_ld;
#pragma unroll
            for (int d = 0; d < Shape::kDimPart / 8; ++d)
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const int c = first_column + 8 * d + fragment_column(h);
                    float &into = dz[d][2 * slot + h];
                    if (c < job.dim) into = fmaf(diagonal, to_float(partner[c]) * partner_r, into);
                }
        }
    }

    // G_ii of pair i.
    __device__ __forceinline__ float diagonal_term(int64_t i) const {
        return diagonal_coefficient(job, i, fmaf(s, job.positives[i], beta));
    }

    __device__ __forceinline__ Fetched fetch(int64_t j) const {
        Fetched f = {Base::column_r(j), 0.0f, INFINITY};
        g_factors(job, !walk.anchors_are_a, j < Base::columns ? walk.column_begin + j : INT64_MAX, &f.f, &f.l);
        f.l *= kLog2e;
        return f;
    }
    __device__ __forceinline__ void stage(float *vectors, int c, const Fetched &f) const {
        constexpr int n = Shape::kColumnRows;
        tile::shared_store(vectors + c, f.r);
        tile::shared_store(vectors + n + c, f.f);
        tile::shared_store(vectors + 2 * n + c, f.l);
    }

    // G' = G·r_j of the tile into s, in place, and the rows' shares.
    template <bool kMasked>
    __device__ __forceinline__ void coefficients(float (&s_tile)[1][Shape::kWarpNTiles][4], int64_t j0,
                                                 const float *vectors) {
        constexpr int kRows = Shape::kColumnRows;
        const typename Base::Mask m = kMasked ? Base::mask(j0) : typename Base::Mask{};
        const int first_column = dim_part<Shape>() * Shape::kWarpNTiles * 8; // the warp's part of the tile
#pragma unroll
        for (int n = 0; n < Shape::kWarpNTiles; ++n) {
            const int c0 = first_column + 8 * n + fragment_column(0);
            const float2 rj = tile::shared_load(reinterpret_cast<const float2 *>(vectors + c0));
            const float2 fj = tile::shared_load(reinterpret_cast<const float2 *>(vectors + kRows + c0));
            float2 lj = make_float2(0.0f, 0.0f);
            if constexpr (!kSiglip) lj = tile::shared_load(reinterpret_cast<const float2 *>(vectors + 2 * kRows + c0));
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int slot = e / 2;
                const bool odd = e % 2;
                const float r_j = odd ? rj.y : rj.x, f_j = odd ? fj.y : fj.x;
                const float c = s_tile[0][n][e] * r[slot] * r_j; // c_ij
                float g;
                if constexpr (kSiglip) {
                    const float x = fmaf(s, c, beta), e_x = exp_neg_abs_fast(x);
                    g = __fdividef(x >= 0.0f ? 1.0f : e_x, 1.0f + e_x) * (row_factor[slot] + f_j); // w·σ(x)
                    if (losses && Base::template pairs<kMasked>(m, slot, c0 + odd))
                        loss[slot] += softplus_fast(x, e_x);
                } else {
                    const float x2 = c * s2;
                    g = fmaf(row_factor[slot], exp2_fast(x2 - row_lse2[slot]),
                             f_j * exp2_fast(x2 - (odd ? lj.y : lj.x)));
                }
                if (!Base::template pairs<kMasked>(m, slot, c0 + odd)) g = 0.0f;
                scale_share[slot] = fmaf(g, c, scale_share[slot]);
                if constexpr (kSiglip) bias_share[slot] += g;
                s_tile[0][n][e] = g * r_j;
            }
        }
    }

    // dẐ += G'·B_tile: the warp's G' in registers, or the row group's through shared memory.
    __device__ __forceinline__ void product(const float (&g)[1][Shape::kWarpNTiles][4], const T *staged_tile) {
        auto same = [](float x) { return x; }; // bf16: G' in range
        if constexpr (Shape::kDimSplit > 1) second_product_shared<T, Shape>(dz, g, staged_tile, same);
        else second_product<T, Shape>(dz, g, staged_tile, same);
    }

    __device__ __forceinline__ void tile(float (&s_tile)[1][Shape::kWarpNTiles][4], int64_t j0,
                                         const float *vectors, const T *staged_tile) {
        if (Base::masked(j0)) coefficients<true>(s_tile, j0, vectors);
        else coefficients<false>(s_tile, j0, vectors);
        product(s_tile, staged_tile);
        if (j0 == 0) add_own_pairs(); // once, where the tile's registers are free (bench/NOTES.md)
    }

    // Each slot's values summed over the row group's parts (ẑ·dẑ over the parts of D, the shares
    // over the parts of the column tiles): the warps of a group store their parts' sums, meet the
    // block (every thread reaches finish) and add the parts in increasing order, so that the
    // group's warps hold the same bits.
    __device__ __forceinline__ void combine_parts(float (&values)[Shape::kExchangeValues][kSlots]) const {
        if constexpr (Shape::kDimSplit > 1) {
            float *exchange = reinterpret_cast<float *>(dynamic_shared() + Shape::kExchangeAt);
            auto at = [&](int warp, int v, int slot) {
                return exchange + ((warp * Shape::kExchangeValues + v) * kSlots + slot) * kWarpSize + tile_lane();
            };
            const int warp = threadIdx.x / kWarpSize, first = warp - dim_part<Shape>();
#pragma unroll
            for (int v = 0; v < Shape::kExchangeValues; ++v)
#pragma unroll
                for (int slot = 0; slot < kSlots; ++slot) tile::shared_store(at(warp, v, slot), values[v][slot]);
            __syncthreads();
#pragma unroll
            for (int v = 0; v < Shape::kExchangeValues; ++v)
#pragma unroll
                for (int slot = 0; slot < kSlots; ++slot) {
                    values[v][slot] = tile::shared_load(at(first, v, slot));
#pragma unroll
                    for (int p = 1; p < Shape::kDimSplit; ++p)
                        values[v][slot] += tile::shared_load(at(first + p, v, slot));
                }
        }
    }

    // s, the normalisation's backward and the store of the warp's part of D; the shares (and the
    // pair's own), by the first part's warp.
    __device__ __forceinline__ void finish(const AnchorFragments<T, Shape> &anchors) {
        enum { kRadial, kScale, kBias, kLoss };
        float sums[Shape::kExchangeValues][kSlots] = {};
        each_anchor_pair(anchors, dz, [&](int slot, int, float2 z, float *g) {
            g[0] *= s;
            g[1] *= s;
            sums[kRadial][slot] = fmaf(z.y * r[slot], g[1], fmaf(z.x * r[slot], g[0], sums[kRadial][slot]));
        });
#pragma unroll
        for (int slot = 0; slot < kSlots; ++slot) {
            sums[kRadial][slot] = quad_sum(sums[kRadial][slot]);
            sums[kScale][slot] = quad_sum(scale_share[slot]);
            sums[kBias][slot] = quad_sum(bias_share[slot]);
            sums[kLoss][slot] = quad_sum(loss[slot]);
        }
        combine_parts(sums);
        const float *norms = walk.anchors_are_a ? job.norms_a : job.norms_b;
        bool store[kSlots], projected[kSlots];
        T *out[kSlots];
#pragma unroll
        for (int slot = 0; slot < kSlots; ++slot) {
            const int64_t i = Base::row(slot);
            const bool mine = i < walk.anchor_end;
            // The lanes' sums, then the pair's own term, by one lane of the row's first part.
            if (mine && walk.shares && tile_lane() % 4 == 0 && dim_part<Shape>() == 0) {
                const float diagonal = i < job.pairs ? diagonal_term(i) : 0.0f;
                const float cosine = i < job.pairs ? job.positives[i] : 0.0f;
                job.scale_share[i] = fmaf(diagonal, cosine, sums[kScale][slot]);
                if constexpr (kSiglip) {
                    job.bias_share[i] = sums[kBias][slot] + diagonal;
                    if (losses) job.row_loss[i] = sums[kLoss][slot]; // the pair's own term: pair_loss_kernel
                }
            }
            store[slot] = mine && walk.grad;
            // (dẑ − ẑ(ẑ·dẑ))/‖z‖ as the product with r_i (1/‖z‖ while ‖z‖ > eps, 1/eps below, 1
            // unnormalised): a division would be a call, whose saved registers cost a stack frame.
            projected[slot] = store[slot] && job.normalize && norms[i] > kTwoTowerEps;
            out[slot] = static_cast<T *>(walk.grad) + (i - walk.anchor_begin) * walk.grad_ld;
        }
        each_anchor_pair(anchors, dz, [&](int slot, int c, float2 z, float *g) {
            if (!store[slot]) return;
            const float unit0 = z.x * r[slot], unit1 = z.y * r[slot], radial = sums[kRadial][slot];
            if (c < job.dim)
                out[slot][c] = from_float<T>((projected[slot] ? fmaf(-unit0, radial, g[0]) : g[0]) * r[slot]);
            if (c + 1 < job.dim)
                out[slot][c + 1] = from_float<T>((projected[slot] ? fmaf(-unit1, radial, g[1]) : g[1]) * r[slot]);
        });
    }
};

// ---- the kernels -------------------------------------------------------------------------------

// One block's walk: the anchor rows walk.anchor_begin + blockIdx.x·kAnchorRows + [0, kAnchorRows)
// against the walk's columns, then the epilogue's finish for the rows below walk.anchor_end.
template <typename T, class Shape, class Epilogue>
__device__ __forceinline__ void two_tower_tile_pass(const closs_two_tower_launch &job, const TwoTowerWalk &walk) {
    const int64_t i0 = walk.anchor_begin + (int64_t)blockIdx.x * Shape::kAnchorRows;
    const TtOperands<T> operands = tt_operands<T>(job, walk);
    Epilogue epilogue(job, walk, i0 + row_group<Shape>() * Shape::kWarpRows);
    AnchorFragments<T, Shape> anchors;
    walk_tiles<T, Shape>(operands.anchors, operands.columns, i0, anchors, epilogue);
    epilogue.finish(anchors);
}

template <typename T, bool kSiglip, int kDim>
__global__ void __launch_bounds__(TtForwardShape<kDim>::kThreads, 1)
    tile_forward_walk_kernel(const closs_two_tower_launch job, const TwoTowerWalk walk) {
    using Shape = TtForwardShape<kDim>;
    using Epilogue = TwoTowerForwardEpilogue<T, kSiglip, Shape>;
    if constexpr (kTileEngineArch) two_tower_tile_pass<T, Shape, Epilogue>(job, walk);
    else __trap();
}

template <typename T, bool kSiglip, int kDim>
__global__ void __launch_bounds__(TtBackwardShape<kDim>::kThreads, 1)
    tile_backward_walk_kernel(const closs_two_tower_launch job, const TwoTowerWalk walk) {
    using Shape = TtBackwardShape<kDim>;
    using Epilogue = TwoTowerBackwardEpilogue<T, kSiglip, Shape>;
    if constexpr (kTileEngineArch) two_tower_tile_pass<T, Shape, Epilogue>(job, walk);
    else __trap();
}

} // namespace
} // namespace closs
