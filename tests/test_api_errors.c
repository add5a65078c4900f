/* Bad arguments to the CPU reference: every one returns CLOSS_STATUS_INVALID_ARGUMENT, leaves a
 * closs_last_error() that names the argument, and writes nothing (the loss, gradient and `valid`
 * buffers are poisoned before the call and compared bit for bit after it). Each case starts from a
 * valid call (checked to succeed first) and changes exactly one thing.
 *
 * Also: values at the edge of every range are accepted; check mode (check_inputs) reports NaN/Inf
 * as CLOSS_STATUS_NONFINITE_INPUT without writing; closs_last_error() is cleared on entry and is
 * per thread; closs_status_string() covers every status. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "closs.h"
#include "test_support.h"
#include "two_tower_support.h"

enum { PAIR, TRIPLET, NTXENT, SUPCON, COSINE, KIND_COUNT };
static const char *kind_names[] = {"pair", "triplet", "ntxent", "supcon", "cosine"};
/* The API's names of each loss's input matrices. */
static const char *input_names[KIND_COUNT][3] = {{"x1", "x2", ""},
                                                 {"anchor", "positive", "negative"},
                                                 {"z", "", ""},
                                                 {"z", "", ""},
                                                 {"x1", "x2", ""}};
static int input_count(int kind) {
    return kind == TRIPLET ? 3 : kind == PAIR || kind == COSINE ? 2 : 1;
}

enum { ROWS = 4, DIM = 3, LOSS_SLOTS = 8 };

/* ---- a valid call, and the outputs it would write ------------------------------------------ */

typedef struct call {
    int kind;
    closs_pair_params pair;
    closs_triplet_params triplet;
    closs_ntxent_params ntxent;
    closs_supcon_params supcon;
    closs_cosine_params cosine;
    int params_null;
    closs_matrix_t in[3];
    closs_vector_t y;      /* pair, cosine */
    closs_vector_t labels; /* SupCon */
    const double *upstream;
    double *loss;
    double *grad[3];
    int64_t *valid;
} call;

/* Storage behind a call: inputs, labels and the poisoned outputs. */
typedef struct fixture {
    double x[3][ROWS * DIM];
    double y[ROWS];
    float y32[ROWS];
    int64_t labels[ROWS];
    double loss[LOSS_SLOTS];
    double grad[3][ROWS * DIM];
    int64_t valid;
} fixture;

static const int64_t VALID_SENTINEL = 0x5a5a5a5a5a5a5a5all;

static void poison_outputs(fixture *f) {
    ct_poison(f->loss, LOSS_SLOTS);
    for (int k = 0; k < 3; ++k) ct_poison(f->grad[k], ROWS * DIM);
    f->valid = VALID_SENTINEL;
}

/* Nothing written: every output still holds its poison. */
static void assert_untouched(const fixture *f, const char *what) {
    int64_t at = ct_first_unpoisoned(f->loss, LOSS_SLOTS);
    cr_assert_eq(at, -1, "%s: loss[%lld] was written", what, (long long)at);
    for (int k = 0; k < 3; ++k) {
        at = ct_first_unpoisoned(f->grad[k], ROWS * DIM);
        cr_assert_eq(at, -1, "%s: gradient %d element %lld was written", what, k, (long long)at);
    }
    cr_assert_eq(f->valid, VALID_SENTINEL, "%s: valid was written", what);
}

static call valid_call(int kind, fixture *f, ct_rng *rng) {
    for (int k = 0; k < 3; ++k) ct_fill_normal(rng, f->x[k], ROWS * DIM, 1.0);
    const double y[ROWS] = {0.0, 1.0, 0.5, 0.25};
    const int64_t labels[ROWS] = {7, 7, -2, -2};
    memcpy(f->y, y, sizeof y);
    for (int i = 0; i < ROWS; ++i) f->y32[i] = (float)y[i];
    memcpy(f->labels, labels, sizeof labels);
    poison_outputs(f);

    call c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.pair = (closs_pair_params)CLOSS_PAIR_PARAMS_INIT;
    c.triplet = (closs_triplet_params)CLOSS_TRIPLET_PARAMS_INIT;
    c.ntxent = (closs_ntxent_params)CLOSS_NTXENT_PARAMS_INIT;
    c.supcon = (closs_supcon_params)CLOSS_SUPCON_PARAMS_INIT;
    c.cosine = (closs_cosine_params)CLOSS_COSINE_PARAMS_INIT;
    for (int k = 0; k < input_count(kind); ++k)
        c.in[k] = closs_matrix(f->x[k], CLOSS_F64, ROWS, DIM);
    c.y = closs_vector(f->y, CLOSS_F64, ROWS);
    c.labels = closs_vector(f->labels, CLOSS_I64, ROWS);
    c.loss = f->loss;
    for (int k = 0; k < 3; ++k) c.grad[k] = f->grad[k];
    c.valid = &f->valid;
    return c;
}

static closs_status_t run_call(const call *c) {
    switch (c->kind) {
    case PAIR:
        return closs_ref_pair(c->params_null ? NULL : &c->pair, c->in[0], c->in[1], c->y,
                              c->upstream, c->loss, c->grad[0], c->grad[1]);
    case TRIPLET:
        return closs_ref_triplet(c->params_null ? NULL : &c->triplet, c->in[0], c->in[1], c->in[2],
                                 c->upstream, c->loss, c->grad[0], c->grad[1], c->grad[2]);
    case NTXENT:
        return closs_ref_ntxent(c->params_null ? NULL : &c->ntxent, c->in[0], c->upstream, c->loss,
                                c->grad[0]);
    case SUPCON:
        return closs_ref_supcon(c->params_null ? NULL : &c->supcon, c->in[0], c->labels,
                                c->upstream, c->loss, c->grad[0], c->valid);
    default:
        return closs_ref_cosine(c->params_null ? NULL : &c->cosine, c->in[0], c->in[1], c->y,
                                c->upstream, c->loss, c->grad[0], c->grad[1]);
    }
}

/* The `size` field, the reduction, the flag (swap / squared / normalize; none for pair) and the
 * margin (none for NT-Xent, SupCon) of the call's own parameter struct. */
