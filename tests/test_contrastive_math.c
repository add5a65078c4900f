/* The GPU's two NT-Xent and SupCon algorithms, run literally on the CPU in float with the
 * kernels' own functions, against the double-precision reference, on fresh random inputs: every
 * option, reduction and label pattern, several shapes, and
 *   - chunked (cuda/contrastive_math.h): chunk sizes that put chunk boundaries everywhere;
 *   - fused (cuda/fused_math.h, contrastive_fused.cu): the kernels' order of operations — the
 *     64-row tiles and their 16-lane butterflies, 16-column slices of D, SupCon's label sort, the
 *     positives summed and folded into G in the tiles, the fixed shift or the online maximum, the
 *     symmetric row-stationary backward —
 *     for τ from 0.01 to 10 and rows over one to three tiles.
 * Both are compiled without FMA contraction, like contrastive_fused.cu (-fmad=false): the fused
 * emulation rounds as the kernels do up to expf/logf's last bits.
 *
 * Tolerances. Each comparison has its own bound, computed from the run's magnitudes by a
 * first-order rounding analysis of the float algorithm (u = 2^-24, a float's unit roundoff; the
 * double reference's own error, below 2^-40 of the same magnitudes, is added). The float
 * similarity x_ik = (ẑ_i·ẑ_k)/τ is off by at most
 *     e_ik = c_x·u·‖ẑ_i‖‖ẑ_k‖/τ,   c_x = 2D + 6 normalised (norm, division, dot, 1/τ), D + 2 not,
 * so the error grows with D/τ and, without normalisation, with the norms. Then, with s = τ/τ_b:
 *   lse_i  ± e_i + 3M·u + u·(log M + |lse_i|)      (e_i = max_k e_ik; M − 1 merges, logf)
 *   ℓ_i    ± s·(2e_i + 3M·u + u·(log M + |lse_i|) + (|P(i)| + 2)·u·max_{k∈P(i)} |x_ik|)
 *            + 3u·|ℓ_i|                            (0 exactly when P(i) is empty)
 *   Σ ℓ_i  ± Σ bounds + M·u·Σ|ℓ_i|, and u more of the mean for MEAN
 *   G_ik   ± H_ik·(e_ik + max(δlse_i, δlse_k) + u·max|x_ik − lse| + 8u) + underflow, with
 *            H_ik = (|w_i|·e^(x_ik − lse_i) + |w_k|·e^(x_ik − lse_k)
 *                    + [k∈P(i)]·(|a_i| + |a_k|))/τ  the size of the terms that make G_ik
 *   dẑ_i   ± Σ_k (δG_ik + (M + D/2 + 2)·u·H_ik)·‖ẑ_k‖                         (in norm)
 *   dz_i   ± (‖δdẑ_i‖ + (2D + 10)·u·Σ_k H_ik·‖ẑ_k‖)/‖z_i‖   (the projection's rounding)
 * Each row's gradient is checked in norm against its own bound. A fixed relative tolerance would
 * not do: the gradient is a difference of terms of size H that cancel (to exactly 0 for M = 2,
 * or D = 1 normalised, where both sides keep only rounding residues), and a zero row's gradient,
 * dẑ/ε (ε in place of ‖z_i‖ above), dwarfs its neighbours'. Observed errors stay below a fifth
 * of these worst-case bounds (typically a few percent); a slip in a formula (a sign, a factor, a
 * missing term) is off by orders of magnitude more, and even a 1e-5 relative error in x_ik fails
 * every case. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "closs.h"
#include "contrastive_math.h"
#include "fused_math.h"

enum { MAX_ROWS = 130, MAX_DIM = 17, MAX_REPORTS = 8 };
static const double unit_roundoff = 0x1p-24;   /* float */
static const double reference_error = 0x1p-40; /* double, with room for M·D = 2210 roundings */
static const float normalize_eps = 1e-12f;

/* ---- one test: the loss and its options; shapes, labels and chunks are looped over inside ---- */

/* Criterion may run each parameter in a fresh process (exec, not fork), where the parent's
 * pointers mean nothing: the name is stored in the struct, not pointed to. */
typedef struct cm_case {
    int fused;  /* 0: the chunked algorithm; 1: the fused one */
    int supcon; /* 0: NT-Xent */
    int normalize;
    double temperature;
    double base_temperature; /* SupCon; 0 means "equal to temperature" */
    closs_reduction_t reduction;
    char name[64];
} cm_case;

typedef enum label_pattern {
    LABELS_MIXED,    /* a few classes and singletons (anchors without a positive) */
    LABELS_DISTINCT, /* every label different: valid = 0 */
    LABELS_EQUAL,    /* one class */
    LABELS_PAIRS,    /* rows j and j + ⌈M/2⌉ share a label (NT-Xent's structure) */
    LABEL_PATTERNS
} label_pattern;
static const char *const pattern_names[LABEL_PATTERNS] = {"mixed", "distinct", "equal", "pairs"};

/* One problem: inputs as the GPU would receive them. */
typedef struct cm_problem {
    int rows, dim;
    float z[MAX_ROWS * MAX_DIM];
    int32_t labels32[MAX_ROWS];
    int64_t labels64[MAX_ROWS];
    closs_dtype_t label_dtype;
    float upstream[MAX_ROWS]; /* [0] for MEAN and SUM, one per row for NONE */
    char what[96];            /* shape and labels, for messages */
} cm_problem;

