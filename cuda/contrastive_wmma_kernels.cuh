// The FUSED path on tensor cores, for f16 and bf16 inputs with D ≤ 256: the similarity tiles
// S = Z_i·Z_jᵀ and the gradient products dZ_i += G·Z_j by WMMA (nvcuda::wmma, 16-bit operands,
// float accumulation; f16 from sm_70, bf16 from sm_80). The tile engine
// (contrastive_tile_kernels.cuh) replaced them where the code is for sm_80 or later;
// contrastive_fused.cu launches them where it is older (f16 in the simulated tier's compute_70
// build) or CLOSS_TILE_KERNELS=wmma asks (benchmarks), in place of the SIMT
// forward_kernel/backward_kernel (tile_dispatch.h); everything else (norms, classes, losses,
// weights) is shared with the SIMT path. A header of its own so that
// tests/test_contrastive_kernels.cpp runs these very kernels on the CPU, with a whole-tile
// emulation of WMMA.
//
// Math (fused_math.h for the names). Raw rows z are multiplied, never ẑ = r·z: with
// r_i = 1/max(‖z_i‖, eps) (1 without normalisation) and s_ij = z_i·z_j,
//   x_ij·log2 e = s_ij·(r_i·log2e/τ)·r_j        the rank-1 scale, in the epilogue
//   fixed shift:   Σ_j 2^(x_ij·log2e − c·log2e) = Σ_j e^(x_ij − c),  lse_i = c + log Σ
//   online max:    (max, Σ 2^(t − max)) per lane in base 2, merged across lanes in base e
//   dẑ_i = Σ_j G_ij ẑ_j = β·Σ_j G'_ij z_j,  G'_ij = G_ij·r_j/β,  β = max_k |w_k|
// with G_ij = (1/τ)(w_i·p_ij + w_j·p_ji − [j∈P(i)]·(a_i + a_j)), p the softmax probabilities
// (≤ 1), computed as (1/τ)·(E_ij·(b_i + b_j) − …) with the fixed shift (b_k = w_k·e^(c − lse_k))
// or from both lse with the online maximum; the positives are folded in (fused_math.h), a column
// whose key equals the anchor's, so that a confident positive's two terms cancel in float.
// Dividing by β keeps |G'| ≤ 2·r_j/τ whatever the reduction's scale of the weights (a MEAN over
// 65,536 anchors makes w ≈ 1.5e-5, whose G would be below f16's normal range); β is one number
// per call, so it is applied to the finished rows, not to fragments of
// unknown layout. G' goes to the second product as two 16-bit tiles, high = G' rounded and
// low = G' − high rounded, one MMA each: a single 16-bit G' errs by 2^-9 (bf16) of each term,
// and where a row's terms nearly cancel that error is the whole answer; high + low keep G' to
// about 2^-17. f16 saturates at ±65504 (reached only by
// rows with ‖z_j‖ < 2/(65504·τ), in practice zero rows, whose z_j = 0 adds nothing anyway).
//
// Tile schedule (both kernels): a block of 4 warps owns 64 anchor rows [i0, i0 + 64) of the range
// [row_begin, row_end) (the rows whose lse or gradient the call writes; every kernel still walks
// all M columns) and stages them once into shared memory as 16-bit, D padded with zeros to
// kDim (a multiple of 16, 64/128/256). It then walks the M columns in tiles of 64 rows of z,
// staged the same way (16-byte loads when z and ld allow). Warp w computes its 16 × 64 slice of
// S with 4 accumulators and kDim/16 steps of k, stores it to its own float tile in shared memory,
// and then works element-wise on known (row, column) positions: lane l takes rows l/4 and
// l/4 + 8 of the slice and columns l%4 + 4k (k < 16), so a row's four lanes are one quad and the
// 32 lanes hit 32 banks. Masks (j = i, j ≥ M) are applied only on tiles that overlap the block's
// anchor rows or pass M; every other tile runs the unmasked loop.
//   forward:  e^(x − c) summed, or the online max, per lane, and the positives' x; the quad
//             merged by shuffles; one lse and one positive sum (row_loss) write per anchor.
//   backward: G' per element into the warp's two 16 × 64 tiles of 16-bit values, then
//             dZ_w += (G'high_w + G'low_w)·Z_cols by WMMA (4 steps of k, each B fragment used by
//             both; kDim/16 accumulators that stay in
//             registers for the whole column walk). At the end the accumulators go through
//             shared memory (which then no longer holds z), and each warp finishes its 16 rows:
//             β·dZ, the normalisation's backward, one store per element. No
//             atomics; every sum has one order.
// Shared memory (dynamic, bytes at kDim = 128): anchors 17.4 K + columns 17.4 K, S 17.4 K,
// column vectors 1.3 K: 53.5 K for the forward; the backward adds G' high and low, 18.4 K, and its
// finished dZ rows reuse the first 34.8 K.
#pragma once