static size_t *size_field(call *c) {
    switch (c->kind) {
    case PAIR: return &c->pair.size;
    case TRIPLET: return &c->triplet.size;
    case NTXENT: return &c->ntxent.size;
    case SUPCON: return &c->supcon.size;
    default: return &c->cosine.size;
    }
}
static closs_reduction_t *reduction_field(call *c) {
    switch (c->kind) {
    case PAIR: return &c->pair.reduction;
    case TRIPLET: return &c->triplet.reduction;
    case NTXENT: return &c->ntxent.reduction;
    case SUPCON: return &c->supcon.reduction;
    default: return &c->cosine.reduction;
    }
}
static int *check_inputs_field(call *c) {
    switch (c->kind) {
    case PAIR: return &c->pair.check_inputs;
    case TRIPLET: return &c->triplet.check_inputs;
    case NTXENT: return &c->ntxent.check_inputs;
    case SUPCON: return &c->supcon.check_inputs;
    default: return &c->cosine.check_inputs;
    }
}
static int *flag_field(call *c) {
    switch (c->kind) {
    case TRIPLET: return &c->triplet.swap;
    case NTXENT: return &c->ntxent.normalize;
    case SUPCON: return &c->supcon.normalize;
    case COSINE: return &c->cosine.squared;
    default: return NULL;
    }
}
static double *margin_field(call *c) {
    switch (c->kind) {
    case PAIR: return &c->pair.margin;
    case TRIPLET: return &c->triplet.margin;
    case COSINE: return &c->cosine.margin;
    default: return NULL;
    }
}
static double *temperature_field(call *c) {
    return c->kind == NTXENT   ? &c->ntxent.temperature
           : c->kind == SUPCON ? &c->supcon.temperature
                               : NULL;
}

/* Every input matrix gets `rows` rows (consistent shapes, so that only the mutation is wrong). */
static void set_all_rows(call *c, int64_t rows) {
    for (int k = 0; k < input_count(c->kind); ++k) c->in[k].rows = rows;
    c->y.length = rows;
    c->labels.length = rows;
}

/* ---- the mutations --------------------------------------------------------------------------- */

/* One line per group of related mutations; a comment is for its whole line. */
/* clang-format off */
typedef enum mutation {
    PARAMS_NULL, SIZE_ZERO, SIZE_SMALLER, SIZE_LARGER, LOSS_NULL,
    DATA_NULL,          /* input `input`: data NULL with rows > 0 */
    ROWS_NEGATIVE, ROWS_ZERO, ROWS_ODD, COLS_ZERO, COLS_NEGATIVE,
    LD_SMALLER,         /* input `input`: ld = cols − 1 */
    ROWS_DIFFER,        /* input `input`: one row fewer */
    COLS_DIFFER,        /* input `input`: one column more (ld too) */
    DTYPE_F16, DTYPE_BF16, DTYPE_I32, DTYPE_I64, DTYPE_UNKNOWN, /* input `input` */
    Y_DTYPE_I32, Y_DTYPE_F16, Y_LENGTH, Y_DATA_NULL, Y_ABOVE_ONE, Y_BELOW_ZERO, Y_NAN, Y_F32_NAN,
    LABELS_F32, LABELS_F64, LABELS_LENGTH, LABELS_DATA_NULL,
    TEMPERATURE_ZERO, TEMPERATURE_NEGATIVE, TEMPERATURE_NAN, TEMPERATURE_INF,
    BASE_NEGATIVE, BASE_NAN, BASE_INF,
    MARGIN_NEGATIVE, MARGIN_NAN, MARGIN_INF, MARGIN_MINUS_INF, MARGIN_ABOVE_ONE,
    MARGIN_BELOW_MINUS_ONE,
    DISTANCE_SQEUCLIDEAN, DISTANCE_UNKNOWN, DISTANCE_NEGATIVE,
    REDUCTION_UNKNOWN, REDUCTION_NEGATIVE,
    FLAG_TWO, FLAG_NEGATIVE, CHECK_INPUTS_TWO,
    ROWS_TIMES_LD_OVERFLOWS, BYTES_OVERFLOW,
} mutation;
/* clang-format on */

typedef struct error_case {
    int kind;
    mutation change;
    int input;          /* which input matrix, for the per-input mutations */
    char expect[2][32]; /* substrings of closs_last_error(); the second may be empty */
    char name[96];
} error_case;

static void apply(call *c, const fixture *f, const error_case *e) {
    closs_matrix_t *m = &c->in[e->input];
    switch (e->change) {
    case PARAMS_NULL: c->params_null = 1; break;
    case SIZE_ZERO: *size_field(c) = 0; break;
    case SIZE_SMALLER: *size_field(c) -= sizeof(int); break;
    case SIZE_LARGER: *size_field(c) += 8; break;
    case LOSS_NULL: c->loss = NULL; break;
    case DATA_NULL: m->data = NULL; break;
    case ROWS_NEGATIVE: set_all_rows(c, -2); break;
    case ROWS_ZERO: set_all_rows(c, 0); break;
    case ROWS_ODD: set_all_rows(c, 3); break;
    case COLS_ZERO:
    case COLS_NEGATIVE:
        for (int k = 0; k < input_count(c->kind); ++k)
            c->in[k].cols = e->change == COLS_ZERO ? 0 : -3;
        break;
    case LD_SMALLER: m->ld = m->cols - 1; break;
    case ROWS_DIFFER: m->rows -= 1; break;
    case COLS_DIFFER:
        m->cols += 1;
        m->ld += 1;
        break;
    case DTYPE_F16: m->dtype = CLOSS_F16; break;
    case DTYPE_BF16: m->dtype = CLOSS_BF16; break;
    case DTYPE_I32: m->dtype = CLOSS_I32; break;
    case DTYPE_I64: m->dtype = CLOSS_I64; break;
    case DTYPE_UNKNOWN: m->dtype = (closs_dtype_t)77; break;
    case Y_DTYPE_I32: c->y.dtype = CLOSS_I32; break;
    case Y_DTYPE_F16: c->y.dtype = CLOSS_F16; break;
    case Y_LENGTH: c->y.length = ROWS + 1; break;
    case Y_DATA_NULL: c->y.data = NULL; break;
    case Y_ABOVE_ONE: ((double *)c->y.data)[3] = 1.5; break;
    case Y_BELOW_ZERO: ((double *)c->y.data)[2] = -0.1; break;
    case Y_NAN: ((double *)c->y.data)[1] = NAN; break;
    case Y_F32_NAN:
        c->y = closs_vector(f->y32, CLOSS_F32, ROWS);
        ((float *)c->y.data)[3] = NAN;
        break;
    case LABELS_F32: c->labels.dtype = CLOSS_F32; break;
    case LABELS_F64: c->labels.dtype = CLOSS_F64; break;
    case LABELS_LENGTH: c->labels.length = ROWS - 1; break;
    case LABELS_DATA_NULL: c->labels.data = NULL; break;
    case TEMPERATURE_ZERO: *temperature_field(c) = 0.0; break;
    case TEMPERATURE_NEGATIVE: *temperature_field(c) = -0.1; break;
    case TEMPERATURE_NAN: *temperature_field(c) = NAN; break;
    case TEMPERATURE_INF: *temperature_field(c) = INFINITY; break;
    case BASE_NEGATIVE: c->supcon.base_temperature = -0.07; break;
    case BASE_NAN: c->supcon.base_temperature = NAN; break;
    case BASE_INF: c->supcon.base_temperature = INFINITY; break;
    case MARGIN_NEGATIVE: *margin_field(c) = -0.5; break;
    case MARGIN_NAN: *margin_field(c) = NAN; break;
    case MARGIN_INF: *margin_field(c) = INFINITY; break;
    case MARGIN_MINUS_INF: *margin_field(c) = -INFINITY; break;
    case MARGIN_ABOVE_ONE: *margin_field(c) = 1.5; break;
    case MARGIN_BELOW_MINUS_ONE: *margin_field(c) = -1.01; break;
    case DISTANCE_SQEUCLIDEAN: c->pair.distance = CLOSS_DISTANCE_SQEUCLIDEAN; break;
    case DISTANCE_UNKNOWN: c->pair.distance = c->triplet.distance = (closs_distance_t)9; break;
    case DISTANCE_NEGATIVE: c->pair.distance = c->triplet.distance = (closs_distance_t)-1; break;
    case REDUCTION_UNKNOWN: *reduction_field(c) = (closs_reduction_t)3; break;
    case REDUCTION_NEGATIVE: *reduction_field(c) = (closs_reduction_t)-1; break;
    case FLAG_TWO: *flag_field(c) = 2; break;
    case FLAG_NEGATIVE: *flag_field(c) = -1; break;
    case CHECK_INPUTS_TWO: *check_inputs_field(c) = 2; break;
    case ROWS_TIMES_LD_OVERFLOWS:
        /* (rows − 1)·ld overflows int64; the data pointers stay the small valid buffers, which a
         * library that read them would overrun. */
        set_all_rows(c, INT64_MAX / 2);
        for (int k = 0; k < input_count(c->kind); ++k) c->in[k].ld = 4;
        break;
    case BYTES_OVERFLOW:
        /* The element count fits int64, the byte count (× 8) does not. */
        set_all_rows(c, INT64_MAX / 8);
        for (int k = 0; k < input_count(c->kind); ++k) c->in[k].cols = c->in[k].ld = 2;
        break;
    }
}