/* What the emulation produces, and the intermediates the error bounds need. */
typedef struct cm_result {
    float loss[MAX_ROWS]; /* [0] for MEAN and SUM, one per row for NONE */
    float grad[MAX_ROWS * MAX_DIM];
    int valid;
    float zhat[MAX_ROWS * MAX_DIM], norm[MAX_ROWS];
    int positives[MAX_ROWS];
    float lse[MAX_ROWS], row_loss[MAX_ROWS], w[MAX_ROWS], a[MAX_ROWS];
    float inv_temperature, scale;
    int fixed_shift; /* fused: the log-sum-exp used c = 1/τ */
} cm_result;

/* ---- random inputs ------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform(uint64_t *state, double low, double high) {
    return low + (high - low) * (double)(splitmix64(state) >> 11) * 0x1.0p-53;
}

/* $CLOSS_TEST_SEED when set, else /dev/urandom, else the time. */
static uint64_t suite_seed(void) {
    const char *text = getenv("CLOSS_TEST_SEED");
    if (text && *text) return strtoull(text, NULL, 0);
    uint64_t seed = 0;
    FILE *urandom = fopen("/dev/urandom", "rb");
    if (urandom) {
        if (fread(&seed, sizeof seed, 1, urandom) != 1) seed = 0;
        fclose(urandom);
    }
    return seed ? seed : (uint64_t)time(NULL) ^ (uint64_t)clock() << 32;
}

/* Each case draws its own stream from the seed and its name: one seed reproduces every case. */
static uint64_t case_state(uint64_t seed, const char *name) {
    uint64_t hash = 0xCBF29CE484222325ull;
    for (const char *c = name; *c; ++c) hash = (hash ^ (unsigned char)*c) * 0x100000001B3ull;
    return seed ^ hash;
}

#define SEED_FMT        " [seed %llu: rerun with CLOSS_TEST_SEED=%llu]"
#define SEED_ARGS(seed) (unsigned long long)(seed), (unsigned long long)(seed)

static int64_t label_value(label_pattern pattern, int i, int rows, int wide, uint64_t *state) {
    /* int64 labels use values that collide if truncated to 32 bits (7 and 7 + 2^32). */
    static const int64_t pool[4] = {7, -3, 1000, 7 + ((int64_t)1 << 32)};
    switch (pattern) {
    case LABELS_MIXED:
        if (i % 4 == 3) return wide ? -((int64_t)1 << 40) - i : 100000 + 17 * i;
        return pool[splitmix64(state) % (wide ? 4u : 3u)];
    case LABELS_DISTINCT: return wide ? ((int64_t)i << 33) - 3 : (i % 2 ? -1 : 1) * (3 + 11 * i);
    case LABELS_EQUAL: return wide ? ((int64_t)1 << 40) + 7 : -3;
    default: return 1000 - 7 * (i % ((rows + 1) / 2));
    }
}

static void make_problem(const cm_case *t, int rows, int dim, label_pattern pattern,
                         closs_dtype_t label_dtype, uint64_t *state, cm_problem *p) {
    p->rows = rows, p->dim = dim, p->label_dtype = label_dtype;
    for (int e = 0; e < rows * dim; ++e) p->z[e] = (float)uniform(state, -1.0, 1.0);
    /* A zero row: ẑ = 0 and its gradient is dẑ/ε (the contract's convention). */
    const int zero_row = dim == 3 && rows > 2;
    if (zero_row)
        for (int c = 0; c < dim; ++c) p->z[(rows - 1) * dim + c] = 0.0f;
    for (int i = 0; i < rows; ++i) {
        int64_t label = label_value(pattern, i, rows, label_dtype == CLOSS_I64, state);
        p->labels64[i] = label;
        p->labels32[i] = (int32_t)label;
    }
    const int per_row = t->reduction == CLOSS_REDUCTION_NONE;
    for (int i = 0; i < (per_row ? rows : 1); ++i) {
        double u = per_row ? uniform(state, -2.0, 2.0) : uniform(state, 0.5, 2.0);
        p->upstream[i] = (float)(!per_row && splitmix64(state) % 2 ? -u : u);
    }
    if (t->supcon)
        snprintf(p->what, sizeof p->what, "M=%d D=%d labels %s %s%s", rows, dim,
                 pattern_names[pattern], label_dtype == CLOSS_I64 ? "int64" : "int32",
                 zero_row ? " zero row" : "");
    else snprintf(p->what, sizeof p->what, "M=%d D=%d%s", rows, dim, zero_row ? " zero row" : "");
}

/* The labels as the GPU reads them. */
static int64_t load_label(const cm_problem *p, int i) {
    return p->label_dtype == CLOSS_I64 ? p->labels64[i] : (int64_t)p->labels32[i];
}

static int is_positive(const cm_case *t, const cm_problem *p, int i, int k) {
    if (k == i) return 0;
    return t->supcon ? load_label(p, i) == load_label(p, k) : k == (i + p->rows / 2) % p->rows;
}

/* ---- the GPU's algorithm, in float --------------------------------------------------------- */

/* S = ẑ_chunk · ẑᵀ for rows first .. first + count − 1, float accumulation. */
static void similarity_chunk(const cm_result *r, int rows, int dim, int first, int count,
                             float *s) {
    for (int b = 0; b < count; ++b)
        for (int k = 0; k < rows; ++k) {
            float acc = 0.0f;
            for (int c = 0; c < dim; ++c)
                acc += r->zhat[(first + b) * dim + c] * r->zhat[k * dim + c];
            s[b * rows + k] = acc;
        }
}

