// The CPU harness itself (tests/cuda_on_cpu.h): its emulation of cuda/tile_ptx.cuh against an
// independent encoding of the same layouts, its race check on kernels with and without the
// barrier they need, its alignment and bounds faults, and its execution model.
//
// The independent encoding: CUTLASS CuTe's layouts, transcribed below as data (shape and stride
// tuples) and evaluated by a layout evaluator of this file, from
//   NVIDIA/cutlass include/cute/atom/mma_traits_sm80.hpp (commit
//   468e0eaf9dac60cd920d567c2273261237516b28):
//     MMA_Traits<SM80_16x8x16_F16F16F16F16_TN> ALayout, BLayout, CLayout (= SM80_16x8_Row), which
//     SM80_16x8x16_F32F16F16F32_TN and SM80_16x8x16_F32BF16BF16F32_TN inherit;
//   NVIDIA/cutlass include/cute/atom/copy_traits_sm75.hpp (commit
//   474c1fd42eaaa652df47ecf3040f2e4118471e11):
//     Copy_Traits<SM75_U32x{1,2,4}_LDSM_N> and <SM75_U16x{2,4,8}_LDSM_T> SrcLayout, DstLayout.
// A CuTe layout maps (thread, value) to an offset: each mode's index is split colexicographically
// over its shape, the parts times the strides summed. An MMA layout's offset is a position in the
// tile in column-major order (A: m + 16k of 16 × 16; B: n + 8k of N × K = 8 × 16; C: m + 16n of
// 16 × 8), value v being element v of the thread's fragment (half v % 2 of register v / 2, the
// registers CuTe hands to mma.sync in order). A copy layout's offset is a bit of the data moved:
// the source is 128-bit rows (row R from the thread whose source offset is 128R), the destination
// each thread's registers, bit v of its values being bit v % 32 of register v / 32.
//
// The emulator is checked by its behaviour only: registers filled and read back by the CuTe maps,
// memory laid out by them; the harness's own tables (cuda_on_cpu_tile.h) are not used here.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <criterion/criterion.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda_on_cpu.h"

using closs::tile::cp_async_16;
using closs::tile::cp_async_commit;
using closs::tile::cp_async_wait;
using closs::tile::shared_load;
using closs::tile::shared_store;

