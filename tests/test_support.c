/* Shared helpers of the CPU-reference test suites (see test_support.h). */
#define _POSIX_C_SOURCE 200809L /* getpid */
#include "test_support.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- random inputs ------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

ct_rng ct_rng_seeded(uint64_t seed) {
    ct_rng rng;
    rng.seed = seed;
    uint64_t x = seed;
    for (int k = 0; k < 4; ++k) rng.s[k] = splitmix64(&x);
    return rng;
}

ct_rng ct_rng_fresh(void) {
    const char *forced = getenv("CLOSS_TEST_SEED");
    if (forced && *forced) return ct_rng_seeded(strtoull(forced, NULL, 10));
    uint64_t seed = 0;
    FILE *urandom = fopen("/dev/urandom", "rb");
    if (!urandom || fread(&seed, sizeof seed, 1, urandom) != 1)
        seed = (uint64_t)time(NULL) * 1000003u ^ (uint64_t)getpid();
    if (urandom) fclose(urandom);
    seed &= (1ull << 53) - 1; /* short enough to copy by hand */
    return ct_rng_seeded(seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t ct_next_u64(ct_rng *rng) {
    uint64_t *s = rng->s;
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double ct_uniform(ct_rng *rng, double low, double high) {
    double unit = (double)(ct_next_u64(rng) >> 11) * 0x1.0p-53;
    return low + (high - low) * unit;
}

double ct_normal(ct_rng *rng) {
    /* Box–Muller; 1 − u keeps the logarithm finite. */
    double u = 1.0 - ct_uniform(rng, 0.0, 1.0), v = ct_uniform(rng, 0.0, 1.0);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586477 * v);
}

int64_t ct_int(ct_rng *rng, int64_t low, int64_t high) {
    uint64_t span = (uint64_t)(high - low) + 1u;
    return low + (int64_t)(ct_next_u64(rng) % span);
}

void ct_fill_normal(ct_rng *rng, double *x, int64_t n, double scale) {
    for (int64_t i = 0; i < n; ++i) x[i] = scale * ct_normal(rng);
}

void ct_permutation(ct_rng *rng, int64_t *perm, int64_t n) {
    for (int64_t i = 0; i < n; ++i) perm[i] = i;
    for (int64_t i = n - 1; i > 0; --i) {
        int64_t j = ct_int(rng, 0, i);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

const char *ct_seed_text(const ct_rng *rng) {
    static char text[96];
    if (!rng) return "";
    snprintf(text, sizeof text, CT_SEED_FMT, CT_SEED_ARGS(rng));
    return text;
}

void *ct_alloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) cr_assert_fail("test allocation of %zu bytes failed", bytes);
    return p;
}

double *ct_doubles(int64_t n) { return ct_alloc((size_t)(n > 0 ? n : 1) * sizeof(double)); }

/* ---- inputs in the layouts the API accepts ------------------------------------------------- */

ct_matrix ct_matrix_pack(const double *dense, int64_t rows, int64_t cols, closs_dtype_t dtype,
                         int64_t ld) {
    cr_assert(dtype == CLOSS_F32 || dtype == CLOSS_F64, "ct_matrix_pack: f32 or f64 only");
    cr_assert(ld >= cols, "ct_matrix_pack: ld %lld < cols %lld", (long long)ld, (long long)cols);
    const int64_t elements = rows * ld;
    ct_matrix m;
    if (dtype == CLOSS_F64) {
        double *data = ct_doubles(elements);
        for (int64_t e = 0; e < elements; ++e) data[e] = NAN;
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < cols; ++c) data[r * ld + c] = dense[r * cols + c];
        m.storage = data;
    } else {
        float *data = ct_alloc((size_t)(elements > 0 ? elements : 1) * sizeof(float));
        for (int64_t e = 0; e < elements; ++e) data[e] = NAN;
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < cols; ++c) data[r * ld + c] = (float)dense[r * cols + c];
        m.storage = data;
    }
    m.view = closs_matrix_ld(m.storage, dtype, rows, cols, ld);
    return m;
}

void ct_matrix_free(ct_matrix *m) {
    free(m->storage);
    m->storage = NULL;
    m->view.data = NULL;
}

ct_vector ct_vector_real(const double *values, int64_t length, closs_dtype_t dtype) {
    ct_vector v;
    if (dtype == CLOSS_F32) {
        float *data = ct_alloc((size_t)(length > 0 ? length : 1) * sizeof(float));
        for (int64_t i = 0; i < length; ++i) data[i] = (float)values[i];
        v.storage = data;
    } else {
        double *data = ct_doubles(length);
        for (int64_t i = 0; i < length; ++i) data[i] = values[i];
        v.storage = data;
    }
    v.view = closs_vector(v.storage, dtype, length);
    return v;
}