static void emulate(const cm_case *t, const cm_problem *p, int chunk, cm_result *r) {
    const int rows = p->rows, dim = p->dim;
    const double base =
        t->supcon && t->base_temperature != 0.0 ? t->base_temperature : t->temperature;
    r->inv_temperature = (float)(1.0 / t->temperature);
    r->scale = t->supcon ? (float)(t->temperature / base) : 1.0f;
    r->fixed_shift = 0;
    const float inv_t = r->inv_temperature, scale = r->scale;

    /* 1. ẑ and the norms. */
    for (int i = 0; i < rows; ++i) {
        const float *z = p->z + i * dim;
        float squares = 0.0f;
        for (int c = 0; c < dim; ++c) squares += z[c] * z[c];
        r->norm[i] = sqrtf(squares);
        const float denominator = fmaxf(r->norm[i], normalize_eps);
        for (int c = 0; c < dim; ++c)
            r->zhat[i * dim + c] = t->normalize ? z[c] / denominator : z[c];
    }
    /* 2. Positive counts. */
    r->valid = 0;
    for (int i = 0; i < rows; ++i) {
        r->positives[i] = 0;
        for (int k = 0; k < rows; ++k) r->positives[i] += is_positive(t, p, i, k);
        r->valid += r->positives[i] > 0;
    }
    /* 3. Forward, chunk by chunk. */
    static float s[MAX_ROWS * MAX_ROWS];
    for (int first = 0; first < rows; first += chunk) {
        const int count = rows - first < chunk ? rows - first : chunk;
        similarity_chunk(r, rows, dim, first, count, s);
        for (int b = 0; b < count; ++b) {
            const int i = first + b;
            closs_lse_partial partial = closs_cm_lse_empty();
            float positive_sum = 0.0f;
            for (int k = 0; k < rows; ++k) {
                if (k == i) continue;
                const float x = s[b * rows + k] * inv_t;
                partial = closs_cm_lse_add(partial, x);
                if (is_positive(t, p, i, k)) positive_sum += x;
            }
            r->lse[i] = closs_cm_lse_value(partial);
            r->row_loss[i] = closs_cm_row_loss(r->lse[i], positive_sum, r->positives[i], scale);
        }
    }
    /* 4. The reduction. */
    if (t->reduction == CLOSS_REDUCTION_NONE) {
        memcpy(r->loss, r->row_loss, (size_t)rows * sizeof(float));
    } else {
        float sum = 0.0f;
        for (int i = 0; i < rows; ++i) sum += r->row_loss[i];
        if (t->reduction == CLOSS_REDUCTION_MEAN) sum = r->valid > 0 ? sum / (float)r->valid : 0.0f;
        r->loss[0] = sum;
    }
    /* 5. Backward: anchor weights, then G·ẑ chunk by chunk, then through the normalisation. */
    for (int i = 0; i < rows; ++i) {
        float weight = p->upstream[0];
        if (t->reduction == CLOSS_REDUCTION_NONE) weight = p->upstream[i];
        else if (t->reduction == CLOSS_REDUCTION_MEAN)
            weight = r->valid > 0 ? p->upstream[0] / (float)r->valid : 0.0f;
        closs_cm_anchor_weights(weight, r->positives[i], scale, &r->w[i], &r->a[i]);
    }
    for (int first = 0; first < rows; first += chunk) {
        const int count = rows - first < chunk ? rows - first : chunk;
        similarity_chunk(r, rows, dim, first, count, s);
        for (int b = 0; b < count; ++b) {
            const int i = first + b;
            float g[MAX_ROWS], dzhat[MAX_DIM];
            for (int k = 0; k < rows; ++k)
                g[k] = k == i ? 0.0f
                              : closs_cm_coefficient(s[b * rows + k] * inv_t, r->lse[i], r->lse[k],
                                                     r->w[i], r->w[k], r->a[i], r->a[k],
                                                     is_positive(t, p, i, k), inv_t);
            for (int c = 0; c < dim; ++c) {
                float acc = 0.0f;
                for (int k = 0; k < rows; ++k) acc += g[k] * r->zhat[k * dim + c];
                dzhat[c] = acc;
            }
            const float *unit = r->zhat + i * dim;
            float *dz = r->grad + i * dim;
            if (!t->normalize) {
                for (int c = 0; c < dim; ++c) dz[c] = dzhat[c];
            } else if (r->norm[i] > normalize_eps) {
                float radial = 0.0f;
                for (int c = 0; c < dim; ++c) radial += unit[c] * dzhat[c];
                for (int c = 0; c < dim; ++c) dz[c] = (dzhat[c] - unit[c] * radial) / r->norm[i];
            } else {
                for (int c = 0; c < dim; ++c) dz[c] = dzhat[c] / normalize_eps;
            }
        }
    }
}

/* ---- the fused algorithm (cuda/contrastive_fused.cu), in float, in the kernels' order ------- */

enum {
    TILE = CLOSS_FUSED_TILE,
    LANES = CLOSS_FUSED_LANES,
    SLICE = CLOSS_FUSED_SLICE,
    PER_THREAD = CLOSS_FUSED_TILE / CLOSS_FUSED_LANES,
    GROUPS = CLOSS_FUSED_THREADS / CLOSS_FUSED_LANES, /* row groups ty of a block */
    WARP = 32,
    FINISH_THREADS = 256 /* finish_loss_kernel's block */
};