namespace {

// ---- a CuTe layout evaluator -------------------------------------------------------------------
struct Leaf {
    int shape, stride;
};
struct Mode {
    std::vector<Leaf> leaves;
    int size() const {
        int n = 1;
        for (const Leaf &l : leaves) n *= l.shape;
        return n;
    }
    int operator()(int index) const {
        int offset = 0;
        for (const Leaf &l : leaves) {
            offset += index % l.shape * l.stride;
            index /= l.shape;
        }
        return offset;
    }
};
struct Layout {
    Mode thread, value;
    int operator()(int t, int v) const { return thread(t) + value(v); }
};

// mma_traits_sm80.hpp, MMA_Traits<SM80_16x8x16_F16F16F16F16_TN>:
//   ALayout = Layout<Shape<Shape<_4,_8>,Shape<_2,_2,_2>>,
//   Stride<Stride<_32,_1>,Stride<_16,_8,_128>>> BLayout = Layout<Shape<Shape<_4,_8>,Shape<_2,_2>>,
//   Stride<Stride<_16,_1>,Stride<_8,_64>>> CLayout = SM80_16x8_Row =
//   Layout<Shape<Shape<_4,_8>,Shape<_2,_2>>, Stride<Stride<_32,_1>,Stride<_16,_8>>>
const Layout kCuteA = {{{{4, 32}, {8, 1}}}, {{{2, 16}, {2, 8}, {2, 128}}}};
const Layout kCuteB = {{{{4, 16}, {8, 1}}}, {{{2, 8}, {2, 64}}}};
const Layout kCuteC = {{{{4, 32}, {8, 1}}}, {{{2, 16}, {2, 8}}}};

// copy_traits_sm75.hpp: the source layouts (which thread gives which 128-bit row) and destination
// layouts (which register bit gets which source bit).
struct CopyTraits {
    const char *name;
    int matrices;
    bool trans;
    Layout source, destination;
};
const CopyTraits kCuteLdmatrix[] = {
    // SM75_U32x1_LDSM_N: Src ((8,4),128):((128,0),1), Dst (32,32):(32,1)
    {"SM75_U32x1_LDSM_N",
     1,
     false,
     {{{{8, 128}, {4, 0}}}, {{{128, 1}}}},
     {{{{32, 32}}}, {{{32, 1}}}}},
    // SM75_U32x2_LDSM_N: Src ((16,2),128):((128,0),1), Dst (32,(32,2)):(32,(1,1024))
    {"SM75_U32x2_LDSM_N",
     2,
     false,
     {{{{16, 128}, {2, 0}}}, {{{128, 1}}}},
     {{{{32, 32}}}, {{{32, 1}, {2, 1024}}}}},
    // SM75_U32x4_LDSM_N: Src (32,128):(128,1), Dst (32,(32,4)):(32,(1,1024))
    {"SM75_U32x4_LDSM_N",
     4,
     false,
     {{{{32, 128}}}, {{{128, 1}}}},
     {{{{32, 32}}}, {{{32, 1}, {4, 1024}}}}},
    // SM75_U16x2_LDSM_T: Src ((8,4),128):((128,0),1), Dst ((4,8),(16,2)):((256,16),(1,128))
    {"SM75_U16x2_LDSM_T",
     1,
     true,
     {{{{8, 128}, {4, 0}}}, {{{128, 1}}}},
     {{{{4, 256}, {8, 16}}}, {{{16, 1}, {2, 128}}}}},
    // SM75_U16x4_LDSM_T: Src ((16,2),128):((128,0),1), Dst ((4,8),(16,2,2)):((256,16),(1,128,1024))
    {"SM75_U16x4_LDSM_T",
     2,
     true,
     {{{{16, 128}, {2, 0}}}, {{{128, 1}}}},
     {{{{4, 256}, {8, 16}}}, {{{16, 1}, {2, 128}, {2, 1024}}}}},
    // SM75_U16x8_LDSM_T: Src (32,128):(128,1), Dst ((4,8),(16,2,4)):((256,16),(1,128,1024))
    {"SM75_U16x8_LDSM_T",
     4,
     true,
     {{{{32, 128}}}, {{{128, 1}}}},
     {{{{4, 256}, {8, 16}}}, {{{16, 1}, {2, 128}, {4, 1024}}}}},
};

// ---- 16-bit values -----------------------------------------------------------------------------
template <typename T> uint16_t bits_of(float v) {
    uint16_t bits;
    if constexpr (std::is_same_v<T, __half>) {
        const __half h = __float2half_rn(v);
        std::memcpy(&bits, &h, 2);
    } else {
        const __nv_bfloat16 h = __float2bfloat16_rn(v);
        std::memcpy(&bits, &h, 2);
    }
    return bits;
}
template <typename T> float value_of(uint16_t bits) {
    if constexpr (std::is_same_v<T, __half>) {
        __half_raw raw;
        raw.x = bits;
        return __half2float(__half(raw));
    } else {
        __nv_bfloat16_raw raw;
        raw.x = bits;
        return __bfloat162float(__nv_bfloat16(raw));
    }
}

uint64_t random_state = 1;
double uniform() {
    random_state = random_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(random_state >> 11) * 0x1p-53;
}

// The fault message of running f (a launch), or "" if none.
template <typename F> std::string fault_of(F f) {
    try {
        f();
    } catch (const cuda_on_cpu::KernelFault &fault) {
        return fault.what();
    }
    return "";
}
bool contains(const std::string &text, const char *part) {
    return text.find(part) != std::string::npos;
}

// ---- mma through the CuTe maps -----------------------------------------------------------------
// D = A·B + C on one warp, every register filled and read by the CuTe layouts.
template <typename T>
void cute_mma(const float (&a)[16][16], const float (&b)[16][8], const float (&c)[16][8],
              float (&d)[16][8]) {
    launch(1, 32, 0, [&] {
        const int lane = (int)threadIdx.x;
        uint32_t ra[4] = {}, rb[2] = {};
        float rd[4];
        for (int v = 0; v < 8; ++v) {
            const int offset = kCuteA(lane, v), m = offset % 16, k = offset / 16;
            ra[v / 2] |= (uint32_t)bits_of<T>(a[m][k]) << (16 * (v % 2));
        }
        for (int v = 0; v < 4; ++v) {
            const int offset = kCuteB(lane, v), n = offset % 8, k = offset / 8;
            rb[v / 2] |= (uint32_t)bits_of<T>(b[k][n]) << (16 * (v % 2));
            const int place = kCuteC(lane, v);
            rd[v] = c[place % 16][place / 16];
        }
        closs::tile::mma_m16n8k16<T>(rd, ra, rb);
        for (int v = 0; v < 4; ++v) {
            const int place = kCuteC(lane, v);
            d[place % 16][place / 16] = rd[v];
        }
    });
}

template <typename T> void check_mma_layouts(const char *dtype) {
    // The layouts cover their tiles once each (a transcription slip would show here first).
    for (const auto &[layout, tile] : {std::pair{&kCuteA, 256}, {&kCuteB, 128}, {&kCuteC, 128}}) {
        std::vector<int> seen(tile, 0);
        for (int t = 0; t < 32; ++t)
            for (int v = 0; v < layout->value.size(); ++v) ++seen[(*layout)(t, v)];
        for (int i = 0; i < tile; ++i)
            cr_assert_eq(seen[i], 1, "CuTe layout transcription: offset %d", i);
    }
    // One element of A at a time, at each (lane, element) of the CuTe A layout: D must be that
    // element's row of B (distinct codes, all exact) placed by the CuTe C layout, plus C.
    float b[16][8], c[16][8];
    for (int k = 0; k < 16; ++k)
        for (int n = 0; n < 8; ++n) b[k][n] = (float)(k * 8 + n + 1);
    for (int m = 0; m < 16; ++m)
        for (int n = 0; n < 8; ++n) c[m][n] = (float)(1000 * (m + 1) + n);
    int wrong = 0;
    for (int lane = 0; lane < 32; ++lane)
        for (int v = 0; v < 8; ++v) {
            float a[16][16] = {}, d[16][8];
            const int offset = kCuteA(lane, v), m0 = offset % 16, k0 = offset / 16;
            a[m0][k0] = 2.0f;
            cute_mma<T>(a, b, c, d);
            for (int m = 0; m < 16; ++m)
                for (int n = 0; n < 8; ++n) {
                    const float want = c[m][n] + (m == m0 ? 2.0f * b[k0][n] : 0.0f);
                    if (d[m][n] != want && wrong++ < 5)
                        cr_log_error("%s mma: A element %d of lane %d (CuTe: m %d, k %d): "
                                     "D[%d][%d] = %g, want %g",
                                     dtype, v, lane, m0, k0, m, n, d[m][n], want);
                }
        }
    // Random small integers (every product and sum exact) through all three maps at once.
    for (int trial = 0; trial < 20; ++trial) {
        float a[16][16], d[16][8];
        for (auto &row : a)
            for (float &x : row) x = (float)((int)(uniform() * 17) - 8);
        for (auto &row : b)
            for (float &x : row) x = (float)((int)(uniform() * 17) - 8);
        for (auto &row : c)
            for (float &x : row) x = (float)((int)(uniform() * 201) - 100);
        cute_mma<T>(a, b, c, d);
        for (int m = 0; m < 16; ++m)
            for (int n = 0; n < 8; ++n) {
                float want = c[m][n];
                for (int k = 0; k < 16; ++k) want += a[m][k] * b[k][n];
                if (d[m][n] != want && wrong++ < 10)
                    cr_log_error("%s mma, random integers: D[%d][%d] = %g, want %g", dtype, m, n,
                                 d[m][n], want);
            }
    }
    cr_expect_eq(wrong, 0, "%s mma: %d elements differ from the CuTe layouts' product", dtype,
                 wrong);
}

} // namespace

