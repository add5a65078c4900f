// The register-resident tensor-core tile engine: one CTA walks every column tile of S = A·Bᵀ for a
// block of anchor rows, and a loss's epilogue works on the accumulators in registers. NT-Xent's
// and SupCon's forward and backward (contrastive_tile_kernels.cuh) are epilogues of it; so can be
// the two-tower losses (rows of `a` against rows of `b`, per-column statistics): the walk takes
// two operands and hands the epilogue each tile's column vectors and its staged rows.
//
// Operands: A (anchors) and B (columns) are row-major 16-bit matrices (f16 or bf16), rows × dim
// with leading dimension ld; S_ij = a_i·b_j in float, products of the 16-bit values as they are
// (exact in float), accumulated by the tensor cores (mma.sync.m16n8k16, f32 accumulation).
//
// Schedule (all sizes compile-time; Shape below):
//   a CTA of kWarps warps owns kAnchorRows = kWarps/kDimSplit·16·kMTiles anchor rows
//   [i0, i0 + kAnchorRows) (kDimSplit warps, a row group, own the same rows: each multiplies its
//   part of the S tile's columns, and the second product's columns of D are split between them,
//   so that a backward's dZ fits at D = 512) and walks the B rows in tiles of kColumnRows (64, or
//   32), j0 = 0, kColumnRows, … < rows of B.
//   Anchors: staged once into shared memory by cp.async (16-byte chunks, D zero-padded to kDim, a
//     multiple of 16, rows past A's end zero), then, when kAnchorsInRegisters, loaded by ldmatrix
//     into each warp's A fragments, which stay in registers for the whole walk (D/16 · 4 registers
//     per m-tile); otherwise they stay staged and each k step loads its fragment again.
//   Column tiles: double-buffered. Iteration t issues the cp.async copies of tile t + 1 into the
//     other buffer (each thread's chunk addresses computed once, advanced by a tile's rows) and
//     the epilogue's global loads of tile t + 1's column vectors into registers, multiplies tile
//     t, runs the epilogue on it, stores the prefetched vectors into the other vector buffer, then
//     waits for its copies (cp.async.wait_group 0) and meets the block at one __syncthreads: every
//     thread's tile t + 1 is then visible, and nobody reads tile t any more, so iteration t + 2 may
//     overwrite it.
//   S tile: warp w's 16·kMTiles × kColumnRows/kDimSplit slice (its row group's rows, its part's
//     columns), kMTiles × kWarpNTiles accumulator fragments of 16 × 8 (4 floats per lane); per k
//     step of 16 each pair of 8-column n-tiles takes one ldmatrix.x4 of the staged B rows
//     (non-transposed: a staged row of B is a column of the .col operand) and 2·kMTiles MMAs.
//     Lane l holds, of each 16 × 8 fragment, rows l/4 and l/4 + 8 and columns 2(l%4) and
//     2(l%4) + 1 (PTX ISA, "Matrix Fragments for mma.m16n8k16"): a row's four lanes are one quad.
//   Epilogue: called once per tile with the accumulators, the tile's column vectors and its staged
//     rows; it may run a second product on the staged B rows (the backward's dZ += G·B_tile:
//     the C fragments of two adjacent n-tiles are exactly the A fragment of one k step, so G goes
//     from the accumulators to the tensor cores through registers, and B is read with
//     ldmatrix.x4.trans; with kDimSplit > 1 the row group's warps pass their A fragments through
//     shared memory, one more __syncthreads a tile, and each multiplies its part of D).
// Shared memory: two column tiles of kColumnRows × (kDim + 8) 16-bit values (rows 16 bytes apart
// mod 128 bytes: the 8 row addresses of an ldmatrix hit 8 different bank groups), two buffers of
// the epilogue's column vectors (kVectors × kColumnRows words), and the anchors: over the column
// buffers while they are loaded into registers, else a region of their own, and with kDimSplit > 1
// the second product's A fragments and kExchangeValues floats per lane and row slot for the
// epilogue's sums over a row group's parts. Every shared-memory
// access goes through tile_ptx.cuh's wrappers (the CPU harness checks them for races).
// Requires sm_80 (cp.async, mma.sync.m16n8k16 with bf16); the kernels of older targets trap and
// the launcher does not choose them (cuda/tile_dispatch.h).
#pragma once

#include <stdint.h>

#include "common.cuh"
#include "dynamic_shared.cuh"
#include "tile_ptx.cuh"