/* The butterfly of __shfl_xor_sync over `lanes` lanes: lane l adds lane l ^ offset's value. */
static float butterfly_sum(float *v, int lanes) {
    for (int offset = lanes / 2; offset > 0; offset /= 2) {
        float next[WARP];
        for (int l = 0; l < lanes; ++l) next[l] = v[l] + v[l ^ offset];
        memcpy(v, next, (size_t)lanes * sizeof(float));
    }
    return v[0];
}

static closs_lse_partial butterfly_merge(closs_lse_partial *v) {
    for (int offset = LANES / 2; offset > 0; offset /= 2) {
        closs_lse_partial next[LANES];
        for (int l = 0; l < LANES; ++l) next[l] = closs_cm_lse_merge(v[l], v[l ^ offset]);
        memcpy(v, next, sizeof next);
    }
    return v[0];
}

/* The fused kernels' unit_element(): ẑ as z·r_i, 0 outside the matrix. */
static float fused_unit(const cm_problem *p, const float *inv_norm, int row, int col) {
    if (row >= p->rows || col >= p->dim) return 0.0f;
    return p->z[row * p->dim + col] * inv_norm[row];
}

/* A warp's dot product (embed): lane l takes columns l, l + 32, ...; then the
 * butterfly. `b` NULL: the squares of `a`. */
static float warp_dot(const float *a, const float *b, int dim) {
    float lanes[WARP] = {0};
    for (int c = 0; c < dim; ++c) lanes[c % WARP] = fmaf(a[c], b ? b[c] : a[c], lanes[c % WARP]);
    return butterfly_sum(lanes, WARP);
}

/* similarity_tile(): fmaf over k in slices of SLICE, the padding included (0·0 adds nothing). */
static float fused_similarity(const cm_problem *p, const float *inv_norm, int i, int j) {
    const int padded = (p->dim + SLICE - 1) / SLICE * SLICE;
    float s = 0.0f;
    for (int k = 0; k < padded; ++k)
        s = fmaf(fused_unit(p, inv_norm, i, k), fused_unit(p, inv_norm, j, k), s);
    return s;
}

/* SupCon's classes: a stable sort of (label, row), the first rows of classes of ≥ 2 rows, their
 * inclusive scan; then class_of, class_start/end and K as assign_classes_kernel writes them. */
static int fused_classes(const cm_problem *p, int *order, int *class_of, int *start, int *end) {
    const int rows = p->rows;
    int64_t keys[MAX_ROWS];
    for (int r = 0; r < rows; ++r) order[r] = r, keys[r] = load_label(p, r);
    for (int r = 1; r < rows; ++r) /* insertion sort: stable, like CUB's radix sort */
        for (int q = r; q > 0 && keys[q - 1] > keys[q]; --q) {
            const int64_t key = keys[q];
            const int row = order[q];
            keys[q] = keys[q - 1], order[q] = order[q - 1];
            keys[q - 1] = key, order[q - 1] = row;
        }
    int ids[MAX_ROWS], scan = 0;
    for (int r = 0; r < rows; ++r) {
        const int first = r == 0 || keys[r] != keys[r - 1];
        const int shared = r + 1 < rows && keys[r + 1] == keys[r];
        ids[r] = scan += first && shared;
    }
    for (int r = 0; r < rows; ++r) {
        const int first = r == 0 || keys[r] != keys[r - 1];
        const int last = r + 1 == rows || keys[r + 1] != keys[r];
        const int k = first && last ? -1 : ids[r] - 1;
        class_of[order[r]] = k;
        if (k >= 0 && first) start[k] = r;
        if (k >= 0 && last) end[k] = r;
    }
    return rows > 0 ? ids[rows - 1] : 0;
}