Test(cuda_on_cpu, mma_f16_matches_cute_layouts) { check_mma_layouts<__half>("f16"); }
Test(cuda_on_cpu, mma_bf16_matches_cute_layouts) { check_mma_layouts<__nv_bfloat16>("bf16"); }

// ---- ldmatrix against the CuTe copy traits ----------------------------------------------------
namespace {

template <int kMatrices, bool kTrans> void ldmatrix_form(uint32_t *r, const void *row) {
    using namespace closs::tile;
    if constexpr (kMatrices == 1 && !kTrans) ldmatrix_x1(*reinterpret_cast<uint32_t(*)[1]>(r), row);
    if constexpr (kMatrices == 2 && !kTrans) ldmatrix_x2(*reinterpret_cast<uint32_t(*)[2]>(r), row);
    if constexpr (kMatrices == 4 && !kTrans) ldmatrix_x4(*reinterpret_cast<uint32_t(*)[4]>(r), row);
    if constexpr (kMatrices == 1 && kTrans)
        ldmatrix_x1_trans(*reinterpret_cast<uint32_t(*)[1]>(r), row);
    if constexpr (kMatrices == 2 && kTrans)
        ldmatrix_x2_trans(*reinterpret_cast<uint32_t(*)[2]>(r), row);
    if constexpr (kMatrices == 4 && kTrans)
        ldmatrix_x4_trans(*reinterpret_cast<uint32_t(*)[4]>(r), row);
}

// 32 rows of 8 distinct 16-bit codes, scattered over shared memory (row R at slot 37R mod 64 of
// 16 bytes, after 64 bytes); lane R gives row R's address, lanes past the form's rows give a
// misaligned address that the instruction must not read.
template <int kMatrices, bool kTrans> int check_ldmatrix(const CopyTraits &traits) {
    constexpr size_t kBytes = 64 + 64 * 16;
    uint32_t got[32][4] = {};
    const int rows = 8 * kMatrices;
    launch(1, 32, kBytes, [&] {
        const int lane = (int)threadIdx.x;
        unsigned char *shared = closs_emulated_dynamic_shared;
        unsigned char *row = shared + 64 + (37 * lane % 64) * 16;
        for (int c = 0; c < 8; ++c)
            shared_store(reinterpret_cast<uint16_t *>(row) + c, (uint16_t)(lane * 8 + c + 1));
        __syncwarp();
        uint32_t r[4] = {};
        ldmatrix_form<kMatrices, kTrans>(r, lane < rows ? (const void *)row
                                                        : (const void *)(shared + 3));
        std::memcpy(got[lane], r, sizeof r);
    });
    int wrong = 0;
    for (int t = 0; t < 32; ++t)
        for (int j = 0; j < kMatrices; ++j)
            for (int h = 0; h < 2; ++h) {
                const int bit = traits.destination(t, 32 * j + 16 * h);
                // CuTe: the 16 bits of one element are consecutive in the source
                for (int i = 1; i < 16; ++i)
                    cr_assert_eq(traits.destination(t, 32 * j + 16 * h + i), bit + i,
                                 "%s transcription", traits.name);
                const int source_row = bit / 128, column = bit % 128 / 16;
                int supplier = -1; // the thread whose source layout starts at that row
                for (int s = 0; s < 32 && supplier < 0; ++s)
                    if (traits.source(s, 0) == 128 * source_row) supplier = s;
                cr_assert(supplier >= 0 && supplier < rows, "%s: row %d has no thread", traits.name,
                          source_row);
                const unsigned want = supplier * 8 + column + 1;
                const unsigned value = got[t][j] >> (16 * h) & 0xffff;
                if (value != want && wrong++ < 5)
                    cr_log_error("%s (%s): lane %d register %d half %d holds row %u column %u, "
                                 "CuTe says row %d "
                                 "column %d",
                                 traits.name, kTrans ? "trans" : "plain", t, j, h, (value - 1) / 8,
                                 (value - 1) % 8, supplier, column);
            }
    return wrong;
}

} // namespace

Test(cuda_on_cpu, ldmatrix_matches_cute_copy_traits) {
    const int wrong =
        check_ldmatrix<1, false>(kCuteLdmatrix[0]) + check_ldmatrix<2, false>(kCuteLdmatrix[1]) +
        check_ldmatrix<4, false>(kCuteLdmatrix[2]) + check_ldmatrix<1, true>(kCuteLdmatrix[3]) +
        check_ldmatrix<2, true>(kCuteLdmatrix[4]) + check_ldmatrix<4, true>(kCuteLdmatrix[5]);
    cr_expect_eq(wrong, 0, "%d ldmatrix elements differ from CuTe's copy traits", wrong);
}