namespace closs {
namespace {

// Whether this compilation pass has the engine's instructions (the host pass and the CPU harness
// say yes).
constexpr bool kTileEngineArch =
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    false;
#else
    true;
#endif

// A row-major 16-bit operand: rows × dim, leading dimension ld (elements). aligned: data and ld
// allow 16-byte copies of every row (data 16-byte aligned, ld a multiple of 8); otherwise the
// rows are staged element by element.
template <typename T> struct TileOperand {
    const T *data;
    int64_t rows, ld;
    int dim;
    bool aligned;
};

template <typename T>
__device__ __forceinline__ TileOperand<T> tile_operand(const void *data, int64_t rows, int64_t ld, int64_t dim) {
    const bool aligned = reinterpret_cast<uintptr_t>(data) % 16 == 0 && ld % 8 == 0;
    return {static_cast<const T *>(data), rows, ld, (int)dim, aligned};
}

template <int kDim_, int kWarps_, int kMTiles_, int kColumnRows_, bool kAnchorsInRegisters_, int kVectors_,
          int kDimSplit_ = 1>
struct TileShape {
    static constexpr int kDim = kDim_; // D padded to a multiple of 16
    static constexpr int kWarps = kWarps_, kThreads = kWarps * kWarpSize;
    static constexpr int kMTiles = kMTiles_; // 16-row m-tiles per warp
    static constexpr bool kAnchorsInRegisters = kAnchorsInRegisters_;
    static constexpr int kVectors = kVectors_; // 32-bit column vectors the epilogue stages
    // Warps sharing the same anchor rows (warps kDimSplit·g + p, p < kDimSplit): part p multiplies
    // the n-tiles [p·kWarpNTiles, (p + 1)·kWarpNTiles) of the S tile and owns the columns
    // [p·kDimPart, (p + 1)·kDimPart) of the second product.
    static constexpr int kDimSplit = kDimSplit_, kDimPart = kDim / kDimSplit;
    static_assert(kWarps % kDimSplit == 0 && kDimPart % 16 == 0, "whole warps and k steps a part");
    static_assert(kDimSplit == 1 || !kAnchorsInRegisters, "a part's fragments are indexed at run time");
    static constexpr int kWarpRows = 16 * kMTiles, kAnchorRows = kWarps / kDimSplit * kWarpRows;
    static constexpr int kColumnRows = kColumnRows_; // rows of B per column tile, a multiple of 16
    static constexpr int kNTiles = kColumnRows / 8, kKSteps = kDim / 16;
    static constexpr int kWarpNTiles = kNTiles / kDimSplit; // a warp's n-tiles of S
    static_assert(kWarpNTiles % 2 == 0, "whole ldmatrix.x4 pairs of n-tiles a warp");
    static constexpr int kLd = kDim + 8;     // staged row, 16-bit elements
    static constexpr int kChunks = kDim / 8; // 16-byte chunks of a staged row
    static_assert(kDim % 16 == 0 && kThreads % kChunks == 0, "whole chunks per thread");
    static constexpr size_t kTileBytes = (size_t)kColumnRows * kLd * 2;
    static constexpr size_t kAnchorBytes = (size_t)kAnchorRows * kLd * 2;
    // Byte offsets of the dynamic shared memory.
    static constexpr size_t kColumns = 0; // two tiles
    static constexpr size_t kColumnsEnd = 2 * kTileBytes;
    static constexpr size_t kAnchors = kAnchorsInRegisters ? 0 : kColumnsEnd;
    static constexpr size_t kAnchorsEnd = kAnchors + kAnchorBytes;
    static constexpr size_t kVectorsAt = kAnchorsEnd > kColumnsEnd ? kAnchorsEnd : kColumnsEnd;
    static constexpr size_t kVectorBytes = (size_t)kVectors * kColumnRows * 4; // one buffer
    // With kDimSplit > 1: each warp's share of the second product's A fragments (kWarpNTiles/2 of
    // 16 bytes a lane), and kExchangeValues floats per lane and row slot of each warp for the
    // epilogue's sums over the parts of a row group.
    static constexpr int kExchangeValues = 4;
    static constexpr size_t kFragmentsAt = kVectorsAt + 2 * kVectorBytes;
    static constexpr size_t kFragmentBytes = kDimSplit > 1 ? (size_t)kWarps * (kWarpNTiles / 2) * kWarpSize * 16 : 0;
    static constexpr size_t kExchangeAt = kFragmentsAt + kFragmentBytes;
    static constexpr size_t kExchangeBytes =
        kDimSplit > 1 ? (size_t)kWarps * 2 * kMTiles * kExchangeValues * kWarpSize * 4 : 0;
    static constexpr size_t kBytes = kExchangeAt + kExchangeBytes;
    static_assert(kTileBytes % 16 == 0 && kVectorsAt % 16 == 0, "16-byte aligned regions");
};

// The lane's place in its warp's fragments.
__device__ __forceinline__ int tile_lane() { return threadIdx.x % kWarpSize; }
// Row of element e (0..3) of an accumulator fragment, within its 16-row m-tile; its column within
// its 8-column n-tile.
__device__ __forceinline__ int fragment_row(int e) { return tile_lane() / 4 + 8 * (e / 2); }
__device__ __forceinline__ int fragment_column(int e) { return 2 * (tile_lane() % 4) + e % 2; }
// The warp's group of anchor rows and its part of D (TileShape::kDimSplit).
template <class Shape> __device__ __forceinline__ int row_group() {
    return threadIdx.x / kWarpSize / Shape::kDimSplit;
}
template <class Shape> __device__ __forceinline__ int dim_part() {
    if constexpr (Shape::kDimSplit == 1) return 0;
    else return threadIdx.x / kWarpSize % Shape::kDimSplit;
}

// One thread's share of staging `kRows` operand rows into shared memory, 16-byte chunk by chunk:
// chunk c = thread % kChunks of rows thread / kChunks + k·(kThreads / kChunks). The source
// pointer, the row index and the chunk's byte count are computed once and advanced by whole
// tiles; rows past the operand's end and columns past its dim are zero-filled.
template <typename T, class Shape, int kRows> struct RowStager {
    static constexpr int kRowStep = Shape::kThreads / Shape::kChunks, kSteps = kRows / kRowStep;
    static_assert(kRows % kRowStep == 0, "whole row steps");
    TileOperand<T> op;
    const T *source; // row `row`, chunk c
    int64_t row;
    int offset, bytes; // the chunk in the staged row (elements); its bytes within dim

    __device__ __forceinline__ RowStager(const TileOperand<T> &operand, int64_t first_row) : op(operand) {
        const int c = threadIdx.x % Shape::kChunks * 8, r = threadIdx.x / Shape::kChunks;
        offset = r * Shape::kLd + c;
        row = first_row + r;
        source = op.data + row * op.ld + c;
        const int left = op.dim - c;
        bytes = left >= 8 ? 16 : left > 0 ? 2 * left : 0;
    }

    // Issues (or, unaligned, performs) this thread's copies into `staged` (kRows × kLd).
    __device__ __forceinline__ void issue(T *staged) const {
        if (op.aligned) {
#pragma unroll
            for (int s = 0; s < kSteps; ++s) {
                const bool inside = row + s * kRowStep < op.rows && bytes > 0;
                tile::cp_async_16(staged + offset + s * kRowStep * Shape::kLd,
                                  inside ? source + s * kRowStep * op.ld : op.data, inside ? bytes : 0);
            }
            return;
        }
#pragma unroll 1
        for (int s = 0; s < kSteps; ++s) { // rows whose start or ld rule out 16-byte copies
            const T *from = source + s * kRowStep * op.ld;
            const bool inside = row + s * kRowStep < op.rows;
            union {
                uint4 chunk;
                T values[8];
            } out;
#pragma unroll
            for (int v = 0; v < 8; ++v) out.values[v] = inside && 2 * v < bytes ? from[v] : from_float<T>(0.0f);
            tile::shared_store(reinterpret_cast<uint4 *>(staged + offset + s * kRowStep * Shape::kLd), out.chunk);
        }
    }

    __device__ __forceinline__ void advance(int rows) {
        row += rows;
        source += rows * op.ld;
    }
};

// The 16 × 16 A fragment of m-tile mt at k step ks from staged rows (row-major, kLd): ldmatrix.x4,
// lanes 8q..8q+7 addressing rows 8(q&1) + l%8, columns 8(q>>1) of the 16 × 16 block.
template <class Shape>
__device__ __forceinline__ void load_a_fragment(uint32_t (&a)[4], const void *staged_rows, int mt, int ks) {
    const int l = tile_lane(), q = l / 8;
    const uint16_t *base = static_cast<const uint16_t *>(staged_rows);
    tile::ldmatrix_x4(a, base + (16 * mt + 8 * (q & 1) + l % 8) * Shape::kLd + 16 * ks + 8 * (q >> 1));
}

// The B fragments (k step ks) of n-tiles 2p and 2p + 1 from a staged column tile: B(k, n) = b_n[k],
// so a staged row is a column of B; lanes 8q..8q+7 address rows 16p + 8(q>>1) + l%8, columns
// 16ks + 8(q&1). b[0..1]: n-tile 2p, b[2..3]: 2p + 1.
template <class Shape>
__device__ __forceinline__ void load_b_fragments(uint32_t (&b)[4], const void *staged_tile, int p, int ks) {
    const int l = tile_lane(), q = l / 8;
    const uint16_t *base = static_cast<const uint16_t *>(staged_tile);
    tile::ldmatrix_x4(b, base + (16 * p + 8 * (q >> 1) + l % 8) * Shape::kLd + 16 * ks + 8 * (q & 1));
}

// The B fragments of the second product X·B_tile (X: 16 × 64, k = the tile's rows): k step kt
// (rows 16kt..16kt+15) and the 8-column n-tiles 2p, 2p + 1 of D, by ldmatrix.x4.trans: lanes
// 8q..8q+7 address rows 16kt + 8(q&1) + l%8, columns 16p + 8(q>>1).
template <class Shape>
__device__ __forceinline__ void load_bt_fragments(uint32_t (&b)[4], const void *staged_tile, int kt, int p) {
    const int l = tile_lane(), q = l / 8;
    const uint16_t *base = static_cast<const uint16_t *>(staged_tile);
    tile::ldmatrix_x4_trans(b, base + (16 * kt + 8 * (q & 1) + l % 8) * Shape::kLd + 16 * p + 8 * (q >> 1));
}

// The two 16-bit values of a fragment register, as floats (the lower-numbered element first).
template <typename T> __device__ __forceinline__ float2 unpack_pair(uint32_t bits) {
    union {
        uint32_t word;
        T values[2];
    } pair;
    pair.word = bits;
    return make_float2(to_float(pair.values[0]), to_float(pair.values[1]));
}

// A warp's anchor fragments: kept in registers for the walk, or re-loaded from the staged rows.
template <typename T, class Shape> struct AnchorFragments {
    static constexpr int kHeld = Shape::kAnchorsInRegisters ? Shape::kMTiles * Shape::kKSteps : 1;
    uint32_t held[kHeld][4];
    const void *staged; // the warp's staged anchor rows

    __device__ __forceinline__ void load(const void *warp_rows) {
        staged = warp_rows;
        if constexpr (Shape::kAnchorsInRegisters) {
#pragma unroll
            for (int mt = 0; mt < Shape::kMTiles; ++mt)
#pragma unroll
                for (int ks = 0; ks < Shape::kKSteps; ++ks)
                    load_a_fragment<Shape>(held[mt * Shape::kKSteps + ks], staged, mt, ks);
        }
    }

    // Fragment (mt, ks) into `out`: a register copy, or an ldmatrix of the staged rows.
    __device__ __forceinline__ void get(uint32_t (&out)[4], int mt, int ks) const {
        if constexpr (Shape::kAnchorsInRegisters) {
#pragma unroll
            for (int r = 0; r < 4; ++r) out[r] = held[mt * Shape::kKSteps + ks][r];
        } else {
            load_a_fragment<Shape>(out, staged, mt, ks);
        }
    }
};

// The backward's second product D += X·B_tile for a warp of one m-tile: k step kt of it takes the
// A fragment a_of(kt, a) (16 × 16: X's columns 16kt..16kt+15), B is the staged tile read by
// ldmatrix.x4.trans. D holds the warp's part of the columns, kDimPart/8 n-tiles of 16 × 8 (the
// warp's anchor rows against the columns [part·kDimPart, (part + 1)·kDimPart) of B, part =
// dim_part()).
template <typename T, class Shape, class AFragment>
__device__ __forceinline__ void second_product_of(float (&d)[Shape::kDimPart / 8][4], const T *staged_tile,
                                                  AFragment a_of) {
    const int first_p = dim_part<Shape>() * (Shape::kDimPart / 16);
#pragma unroll
    for (int kt = 0; kt < Shape::kColumnRows / 16; ++kt) {
        uint32_t a[4];
        a_of(kt, a);
#pragma unroll
        for (int p = 0; p < Shape::kDimPart / 16; ++p) {
            uint32_t b[4];
            load_bt_fragments<Shape>(b, staged_tile, kt, first_p + p);
            const uint32_t b0[2] = {b[0], b[1]}, b1[2] = {b[2], b[3]};
            tile::mma_m16n8k16<T>(d[2 * p], a, b0);
            tile::mma_m16n8k16<T>(d[2 * p + 1], a, b1);
        }
    }
}

// The A fragment of X's k step kt (X in the accumulator layout of S, kNT n-tiles: the C fragments
// of the two adjacent n-tiles 2kt and 2kt + 1 are exactly one A fragment), each element through
// `operand` (a float → float range map) and rounded to T once.
template <typename T, int kNT, class Operand>
__device__ __forceinline__ void pack_a_fragment(uint32_t (&a)[4], const float (&x)[1][kNT][4], int kt,
                                                Operand operand) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        const float *pair = &x[0][2 * kt + r / 2][2 * (r % 2)]; // rows l/4 (r even), l/4 + 8
        a[r] = tile::pack_pair<T>(operand(pair[0]), operand(pair[1]));
    }
}