ct_vector ct_vector_label(const int64_t *values, int64_t length, closs_dtype_t dtype) {
    ct_vector v;
    if (dtype == CLOSS_I32) {
        int32_t *data = ct_alloc((size_t)(length > 0 ? length : 1) * sizeof(int32_t));
        for (int64_t i = 0; i < length; ++i) {
            cr_assert(values[i] >= INT32_MIN && values[i] <= INT32_MAX,
                      "label %lld does not fit in i32", (long long)values[i]);
            data[i] = (int32_t)values[i];
        }
        v.storage = data;
    } else {
        int64_t *data = ct_alloc((size_t)(length > 0 ? length : 1) * sizeof(int64_t));
        for (int64_t i = 0; i < length; ++i) data[i] = values[i];
        v.storage = data;
    }
    v.view = closs_vector(v.storage, dtype, length);
    return v;
}

void ct_vector_free(ct_vector *v) {
    free(v->storage);
    v->storage = NULL;
    v->view.data = NULL;
}

void ct_round_to_f32(double *x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] = (double)(float)x[i];
}

/* ---- poisoning ---------------------------------------------------------------------------- */

static const uint64_t poison_bits = 0x7ff8deadbeef5a5aull;

double ct_poison_value(void) {
    double value;
    memcpy(&value, &poison_bits, sizeof value);
    return value;
}

void ct_poison(double *x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) memcpy(&x[i], &poison_bits, sizeof(double));
}

static int is_poison(double value) {
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits == poison_bits;
}

int64_t ct_first_unpoisoned(const double *x, int64_t n) {
    for (int64_t i = 0; i < n; ++i)
        if (!is_poison(x[i])) return i;
    return -1;
}

int64_t ct_first_poisoned(const double *x, int64_t n) {
    for (int64_t i = 0; i < n; ++i)
        if (is_poison(x[i])) return i;
    return -1;
}

int64_t ct_first_nonfinite(const double *x, int64_t n) {
    for (int64_t i = 0; i < n; ++i)
        if (!isfinite(x[i])) return i;
    return -1;
}

/* ---- finite differences and comparisons ---------------------------------------------------- */

void ct_central_differences(ct_objective_fn f, void *context, double *x, int64_t n, double *grad) {
    for (int64_t i = 0; i < n; ++i) {
        const double original = x[i];
        const double step = 1e-6 * fmax(1.0, fabs(original));
        volatile double plus = original + step, minus = original - step;
        x[i] = plus;
        double f_plus = f(context, x);
        x[i] = minus;
        double f_minus = f(context, x);
        x[i] = original;
        grad[i] = (f_plus - f_minus) / (plus - minus);
    }
}

int64_t ct_first_mismatch(const double *got, const double *want, int64_t n, double rtol,
                          double atol) {
    for (int64_t i = 0; i < n; ++i) {
        if (isnan(got[i]) || isnan(want[i])) {
            if (isnan(got[i]) && isnan(want[i])) continue;
            return i;
        }
        if (got[i] == want[i]) continue; /* equal infinities too */
        double scale = fmax(fabs(got[i]), fabs(want[i]));
        if (!(fabs(got[i] - want[i]) <= atol + rtol * scale)) return i;
    }
    return -1;
}

int ct_same_bits(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

int64_t ct_first_bit_difference(const double *a, const double *b, int64_t n) {
    for (int64_t i = 0; i < n; ++i)
        if (!ct_same_bits(a[i], b[i])) return i;
    return -1;
}

double ct_max_abs(const double *x, int64_t n) {
    double m = 0.0;
    for (int64_t i = 0; i < n; ++i) m = fmax(m, fabs(x[i]));
    return m;
}

/* ---- independent formulas ------------------------------------------------------------------ */

double ct_dot(const double *a, const double *b, int64_t dim) {
    double s = 0.0;
    for (int64_t c = 0; c < dim; ++c) s += a[c] * b[c];
    return s;
}

double ct_norm(const double *a, int64_t dim) { return sqrt(ct_dot(a, a, dim)); }

double ct_cos(const double *a, const double *b, int64_t dim) {
    return ct_dot(a, b, dim) / (fmax(ct_norm(a, dim), 1e-8) * fmax(ct_norm(b, dim), 1e-8));
}

double ct_distance(closs_distance_t kind, const double *a, const double *b, int64_t dim) {
    if (kind == CLOSS_DISTANCE_COSINE) return 1.0 - ct_cos(a, b, dim);
    double squared = 0.0;
    for (int64_t c = 0; c < dim; ++c) squared += (a[c] - b[c]) * (a[c] - b[c]);
    return kind == CLOSS_DISTANCE_SQEUCLIDEAN ? squared : sqrt(squared);
}