// ---- a matmul through ldmatrix and mma, as a kernel would do it --------------------------------
// One warp: D (16 × 16) = A (16 × K, rows in shared memory) · B, B given either as Bᵀ (16 × K,
// rows = columns of B: ldmatrix_x4, not transposed) or as B (K × 16 rows: ldmatrix_x4_trans), each
// with rows padded to K + 8. cp.async stages the operands. Random f16/bf16 values against a double
// product: the float sum of K exact products is within K·2⁻²⁴·Σ|a·b|.
namespace {

template <typename T> double matmul_error(bool b_transposed, int K) {
    const int ld = K + 8;
    std::vector<uint16_t> a(16 * ld, 0), b(b_transposed ? 16 * ld : K * 24, 0);
    const int b_ld = b_transposed ? ld : 24;
    for (int m = 0; m < 16; ++m)
        for (int k = 0; k < K; ++k) a[m * ld + k] = bits_of<T>((float)(2 * uniform() - 1));
    for (int n = 0; n < 16; ++n)
        for (int k = 0; k < K; ++k)
            (b_transposed ? b[n * ld + k] : b[k * b_ld + n]) =
                bits_of<T>((float)(2 * uniform() - 1));
    const size_t a_bytes = a.size() * 2, b_bytes = b.size() * 2;
    float d[16][16];
    launch(1, 32, a_bytes + b_bytes, [&] {
        const int lane = (int)threadIdx.x;
        unsigned char *shared = closs_emulated_dynamic_shared;
        auto *sa = reinterpret_cast<uint16_t *>(shared),
             *sb = reinterpret_cast<uint16_t *>(shared + a_bytes);
        for (size_t chunk = lane; chunk < a_bytes / 16; chunk += 32)
            cp_async_16(shared + 16 * chunk, a.data() + 8 * chunk, 16);
        for (size_t chunk = lane; chunk < b_bytes / 16; chunk += 32)
            cp_async_16(shared + a_bytes + 16 * chunk, b.data() + 8 * chunk, 16);
        cp_async_commit();
        cp_async_wait<0>();
        __syncwarp();
        float acc[2][4] = {};
        for (int k0 = 0; k0 < K; k0 += 16) {
            uint32_t ra[4], rb[4];
            // A: matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k
            // 8-15)
            closs::tile::ldmatrix_x4(ra, sa + (lane % 16) * ld + k0 + 8 * (lane / 16));
            if (b_transposed) // Bᵀ rows n: matrices (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k
                              // 0-7), (n 8-15, k 8-15)
                closs::tile::ldmatrix_x4(rb, sb + (lane % 8 + 8 * (lane / 16)) * ld + k0 +
                                                 8 * (lane / 8 % 2));
            else // B rows k: the same four matrices, transposed on the way
                closs::tile::ldmatrix_x4_trans(
                    rb, sb + (k0 + lane % 8 + 8 * (lane / 8 % 2)) * b_ld + 8 * (lane / 16));
            const uint32_t b0[2] = {rb[0], rb[1]}, b1[2] = {rb[2], rb[3]};
            closs::tile::mma_m16n8k16<T>(acc[0], ra, b0);
            closs::tile::mma_m16n8k16<T>(acc[1], ra, b1);
        }
        // The D fragment by the PTX ISA's table (c0, c1: row lane/4, columns 2(lane%4) + 0, 1;
        // c2, c3: row lane/4 + 8), which the layout test above checked against CuTe.
        for (int half = 0; half < 2; ++half)
            for (int i = 0; i < 4; ++i)
                d[lane / 4 + 8 * (i / 2)][8 * half + 2 * (lane % 4) + i % 2] = acc[half][i];
    });
    double worst = 0.0;
    for (int m = 0; m < 16; ++m)
        for (int n = 0; n < 16; ++n) {
            double want = 0.0, scale = 0.0;
            for (int k = 0; k < K; ++k) {
                const double bk = value_of<T>(b_transposed ? b[n * ld + k] : b[k * b_ld + n]);
                want += (double)value_of<T>(a[m * ld + k]) * bk;
                scale += std::fabs((double)value_of<T>(a[m * ld + k]) * bk);
            }
            worst = std::fmax(worst, std::fabs(d[m][n] - want) / (K * 0x1p-24 * scale));
        }
    return worst;
}

} // namespace

Test(cuda_on_cpu, ldmatrix_mma_matmul) {
    for (int K : {16, 64, 128})
        for (int transposed = 0; transposed <= 1; ++transposed) {
            const double f16 = matmul_error<__half>(transposed, K),
                         bf16 = matmul_error<__nv_bfloat16>(transposed, K);
            cr_expect(f16 <= 1.0 && bf16 <= 1.0,
                      "K=%d B %s: error %.2f (f16), %.2f (bf16) of K·2^-24·Σ|a·b|", K,
                      transposed ? "transposed" : "plain", f16, bf16);
        }
}