// The second product with X the warp's whole S tile in registers (kDimSplit = 1).
template <typename T, class Shape, class Operand>
__device__ __forceinline__ void second_product(float (&d)[Shape::kDimPart / 8][4],
                                               const float (&x)[1][Shape::kNTiles][4], const T *staged_tile,
                                               Operand operand) {
    second_product_of<T, Shape>(d, staged_tile,
                                [&](int kt, uint32_t(&a)[4]) { pack_a_fragment<T>(a, x, kt, operand); });
}

// The second product with X split between the warps of a row group (kDimSplit > 1), each holding
// its kWarpNTiles n-tiles of X: each warp stores its A fragments (rounded to T once) in shared
// memory, the block meets (every thread of the block calls this, once per tile), and each warp
// reads the group's fragments of every k step. The fragments' region is written again only after
// the walk's barrier at the end of the tile.
template <typename T, class Shape, class Operand>
__device__ __forceinline__ void second_product_shared(float (&d)[Shape::kDimPart / 8][4],
                                                      const float (&x)[1][Shape::kWarpNTiles][4],
                                                      const T *staged_tile, Operand operand) {
    constexpr int kOwn = Shape::kWarpNTiles / 2; // a warp's k steps
    uint4 *fragments = reinterpret_cast<uint4 *>(dynamic_shared() + Shape::kFragmentsAt);
    const int warp = threadIdx.x / kWarpSize, first_warp = warp - dim_part<Shape>();
#pragma unroll
    for (int q = 0; q < kOwn; ++q) {
        uint32_t a[4];
        pack_a_fragment<T>(a, x, q, operand);
        tile::shared_store(fragments + (warp * kOwn + q) * kWarpSize + tile_lane(), make_uint4(a[0], a[1], a[2], a[3]));
    }
    __syncthreads();
    second_product_of<T, Shape>(d, staged_tile, [&](int kt, uint32_t(&a)[4]) {
        const uint4 f = tile::shared_load(fragments + (first_warp * kOwn + kt) * kWarpSize + tile_lane());
        a[0] = f.x, a[1] = f.y, a[2] = f.z, a[3] = f.w;
    });
}