#include <stdint.h>

#include <type_traits>

#ifdef __CUDACC__
#    include <mma.h>
#endif

#include "contrastive_tensor_common.cuh"
#include "dynamic_shared.cuh"

namespace closs {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int kWmmaSide = 16;                // WMMA tile: 16 × 16 × 16
constexpr int kWmmaWarps = 4;
constexpr int kWmmaThreads = kWmmaWarps * kWarpSize;
constexpr int kAnchorRows = kWmmaWarps * kWmmaSide; // 64 anchors per block, 16 per warp
constexpr int kColumnRows = 64;                      // rows of z per column tile
constexpr int kColumnSteps = kColumnRows / kWmmaSide;
constexpr int kTileLd = kColumnRows + 4;   // floats: 16-byte multiple, rows 4 banks apart
constexpr int kCoeffLd = kColumnRows + 8;  // 16-bit: 16-byte multiple, rows 16 bytes apart
constexpr int kLaneColumns = kColumnRows / 4; // columns of a tile row per lane
constexpr int kColumnVectors = 5;             // r_j, factor, lse, a_j (backward) and key_j, a tile's

// Whether this compilation pass has WMMA for T: f16 from sm_70, bf16 from sm_80 (the host pass
// and the CPU harness say yes). Older targets compile the bf16 kernels as a trap, and
// contrastive_fused.cu sends bf16 to the SIMT kernels on such a device.
template <typename T> constexpr bool kWmmaArch =
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    !std::is_same<T, __nv_bfloat16>::value;
#else
    true;
#endif

// The padded width the kernels take for D (a multiple of 16).
inline int wmma_dim_variant(int64_t dim) { return dim <= 64 ? 64 : dim <= 128 ? 128 : 256; }

// Byte offsets of the dynamic shared memory. Every WMMA pointer stays 32-byte aligned: each
// region and each warp's slice is a multiple of 32 bytes, and ld is a multiple of 16 bytes.
template <int kDim> struct WmmaShared {
    static constexpr int z_ld = kDim + 8;  // 16-bit elements; rows 16 bytes apart mod 128
    static constexpr int dz_ld = kDim + 4; // floats
    static constexpr size_t anchors = 0;
    static constexpr size_t columns = anchors + (size_t)kAnchorRows * z_ld * 2;
    static constexpr size_t operands_end = columns + (size_t)kColumnRows * z_ld * 2;
    static constexpr size_t dz_bytes = (size_t)kAnchorRows * dz_ld * 4; // backward, at the end
    static constexpr size_t tile = operands_end > dz_bytes ? operands_end : dz_bytes;
    static constexpr size_t vectors = tile + (size_t)kAnchorRows * kTileLd * 4;
    static constexpr size_t coefficients = vectors + kColumnVectors * kColumnRows * sizeof(float);
    static constexpr size_t forward_bytes = coefficients; // the forward has no G'
    static constexpr size_t backward_bytes = coefficients + 2 * (size_t)kAnchorRows * kCoeffLd * 2; // G' high, low
    static_assert(columns % 32 == 0 && tile % 32 == 0 && coefficients % 32 == 0, "aligned");
};

// Rows [r0, r0 + rows) of z into `out` (rows × kDim, ld z_ld), zero past M and past D.
template <typename T, int kDim>
__device__ __forceinline__ void stage_rows(const closs_contrastive_launch &job, int64_t r0, int rows, T *out) {
    constexpr int kChunk = 8, kChunks = kDim / kChunk; // 16 bytes of a row
    const T *z = static_cast<const T *>(job.z);
    const bool vector = reinterpret_cast<uintptr_t>(z) % 16 == 0 && job.ld % kChunk == 0;
    for (int e = threadIdx.x; e < rows * kChunks; e += kWmmaThreads) {
        const int r = e / kChunks, c = e % kChunks * kChunk;
        const int64_t row = r0 + r;
        T *target = out + r * WmmaShared<kDim>::z_ld + c;
        if (vector && row < job.rows && c + kChunk <= job.dim) {
            *reinterpret_cast<uint4 *>(target) = *reinterpret_cast<const uint4 *>(z + row * job.ld + c);
            continue;
        }
        for (int v = 0; v < kChunk; ++v)
            target[v] = row < job.rows && c + v < job.dim ? z[row * job.ld + c + v] : from_float<T>(0.0f);
    }
}

// The warp's 16 × 64 slice of S = Z_anchors·Z_columnsᵀ into its float tile (ld kTileLd), in
// groups of kGroup column steps (fewer live accumulators: the backward at kDim = 256 already holds
// 16 of dZ). The lanes may read the tile once this returns.
template <typename T, int kDim, int kGroup = kColumnSteps>
__device__ __forceinline__ void similarity_slice(const T *anchors, const T *columns, float *tile) {
    constexpr int ld = WmmaShared<kDim>::z_ld;
#pragma unroll
    for (int n0 = 0; n0 < kColumnSteps; n0 += kGroup) {
        wmma::fragment<wmma::accumulator, kWmmaSide, kWmmaSide, kWmmaSide, float> s[kGroup];
#pragma unroll
        for (int n = 0; n < kGroup; ++n) wmma::fill_fragment(s[n], 0.0f);
#pragma unroll(kDim <= 128 ? kDim / kWmmaSide : 2)
        for (int k = 0; k < kDim; k += kWmmaSide) {
            wmma::fragment<wmma::matrix_a, kWmmaSide, kWmmaSide, kWmmaSide, T, wmma::row_major> a;
            wmma::load_matrix_sync(a, anchors + k, ld);
#pragma unroll
            for (int n = 0; n < kGroup; ++n) {
                // B(k, n) = z_{column n}[k]: the staged rows read column-major.
                wmma::fragment<wmma::matrix_b, kWmmaSide, kWmmaSide, kWmmaSide, T, wmma::col_major> b;
                wmma::load_matrix_sync(b, columns + (n0 + n) * kWmmaSide * ld + k, ld);
                wmma::mma_sync(s[n], a, b, s[n]);
            }
        }
#pragma unroll
        for (int n = 0; n < kGroup; ++n)
            wmma::store_matrix_sync(tile + (n0 + n) * kWmmaSide, s[n], kTileLd, wmma::mem_row_major);
    }
    __syncwarp();
}

// Whether a column tile needs masks: it holds an anchor of this block (j = i) or passes M.
__device__ __forceinline__ bool tile_masked(const closs_contrastive_launch &job, int64_t i0, int64_t j0) {
    return j0 + kColumnRows > job.rows || (j0 < i0 + kAnchorRows && i0 < j0 + kColumnRows);
}

// The column tile's vectors in shared memory: r_j, the factor and lse of G (backward), a_j·σ (the
// positives' fold, backward) and the key that tells positives (fused_math.h); 0 and −3 past M.
struct ColumnVectors {
    float *r, *f, *l, *a;
    int *key;
};
__device__ __forceinline__ ColumnVectors column_vectors(unsigned char *at) {
    float *r = reinterpret_cast<float *>(at);
    return {r, r + kColumnRows, r + 2 * kColumnRows, r + 3 * kColumnRows, reinterpret_cast<int *>(r + 4 * kColumnRows)};
}

// This lane's anchors: rows lane/4 and lane/4 + 8 of its warp's 16.
__device__ __forceinline__ int lane_row(int pass) { return threadIdx.x % kWarpSize / 4 + 8 * pass; }
__device__ __forceinline__ int lane_column(int k) { return threadIdx.x % 4 + 4 * k; }

// ---- forward -----------------------------------------------------------------------------------

// Whether column c of the tile at j0 pairs with anchor i (j < M, j ≠ i: masked tiles only), and
// whether it is also one of its positives.
template <bool kMasked>
__device__ __forceinline__ bool pairs(const LaneAnchor &anchor, int64_t j0, int c, int64_t rows) {
    return !kMasked || (j0 + c < rows && j0 + c != anchor.i);
}

// One tile row of the lane: the fixed-shift sum of e^(x − c), in base 2, and its positives' x.
template <bool kMasked>
__device__ __forceinline__ void fixed_terms(const float *s_row, const ColumnVectors &columns, const LaneAnchor &anchor,
                                            float shift2, int64_t j0, int64_t rows, float &sum, float &positive_sum) {
#pragma unroll
    for (int k = 0; k < kLaneColumns; ++k) {
        const int c = lane_column(k);
        const float term = exp2_fast(fmaf(s_row[c] * anchor.scale2, columns.r[c], -shift2));
        if (!pairs<kMasked>(anchor, j0, c, rows)) continue;
        sum += term;
        if (columns.key[c] == anchor.key) positive_sum += s_row[c] * anchor.scale * columns.r[c];
    }
}

// One tile row of the lane into its online (max, Σ 2^(t − max)), base 2: the tile's maximum
// first, so the running sum is rescaled at most once per tile; and its positives' x.
template <bool kMasked>
__device__ __forceinline__ closs_lse_partial online_terms(const float *s_row, const ColumnVectors &columns,
                                                          const LaneAnchor &anchor, int64_t j0, int64_t rows,
                                                          closs_lse_partial p, float &positive_sum) {
    float t[kLaneColumns], tile_max = -INFINITY;
#pragma unroll
    for (int k = 0; k < kLaneColumns; ++k) {
        const int c = lane_column(k);
        t[k] = s_row[c] * anchor.scale2 * columns.r[c];
        if (!pairs<kMasked>(anchor, j0, c, rows)) t[k] = -INFINITY;
        else if (columns.key[c] == anchor.key) positive_sum += s_row[c] * anchor.scale * columns.r[c];
        tile_max = fmaxf(tile_max, t[k]);
    }
    if (tile_max == -INFINITY) return p;
    if (tile_max > p.max) {
        p.sum *= exp2_fast(p.max - tile_max);
        p.max = tile_max;
    }
#pragma unroll
    for (int k = 0; k < kLaneColumns; ++k) p.sum += exp2_fast(t[k] - p.max);
    return p;
}

// lse_i and the positives' Σ x_ik (into row_loss, for anchor_loss_kernel) for the anchors
// [row_begin, row_end), against all M rows.
template <typename T, bool kFixed, int kDim>
__device__ __forceinline__ void wmma_forward(const closs_contrastive_launch &job, int64_t row_begin, int64_t row_end) {
    using Shared = WmmaShared<kDim>;
    unsigned char *shared = dynamic_shared();
    T *anchors = reinterpret_cast<T *>(shared + Shared::anchors);
    T *columns = reinterpret_cast<T *>(shared + Shared::columns);
    const int warp = threadIdx.x / kWarpSize;
    float *tile = reinterpret_cast<float *>(shared + Shared::tile) + warp * kWmmaSide * kTileLd;
    const ColumnVectors vectors = column_vectors(shared + Shared::vectors);
    const int64_t i0 = row_begin + (int64_t)blockIdx.x * kAnchorRows;
    const float shift2 = job.inv_temperature * kLog2e; // c·log2 e with c = 1/τ

    stage_rows<T, kDim>(job, i0, kAnchorRows, anchors);
    float sum[2] = {0.0f, 0.0f}, positive_sum[2] = {0.0f, 0.0f};
    closs_lse_partial partial[2] = {closs_cm_lse_empty(), closs_cm_lse_empty()};
    LaneAnchor anchor[2];
#pragma unroll
    for (int p = 0; p < 2; ++p) anchor[p] = lane_anchor(job, i0 + warp * kWmmaSide + lane_row(p));
    for (int64_t j0 = 0; j0 < job.rows; j0 += kColumnRows) {
        __syncthreads(); // every warp is done with the previous tile
        stage_rows<T, kDim>(job, j0, kColumnRows, columns);
        if (threadIdx.x < kColumnRows) {
            const int64_t j = j0 + threadIdx.x;
            vectors.r[threadIdx.x] = j < job.rows ? job.inv_norm[j] : 0.0f;
            vectors.key[threadIdx.x] = column_key(job, j);
        }
        __syncthreads();
        similarity_slice<T, kDim>(anchors + warp * kWmmaSide * Shared::z_ld, columns, tile);
        const bool masked = tile_masked(job, i0, j0);
#pragma unroll
        for (int p = 0; p < 2; ++p) {
            const float *s_row = tile + lane_row(p) * kTileLd;
            if constexpr (kFixed) {
                if (masked) fixed_terms<true>(s_row, vectors, anchor[p], shift2, j0, job.rows, sum[p], positive_sum[p]);
                else fixed_terms<false>(s_row, vectors, anchor[p], shift2, j0, job.rows, sum[p], positive_sum[p]);
            } else {
                partial[p] = masked ? online_terms<true>(s_row, vectors, anchor[p], j0, job.rows, partial[p],
                                                         positive_sum[p])
                                    : online_terms<false>(s_row, vectors, anchor[p], j0, job.rows, partial[p],
                                                          positive_sum[p]);
            }
        }
    }
    const bool nonfinite = *job.nonfinite != 0;
#pragma unroll
    for (int p = 0; p < 2; ++p) {
        float lse;
        if constexpr (kFixed) {
            lse = closs_fm_lse_fixed(quad_sum(sum[p]), job.inv_temperature);
        } else {
            closs_lse_partial natural = {partial[p].max * kLn2, partial[p].sum}; // 2^m = e^(m·ln 2)
            lse = closs_cm_lse_value(quad_merge(natural));
        }
        const float positives = quad_sum(positive_sum[p]);
        const int64_t i = anchor[p].i;
        if (threadIdx.x % 4 == 0 && i < row_end && i < job.rows) {
            job.lse[i - job.lse_begin] = nonfinite ? __int_as_float(0x7fc00000) : lse;
            job.row_loss[i] = positives; // anchor_loss_kernel turns it into ℓ_i
        }
    }
}

// ---- backward ----------------------------------------------------------------------------------

// One tile row of the lane's G' (see the top) into the warp's two 16-bit tiles, G' = high + low;
// a positive's fold −(a_i + a_j)·σ·r_j is added in float before the split.
template <typename T, bool kFixed, bool kMasked>
__device__ __forceinline__ void coefficient_row(const float *s_row, const ColumnVectors &columns,
                                                const LaneAnchor &anchor, const AnchorTerms &terms, float shift2,
                                                int64_t j0, int64_t rows, T *g_high, T *g_low) {
#pragma unroll
    for (int k = 0; k < kLaneColumns; ++k) {
        const int c = lane_column(k);
        float g;
        if constexpr (kFixed) {
            const float e = exp2_fast(fmaf(s_row[c] * anchor.scale2, columns.r[c], -shift2));
            g = e * fmaf(terms.f, columns.r[c], columns.f[c]); // (b_i·r_j + b_j·r_j)·σ/τ
        } else {
            const float t = s_row[c] * anchor.scale2 * columns.r[c];
            g = fmaf(terms.f, exp2_fast(t - terms.l), columns.f[c] * exp2_fast(t - columns.l[c])) * columns.r[c];
        }
        if (columns.key[c] == anchor.key) g = fmaf(-(terms.a + columns.a[c]), columns.r[c], g);
        if (!pairs<kMasked>(anchor, j0, c, rows)) g = 0.0f;
        const T high = to_operand<T>(g);
        g_high[c] = high;
        g_low[c] = to_operand<T>(g - to_float(high));
    }
}

// dz for the anchors [row_begin, row_end), against all M rows. Needs softmax_factors_kernel and β
// (anchor_weights_kernel) first.
template <typename T, bool kFixed, int kDim>
__device__ __forceinline__ void wmma_backward(const closs_contrastive_launch &job, int64_t row_begin, int64_t row_end) {
    using Shared = WmmaShared<kDim>;
    constexpr int kDimSteps = kDim / kWmmaSide;
    unsigned char *shared = dynamic_shared();
    T *anchors = reinterpret_cast<T *>(shared + Shared::anchors);
    T *columns = reinterpret_cast<T *>(shared + Shared::columns);
    const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
    float *tile = reinterpret_cast<float *>(shared + Shared::tile) + warp * kWmmaSide * kTileLd;
    T *g_high = reinterpret_cast<T *>(shared + Shared::coefficients) + warp * kWmmaSide * kCoeffLd;
    T *g_low = g_high + kAnchorRows * kCoeffLd;
    const ColumnVectors vectors = column_vectors(shared + Shared::vectors);
    const int64_t i0 = row_begin + (int64_t)blockIdx.x * kAnchorRows;
    const float inv_t = job.inv_temperature, shift2 = inv_t * kLog2e;
    const float beta = __uint_as_float(*job.factor_max), sigma = coefficient_scale(job, beta);

    stage_rows<T, kDim>(job, i0, kAnchorRows, anchors);
    LaneAnchor anchor[2];
    AnchorTerms terms[2];
#pragma unroll
    for (int p = 0; p < 2; ++p) {
        anchor[p] = lane_anchor(job, i0 + warp * kWmmaSide + lane_row(p));
        terms[p] = anchor_terms(job, anchor[p], sigma);
    }
    wmma::fragment<wmma::accumulator, kWmmaSide, kWmmaSide, kWmmaSide, float> dz[kDimSteps];
#pragma unroll
    for (int d = 0; d < kDimSteps; ++d) wmma::fill_fragment(dz[d], 0.0f);

    for (int64_t j0 = 0; j0 < job.rows; j0 += kColumnRows) {
        __syncthreads(); // every warp is done with the previous tile
        stage_rows<T, kDim>(job, j0, kColumnRows, columns);
        if (threadIdx.x < kColumnRows) {
            const ColumnTerms column = column_terms<kFixed>(job, j0 + threadIdx.x, sigma);
            vectors.r[threadIdx.x] = column.r;
            vectors.f[threadIdx.x] = column.f;
            vectors.l[threadIdx.x] = column.l;
            vectors.a[threadIdx.x] = column.a;
            vectors.key[threadIdx.x] = column.key;
        }
        __syncthreads();
        similarity_slice<T, kDim, kDim <= 128 ? kColumnSteps : 2>(anchors + warp * kWmmaSide * Shared::z_ld, columns,
                                                                  tile);
        const bool masked = tile_masked(job, i0, j0);
#pragma unroll
        for (int p = 0; p < 2; ++p) {
            const float *s_row = tile + lane_row(p) * kTileLd;
            const int row = lane_row(p) * kCoeffLd;
            if (masked)
                coefficient_row<T, kFixed, true>(s_row, vectors, anchor[p], terms[p], shift2, j0, job.rows,
                                                 g_high + row, g_low + row);
            else
                coefficient_row<T, kFixed, false>(s_row, vectors, anchor[p], terms[p], shift2, j0, job.rows,
                                                  g_high + row, g_low + row);
        }
        __syncwarp(); // the whole G' slice is written before any lane loads it
#pragma unroll
        for (int k = 0; k < kColumnSteps; ++k) {
            wmma::fragment<wmma::matrix_a, kWmmaSide, kWmmaSide, kWmmaSide, T, wmma::row_major> high, low;
            wmma::load_matrix_sync(high, g_high + k * kWmmaSide, kCoeffLd);
            wmma::load_matrix_sync(low, g_low + k * kWmmaSide, kCoeffLd);
#pragma unroll
            for (int d = 0; d < kDimSteps; ++d) {
                // B(j, d) = z_j[d]: the staged rows read row-major.
                wmma::fragment<wmma::matrix_b, kWmmaSide, kWmmaSide, kWmmaSide, T, wmma::row_major> b;
                wmma::load_matrix_sync(b, columns + k * kWmmaSide * Shared::z_ld + d * kWmmaSide, Shared::z_ld);
                wmma::mma_sync(dz[d], high, b, dz[d]);
                wmma::mma_sync(dz[d], low, b, dz[d]);
            }
        }
    }

    // The finished rows through shared memory (the staged z is dead: every warp passed the last
    // product), then the normalisation's backward and the store.
    __syncthreads();
    float *dz_rows = reinterpret_cast<float *>(shared) + warp * kWmmaSide * Shared::dz_ld;
#pragma unroll
    for (int d = 0; d < kDimSteps; ++d)
        wmma::store_matrix_sync(dz_rows + d * kWmmaSide, dz[d], Shared::dz_ld, wmma::mem_row_major);
    __syncwarp();
    for (int r = 0; r < kWmmaSide; ++r) {
        const int64_t i = i0 + warp * kWmmaSide + r;
        if (i >= row_end || i >= job.rows) break; // warp-uniform
        float *row = dz_rows + r * Shared::dz_ld;
        const float softmax_scale = beta > 0.0f ? beta : 1.0f;
        float radial = 0.0f;
        for (int64_t c = lane; c < job.dim; c += kWarpSize) {
            const float g = row[c] * softmax_scale;
            row[c] = g;
            radial = fmaf(unit_element<T>(job, i, c), g, radial);
        }
        radial = warp_sum(radial);
        // closs_fm_unnormalize() with its division by max(‖z‖, eps) as the product with r_i (1 ulp
        // apart): a division is a call, whose saved registers cost the kernel a stack frame.
        const bool projected = job.normalize && job.norms[i] > kNormalizeEps;
        const float scale = unscaled_inv_norm(job, i); // r_i (inv_norm may be r′_i: backward_job())
        T *out = static_cast<T *>(job.grad) + (i - job.row_begin) * job.grad_ld;
        for (int64_t c = lane; c < job.dim; c += kWarpSize) {
            const float g = projected ? fmaf(-unit_element<T>(job, i, c), radial, row[c]) : row[c];
            out[c] = from_float<T>(g * scale);
        }
    }
}

template <typename T, bool kFixed, int kDim>
__global__ void __launch_bounds__(kWmmaThreads)
    wmma_forward_kernel(const closs_contrastive_launch job, int64_t row_begin, int64_t row_end) {
    if constexpr (kWmmaArch<T>) wmma_forward<T, kFixed, kDim>(job, row_begin, row_end);
    else __trap();
}

template <typename T, bool kFixed, int kDim>
__global__ void __launch_bounds__(kWmmaThreads)
    wmma_backward_kernel(const closs_contrastive_launch job, int64_t row_begin, int64_t row_end) {
    if constexpr (kWmmaArch<T>) wmma_backward<T, kFixed, kDim>(job, row_begin, row_end);
    else __trap();
}

} // namespace
} // namespace closs