/* ---- the table ------------------------------------------------------------------------------- */

static int add(error_case *cases, int n, int kind, mutation change, int input, const char *first,
               const char *second, const char *name) {
    error_case *e = &cases[n];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->change = change;
    e->input = input;
    snprintf(e->expect[0], sizeof e->expect[0], "%s", first);
    snprintf(e->expect[1], sizeof e->expect[1], "%s", second ? second : "");
    snprintf(e->name, sizeof e->name, "%s: %s", kind_names[kind], name);
    return n + 1;
}

ParameterizedTestParameters(errors, invalid_argument) {
    static error_case cases[400];
    int n = 0;
    char a[32], b[32];
    for (int kind = 0; kind < KIND_COUNT; ++kind) {
        const int rowwise = kind == PAIR || kind == TRIPLET || kind == COSINE;
        const char *first = input_names[kind][0];
        n = add(cases, n, kind, PARAMS_NULL, 0, "params", NULL, "params NULL");
        n = add(cases, n, kind, SIZE_ZERO, 0, "params->size", NULL, "params->size 0");
        n = add(cases, n, kind, SIZE_SMALLER, 0, "params->size", NULL, "params->size too small");
        n = add(cases, n, kind, SIZE_LARGER, 0, "params->size", NULL, "params->size too large");
        n = add(cases, n, kind, LOSS_NULL, 0, "loss", NULL, "loss NULL");
        n = add(cases, n, kind, REDUCTION_UNKNOWN, 0, "reduction", NULL, "reduction 3");
        n = add(cases, n, kind, REDUCTION_NEGATIVE, 0, "reduction", NULL, "reduction -1");
        n = add(cases, n, kind, CHECK_INPUTS_TWO, 0, "check_inputs", NULL, "check_inputs 2");
        for (int k = 0; k < input_count(kind); ++k) {
            const char *name = input_names[kind][k];
            snprintf(a, sizeof a, "%s.data", name);
            n = add(cases, n, kind, DATA_NULL, k, a, NULL, "data NULL with rows > 0");
            snprintf(a, sizeof a, "%s.ld", name);
            n = add(cases, n, kind, LD_SMALLER, k, a, NULL, "ld < cols");
            snprintf(a, sizeof a, "%s.dtype", name);
            n = add(cases, n, kind, DTYPE_F16, k, a, "f16", "f16 input (reference: f32/f64)");
            n = add(cases, n, kind, DTYPE_BF16, k, a, "bf16", "bf16 input");
            n = add(cases, n, kind, DTYPE_I32, k, a, "i32", "i32 input");
            n = add(cases, n, kind, DTYPE_I64, k, a, "i64", "i64 input");
            n = add(cases, n, kind, DTYPE_UNKNOWN, k, a, NULL, "unknown dtype 77");
            if (k > 0) {
                n = add(cases, n, kind, ROWS_DIFFER, k, name, NULL, "rows differ");
                n = add(cases, n, kind, COLS_DIFFER, k, name, NULL, "cols differ");
            }
        }
        snprintf(a, sizeof a, "%s.rows", first);
        n = add(cases, n, kind, ROWS_NEGATIVE, 0, a, NULL, "rows < 0");
        snprintf(b, sizeof b, "%s.cols", first);
        n = add(cases, n, kind, COLS_ZERO, 0, b, NULL, "dim 0");
        n = add(cases, n, kind, COLS_NEGATIVE, 0, b, NULL, "dim < 0");
        n = add(cases, n, kind, ROWS_TIMES_LD_OVERFLOWS, 0, first, "overflow",
                "rows = INT64_MAX/2, ld = 4");
        n = add(cases, n, kind, BYTES_OVERFLOW, 0, first, "overflow",
                "rows = INT64_MAX/8, ld = 2: bytes overflow");
        if (!rowwise) {
            n = add(cases, n, kind, ROWS_ZERO, 0, "z.rows", NULL, "0 rows");
            n = add(cases, n, kind, TEMPERATURE_ZERO, 0, "temperature", NULL, "temperature 0");
            n = add(cases, n, kind, TEMPERATURE_NEGATIVE, 0, "temperature", NULL,
                    "temperature < 0");
            n = add(cases, n, kind, TEMPERATURE_NAN, 0, "temperature", NULL, "temperature NaN");
            n = add(cases, n, kind, TEMPERATURE_INF, 0, "temperature", NULL, "temperature inf");
        }
        if (kind != PAIR) {
            const char *flag = kind == TRIPLET ? "swap" : kind == COSINE ? "squared" : "normalize";
            n = add(cases, n, kind, FLAG_TWO, 0, flag, NULL, "flag 2");
            n = add(cases, n, kind, FLAG_NEGATIVE, 0, flag, NULL, "flag -1");
        }
        if (kind == PAIR || kind == COSINE) {
            n = add(cases, n, kind, Y_DTYPE_I32, 0, "y.dtype", NULL, "y i32");
            n = add(cases, n, kind, Y_DTYPE_F16, 0, "y.dtype", NULL, "y f16");
            n = add(cases, n, kind, Y_LENGTH, 0, "y.length", NULL, "y length mismatch");
            n = add(cases, n, kind, Y_DATA_NULL, 0, "y.data", NULL, "y data NULL");
            n = add(cases, n, kind, Y_ABOVE_ONE, 0, "y[3]", "1.5", "y[3] = 1.5");
            n = add(cases, n, kind, Y_BELOW_ZERO, 0, "y[2]", "-0.1", "y[2] = -0.1");
            n = add(cases, n, kind, Y_NAN, 0, "y[1]", "nan", "y[1] = NaN");
            n = add(cases, n, kind, Y_F32_NAN, 0, "y[3]", "nan", "f32 y[3] = NaN");
        }
    }
    n = add(cases, n, NTXENT, ROWS_ODD, 0, "z.rows", "3", "odd rows");
    n = add(cases, n, SUPCON, LABELS_F32, 0, "labels.dtype", NULL, "f32 labels");
    n = add(cases, n, SUPCON, LABELS_F64, 0, "labels.dtype", NULL, "f64 labels");
    n = add(cases, n, SUPCON, LABELS_LENGTH, 0, "labels.length", NULL, "labels length mismatch");
    n = add(cases, n, SUPCON, LABELS_DATA_NULL, 0, "labels.data", NULL, "labels data NULL");
    n = add(cases, n, SUPCON, BASE_NEGATIVE, 0, "base_temperature", NULL, "base_temperature < 0");
    n = add(cases, n, SUPCON, BASE_NAN, 0, "base_temperature", NULL, "base_temperature NaN");
    n = add(cases, n, SUPCON, BASE_INF, 0, "base_temperature", NULL, "base_temperature inf");
    n = add(cases, n, PAIR, MARGIN_NEGATIVE, 0, "margin", NULL, "margin < 0");
    n = add(cases, n, PAIR, MARGIN_NAN, 0, "margin", NULL, "margin NaN");
    n = add(cases, n, PAIR, MARGIN_INF, 0, "margin", NULL, "margin inf");
    n = add(cases, n, TRIPLET, MARGIN_NAN, 0, "margin", NULL, "margin NaN");
    n = add(cases, n, TRIPLET, MARGIN_INF, 0, "margin", NULL, "margin inf");
    n = add(cases, n, TRIPLET, MARGIN_MINUS_INF, 0, "margin", NULL, "margin -inf");
    n = add(cases, n, COSINE, MARGIN_ABOVE_ONE, 0, "margin", NULL, "margin 1.5");
    n = add(cases, n, COSINE, MARGIN_BELOW_MINUS_ONE, 0, "margin", NULL, "margin -1.01");
    n = add(cases, n, COSINE, MARGIN_NAN, 0, "margin", NULL, "margin NaN");
    n = add(cases, n, PAIR, DISTANCE_SQEUCLIDEAN, 0, "distance", NULL, "sqeuclidean");
    n = add(cases, n, PAIR, DISTANCE_UNKNOWN, 0, "distance", NULL, "distance 9");
    n = add(cases, n, PAIR, DISTANCE_NEGATIVE, 0, "distance", NULL, "distance -1");
    n = add(cases, n, TRIPLET, DISTANCE_UNKNOWN, 0, "distance", NULL, "distance 9");
    n = add(cases, n, TRIPLET, DISTANCE_NEGATIVE, 0, "distance", NULL, "distance -1");
    return cr_make_param_array(error_case, cases, n);
}