static void emulate_fused(const cm_case *t, const cm_problem *p, cm_result *r) {
    const int rows = p->rows, dim = p->dim;
    const double base =
        t->supcon && t->base_temperature != 0.0 ? t->base_temperature : t->temperature;
    r->inv_temperature = (float)(1.0 / t->temperature);
    r->scale = t->supcon ? (float)(t->temperature / base) : 1.0f;
    const float inv_t = r->inv_temperature, shift = inv_t;
    const int fixed = r->fixed_shift = closs_fm_fixed_shift(t->normalize, inv_t);

    /* embed_kernel: ‖z_i‖ and r_i */
    float inv_norm[MAX_ROWS];
    for (int i = 0; i < rows; ++i) {
        r->norm[i] = sqrtf(warp_dot(p->z + i * dim, NULL, dim));
        inv_norm[i] = t->normalize ? 1.0f / fmaxf(r->norm[i], normalize_eps) : 1.0f;
        for (int c = 0; c < dim; ++c) r->zhat[i * dim + c] = fused_unit(p, inv_norm, i, c);
    }
    /* classes, positives_kernel; a positive is a column whose key equals the anchor's */
    static int order[MAX_ROWS], class_of[MAX_ROWS], start[MAX_ROWS], end[MAX_ROWS];
    static int row_key[MAX_ROWS], column_key[MAX_ROWS];
    if (t->supcon) fused_classes(p, order, class_of, start, end);
    r->valid = 0;
    for (int i = 0; i < rows; ++i) {
        const int k = t->supcon ? class_of[i] : -1;
        r->positives[i] = !t->supcon ? 1 : k < 0 ? 0 : end[k] - start[k];
        r->valid += r->positives[i] > 0;
        row_key[i] = closs_fm_row_key(t->supcon, i, rows, k);
        column_key[i] = closs_fm_column_key(t->supcon, i, k);
    }

    /* forward_kernel: block by block, thread (ty, tx) by thread, tile by tile */
    for (int i0 = 0; i0 < rows; i0 += TILE)
        for (int ty = 0; ty < GROUPS; ++ty)
            for (int pp = 0; pp < PER_THREAD; ++pp) {
                const int i = i0 + ty + LANES * pp;
                float sum[LANES], positive_sum[LANES];
                closs_lse_partial partial[LANES];
                for (int tx = 0; tx < LANES; ++tx) {
                    sum[tx] = positive_sum[tx] = 0.0f;
                    partial[tx] = closs_cm_lse_empty();
                    for (int j0 = 0; j0 < rows; j0 += TILE)
                        for (int q = 0; q < PER_THREAD; ++q) {
                            const int j = j0 + tx + LANES * q;
                            if (i >= rows || j >= rows || j == i) continue;
                            const float x = fused_similarity(p, inv_norm, i, j) * inv_t;
                            if (fixed) sum[tx] = closs_fm_push_fixed(sum[tx], x, shift);
                            else partial[tx] = closs_fm_push_online(partial[tx], x);
                            if (column_key[j] == row_key[i]) positive_sum[tx] += x;
                        }
                }
                if (i >= rows) continue;
                r->lse[i] = fixed ? closs_fm_lse_fixed(butterfly_sum(sum, LANES), shift)
                                  : closs_cm_lse_value(butterfly_merge(partial));
                r->row_loss[i] = butterfly_sum(positive_sum, LANES); /* Σ_{k∈P(i)} x_ik */
            }
    /* anchor_loss_kernel */
    for (int i = 0; i < rows; ++i)
        r->row_loss[i] = closs_cm_row_loss(r->lse[i], r->row_loss[i], r->positives[i], r->scale);
    /* finish_loss_kernel: per-thread double sums, then the block's tree */
    if (t->reduction == CLOSS_REDUCTION_NONE) {
        memcpy(r->loss, r->row_loss, (size_t)rows * sizeof(float));
    } else {
        double partial[FINISH_THREADS] = {0};
        for (int i = 0; i < rows; ++i) partial[i % FINISH_THREADS] += r->row_loss[i];
        for (int half = FINISH_THREADS / 2; half > 0; half /= 2)
            for (int l = 0; l < half; ++l) partial[l] = partial[l] + partial[l + half];
        double sum = partial[0];
        if (t->reduction == CLOSS_REDUCTION_MEAN && r->valid > 0) sum /= r->valid;
        r->loss[0] = (float)sum;
    }

    /* anchor_weights_kernel */
    for (int i = 0; i < rows; ++i) {
        float weight = p->upstream[0];
        if (t->reduction == CLOSS_REDUCTION_NONE) weight = p->upstream[i];
        else if (t->reduction == CLOSS_REDUCTION_MEAN) weight /= (float)r->valid;
        closs_cm_anchor_weights(weight, r->positives[i], r->scale, &r->w[i], &r->a[i]);
    }

    /* backward_kernel: dẑ of thread (ty, tx), row ty + 16p, columns tx + 16q */
    const int max_dim = dim <= 64 ? 64 : dim <= 128 ? 128 : CLOSS_FUSED_MAX_DIM;
    static float coefficients[TILE][TILE];
    for (int i0 = 0; i0 < rows; i0 += TILE) {
        static float grad[TILE][CLOSS_FUSED_MAX_DIM];
        memset(grad, 0, sizeof grad);
        float factor[MAX_ROWS];
        for (int i = 0; i < rows; ++i)
            factor[i] = fixed ? closs_fm_softmax_weight(r->w[i], r->lse[i], shift) : r->w[i];
        for (int j0 = 0; j0 < rows; j0 += TILE) {
            for (int row = 0; row < TILE; ++row)
                for (int col = 0; col < TILE; ++col) {
                    const int i = i0 + row, j = j0 + col;
                    float g = 0.0f;
                    if (i < rows && j < rows && j != i) {
                        const float x = fused_similarity(p, inv_norm, i, j) * inv_t;
                        const float fold = column_key[j] == row_key[i] ? r->a[i] + r->a[j] : 0.0f;
                        g = fixed ? closs_fm_coefficient_fixed(x, shift, factor[i], factor[j], fold,
                                                               inv_t)
                                  : closs_fm_coefficient_online(x, r->lse[i], r->lse[j], factor[i],
                                                                factor[j], fold, inv_t);
                    }
                    coefficients[row][col] = g;
                }
            for (int js = 0; js < TILE && j0 + js < rows; js += SLICE)
                for (int jj = 0; jj < SLICE; ++jj)
                    for (int row = 0; row < TILE; ++row)
                        for (int c = 0; c < max_dim; ++c)
                            grad[row][c] =
                                fmaf(coefficients[row][js + jj],
                                     fused_unit(p, inv_norm, j0 + js + jj, c), grad[row][c]);
        }
        /* the radial component over the 16 lanes, the store */
        for (int row = 0; row < TILE && i0 + row < rows; ++row) {
            const int i = i0 + row;
            float radial[LANES] = {0};
            for (int c = 0; c < dim; ++c)
                radial[c % LANES] =
                    fmaf(fused_unit(p, inv_norm, i, c), grad[row][c], radial[c % LANES]);
            const float total = butterfly_sum(radial, LANES);
            for (int c = 0; c < dim; ++c)
                r->grad[i * dim + c] = closs_fm_unnormalize(
                    grad[row][c], fused_unit(p, inv_norm, i, c), total, r->norm[i], t->normalize);
        }
    }
}