// Calls visit(slot, c, z, d) for each pair of the lane's elements of the second product's D (one
// m-tile, the warp's part of the columns): the slot's row (l/4, or l/4 + 8 for slot 1), columns c
// and c + 1 (of all D), the anchor row's raw values there (z.x, z.y) and D's two elements (d[0],
// d[1]). The anchors' A fragments hold them: register r of k step ks has row l/4 + 8(r%2), columns
// 16ks + 8(r/2) + 2(l%4) and + 1, the lane's columns of D's n-tile 2ks + r/2 (re-loaded from
// shared memory when not held in registers); the part's k steps start at part·kDimPart/16.
template <typename T, class Shape, class Visit>
__device__ __forceinline__ void each_anchor_pair(const AnchorFragments<T, Shape> &anchors,
                                                 float (&d)[Shape::kDimPart / 8][4], Visit visit) {
    const int first_ks = dim_part<Shape>() * (Shape::kDimPart / 16);
#pragma unroll
    for (int ks = 0; ks < Shape::kDimPart / 16; ++ks) {
        uint32_t a[4];
        anchors.get(a, 0, first_ks + ks);
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const int slot = r % 2;
            visit(slot, 8 * (2 * (first_ks + ks) + r / 2) + fragment_column(0), unpack_pair<T>(a[r]),
                  &d[2 * ks + r / 2][2 * slot]);
        }
    }
}