ParameterizedTest(error_case *e, errors, invalid_argument) {
    ct_rng rng = ct_rng_fresh();
    fixture f;
    call c = valid_call(e->kind, &f, &rng);
    /* The unchanged call succeeds: the failure below is the mutation's doing. */
    closs_status_t status = run_call(&c);
    cr_assert_eq(status, CLOSS_STATUS_SUCCESS, "%s: the valid call failed: %s", e->name,
                 closs_last_error());
    poison_outputs(&f);

    apply(&c, &f, e);
    status = run_call(&c);
    const char *message = closs_last_error();
    cr_assert_eq(status, CLOSS_STATUS_INVALID_ARGUMENT, "%s: status %d (%s), message \"%s\"",
                 e->name, (int)status, closs_status_string(status), message);
    cr_assert_not_null(message, "%s: closs_last_error() is NULL", e->name);
    for (int s = 0; s < 2; ++s)
        if (e->expect[s][0])
            cr_assert(strstr(message, e->expect[s]) != NULL,
                      "%s: the message \"%s\" does not contain \"%s\"", e->name, message,
                      e->expect[s]);
    assert_untouched(&f, e->name);
}

/* ---- values at the edges of the ranges are accepted ------------------------------------------ */

Test(errors, edge_values_are_accepted) {
    ct_rng rng = ct_rng_fresh();
    fixture f;
    struct {
        int kind;
        const char *name;
    } edges[] = {
        {PAIR, "pair margin 0"},
        {PAIR, "pair y exactly 0 and 1, f32"},
        {TRIPLET, "triplet margin -3"},
        {TRIPLET, "triplet margin 0"},
        {COSINE, "cosine margin -1"},
        {COSINE, "cosine margin 1"},
        {SUPCON, "supcon base_temperature 0 (= temperature), 1 row"},
        {NTXENT, "ntxent 2 rows, dim 1"},
        {PAIR, "pair 0 rows, NULL data"},
        {TRIPLET, "triplet ld == cols + 5, upstream given"},
        {SUPCON, "supcon i32 labels, valid NULL, all gradients NULL"},
        {COSINE, "cosine check_inputs 1 with finite inputs"},
    };
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; ++i) {
        call c = valid_call(edges[i].kind, &f, &rng);
        const double up = 0.5;
        const int32_t labels32[ROWS] = {1, 1, 2, 3};
        switch (i) {
        case 0: c.pair.margin = 0.0; break;
        case 1:
            for (int r = 0; r < ROWS; ++r) f.y32[r] = (float)(r % 2);
            c.y = closs_vector(f.y32, CLOSS_F32, ROWS);
            break;
        case 2: c.triplet.margin = -3.0; break;
        case 3: c.triplet.margin = 0.0; break;
        case 4: c.cosine.margin = -1.0; break;
        case 5: c.cosine.margin = 1.0; break;
        case 6:
            c.supcon.base_temperature = 0.0;
            set_all_rows(&c, 1);
            break;
        case 7:
            set_all_rows(&c, 2);
            c.in[0].cols = c.in[0].ld = 1;
            break;
        case 8:
            set_all_rows(&c, 0);
            c.in[0].data = c.in[1].data = c.y.data = NULL;
            break;
        case 9:
            for (int k = 0; k < 3; ++k)
                c.in[k] = closs_matrix_ld(f.x[k], CLOSS_F64, 1, DIM, DIM + 5);
            c.upstream = &up;
            break;
        case 10:
            c.labels = closs_vector(labels32, CLOSS_I32, ROWS);
            c.valid = NULL;
            c.grad[0] = NULL;
            break;
        default: c.cosine.check_inputs = 1; break;
        }
        closs_status_t status = run_call(&c);
        cr_assert_eq(status, CLOSS_STATUS_SUCCESS, "%s: %s", edges[i].name, closs_last_error());
        cr_assert_str_empty(closs_last_error(), "%s: message after a success", edges[i].name);
    }
}

/* ---- check mode ------------------------------------------------------------------------------ */