/* ---- the error bounds of the header comment (and the fused path's additions below) ---------- */

typedef struct cm_bounds {
    double loss[MAX_ROWS]; /* [0] for MEAN and SUM, one per row for NONE */
    double grad[MAX_ROWS]; /* on ‖dz_i‖ */
} cm_bounds;

static double row_norm(const float *x, int dim) {
    double sum = 0.0;
    for (int c = 0; c < dim; ++c) sum += (double)x[c] * x[c];
    return sqrt(sum);
}

static void error_bounds(const cm_case *t, const cm_problem *p, const cm_result *r, cm_bounds *b) {
    const int rows = p->rows, dim = p->dim;
    const double u = unit_roundoff, inv_t = r->inv_temperature, scale = fabs(r->scale);
    const double c_x = t->normalize ? 2.0 * dim + 6.0 : dim + 2.0;
    static float s[MAX_ROWS * MAX_ROWS];
    similarity_chunk(r, rows, dim, 0, rows, s);
    double unit_norm[MAX_ROWS], lse_error[MAX_ROWS], row_bound[MAX_ROWS];
    for (int k = 0; k < rows; ++k) unit_norm[k] = row_norm(r->zhat + k * dim, dim);

    double loss_sum = 0.0, loss_magnitude = 0.0;
    for (int i = 0; i < rows; ++i) {
        double x_error = 0.0, positive_max = 0.0;
        for (int k = 0; k < rows; ++k) {
            if (k == i) continue;
            x_error = fmax(x_error, c_x * u * unit_norm[i] * unit_norm[k] * inv_t);
            if (is_positive(t, p, i, k))
                positive_max =
                    fmax(positive_max, fabs((double)(s[i * rows + k] * r->inv_temperature)));
        }
        const double lse = r->lse[i], loss = fabs((double)r->row_loss[i]);
        lse_error[i] = rows > 1 ? x_error + 3.0 * rows * u + u * (log(rows) + fabs(lse)) : 0.0;
        /* fixed shift: each e^(x − c) also errs by the rounding of x − c, |x − c| ≤ 2/τ */
        if (r->fixed_shift && rows > 1) lse_error[i] += 2.0 * u * inv_t;
        row_bound[i] =
            r->positives[i] == 0
                ? 0.0
                : scale * (x_error + lse_error[i] + (r->positives[i] + 2.0) * u * positive_max) +
                      3.0 * u * loss +
                      reference_error * (scale * (fabs(lse) + positive_max) + loss);
        loss_sum += row_bound[i];
        loss_magnitude += loss;
    }
    if (t->reduction == CLOSS_REDUCTION_NONE) {
        memcpy(b->loss, row_bound, (size_t)rows * sizeof(double));
    } else {
        double bound = loss_sum + rows * u * loss_magnitude;
        if (t->reduction == CLOSS_REDUCTION_MEAN)
            bound = r->valid > 0 ? bound / r->valid + u * fabs((double)r->loss[0]) : 0.0;
        b->loss[0] = bound;
    }

    for (int i = 0; i < rows; ++i) {
        double dzhat_error = 0.0, magnitude = 0.0;
        for (int k = 0; k < rows; ++k) {
            if (k == i) continue;
            const double x = s[i * rows + k] * r->inv_temperature;
            const int positive = is_positive(t, p, i, k);
            const double h =
                inv_t * (fabs((double)r->w[i]) * exp(x - r->lse[i]) +
                         fabs((double)r->w[k]) * exp(x - r->lse[k]) +
                         (positive ? fabs((double)r->a[i]) + fabs((double)r->a[k]) : 0.0));
            double epsilon = c_x * u * unit_norm[i] * unit_norm[k] * inv_t +
                             fmax(lse_error[i], lse_error[k]) +
                             u * fmax(fabs(x - r->lse[i]), fabs(x - r->lse[k])) + 8.0 * u;
            /* fixed shift: e^(x − c)·e^(c − lse) rounds both arguments */
            if (r->fixed_shift)
                epsilon +=
                    u * (fabs(x - inv_t) + fmax(fabs(inv_t - r->lse[i]), fabs(inv_t - r->lse[k])));
            /* exp underflowing to a subnormal or 0 in float loses at most FLT_MIN per term. */
            const double underflow =
                inv_t * (fabs((double)r->w[i]) + fabs((double)r->w[k])) * FLT_MIN;
            dzhat_error +=
                (h * (epsilon + (rows + dim / 2.0 + 2.0) * u) + underflow) * unit_norm[k];
            magnitude += h * unit_norm[k];
        }
        double bound = dzhat_error;
        if (t->normalize)
            bound = r->norm[i] > normalize_eps
                        ? (dzhat_error + (2.0 * dim + 10.0) * u * magnitude) / r->norm[i]
                        : (dzhat_error + 2.0 * u * magnitude) / normalize_eps;
        const double scale_out =
            t->normalize ? (r->norm[i] > normalize_eps ? r->norm[i] : normalize_eps) : 1.0;
        b->grad[i] = bound + reference_error * magnitude / scale_out;
    }
}

/* ---- the comparison ------------------------------------------------------------------------ */