// ---- the race check
// ------------------------------------------------------------------------------ Small kernels that
// pass with the barrier they need and fail without it; the message must name the race (both
// threads, both accesses). The fibers run in thread order, each until it waits, which decides which
// of the two accesses comes second (where the race is reported); the kernels check values only
// where the barrier is present.
namespace {

float *shared_floats() { return reinterpret_cast<float *>(closs_emulated_dynamic_shared); }

// Each lane writes its slot, (__syncwarp), reads the slot of the lane before it.
void neighbour_exchange(bool sync) {
    launch(1, 64, 1024, [&] {
        float *slots = shared_floats();
        const int t = (int)threadIdx.x, neighbour = (t & ~31) | ((t + 31) & 31);
        shared_store(slots + t, (float)t);
        if (sync) __syncwarp();
        const float got = shared_load(slots + neighbour);
        if (sync && got != (float)neighbour) cuda_on_cpu::fault("neighbour_exchange: wrong value");
    });
}

// Warp 0 writes, (__syncthreads), warp 1 reads and writes; warp 0 reads that back.
void across_warps(bool sync) {
    launch(1, 64, 1024, [&] {
        float *slots = shared_floats();
        const int t = (int)threadIdx.x;
        if (t < 32) shared_store(slots + t, 1.0f);
        if (sync) __syncthreads();
        if (t >= 32) shared_store(slots + t, shared_load(slots + t - 32) + 1.0f);
        __syncthreads();
        if (t < 32 && shared_load(slots + t + 32) != 2.0f)
            cuda_on_cpu::fault("across_warps: wrong value");
    });
}

// Each lane reads the next lane's slot, then (__syncwarp) overwrites its own: write after read.
void overwrite_after_read(bool sync) {
    launch(1, 32, 1024, [&] {
        float *slots = shared_floats();
        const int t = (int)threadIdx.x;
        shared_store(slots + t, 0.0f);
        __syncwarp();
        const float before = shared_load(slots + (t + 1) % 32);
        if (sync) __syncwarp();
        shared_store(slots + t, before + 1.0f);
    });
}

// Lanes stage 16 rows of 8 halves, (__syncwarp), ldmatrix_x2 reads them: rows other lanes wrote.
void stage_then_ldmatrix(bool sync) {
    launch(1, 32, 1024, [&] {
        auto *rows = reinterpret_cast<uint16_t *>(closs_emulated_dynamic_shared);
        const int t = (int)threadIdx.x;
        for (int i = t; i < 16 * 8; i += 32) shared_store(rows + i, (uint16_t)i);
        if (sync) __syncwarp();
        uint32_t r[2];
        closs::tile::ldmatrix_x2(r, rows + 8 * (t % 16));
        if (sync && (r[0] & 0xffff) != (uint32_t)(8 * (t / 4) + 2 * (t % 4)))
            cuda_on_cpu::fault("stage_then_ldmatrix: wrong value");
    });
}

// A warp collective between a write and another lane's read is no barrier (mma and a shuffle).
void collective_between(bool sync) {
    launch(1, 32, 1024, [&] {
        float *slots = shared_floats();
        const int t = (int)threadIdx.x;
        shared_store(slots + t, (float)t);
        float d[4] = {};
        const uint32_t a[4] = {}, b[2] = {};
        closs::tile::mma_m16n8k16<__half>(d, a, b);
        (void)__shfl_xor_sync(0xffffffffu, d[0], 1);
        if (sync) __syncwarp();
        (void)shared_load(slots + (t ^ 1));
    });
}

// cp.async: warp 0 copies one 16-byte chunk a thread, (waits), (the block meets), warp 1 reads.
void async_copy_then_read(bool wait, bool barrier) {
    alignas(16) static float source[32 * 4];
    for (int i = 0; i < 32 * 4; ++i) source[i] = (float)i;
    launch(1, 64, 1024, [&] {
        float *chunks = shared_floats();
        const int t = (int)threadIdx.x;
        if (t < 32) {
            cp_async_16(chunks + 4 * t, source + 4 * t, 16);
            cp_async_commit();
            if (wait) cp_async_wait<0>();
        }
        if (barrier) __syncthreads();
        if (t >= 32) {
            const float got = shared_load(chunks + 4 * (t - 32) + 3);
            if (wait && barrier && got != (float)(4 * (t - 32) + 3))
                cuda_on_cpu::fault("async: wrong value");
        }
    });
}

} // namespace

Test(cuda_on_cpu, race_check_syncwarp) {
    cr_expect_eq(fault_of([] { neighbour_exchange(true); }), "");
    const std::string message = fault_of([] { neighbour_exchange(false); });
    cr_log_info("removed __syncwarp: %s", message.c_str());
    cr_expect(
        contains(message,
                 "race on dynamic shared memory +0: thread 1 (warp 0, lane 1) reads it through "
                 "shared_load at test_cuda_on_cpu.cpp:") &&
            contains(message, "and thread 0 (warp 0, lane 0) wrote it through shared_store at") &&
            contains(message, "nor __syncwarp joining both"),
        "removed __syncwarp: %s", message.c_str());
}

Test(cuda_on_cpu, race_check_syncthreads) {
    cr_expect_eq(fault_of([] { across_warps(true); }), "");
    const std::string message = fault_of([] { across_warps(false); });
    cr_log_info("removed __syncthreads: %s", message.c_str());
    cr_expect(contains(message,
                       "race on dynamic shared memory +0: thread 32 (warp 1, lane 0) reads it") &&
                  contains(message, "thread 0 (warp 0, lane 0) wrote it") &&
                  contains(message, "no __syncthreads between them"),
              "removed __syncthreads: %s", message.c_str());
}

Test(cuda_on_cpu, race_check_write_after_read) {
    cr_expect_eq(fault_of([] { overwrite_after_read(true); }), "");
    const std::string message = fault_of([] { overwrite_after_read(false); });
    cr_expect(
        contains(message,
                 "race on dynamic shared memory +0: thread 0 (warp 0, lane 0) writes it through "
                 "shared_store") &&
            contains(message, "thread 31 (warp 0, lane 31) read it through shared_load"),
        "removed __syncwarp between a read and an overwrite: %s", message.c_str());
}

Test(cuda_on_cpu, race_check_ldmatrix) {
    cr_expect_eq(fault_of([] { stage_then_ldmatrix(true); }), "");
    const std::string message = fault_of([] { stage_then_ldmatrix(false); });
    cr_expect(
        contains(message,
                 "race on dynamic shared memory +2: thread 0 (warp 0, lane 0) reads it through "
                 "ldmatrix_x2 at") &&
            contains(message, "thread 1 (warp 0, lane 1) wrote it through shared_store"),
        "removed __syncwarp before ldmatrix: %s", message.c_str());
}

Test(cuda_on_cpu, warp_collectives_are_no_barrier) {
    cr_expect_eq(fault_of([] { collective_between(true); }), "");
    const std::string message = fault_of([] { collective_between(false); });
    cr_expect(contains(message, "race on dynamic shared memory") &&
                  contains(message, "shared_load"),
              "mma and a shuffle between a write and another lane's read: %s", message.c_str());
}