/* check_inputs = 1 with a NaN or an Inf in any input: CLOSS_STATUS_NONFINITE_INPUT, a message
 * naming the input, and nothing written. */
Test(errors, check_mode_reports_nonfinite_inputs) {
    ct_rng rng = ct_rng_fresh();
    fixture f;
    for (int kind = 0; kind < KIND_COUNT; ++kind)
        for (int k = 0; k < input_count(kind); ++k)
            for (int inf = 0; inf < 2; ++inf) {
                call c = valid_call(kind, &f, &rng);
                *check_inputs_field(&c) = 1;
                const int row = (int)ct_int(&rng, 0, ROWS - 1), col = (int)ct_int(&rng, 0, DIM - 1);
                f.x[k][row * DIM + col] = inf ? -INFINITY : NAN;
                closs_status_t status = run_call(&c);
                cr_assert_eq(status, CLOSS_STATUS_NONFINITE_INPUT, "%s input %s: status %d (%s)",
                             kind_names[kind], input_names[kind][k], (int)status,
                             closs_last_error());
                cr_assert(strstr(closs_last_error(), input_names[kind][k]) != NULL,
                          "%s: \"%s\" does not name %s", kind_names[kind], closs_last_error(),
                          input_names[kind][k]);
                assert_untouched(&f, kind_names[kind]);
            }
}

/* ---- closs_last_error ------------------------------------------------------------------------ */