static closs_status_t reference(const cm_case *t, const cm_problem *p, double *loss, double *grad,
                                int64_t *valid) {
    double upstream[MAX_ROWS];
    for (int i = 0; i < p->rows; ++i) upstream[i] = p->upstream[i];
    closs_matrix_t z = closs_matrix(p->z, CLOSS_F32, p->rows, p->dim);
    if (!t->supcon) {
        closs_ntxent_params q = CLOSS_NTXENT_PARAMS_INIT;
        q.temperature = t->temperature, q.normalize = t->normalize, q.reduction = t->reduction;
        *valid = p->rows;
        return closs_ref_ntxent(&q, z, upstream, loss, grad);
    }
    closs_supcon_params q = CLOSS_SUPCON_PARAMS_INIT;
    q.temperature = t->temperature, q.base_temperature = t->base_temperature;
    q.normalize = t->normalize, q.reduction = t->reduction;
    const void *labels = p->label_dtype == CLOSS_I64 ? (const void *)p->labels64 : p->labels32;
    return closs_ref_supcon(&q, z, closs_vector(labels, p->label_dtype, p->rows), upstream, loss,
                            grad, valid);
}

/* Emulates `p` with every chunk size against the reference; returns the number of failures. */
static int check_problem(const cm_case *t, const cm_problem *p, uint64_t seed, int reported) {
    static double loss[MAX_ROWS], grad[MAX_ROWS * MAX_DIM];
    static cm_result r;
    static cm_bounds b;
    int64_t valid = -1;
    cr_assert_eq(reference(t, p, loss, grad, &valid), CLOSS_STATUS_SUCCESS, "%s %s: %s" SEED_FMT,
                 t->name, p->what, closs_last_error(), SEED_ARGS(seed));
    const int rows = p->rows, dim = p->dim;
    const int chunks[4] = {1, 3, 7, rows};
    const int runs = t->fused ? 1 : 4; /* the fused algorithm has no chunk size */
    int failures = 0;
#define REPORT(...)                                                                                \
    do {                                                                                           \
        if (reported + failures++ < MAX_REPORTS) cr_expect(0, __VA_ARGS__);                        \
    } while (0)
    for (int n = 0; n < runs; ++n) {
        char how[16] = "fused";
        if (t->fused) emulate_fused(t, p, &r);
        else emulate(t, p, chunks[n], &r), snprintf(how, sizeof how, "chunk %d", chunks[n]);
        error_bounds(t, p, &r, &b);
        if (r.valid != valid)
            REPORT("%s %s %s: valid %d, the reference says %lld" SEED_FMT, t->name, p->what, how,
                   r.valid, (long long)valid, SEED_ARGS(seed));
        const int losses = t->reduction == CLOSS_REDUCTION_NONE ? rows : 1;
        for (int i = 0; i < losses; ++i)
            if (!(fabs(r.loss[i] - loss[i]) <= b.loss[i]))
                REPORT("%s %s %s: loss[%d] %.9g, reference %.9g, error %.3g > bound "
                       "%.3g" SEED_FMT,
                       t->name, p->what, how, i, r.loss[i], loss[i], fabs(r.loss[i] - loss[i]),
                       b.loss[i], SEED_ARGS(seed));
        for (int i = 0; i < rows; ++i) {
            double error = 0.0, size = 0.0;
            for (int c = 0; c < dim; ++c) {
                double d = r.grad[i * dim + c] - grad[i * dim + c];
                error += d * d;
                size += grad[i * dim + c] * grad[i * dim + c];
            }
            error = sqrt(error);
            if (!(error <= b.grad[i]))
                REPORT("%s %s %s: ‖dz_%d − reference‖ = %.3g > bound %.3g (‖dz_%d‖ = "
                       "%.3g)" SEED_FMT,
                       t->name, p->what, how, i, error, b.grad[i], i, sqrt(size), SEED_ARGS(seed));
        }
    }
#undef REPORT
    return failures;
}

/* Every option × temperature × reduction, for one algorithm; returns the number of cases. */
static size_t make_cases(int fused, const double *temperatures, int temperature_count,
                         cm_case *cases) {
    static const closs_reduction_t reductions[] = {CLOSS_REDUCTION_MEAN, CLOSS_REDUCTION_SUM,
                                                   CLOSS_REDUCTION_NONE};
    static const char *const reduction_names[] = {"mean", "sum", "none"};
    size_t count = 0;
    for (int supcon = 0; supcon <= 1; ++supcon)
        for (int base = 0; base <= supcon; ++base)
            for (int normalize = 1; normalize >= 0; --normalize)
                for (int t = 0; t < temperature_count; ++t)
                    for (int r = 0; r < 3; ++r) {
                        cm_case *c = &cases[count++];
                        c->fused = fused;
                        c->supcon = supcon, c->normalize = normalize;
                        c->temperature = temperatures[t];
                        c->base_temperature = base ? 0.07 : 0.0;
                        c->reduction = reductions[r];
                        snprintf(c->name, sizeof c->name, "%s%s normalize=%d tau=%g%s %s",
                                 fused ? "fused " : "", supcon ? "supcon" : "ntxent", normalize,
                                 temperatures[t],
                                 supcon ? (base ? " tau_b=0.07" : " tau_b=tau") : "",
                                 reduction_names[r]);
                    }
    return count;
}