// The walk over every column tile of B for the anchor rows [i0, i0 + kAnchorRows) of A. The
// epilogue provides:
//   Fetched fetch(int64_t j)                 column j's vectors (global loads), by threads < 64
//   void stage(float *vectors, int c, Fetched)  into a vector buffer (kVectors × 64 words)
//   void tile(float (&s)[kMTiles][kWarpNTiles][4], int64_t j0, const float *vectors,
//             const T *staged_tile)         the epilogue of one tile (s may be overwritten): the
//                                           warp's columns from dim_part()·8·kWarpNTiles on
// Every thread of the block must call it; on return the staged anchors (when not held in
// registers) are still in shared memory, the column buffers are not.
template <typename T, class Shape, class Epilogue>
__device__ __forceinline__ void walk_tiles(const TileOperand<T> &a, const TileOperand<T> &b, int64_t i0,
                                           AnchorFragments<T, Shape> &anchors, Epilogue &epilogue) {
    unsigned char *shared = dynamic_shared();
    // Buffer b of the columns and of their vectors (arithmetic, not an array of pointers: a
    // run-time index into one would put it in local memory and lose the shared state space).
    auto columns = [shared](int b) { return reinterpret_cast<T *>(shared + Shape::kColumns + b * Shape::kTileBytes); };
    auto vectors = [shared](int b) {
        return reinterpret_cast<float *>(shared + Shape::kVectorsAt + b * Shape::kVectorBytes);
    };
    T *staged_anchors = reinterpret_cast<T *>(shared + Shape::kAnchors);
    RowStager<T, Shape, Shape::kAnchorRows>(a, i0).issue(staged_anchors);
    tile::cp_async_commit();
    tile::cp_async_wait<0>();
    __syncthreads();
    anchors.load(staged_anchors + row_group<Shape>() * Shape::kWarpRows * Shape::kLd);
    if constexpr (Shape::kAnchorsInRegisters) __syncthreads(); // the column tiles reuse that memory

    const int first_pair = dim_part<Shape>() * (Shape::kWarpNTiles / 2); // the warp's n-tiles of S
    RowStager<T, Shape, Shape::kColumnRows> stager(b, 0);
    stager.issue(columns(0));
    tile::cp_async_commit();
    const bool fetches = threadIdx.x < Shape::kColumnRows;
    if (fetches) epilogue.stage(vectors(0), threadIdx.x, epilogue.fetch(threadIdx.x));
    tile::cp_async_wait<0>();
    __syncthreads();

    for (int64_t j0 = 0, t = 0;; j0 += Shape::kColumnRows, ++t) {
        const int current = t & 1, next = current ^ 1;
        const bool more = j0 + Shape::kColumnRows < b.rows;
        typename Epilogue::Fetched fetched{};
        if (more) {
            stager.advance(Shape::kColumnRows);
            stager.issue(columns(next));
            tile::cp_async_commit();
            if (fetches) fetched = epilogue.fetch(j0 + Shape::kColumnRows + threadIdx.x);
        }

        float s[Shape::kMTiles][Shape::kWarpNTiles][4];
#pragma unroll
        for (int mt = 0; mt < Shape::kMTiles; ++mt)
#pragma unroll
            for (int n = 0; n < Shape::kWarpNTiles; ++n)
#pragma unroll
                for (int e = 0; e < 4; ++e) s[mt][n][e] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < Shape::kKSteps; ++ks) {
            uint32_t af[Shape::kMTiles][4];
#pragma unroll
            for (int mt = 0; mt < Shape::kMTiles; ++mt) anchors.get(af[mt], mt, ks);
#pragma unroll
            for (int p = 0; p < Shape::kWarpNTiles / 2; ++p) {
                uint32_t bf[4];
                load_b_fragments<Shape>(bf, columns(current), first_pair + p, ks);
                const uint32_t b0[2] = {bf[0], bf[1]}, b1[2] = {bf[2], bf[3]};
#pragma unroll
                for (int mt = 0; mt < Shape::kMTiles; ++mt) {
                    tile::mma_m16n8k16<T>(s[mt][2 * p], af[mt], b0);
                    tile::mma_m16n8k16<T>(s[mt][2 * p + 1], af[mt], b1);
                }
            }
        }
        epilogue.tile(s, j0, vectors(current), columns(current));

        if (!more) break;
        if (fetches) epilogue.stage(vectors(next), threadIdx.x, fetched);
        tile::cp_async_wait<0>();
        __syncthreads();
    }
}

} // namespace
} // namespace closs