Test(cuda_on_cpu, race_check_cp_async) {
    cr_expect_eq(fault_of([] { async_copy_then_read(true, true); }), "");
    const std::string no_wait = fault_of([] { async_copy_then_read(false, true); });
    cr_log_info("missing cp_async_wait: %s", no_wait.c_str());
    cr_expect(contains(no_wait, "thread 63 (warp 1, lane 31) reads it through shared_load") &&
                  contains(no_wait, "while the cp_async_16 issued at test_cuda_on_cpu.cpp:") &&
                  contains(no_wait, "by thread 31 (warp 0, lane 31) is in flight"),
              "missing cp_async_wait: %s", no_wait.c_str());
    const std::string no_barrier = fault_of([] { async_copy_then_read(true, false); });
    cr_expect(
        contains(no_barrier, "thread 32 (warp 1, lane 0) reads it through shared_load") &&
            contains(no_barrier, "thread 0 (warp 0, lane 0) wrote it through cp_async_16 at") &&
            contains(no_barrier, "no __syncthreads between them"),
        "cp_async_wait without the barrier after it: %s", no_barrier.c_str());
}

// __syncwarp(mask) orders only the lanes of mask, and orders transitively: lane 0 writes, lanes
// {0, 1} meet, then lanes {1, 2}: lane 2 may read; lane 3, which met nobody, may not.
Test(cuda_on_cpu, race_check_partial_warp_barriers) {
    auto run = [](int reader) {
        return fault_of([&] {
            launch(1, 32, 64, [&] {
                float *slot = shared_floats();
                const int t = (int)threadIdx.x;
                if (t == 0) shared_store(slot, 1.0f);
                if (t <= 1) __syncwarp(0x3u);
                if (t == 1 || t == 2) __syncwarp(0x6u);
                if (t == reader) (void)shared_load(slot);
            });
        });
    };
    cr_expect_eq(run(1), "");
    cr_expect_eq(run(2), "");
    const std::string message = run(3);
    cr_expect(contains(message, "thread 3 (warp 0, lane 3) reads it") &&
                  contains(message, "thread 0 (warp 0, lane 0) wrote it"),
              "a lane outside both barriers: %s", message.c_str());
}

// Blocks are ordered (one after another on a GPU too, as far as shared memory goes: each has its
// own); a race inside the second block names it.
Test(cuda_on_cpu, race_check_per_block) {
    const std::string message = fault_of([] {
        launch(2, 64, 64, [&] {
            float *slot = shared_floats();
            if (threadIdx.x == 0) shared_store(slot, 1.0f);
            if (blockIdx.x == 1 && threadIdx.x == 40) (void)shared_load(slot);
        });
    });
    cr_expect(
        contains(message,
                 "CPU harness: block 1 of 2 (64 threads) launched at test_cuda_on_cpu.cpp:") &&
            contains(message, "thread 40 (warp 1, lane 8) reads it"),
        "%s", message.c_str());
}

// cp.async groups: wait<1> lands all but the newest group; a thread's own destination read before
// its wait is a race, and (read through a plain pointer, which the race check does not see) holds
// the poison; src-size < 16 zero-fills.
Test(cuda_on_cpu, cp_async_groups) {
    alignas(16) static unsigned char source[32];
    for (int i = 0; i < 32; ++i) source[i] = (unsigned char)(i + 1);
    unsigned char seen_in_flight = 0, first[16], second[16];
    auto run = [&](bool read_newest_early) {
        return fault_of([&] {
            launch(1, 32, 64, [&] {
                unsigned char *shared = closs_emulated_dynamic_shared;
                if (threadIdx.x != 0) return;
                cp_async_16(shared, source, 16);
                cp_async_commit();
                cp_async_16(shared + 16, source + 16, 5);
                cp_async_commit();
                seen_in_flight = shared[16]; // a plain read: no check, the poison
                cp_async_wait<1>();
                for (int i = 0; i < 16; ++i) first[i] = shared_load(shared + i);
                if (read_newest_early) (void)shared_load(shared + 16);
                cp_async_wait<0>();
                for (int i = 0; i < 16; ++i) second[i] = shared_load(shared + 16 + i);
            });
        });
    };
    cr_expect_eq(run(false), "");
    cr_expect_eq(seen_in_flight, 0xff);
    for (int i = 0; i < 16; ++i) {
        cr_expect_eq(first[i], i + 1);
        cr_expect_eq(second[i], i < 5 ? 17 + i : 0, "byte %d past src-size", i);
    }
    const std::string message = run(true);
    cr_expect(
        contains(message, "thread 0 (warp 0, lane 0) reads it through shared_load") &&
            contains(message, "by the same thread is in flight: no cp_async_wait covers it yet"),
        "%s", message.c_str());
}