/* Every shape × dim (× label pattern and dtype for SupCon) of a case. */
static void run_case(const cm_case *t, const int *ntxent_rows, int ntxent_shapes,
                     const int *supcon_rows, int supcon_shapes, const int *dims, int dim_count) {
    const uint64_t seed = suite_seed();
    uint64_t state = case_state(seed, t->name);
    static const closs_dtype_t label_dtypes[] = {CLOSS_I32, CLOSS_I64};
    static cm_problem p;
    const int shapes = t->supcon ? supcon_shapes : ntxent_shapes;
    int failures = 0;
    for (int m = 0; m < shapes; ++m)
        for (int d = 0; d < dim_count; ++d)
            for (int pattern = 0; pattern < (t->supcon ? LABEL_PATTERNS : 1); ++pattern)
                for (int l = 0; l < (t->supcon ? 2 : 1); ++l) {
                    make_problem(t, t->supcon ? supcon_rows[m] : ntxent_rows[m], dims[d],
                                 (label_pattern)pattern, label_dtypes[l], &state, &p);
                    failures += check_problem(t, &p, seed, failures);
                }
}

ParameterizedTestParameters(contrastive_math, matches_reference) {
    static const double temperatures[] = {0.05, 0.1, 1.0};
    static cm_case cases[3 * 2 * 3 * 3];
    return cr_make_param_array(cm_case, cases, make_cases(0, temperatures, 3, cases));
}

ParameterizedTest(cm_case *t, contrastive_math, matches_reference) {
    static const int ntxent_rows[] = {2, 10, 34}, supcon_rows[] = {1, 2, 3, 10, 33};
    static const int dims[] = {1, 3, 16};
    run_case(t, ntxent_rows, 3, supcon_rows, 5, dims, 3);
}

/* The fused algorithm: τ from 0.01 (the online maximum even when normalised) through 0.025 (the
 * last fixed shift) to 10; rows across one, two and three 64-row tiles, odd and not multiples of
 * the tile; D across slices of 16 (1, 3: one partial slice; 17: a full one and one column). */
ParameterizedTestParameters(contrastive_math, fused_matches_reference) {
    static const double temperatures[] = {0.01, 0.025, 0.1, 1.0, 10.0};
    static cm_case cases[3 * 2 * 5 * 3];
    return cr_make_param_array(cm_case, cases, make_cases(1, temperatures, 5, cases));
}

ParameterizedTest(cm_case *t, contrastive_math, fused_matches_reference) {
    static const int ntxent_rows[] = {2, 10, 64, 66, 130}, supcon_rows[] = {1, 2, 3, 33, 65, 129};
    static const int dims[] = {1, 3, 17};
    run_case(t, ntxent_rows, 5, supcon_rows, 6, dims, 3);
}

/* Hand-checkable anchors of the header's functions. */
Test(contrastive_math, lse_partials) {
    /* log(e^1 + e^2 + e^3), in any order and merged from any split (to a few float ulps). */
    const float want = (float)log(exp(1.0) + exp(2.0) + exp(3.0));
    closs_lse_partial forward = closs_cm_lse_empty(), backward = closs_cm_lse_empty();
    for (int k = 1; k <= 3; ++k) forward = closs_cm_lse_add(forward, (float)k);
    for (int k = 3; k >= 1; --k) backward = closs_cm_lse_add(backward, (float)k);
    closs_lse_partial left = closs_cm_lse_add(closs_cm_lse_empty(), 2.0f);
    closs_lse_partial right = closs_cm_lse_add(closs_cm_lse_add(closs_cm_lse_empty(), 3.0f), 1.0f);
    cr_expect_float_eq(closs_cm_lse_value(forward), want, 1e-6f);
    cr_expect_float_eq(closs_cm_lse_value(backward), want, 1e-6f);
    cr_expect_float_eq(closs_cm_lse_value(closs_cm_lse_merge(left, right)), want, 1e-6f);
    /* Merging with an empty partial changes nothing; two empties stay empty. */
    closs_lse_partial same = closs_cm_lse_merge(closs_cm_lse_empty(), forward);
    cr_expect(same.max == forward.max && same.sum == forward.sum);
    same = closs_cm_lse_merge(forward, closs_cm_lse_empty());
    cr_expect(same.max == forward.max && same.sum == forward.sum);
    closs_lse_partial empty = closs_cm_lse_merge(closs_cm_lse_empty(), closs_cm_lse_empty());
    cr_expect(empty.max == -INFINITY && empty.sum == 0.0f);
    /* Logits whose exp overflows float (e^100) do not overflow the log-sum-exp. */
    closs_lse_partial big =
        closs_cm_lse_add(closs_cm_lse_add(closs_cm_lse_empty(), 100.0f), 100.0f);
    cr_expect_float_eq(closs_cm_lse_value(big), 100.0f + (float)log(2.0), 1e-5f);
}

Test(contrastive_math, anchors_without_positive) {
    cr_expect(closs_cm_row_loss(5.0f, 3.0f, 0, 2.0f) == 0.0f);
    float w = -1.0f, a = -1.0f;
    closs_cm_anchor_weights(0.5f, 0, 2.0f, &w, &a);
    cr_expect(w == 0.0f && a == 0.0f);
    closs_cm_anchor_weights(0.5f, 4, 2.0f, &w, &a);
    cr_expect(w == 1.0f && a == 0.25f);
    cr_expect_float_eq(closs_cm_row_loss(5.0f, 3.0f, 2, 2.0f), 7.0f, 1e-6f);
}