/* Every entry point clears the detail on entry: "" after a success that follows a failure. */
Test(errors, last_error_is_cleared_by_a_success) {
    ct_rng rng = ct_rng_fresh();
    fixture f;
    for (int kind = 0; kind < KIND_COUNT; ++kind) {
        call c = valid_call(kind, &f, &rng);
        c.loss = NULL;
        cr_assert_eq(run_call(&c), CLOSS_STATUS_INVALID_ARGUMENT);
        cr_assert_str_not_empty(closs_last_error(), "%s: no detail after a failure",
                                kind_names[kind]);
        c = valid_call(kind, &f, &rng);
        cr_assert_eq(run_call(&c), CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
        cr_assert_str_empty(closs_last_error(), "%s: \"%s\" survived a success", kind_names[kind],
                            closs_last_error());
    }
}

typedef struct thread_report {
    char seen_on_entry[128];
    closs_status_t status;
    char own_message[256];
} thread_report;

static void *other_thread(void *arg) {
    thread_report *report = arg;
    snprintf(report->seen_on_entry, sizeof report->seen_on_entry, "%s", closs_last_error());
    closs_ntxent_params params = CLOSS_NTXENT_PARAMS_INIT;
    params.temperature = -1.0;
    const double z[4] = {1, 0, 0, 1};
    double loss;
    report->status = closs_ref_ntxent(&params, closs_matrix(z, CLOSS_F64, 2, 2), NULL, &loss, NULL);
    snprintf(report->own_message, sizeof report->own_message, "%s", closs_last_error());
    return NULL;
}

/* A failure on this thread is invisible to another thread, and the other thread's failure does
 * not replace this thread's message. */
Test(errors, last_error_is_per_thread) {
    closs_pair_params params = CLOSS_PAIR_PARAMS_INIT;
    params.margin = -1.0;
    const double x[2] = {0, 1}, y = 1.0;
    double loss;
    cr_assert_eq(closs_ref_pair(&params, closs_matrix(x, CLOSS_F64, 1, 2),
                                closs_matrix(x, CLOSS_F64, 1, 2), closs_vector(&y, CLOSS_F64, 1),
                                NULL, &loss, NULL, NULL),
                 CLOSS_STATUS_INVALID_ARGUMENT);
    char mine[256];
    snprintf(mine, sizeof mine, "%s", closs_last_error());
    cr_assert(strstr(mine, "margin") != NULL, "\"%s\"", mine);

    thread_report report;
    memset(&report, 0, sizeof report);
    pthread_t thread;
    cr_assert_eq(pthread_create(&thread, NULL, other_thread, &report), 0);
    cr_assert_eq(pthread_join(thread, NULL), 0);
    cr_assert_str_empty(report.seen_on_entry, "a new thread sees \"%s\"", report.seen_on_entry);
    cr_assert_eq(report.status, CLOSS_STATUS_INVALID_ARGUMENT);
    cr_assert(strstr(report.own_message, "temperature") != NULL, "\"%s\"", report.own_message);
    cr_assert_str_eq(closs_last_error(), mine, "this thread's message changed to \"%s\"",
                     closs_last_error());
}

/* ---- closs_status_string --------------------------------------------------------------------- */

/* A sentence for every status, distinct from the others; never NULL, even out of range. */
Test(errors, status_strings) {
    for (int s = 0; s < CLOSS_STATUS_COUNT; ++s) {
        const char *text = closs_status_string((closs_status_t)s);
        cr_assert_not_null(text, "status %d", s);
        cr_assert_gt(strlen(text), 5, "status %d: \"%s\"", s, text);
        for (int t = 0; t < s; ++t)
            cr_assert_str_neq(text, closs_status_string((closs_status_t)t),
                              "statuses %d and %d share \"%s\"", t, s, text);
    }
    cr_assert_str_eq(closs_status_string(CLOSS_STATUS_SUCCESS), "success");
    cr_assert(strstr(closs_status_string(CLOSS_STATUS_INVALID_ARGUMENT), "closs_last_error") !=
                  NULL,
              "the invalid-argument sentence should point to closs_last_error()");
    const int out_of_range[] = {CLOSS_STATUS_COUNT, -1, 1000};
    for (size_t i = 0; i < 3; ++i) {
        const char *text = closs_status_string((closs_status_t)out_of_range[i]);
        cr_assert_not_null(text, "status %d", out_of_range[i]);
        cr_assert_gt(strlen(text), 0, "status %d", out_of_range[i]);
    }
}

/* Sizes whose input passes its own footprint check but whose double-precision working copy would
 * overflow 64 bits: refused with INVALID_ARGUMENT naming the buffer, before any input is read
 * (the data pointer below holds one float). */
Test(errors, working_buffers_that_overflow) {
    static float one_float;
    const closs_matrix_t z =
        closs_matrix(&one_float, CLOSS_F32, (int64_t)1 << 31, (int64_t)1 << 29);
    double loss = 0.0;
    closs_ntxent_params ntxent = CLOSS_NTXENT_PARAMS_INIT;
    cr_expect_eq(closs_ref_ntxent(&ntxent, z, NULL, &loss, NULL), CLOSS_STATUS_INVALID_ARGUMENT);
    cr_expect(strstr(closs_last_error(), "overflows"), "%s", closs_last_error());
    static int64_t one_label;
    closs_supcon_params supcon = CLOSS_SUPCON_PARAMS_INIT;
    const closs_vector_t labels = closs_vector(&one_label, CLOSS_I64, z.rows);
    cr_expect_eq(closs_ref_supcon(&supcon, z, labels, NULL, &loss, NULL, NULL),
                 CLOSS_STATUS_INVALID_ARGUMENT);
    cr_expect(strstr(closs_last_error(), "SupCon buffers"), "%s", closs_last_error());
    cr_expect(loss == 0.0, "the loss was written");
}

/* ---- CLIP and SigLIP ------------------------------------------------------------------------- */

enum { TT_ROWS = 4, TT_EXTRA = 2, TT_COLS = 3 };
enum { CLIP_CALL, CLIP_FORWARD, CLIP_BACKWARD, SIGLIP_CALL, TOWER_ENTRY_COUNT };
static const char *const tower_entry_names[] = {"closs_ref_clip", "closs_ref_clip_forward",
                                                "closs_ref_clip_backward", "closs_ref_siglip"};

/* One call of a two-tower entry point, with its storage; outputs poisoned. */
typedef struct tower_call {
    int entry;
    closs_clip_params clip;
    closs_siglip_params sig;
    int params_null;
    closs_matrix_t a, b;
    double a_data[TT_ROWS * TT_COLS], b_data[(TT_ROWS + TT_EXTRA) * TT_COLS];
    double stats[2][TT_ROWS];
    const double *row_stats, *column_stats; /* the backward's */
    double loss[TT_ROWS], grad_a[TT_ROWS * TT_COLS], grad_b[(TT_ROWS + TT_EXTRA) * TT_COLS];
    double grad_scale, grad_bias, out_stats[2][TT_ROWS];
    double *loss_out, *grad_a_out, *grad_b_out, *grad_scale_out;
} tower_call;

static void tower_poison(tower_call *c) {
    ct_poison(c->loss, TT_ROWS);
    ct_poison(c->grad_a, TT_ROWS * TT_COLS);
    ct_poison(c->grad_b, (TT_ROWS + TT_EXTRA) * TT_COLS);
    ct_poison(&c->grad_scale, 1);
    ct_poison(&c->grad_bias, 1);
    ct_poison(&c->out_stats[0][0], 2 * TT_ROWS);
}

static void tower_assert_untouched(const tower_call *c, const char *what) {
    cr_assert_eq(ct_first_unpoisoned(c->loss, TT_ROWS), -1, "%s: loss written", what);
    cr_assert_eq(ct_first_unpoisoned(c->grad_a, TT_ROWS * TT_COLS), -1, "%s: grad_a written", what);
    cr_assert_eq(ct_first_unpoisoned(c->grad_b, (TT_ROWS + TT_EXTRA) * TT_COLS), -1,
                 "%s: grad_b written", what);
    cr_assert_eq(ct_first_unpoisoned(&c->grad_scale, 1), -1, "%s: grad_logit_scale written", what);
    cr_assert_eq(ct_first_unpoisoned(&c->grad_bias, 1), -1, "%s: grad_logit_bias written", what);
    cr_assert_eq(ct_first_unpoisoned(&c->out_stats[0][0], 2 * TT_ROWS), -1, "%s: stats written",
                 what);
}

static void tower_valid_call(tower_call *c, int entry, ct_rng *rng) {
    memset(c, 0, sizeof *c);
    c->entry = entry;
    c->clip = (closs_clip_params)CLOSS_CLIP_PARAMS_INIT;
    c->sig = (closs_siglip_params)CLOSS_SIGLIP_PARAMS_INIT;
    ct_fill_normal(rng, c->a_data, TT_ROWS * TT_COLS, 1.0);
    ct_fill_normal(rng, c->b_data, (TT_ROWS + TT_EXTRA) * TT_COLS, 1.0);
    c->a = closs_matrix(c->a_data, CLOSS_F64, TT_ROWS, TT_COLS);
    c->b = closs_matrix(c->b_data, CLOSS_F64, TT_ROWS + TT_EXTRA, TT_COLS);
    for (int i = 0; i < TT_ROWS; ++i) c->stats[0][i] = c->stats[1][i] = 3.0;
    c->row_stats = c->stats[0];
    c->column_stats = c->stats[1];
    c->loss_out = c->loss;
    c->grad_a_out = c->grad_a;
    c->grad_b_out = c->grad_b;
    c->grad_scale_out = &c->grad_scale;
    tower_poison(c);
}

static closs_status_t tower_run(const tower_call *c) {
    const closs_clip_params *clip = c->params_null ? NULL : &c->clip;
    switch (c->entry) {
    case CLIP_CALL:
        return closs_ref_clip(clip, c->a, c->b, NULL, c->loss_out, c->grad_a_out, c->grad_b_out,
                              c->grad_scale_out);
    case CLIP_FORWARD:
        return closs_ref_clip_forward(clip, c->a, c->b, c->loss_out, (double *)c->out_stats[0],
                                      (double *)c->out_stats[1]);
    case CLIP_BACKWARD:
        return closs_ref_clip_backward(clip, c->a, c->b, c->row_stats, c->column_stats, NULL,
                                       c->grad_a_out, c->grad_b_out, c->grad_scale_out);
    default:
        return closs_ref_siglip(c->params_null ? NULL : &c->sig, c->a, c->b, NULL, c->loss_out,
                                c->grad_a_out, c->grad_b_out, c->grad_scale_out,
                                (double *)&c->grad_bias);
    }
}

/* clang-format off */
typedef enum tower_mutation {
    T_PARAMS_NULL, T_SIZE_ZERO, T_SIZE_SMALLER, T_SIZE_LARGER,
    T_SCALE_ZERO, T_SCALE_NEGATIVE, T_SCALE_NAN, T_SCALE_INF, T_BIAS_NAN, T_BIAS_INF,
    T_SYMMETRIC_TWO, T_IN_BATCH_NEGATIVE, T_SYMMETRIC_WITHOUT_IN_BATCH, T_NORMALIZE_TWO,
    T_GRAD_NEGATIVES_TWO, T_REDUCTION_THREE, T_REDUCTION_NEGATIVE, T_CHECK_INPUTS_TWO, T_PATH_SEVEN,
    T_A_DATA_NULL, T_B_DATA_NULL, T_A_ROWS_ZERO, T_A_ROWS_NEGATIVE, T_B_FEWER_ROWS,
    T_B_OTHER_COLS, T_A_COLS_ZERO, T_A_LD_SMALLER, T_B_LD_SMALLER,
    T_A_F16, T_B_BF16, T_A_I32, T_B_UNKNOWN, T_A_OVERFLOW, T_B_BYTES_OVERFLOW,
    T_LOSS_NULL, T_ROW_STATS_NULL, T_COLUMN_STATS_NULL, T_NO_GRADIENT,
} tower_mutation;
/* clang-format on */

typedef struct tower_error {
    int entry;
    tower_mutation change;
    char expect[2][48];
    char name[128];
} tower_error;

static double *tower_scale(tower_call *c) {
    return c->entry == SIGLIP_CALL ? &c->sig.logit_scale : &c->clip.logit_scale;
}

static void tower_apply(tower_call *c, tower_mutation change) {
    const int sig = c->entry == SIGLIP_CALL;
#define FIELD(field) (*(sig ? &c->sig.field : &c->clip.field))
    switch (change) {
    case T_PARAMS_NULL: c->params_null = 1; break;
    case T_SIZE_ZERO: FIELD(size) = 0; break;
    case T_SIZE_SMALLER: FIELD(size) -= sizeof(int64_t); break;
    case T_SIZE_LARGER: FIELD(size) += 8; break;
    case T_SCALE_ZERO: *tower_scale(c) = 0.0; break;
    case T_SCALE_NEGATIVE: *tower_scale(c) = -14.0; break;
    case T_SCALE_NAN: *tower_scale(c) = NAN; break;
    case T_SCALE_INF: *tower_scale(c) = INFINITY; break;
    case T_BIAS_NAN: c->sig.logit_bias = NAN; break;
    case T_BIAS_INF: c->sig.logit_bias = -INFINITY; break;
    case T_SYMMETRIC_TWO: c->clip.symmetric = 2; break;
    case T_IN_BATCH_NEGATIVE: c->clip.in_batch_negatives = -1; break;
    case T_SYMMETRIC_WITHOUT_IN_BATCH: c->clip.in_batch_negatives = 0; break;
    case T_NORMALIZE_TWO: FIELD(normalize) = 2; break;
    case T_GRAD_NEGATIVES_TWO: FIELD(grad_negatives) = 2; break;
    case T_REDUCTION_THREE: FIELD(reduction) = (closs_reduction_t)3; break;
    case T_REDUCTION_NEGATIVE: FIELD(reduction) = (closs_reduction_t)-1; break;
    case T_CHECK_INPUTS_TWO: FIELD(check_inputs) = 2; break;
    case T_PATH_SEVEN: FIELD(path) = (closs_path_t)7; break;
    case T_A_DATA_NULL: c->a.data = NULL; break;
    case T_B_DATA_NULL: c->b.data = NULL; break;
    case T_A_ROWS_ZERO: c->a.rows = 0; break;
    case T_A_ROWS_NEGATIVE: c->a.rows = -1; break;
    case T_B_FEWER_ROWS: c->b.rows = TT_ROWS - 1; break;
    case T_B_OTHER_COLS: c->b.cols = c->b.ld = TT_COLS - 1; break;
    case T_A_COLS_ZERO: c->a.cols = 0; break;
    case T_A_LD_SMALLER: c->a.ld = TT_COLS - 1; break;
    case T_B_LD_SMALLER: c->b.ld = TT_COLS - 1; break;
    case T_A_F16: c->a.dtype = CLOSS_F16; break;
    case T_B_BF16: c->b.dtype = CLOSS_BF16; break;
    case T_A_I32: c->a.dtype = CLOSS_I32; break;
    case T_B_UNKNOWN: c->b.dtype = (closs_dtype_t)77; break;
    case T_A_OVERFLOW:
        /* (rows − 1)·ld overflows int64; the data stays the small valid buffer */
        c->a.rows = INT64_MAX / 2;
        c->a.ld = 4;
        c->b.rows = INT64_MAX / 2 + 1;
        break;
    case T_B_BYTES_OVERFLOW:
        c->b.rows = INT64_MAX / 8;
        c->b.cols = c->b.ld = c->a.cols;
        break;
    case T_LOSS_NULL: c->loss_out = NULL; break;
    case T_ROW_STATS_NULL: c->row_stats = NULL; break;
    case T_COLUMN_STATS_NULL: c->column_stats = NULL; break;
    case T_NO_GRADIENT: c->grad_a_out = c->grad_b_out = c->grad_scale_out = NULL; break;
    }
#undef FIELD
}

static int tower_add(tower_error *cases, int n, int entry, tower_mutation change, const char *first,
                     const char *second, const char *name) {
    tower_error *e = &cases[n];
    memset(e, 0, sizeof *e);
    e->entry = entry;
    e->change = change;
    snprintf(e->expect[0], sizeof e->expect[0], "%s", first);
    snprintf(e->expect[1], sizeof e->expect[1], "%s", second ? second : "");
    snprintf(e->name, sizeof e->name, "%s: %s", tower_entry_names[entry], name);
    return n + 1;
}

ParameterizedTestParameters(errors, two_tower_invalid_argument) {
    static tower_error cases[256];
    int n = 0;
    for (int entry = 0; entry < TOWER_ENTRY_COUNT; ++entry) {
        const int sig = entry == SIGLIP_CALL;
        n = tower_add(cases, n, entry, T_PARAMS_NULL, "params", NULL, "params NULL");
        n = tower_add(cases, n, entry, T_SIZE_ZERO, "params->size", NULL, "size 0");
        n = tower_add(cases, n, entry, T_SIZE_SMALLER, "params->size", NULL, "size smaller");
        n = tower_add(cases, n, entry, T_SIZE_LARGER, "params->size", NULL, "size larger");
        n = tower_add(cases, n, entry, T_SCALE_ZERO, "logit_scale = 0", NULL, "s = 0");
        n = tower_add(cases, n, entry, T_SCALE_NEGATIVE, "logit_scale = -14", NULL, "s < 0");
        n = tower_add(cases, n, entry, T_SCALE_NAN, "logit_scale = nan", NULL, "s NaN");
        n = tower_add(cases, n, entry, T_SCALE_INF, "logit_scale = inf", NULL, "s inf");
        if (sig) {
            n = tower_add(cases, n, entry, T_BIAS_NAN, "logit_bias = nan", NULL, "bias NaN");
            n = tower_add(cases, n, entry, T_BIAS_INF, "logit_bias = -inf", NULL, "bias -inf");
        } else {
            n = tower_add(cases, n, entry, T_SYMMETRIC_TWO, "symmetric = 2", NULL, "symmetric 2");
            n = tower_add(cases, n, entry, T_IN_BATCH_NEGATIVE, "in_batch_negatives = -1", NULL,
                          "in_batch_negatives -1");
            n = tower_add(cases, n, entry, T_SYMMETRIC_WITHOUT_IN_BATCH, "symmetric = 1",
                          "in_batch_negatives = 0", "symmetric without in-batch negatives");
        }
        n = tower_add(cases, n, entry, T_NORMALIZE_TWO, "normalize = 2", NULL, "normalize 2");
        n = tower_add(cases, n, entry, T_GRAD_NEGATIVES_TWO, "grad_negatives = 2", NULL,
                      "grad_negatives 2");
        n = tower_add(cases, n, entry, T_REDUCTION_THREE, "reduction = 3", NULL, "reduction 3");
        n = tower_add(cases, n, entry, T_REDUCTION_NEGATIVE, "reduction = -1", NULL,
                      "reduction -1");
        n = tower_add(cases, n, entry, T_CHECK_INPUTS_TWO, "check_inputs = 2", NULL,
                      "check_inputs 2");
        n = tower_add(cases, n, entry, T_PATH_SEVEN, "path = 7", NULL, "path 7");
        n = tower_add(cases, n, entry, T_A_DATA_NULL, "a.data", NULL, "a data NULL");
        n = tower_add(cases, n, entry, T_B_DATA_NULL, "b.data", NULL, "b data NULL");
        n = tower_add(cases, n, entry, T_A_ROWS_ZERO, "a.rows = 0", NULL, "N = 0");
        n = tower_add(cases, n, entry, T_A_ROWS_NEGATIVE, "a.rows = -1", NULL, "N < 0");
        n = tower_add(cases, n, entry, T_B_FEWER_ROWS, "b.rows = 3", "a.rows = 4", "K < 0");
        n = tower_add(cases, n, entry, T_B_OTHER_COLS, "b.cols = 2", "a.cols = 3", "D differs");
        n = tower_add(cases, n, entry, T_A_COLS_ZERO, "a.cols = 0", NULL, "D = 0");
        n = tower_add(cases, n, entry, T_A_LD_SMALLER, "a.ld", NULL, "a ld < cols");
        n = tower_add(cases, n, entry, T_B_LD_SMALLER, "b.ld", NULL, "b ld < cols");
        n = tower_add(cases, n, entry, T_A_F16, "a.dtype", "f16", "a f16");
        n = tower_add(cases, n, entry, T_B_BF16, "b.dtype", "bf16", "b bf16");
        n = tower_add(cases, n, entry, T_A_I32, "a.dtype", "i32", "a i32");
        n = tower_add(cases, n, entry, T_B_UNKNOWN, "b.dtype", NULL, "b dtype 77");
        n = tower_add(cases, n, entry, T_A_OVERFLOW, "a", "overflow", "a's span overflows");
        n = tower_add(cases, n, entry, T_B_BYTES_OVERFLOW, "b", "overflow", "b's bytes overflow");
        if (entry != CLIP_BACKWARD)
            n = tower_add(cases, n, entry, T_LOSS_NULL, "loss", NULL, "loss NULL");
    }
    n = tower_add(cases, n, CLIP_BACKWARD, T_ROW_STATS_NULL, "row_stats", NULL, "row_stats NULL");
    n = tower_add(cases, n, CLIP_BACKWARD, T_COLUMN_STATS_NULL, "column_stats", NULL,
                  "column_stats NULL with symmetric = 1");
    n = tower_add(cases, n, CLIP_BACKWARD, T_NO_GRADIENT, "grad_a, grad_b and grad_logit_scale",
                  NULL, "no gradient asked for");
    return cr_make_param_array(tower_error, cases, n);
}

ParameterizedTest(tower_error *e, errors, two_tower_invalid_argument) {
    ct_rng rng = ct_rng_fresh();
    tower_call c;
    tower_valid_call(&c, e->entry, &rng);
    closs_status_t status = tower_run(&c);
    cr_assert_eq(status, CLOSS_STATUS_SUCCESS, "%s: the valid call failed: %s", e->name,
                 closs_last_error());
    tower_poison(&c);
    tower_apply(&c, e->change);
    status = tower_run(&c);
    const char *message = closs_last_error();
    cr_assert_eq(status, CLOSS_STATUS_INVALID_ARGUMENT, "%s: status %d (%s), message \"%s\"",
                 e->name, (int)status, closs_status_string(status), message);
    for (int s = 0; s < 2; ++s)
        if (e->expect[s][0])
            cr_assert(strstr(message, e->expect[s]) != NULL,
                      "%s: the message \"%s\" does not contain \"%s\"", e->name, message,
                      e->expect[s]);
    tower_assert_untouched(&c, e->name);
}

/* Check mode: NaN or Inf anywhere in a or b is NONFINITE_INPUT naming the input, nothing written;
 * without check mode the same inputs are computed (and the loss is NaN). */
Test(errors, two_tower_check_mode_reports_nonfinite_inputs) {
    ct_rng rng = ct_rng_fresh();
    for (int entry = 0; entry < TOWER_ENTRY_COUNT; ++entry)
        for (int in_b = 0; in_b <= 1; ++in_b)
            for (int inf = 0; inf <= 1; ++inf) {
                tower_call c;
                tower_valid_call(&c, entry, &rng);
                double *data = in_b ? c.b_data : c.a_data;
                const int64_t rows = in_b ? TT_ROWS + TT_EXTRA : TT_ROWS;
                data[ct_int(&rng, 0, rows * TT_COLS - 1)] = inf ? INFINITY : NAN;
                c.clip.check_inputs = c.sig.check_inputs = 1;
                closs_status_t status = tower_run(&c);
                cr_assert_eq(status, CLOSS_STATUS_NONFINITE_INPUT, "%s: status %d (%s)",
                             tower_entry_names[entry], (int)status, closs_last_error());
                cr_assert(strstr(closs_last_error(), in_b ? "b[" : "a[") != NULL,
                          "%s: \"%s\" does not name the input", tower_entry_names[entry],
                          closs_last_error());
                tower_assert_untouched(&c, tower_entry_names[entry]);
                c.clip.check_inputs = c.sig.check_inputs = 0;
                cr_assert_eq(tower_run(&c), CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
            }
}

/* The edges of the ranges are accepted: N = 1, K = 0, a tiny and a huge scale, a zero bias,
 * grad_negatives = 0 with K > 0, f32 inputs and ld > cols, every gradient NULL (the one call), no
 * statistics wanted from a forward, column_stats NULL in a backward with symmetric = 0. */
Test(errors, two_tower_edge_values_are_accepted) {
    ct_rng rng = ct_rng_fresh();
    static const float a32[2 * 5] = {1, 2, 3, 0, 0, -1, 0.5f, 0, 0, 0};
    for (int entry = 0; entry < TOWER_ENTRY_COUNT; ++entry)
        for (int edge = 0; edge < 8; ++edge) {
            tower_call c;
            tower_valid_call(&c, entry, &rng);
            switch (edge) {
            case 0: c.a.rows = 1; break;
            case 1: c.b.rows = TT_ROWS; break;
            case 2: *tower_scale(&c) = 1e-300; break;
            case 3: *tower_scale(&c) = 1e6; break;
            case 4:
                c.sig.logit_bias = 0.0;
                c.clip.grad_negatives = c.sig.grad_negatives = 0;
                break;
            case 5:
                c.a = closs_matrix_ld(a32, CLOSS_F32, 2, 3, 5);
                c.b = closs_matrix_ld(a32, CLOSS_F32, 2, 3, 5);
                break;
            case 6:
                if (entry != CLIP_BACKWARD) c.grad_a_out = c.grad_b_out = c.grad_scale_out = NULL;
                break;
            default:
                c.clip.symmetric = 0;
                c.column_stats = NULL;
                break;
            }
            closs_status_t status = tower_run(&c);
            cr_assert_eq(status, CLOSS_STATUS_SUCCESS, "%s, edge %d: %s", tower_entry_names[entry],
                         edge, closs_last_error());
            cr_assert_str_empty(closs_last_error());
            if (entry != CLIP_BACKWARD)
                cr_assert(isfinite(c.loss[0]), "%s, edge %d: loss %g", tower_entry_names[entry],
                          edge, c.loss[0]);
        }
}