// The addresses the hardware faults on. (Global memory is on the heap: static storage counts as
// shared memory, where the harness's __shared__ variables live.)
Test(cuda_on_cpu, alignment_and_bounds_faults) {
    std::vector<uint4> global_memory(4);
    auto *global = reinterpret_cast<unsigned char *>(global_memory.data());
    auto one_lane = [](auto body) {
        return fault_of([&] {
            launch(1, 32, 256, [&] {
                if (threadIdx.x == 0) body();
            });
        });
    };
    auto *shared = closs_emulated_dynamic_shared;
    const std::string misaligned_destination =
        one_lane([&] { cp_async_16(shared + 8, global, 16); });
    const std::string misaligned_source = one_lane([&] { cp_async_16(shared, global + 4, 16); });
    const std::string size = one_lane([&] { cp_async_16(shared, global, 17); });
    const std::string negative = one_lane([&] { cp_async_16(shared, global, -1); });
    const std::string not_shared = one_lane([&] { cp_async_16(global + 16, global, 16); });
    const std::string past_launch = one_lane([&] { cp_async_16(shared + 256, global, 16); });
    const std::string load =
        one_lane([&] { (void)shared_load(reinterpret_cast<float *>(shared + 2)); });
    const std::string store =
        one_lane([&] { shared_store(reinterpret_cast<uint4 *>(shared + 8), uint4{}); });
    float local = 0.0f;
    const std::string stack = one_lane([&] { (void)shared_load(&local); });
    cr_expect(contains(misaligned_destination, "the shared address is not 16-byte aligned"), "%s",
              misaligned_destination.c_str());
    cr_expect(contains(misaligned_source, "the global address is not 16-byte aligned"), "%s",
              misaligned_source.c_str());
    cr_expect(contains(size, "src-size 17 outside 0..16") &&
                  contains(negative, "src-size -1 outside 0..16"),
              "%s / %s", size.c_str(), negative.c_str());
    cr_expect(contains(not_shared, "not shared memory"), "%s", not_shared.c_str());
    cr_expect(contains(past_launch, "dynamic shared memory +256, past the launch's 256 bytes"),
              "%s", past_launch.c_str());
    cr_expect(contains(load, "shared_load at") && contains(load, "not aligned to 4 bytes"), "%s",
              load.c_str());
    cr_expect(contains(store, "not aligned to 16 bytes"), "%s", store.c_str());
    cr_expect(contains(stack, "not shared memory"), "%s", stack.c_str());
    // ldmatrix: a misaligned row of a lane that gives one, a row outside shared memory; the rows of
    // lanes past the form's (x2: lanes 16-31) are not read.
    auto warp = [](auto body) { return fault_of([&] { launch(1, 32, 256, body); }); };
    const std::string ldmatrix_misaligned = warp([&] {
        uint32_t r[4];
        closs::tile::ldmatrix_x4(r, shared + 16 * (threadIdx.x % 16) + (threadIdx.x == 19 ? 8 : 0));
    });
    const std::string ldmatrix_outside = warp([&] {
        uint32_t r[1];
        closs::tile::ldmatrix_x1_trans(r, threadIdx.x == 5 ? (const void *)global
                                                           : shared + 16 * threadIdx.x);
    });
    const std::string ldmatrix_unused_lanes = warp([&] {
        uint32_t r[2];
        closs::tile::ldmatrix_x2(r, threadIdx.x < 16 ? (const void *)(shared + 16 * threadIdx.x)
                                                     : global + 3);
    });
    cr_expect(contains(ldmatrix_misaligned, "ldmatrix_x4 at test_cuda_on_cpu.cpp:") &&
                  contains(ldmatrix_misaligned, "lane 19's row address is not 16-byte aligned"),
              "%s", ldmatrix_misaligned.c_str());
    cr_expect(contains(ldmatrix_outside, "lane 5's row address is outside shared memory"), "%s",
              ldmatrix_outside.c_str());
    cr_expect_eq(ldmatrix_unused_lanes, "");
}

// The execution model: what the hardware leaves undefined or never finishes is reported.
Test(cuda_on_cpu, deadlocks_and_divergence) {
    // a lane that skips a __syncwarp the others wait at
    const std::string skipped = fault_of([] {
        launch(1, 32, 0, [] {
            if (threadIdx.x != 7) __syncwarp();
        });
    });
    cr_expect(
        contains(skipped,
                 "thread 7 ended while lane 0 of its warp waits for it at test_cuda_on_cpu.cpp:"),
        "%s", skipped.c_str());
    // one thread at a __syncwarp its partner never reaches, the others at __syncthreads
    const std::string deadlock = fault_of([] {
        launch(1, 64, 0, [] {
            if (threadIdx.x == 32) __syncwarp(0x3u); // lane 1 of its warp never comes
            else __syncthreads();                    // nor does thread 32
        });
    });
    cr_log_info("%s", deadlock.c_str());
    cr_expect(contains(deadlock, "deadlock: no thread can run") &&
                  contains(deadlock, "at __syncthreads") && contains(deadlock, "at __syncwarp"),
              "%s", deadlock.c_str());
    // the lanes of a warp at two different mma instructions
    const std::string divergent = fault_of([] {
        launch(1, 32, 0, [] {
            float d[4] = {};
            const uint32_t a[4] = {}, b[2] = {};
            if (threadIdx.x % 2) closs::tile::mma_m16n8k16<__half>(d, a, b);
            else closs::tile::mma_m16n8k16<__half>(d, a, b);
        });
    });
    cr_log_info("%s", divergent.c_str());
    cr_expect(contains(divergent, "divergent warp: lane 31 at mma_m16n8k16<f16>"), "%s",
              divergent.c_str());
    // a warp instruction in a partial warp
    const std::string partial =
        fault_of([] { launch(1, 48, 0, [] { (void)__shfl_xor_sync(0xffffffffu, 1.0f, 1); }); });
    cr_expect(contains(partial, "which this block of 48 threads does not have"), "%s",
              partial.c_str());
    // threads that returned count as arrived at __syncthreads
    int after = 0;
    cr_expect_eq(fault_of([&] {
                     launch(1, 96, 0, [&] {
                         if (threadIdx.x >= 64) return;
                         __syncthreads();
                         ++after;
                     });
                 }),
                 "");
    cr_expect_eq(after, 64);
}

// The built-in warp exchanges, with CUDA's rules for a width below 32: __shfl_xor_sync may read an
// earlier segment but not a later one, __shfl_sync takes the source modulo width within the
// caller's segment, up/down stay in the segment; 64-bit values move whole.
Test(cuda_on_cpu, shuffles_and_votes) {
    float x[64];
    int x8[64], index[64], up[64], down[64], any[64], all[64];
    unsigned ballot[64];
    double wide[64];
    launch(1, 64, 0, [&] {
        const int t = (int)threadIdx.x;
        x[t] = __shfl_xor_sync(0xffffffffu, (float)t, 5);
        x8[t] = __shfl_xor_sync(0xffffffffu, t, 12, 8);
        index[t] = __shfl_sync(0xffffffffu, t, 11, 8);
        up[t] = __shfl_up_sync(0xffffffffu, t, 3, 16);
        down[t] = __shfl_down_sync(0xffffffffu, t, 3, 16);
        any[t] = __any_sync(0xffffffffu, t == 40);
        all[t] = __all_sync(0xffffffffu, t != 5);
        ballot[t] = __ballot_sync(0xffffffffu, t % 3 == 0);
        wide[t] = __shfl_xor_sync(0xffffffffu, 1e300 * t, 1);
    });
    for (int t = 0; t < 64; ++t) {
        const int lane = t % 32, base = t - lane;
        cr_expect_eq(x[t], (float)(t ^ 5));
        const int source = lane ^ 12;
        cr_expect_eq(x8[t], source >= (lane / 8 + 1) * 8 ? t : base + source,
                     "xor width 8, lane %d", t);
        cr_expect_eq(index[t], base + lane / 8 * 8 + 3, "shfl width 8, lane %d", t);
        cr_expect_eq(up[t], lane % 16 >= 3 ? t - 3 : t, "up, lane %d", t);
        cr_expect_eq(down[t], lane % 16 < 13 ? t + 3 : t, "down, lane %d", t);
        cr_expect_eq(any[t], t >= 32);
        cr_expect_eq(all[t], t >= 32);
        unsigned want = 0;
        for (int l = 0; l < 32; ++l) want |= (unsigned)((base + l) % 3 == 0) << l;
        cr_expect_eq(ballot[t], want, "ballot, lane %d", t);
        cr_expect_eq(wide[t], 1e300 * (t ^ 1));
    }
}

// The idiom the tile engine builds on: tiles streamed through two shared buffers by cp.async,
// each thread copying its chunks, waiting for its own older group, the block meeting, every warp
// reading its rows with ldmatrix, and the block meeting again before the buffer is refilled. Each
// lane sums what its registers received; together that is the sum of every tile, whatever the
// fragment layout. Passes as written; each classic slip is a race the check names.
namespace {

enum class Slip { none, no_trailing_barrier, wait_too_weak, no_barrier_after_wait };

std::string double_buffered(Slip slip, uint64_t *total, uint64_t *want) {
    constexpr int kTiles = 3, kRows = 64, kCols = 64, kThreads = 128;
    std::vector<uint16_t> global((size_t)kTiles * kRows * kCols);
    *want = 0;
    for (size_t i = 0; i < global.size(); ++i)
        *want += global[i] = (uint16_t)(i * 2654435761u >> 20);
    std::vector<uint64_t> partial(kThreads, 0);
    const std::string message = fault_of([&] {
        launch(1, kThreads, 2 * kRows * kCols * 2, [&] {
            const int t = (int)threadIdx.x, warp = t / 32, lane = t % 32;
            auto *buffers = reinterpret_cast<uint16_t *>(closs_emulated_dynamic_shared);
            auto stage = [&](int tile) {
                uint16_t *buffer = buffers + (tile % 2) * kRows * kCols;
                for (int c = t; c < kRows * kCols / 8; c += kThreads)
                    cp_async_16(buffer + 8 * c,
                                global.data() + (size_t)tile * kRows * kCols + 8 * c, 16);
                cp_async_commit();
            };
            stage(0);
            for (int tile = 0; tile < kTiles; ++tile) {
                if (tile + 1 < kTiles) stage(tile + 1);
                else cp_async_commit(); // an empty group keeps the count
                if (slip == Slip::wait_too_weak) cp_async_wait<2>();
                else cp_async_wait<1>();
                if (slip != Slip::no_barrier_after_wait) __syncthreads();
                const uint16_t *buffer = buffers + (tile % 2) * kRows * kCols;
                for (int block = 0; block < kCols / 16; ++block) {
                    uint32_t r[4];
                    closs::tile::ldmatrix_x4(r, buffer + (16 * warp + lane % 16) * kCols +
                                                    16 * block + 8 * (lane / 16));
                    for (uint32_t reg : r) partial[t] += (reg & 0xffff) + (reg >> 16);
                }
                if (slip != Slip::no_trailing_barrier) __syncthreads();
            }
        });
    });
    *total = 0;
    for (uint64_t p : partial) *total += p;
    return message;
}

} // namespace

Test(cuda_on_cpu, double_buffered_cp_async_pipeline) {
    uint64_t total = 0, want = 0;
    cr_expect_eq(double_buffered(Slip::none, &total, &want), "");
    cr_expect_eq(total, want, "sum of what the lanes received %llu, of the tiles %llu",
                 (unsigned long long)total, (unsigned long long)want);
    const std::string no_trailing = double_buffered(Slip::no_trailing_barrier, &total, &want);
    cr_expect(contains(no_trailing, "writes it through cp_async_16") &&
                  contains(no_trailing, "read it through ldmatrix_x4"),
              "no __syncthreads before a buffer is refilled: %s", no_trailing.c_str());
    const std::string weak = double_buffered(Slip::wait_too_weak, &total, &want);
    cr_expect(contains(weak, "reads it through ldmatrix_x4") && contains(weak, "is in flight"),
              "cp_async_wait<2> for a two-deep pipeline: %s", weak.c_str());
    const std::string no_barrier = double_buffered(Slip::no_barrier_after_wait, &total, &want);
    cr_expect(contains(no_barrier, "reads it through ldmatrix_x4") &&
                  (contains(no_barrier, "wrote it through cp_async_16") ||
                   contains(no_barrier, "is in flight")),
              "no __syncthreads between the wait and the reads: %s", no_barrier.c_str());
    cr_log_info("no trailing barrier: %s", no_trailing.c_str());
}
