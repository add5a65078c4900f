/* One table lists every parameter of every loss with where it lives in the loss's params struct,
 * so that parsing, the applies-to-this-loss check and the help text cannot disagree. */
#include "params.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum param_kind {
    PARAM_REAL,
    PARAM_FLAG,
    PARAM_DISTANCE,
    PARAM_REDUCTION,
    PARAM_PATH
} param_kind;

/* Pointer-sized fields first, then the 4-byte ones: no padding between fields. */
typedef struct param_spec {
    const char *name;
    size_t offset; /* in the loss's params struct, which starts the cli_params union */
    const char *meaning;
    cli_loss loss;
    param_kind kind;
    unsigned distances; /* PARAM_DISTANCE: the distances the loss takes, one bit each */
} param_spec;

#define CHECK_INPUTS_MEANING    "1: NaN or Inf in an input is an error instead of a NaN loss"
#define PATH_MEANING            "the GPU algorithm: auto, fused or chunked (the CPU ignores it)"
#define NORMALIZE_MEANING       "1: cosine similarity; 0: dot product"
#define GRAD_NEGATIVES_MEANING  "1: grad_b has b's extra rows too; 0: only the partners' rows"
#define PAIRS_REDUCTION_MEANING "mean (over the pairs, rows of a), sum or none"

#define PARAM(loss_id, type, field, spec_kind, text)                                               \
    {                                                                                              \
        .name = #field, .offset = offsetof(type, field), .meaning = (text), .loss = (loss_id),     \
        .kind = (spec_kind), .distances = 0                                                        \
    }
/* The distances are listed here, not left to the library, so that a refusal can name them. */
#define DISTANCE_BIT(distance) (1u << (distance))
#define DISTANCE_PARAM(loss_id, type, distance_bits, text)                                         \
    {                                                                                              \
        .name = "distance", .offset = offsetof(type, distance), .meaning = (text),                 \
        .loss = (loss_id), .kind = PARAM_DISTANCE, .distances = (distance_bits)                    \
    }

static const param_spec param_specs[] = {
    PARAM(CLI_LOSS_PAIR, closs_pair_params, margin, PARAM_REAL, "m, finite and >= 0"),
    DISTANCE_PARAM(CLI_LOSS_PAIR, closs_pair_params,
                   DISTANCE_BIT(CLOSS_DISTANCE_EUCLIDEAN) | DISTANCE_BIT(CLOSS_DISTANCE_COSINE),
                   "euclidean or cosine"),
    PARAM(CLI_LOSS_PAIR, closs_pair_params, reduction, PARAM_REDUCTION, "mean, sum or none"),
    PARAM(CLI_LOSS_PAIR, closs_pair_params, check_inputs, PARAM_FLAG, CHECK_INPUTS_MEANING),
    PARAM(CLI_LOSS_TRIPLET, closs_triplet_params, margin, PARAM_REAL,
          "alpha, finite (0 and negative allowed)"),
    DISTANCE_PARAM(CLI_LOSS_TRIPLET, closs_triplet_params,
                   DISTANCE_BIT(CLOSS_DISTANCE_SQEUCLIDEAN) |
                       DISTANCE_BIT(CLOSS_DISTANCE_EUCLIDEAN) | DISTANCE_BIT(CLOSS_DISTANCE_COSINE),
                   "sqeuclidean, euclidean or cosine"),
    PARAM(CLI_LOSS_TRIPLET, closs_triplet_params, swap, PARAM_FLAG,
          "1: d(a, n) becomes min(d(a, n), d(p, n))"),
    PARAM(CLI_LOSS_TRIPLET, closs_triplet_params, reduction, PARAM_REDUCTION, "mean, sum or none"),
    PARAM(CLI_LOSS_TRIPLET, closs_triplet_params, check_inputs, PARAM_FLAG, CHECK_INPUTS_MEANING),
    PARAM(CLI_LOSS_NTXENT, closs_ntxent_params, temperature, PARAM_REAL, "tau, finite and > 0"),
    PARAM(CLI_LOSS_NTXENT, closs_ntxent_params, normalize, PARAM_FLAG,
          "1: cosine similarity; 0: dot product"),
    PARAM(CLI_LOSS_NTXENT, closs_ntxent_params, reduction, PARAM_REDUCTION,
          "mean (over all 2N anchors), sum or none"),
    PARAM(CLI_LOSS_NTXENT, closs_ntxent_params, check_inputs, PARAM_FLAG, CHECK_INPUTS_MEANING),
    PARAM(CLI_LOSS_NTXENT, closs_ntxent_params, path, PARAM_PATH, PATH_MEANING),
    PARAM(CLI_LOSS_SUPCON, closs_supcon_params, temperature, PARAM_REAL, "tau, finite and > 0"),
    PARAM(CLI_LOSS_SUPCON, closs_supcon_params, base_temperature, PARAM_REAL,
          "tau_b, finite and > 0; 0: equal to temperature"),
    PARAM(CLI_LOSS_SUPCON, closs_supcon_params, normalize, PARAM_FLAG,
          "1: cosine similarity; 0: dot product"),
    PARAM(CLI_LOSS_SUPCON, closs_supcon_params, reduction, PARAM_REDUCTION,
          "mean (over anchors with a positive), sum or none"),
    PARAM(CLI_LOSS_SUPCON, closs_supcon_params, check_inputs, PARAM_FLAG, CHECK_INPUTS_MEANING),
    PARAM(CLI_LOSS_SUPCON, closs_supcon_params, path, PARAM_PATH, PATH_MEANING),
    PARAM(CLI_LOSS_COSINE, closs_cosine_params, margin, PARAM_REAL, "delta, in [-1, 1]"),
    PARAM(CLI_LOSS_COSINE, closs_cosine_params, squared, PARAM_FLAG,
          "1: the dissimilar term is squared"),
    PARAM(CLI_LOSS_COSINE, closs_cosine_params, reduction, PARAM_REDUCTION, "mean, sum or none"),
    PARAM(CLI_LOSS_COSINE, closs_cosine_params, check_inputs, PARAM_FLAG, CHECK_INPUTS_MEANING),
    PARAM(CLI_LOSS_CLIP, closs_clip_params, logit_scale, PARAM_REAL,
          "s, finite and > 0 (OpenCLIP's logit_scale.exp())"),
    PARAM(CLI_LOSS_CLIP, closs_clip_params, symmetric, PARAM_FLAG,
          "1: the mean of a -> b and b -> a; 0: a -> b only"),
    PARAM(CLI_LOSS_CLIP, closs_clip_params, in_batch_negatives, PARAM_FLAG,
          "1: every row of b is a negative; 0: the partner and b's extra rows only (MoCo)"),
    PARAM(CLI_LOSS_CLIP, closs_clip_params, normalize, PARAM_FLAG, NORMALIZE_MEANING),
    PARAM(CLI_LOSS_CLIP, closs_clip_params, grad_negatives, PARAM_FLAG, GRAD_NEGATIVES_MEANING),
    PARAM(CLI_LOSS_CLIP, closs_clip_params, reduction, PARAM_REDUCTION, PAIRS_REDUCTION_MEANING),
    PARAM(CLI_LOSS_CLIP, closs_clip_params, check_inputs, PARAM_FLAG, CHECK_INPUTS_MEANING),
    PARAM(CLI_LOSS_SIGLIP, closs_siglip_params, logit_scale, PARAM_REAL, "s, finite and > 0"),
    PARAM(CLI_LOSS_SIGLIP, closs_siglip_params, logit_bias, PARAM_REAL, "beta, finite"),
    PARAM(CLI_LOSS_SIGLIP, closs_siglip_params, normalize, PARAM_FLAG, NORMALIZE_MEANING),
    PARAM(CLI_LOSS_SIGLIP, closs_siglip_params, grad_negatives, PARAM_FLAG, GRAD_NEGATIVES_MEANING),
    PARAM(CLI_LOSS_SIGLIP, closs_siglip_params, reduction, PARAM_REDUCTION,
          PAIRS_REDUCTION_MEANING),
    PARAM(CLI_LOSS_SIGLIP, closs_siglip_params, check_inputs, PARAM_FLAG, CHECK_INPUTS_MEANING),
};
#define PARAM_COUNT (sizeof param_specs / sizeof param_specs[0])
_Static_assert(PARAM_COUNT <= 64, "cli_params.given has one bit per parameter");

static const char *const loss_names[CLI_LOSS_COUNT] = {"pair",   "triplet", "ntxent", "supcon",
                                                       "cosine", "clip",    "siglip"};

static const char *const distance_names[] = {
    [CLOSS_DISTANCE_EUCLIDEAN] = "euclidean",
    [CLOSS_DISTANCE_SQEUCLIDEAN] = "sqeuclidean",
    [CLOSS_DISTANCE_COSINE] = "cosine",
};

static const char *const reduction_names[] = {
    [CLOSS_REDUCTION_MEAN] = "mean",
    [CLOSS_REDUCTION_SUM] = "sum",
    [CLOSS_REDUCTION_NONE] = "none",
};

static const char *const path_names[] = {
    [CLOSS_PATH_AUTO] = "auto",
    [CLOSS_PATH_FUSED] = "fused",
    [CLOSS_PATH_CHUNKED] = "chunked",
};

/* The names an enum parameter takes, in enum order, and how a refusal lists them. */
typedef struct choice_names {
    const char *const *names;
    size_t count;
    const char *list;
} choice_names;

static const choice_names reduction_choices = {reduction_names, 3, "mean, sum or none"};
static const choice_names path_choices = {path_names, 3, "auto, fused or chunked"};

static bool parse_name(const char *text, const char *const *names, size_t count, int *index) {
    for (size_t i = 0; i < count; ++i) {
        if (strcmp(text, names[i]) == 0) {
            *index = (int)i;
            return true;
        }
    }
    return false;
}

const char *cli_loss_name(cli_loss loss) {
    return (unsigned)loss < CLI_LOSS_COUNT ? loss_names[loss] : "?";
}

const char *cli_loss_names(void) { return "pair, triplet, ntxent, supcon, cosine, clip or siglip"; }

bool cli_loss_from_name(const char *name, cli_loss *loss) {
    for (int l = 0; l < CLI_LOSS_COUNT; ++l) {
        if (strcmp(name, loss_names[l]) == 0) {
            *loss = (cli_loss)l;
            return true;
        }
    }
    return false;
}

const char *cli_reduction_name(closs_reduction_t reduction) {
    return (unsigned)reduction < sizeof reduction_names / sizeof reduction_names[0]
               ? reduction_names[reduction]
               : "?";
}

static const struct {
    const char *name;
    closs_dtype_t dtype;
} dtype_names[] = {
    {"f64", CLOSS_F64}, {"f32", CLOSS_F32}, {"f16", CLOSS_F16}, {"bf16", CLOSS_BF16}};

const char *cli_dtype_name(closs_dtype_t dtype) {
    for (size_t i = 0; i < sizeof dtype_names / sizeof dtype_names[0]; ++i)
        if (dtype_names[i].dtype == dtype) return dtype_names[i].name;
    return "?";
}

bool cli_dtype_from_name(const char *name, closs_dtype_t *dtype) {
    for (size_t i = 0; i < sizeof dtype_names / sizeof dtype_names[0]; ++i) {
        if (strcmp(name, dtype_names[i].name) == 0) {
            *dtype = dtype_names[i].dtype;
            return true;
        }
    }
    return false;
}

const char *cli_path_name(closs_path_t path) {
    return (unsigned)path < sizeof path_names / sizeof path_names[0] ? path_names[path] : "?";
}

bool cli_path_from_name(const char *name, closs_path_t *path) {
    int index = 0;
    if (!parse_name(name, path_choices.names, path_choices.count, &index)) return false;
    *path = (closs_path_t)index;
    return true;
}

void cli_params_init(cli_params *params, cli_loss loss) {
    memset(params, 0, sizeof *params);
    params->loss = loss;
    switch (loss) {
    case CLI_LOSS_PAIR: params->as.pair = (closs_pair_params)CLOSS_PAIR_PARAMS_INIT; break;
    case CLI_LOSS_TRIPLET:
        params->as.triplet = (closs_triplet_params)CLOSS_TRIPLET_PARAMS_INIT;
        break;
    case CLI_LOSS_NTXENT: params->as.ntxent = (closs_ntxent_params)CLOSS_NTXENT_PARAMS_INIT; break;
    case CLI_LOSS_SUPCON: params->as.supcon = (closs_supcon_params)CLOSS_SUPCON_PARAMS_INIT; break;
    case CLI_LOSS_COSINE: params->as.cosine = (closs_cosine_params)CLOSS_COSINE_PARAMS_INIT; break;
    case CLI_LOSS_CLIP: params->as.clip = (closs_clip_params)CLOSS_CLIP_PARAMS_INIT; break;
    case CLI_LOSS_SIGLIP: params->as.siglip = (closs_siglip_params)CLOSS_SIGLIP_PARAMS_INIT; break;
    case CLI_LOSS_COUNT: break;
    }
}

static void *field_of(cli_params *params, const param_spec *spec) {
    return (char *)&params->as + spec->offset;
}

static const void *const_field_of(const cli_params *params, const param_spec *spec) {
    return (const char *)&params->as + spec->offset;
}

/* "margin, distance, reduction": the parameters `loss` takes, for messages. */
static void list_params(cli_loss loss, char *out, size_t out_size) {
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < PARAM_COUNT; ++i) {
        if (param_specs[i].loss != loss) continue;
        int n =
            snprintf(out + used, out_size - used, "%s%s", used ? ", " : "", param_specs[i].name);
        if (n < 0 || (size_t)n >= out_size - used) return;
        used += (size_t)n;
    }
}

/* A complete decimal or hexadecimal number that is finite: "1e999", "nan", "0.5x" and " 1" are
 * refused here rather than passed on half-read. */
static bool parse_real(const char *text, double *value) {
    if (text[0] == '\0' || isspace((unsigned char)text[0])) return false;
    char *end;
    double parsed = strtod(text, &end);
    if (*end != '\0' || !isfinite(parsed)) return false;
    *value = parsed; /* an underflow to a tiny or zero value (ERANGE) is still that number */
    return true;
}

static bool set_value(cli_params *params, const param_spec *spec, const char *value, char *err,
                      size_t err_size) {
    void *field = field_of(params, spec);
    switch (spec->kind) {
    case PARAM_REAL:
        if (parse_real(value, field)) return true;
        snprintf(err, err_size, "%s=%s: not a finite number", spec->name, value);
        return false;
    case PARAM_FLAG:
        if (strcmp(value, "0") == 0 || strcmp(value, "1") == 0) {
            *(int *)field = value[0] - '0';
            return true;
        }
        snprintf(err, err_size, "%s=%s: must be 0 or 1", spec->name, value);
        return false;
    case PARAM_DISTANCE: {
        int index;
        if (parse_name(value, distance_names, sizeof distance_names / sizeof distance_names[0],
                       &index) &&
            (spec->distances & DISTANCE_BIT(index))) {
            *(closs_distance_t *)field = (closs_distance_t)index;
            return true;
        }
        snprintf(err, err_size, "%s=%s: %s takes %s", spec->name, value,
                 cli_loss_name(params->loss), spec->meaning);
        return false;
    }
    case PARAM_REDUCTION:
    case PARAM_PATH: {
        const choice_names *choices = spec->kind == PARAM_PATH ? &path_choices : &reduction_choices;
        int index;
        if (!parse_name(value, choices->names, choices->count, &index)) {
            snprintf(err, err_size, "%s=%s: must be %s", spec->name, value, choices->list);
            return false;
        }
        if (spec->kind == PARAM_PATH) *(closs_path_t *)field = (closs_path_t)index;
        else *(closs_reduction_t *)field = (closs_reduction_t)index;
        return true;
    }
    }
    return false;
}

void cli_make_printable(char *message, size_t size) {
    for (size_t i = 0; i < size && message[i] != '\0'; ++i)
        if ((unsigned char)message[i] < 0x20 || message[i] == 0x7f) message[i] = '?';
}

static bool set_parameter(cli_params *params, const char *assignment, char *err, size_t err_size) {
    const char *equals = strchr(assignment, '=');
    size_t name_length = equals ? (size_t)(equals - assignment) : 0;
    if (name_length == 0) {
        snprintf(err, err_size, "'%s' is not a NAME=VALUE parameter", assignment);
        return false;
    }
    const char *loss = cli_loss_name(params->loss);
    char accepted[128];
    list_params(params->loss, accepted, sizeof accepted);
    bool known_elsewhere = false;
    for (size_t i = 0; i < PARAM_COUNT; ++i) {
        const param_spec *spec = &param_specs[i];
        if (strlen(spec->name) != name_length || strncmp(spec->name, assignment, name_length) != 0)
            continue;
        if (spec->loss != params->loss) {
            known_elsewhere = true;
            continue;
        }
        if (params->given & (UINT64_C(1) << i)) {
            snprintf(err, err_size, "parameter '%s' given twice", spec->name);
            return false;
        }
        params->given |= UINT64_C(1) << i;
        return set_value(params, spec, equals + 1, err, err_size);
    }
    if (known_elsewhere)
        snprintf(err, err_size, "parameter '%.*s' does not apply to %s (it takes %s)",
                 (int)name_length, assignment, loss, accepted);
    else
        snprintf(err, err_size, "unknown parameter '%.*s' (%s takes %s)", (int)name_length,
                 assignment, loss, accepted);
    return false;
}

bool cli_params_set(cli_params *params, const char *assignment, char *err, size_t err_size) {
    if (set_parameter(params, assignment, err, err_size)) return true;
    /* The messages quote the argument, which may hold any byte but NUL. */
    cli_make_printable(err, err_size);
    return false;
}

closs_reduction_t cli_params_reduction(const cli_params *params) {
    for (size_t i = 0; i < PARAM_COUNT; ++i) {
        const param_spec *spec = &param_specs[i];
        if (spec->loss == params->loss && spec->kind == PARAM_REDUCTION)
            return *(const closs_reduction_t *)const_field_of(params, spec);
    }
    return CLOSS_REDUCTION_MEAN;
}

static void format_value(const cli_params *params, const param_spec *spec, char *out,
                         size_t out_size) {
    const void *field = const_field_of(params, spec);
    switch (spec->kind) {
    case PARAM_REAL: snprintf(out, out_size, "%g", *(const double *)field); break;
    case PARAM_FLAG: snprintf(out, out_size, "%d", *(const int *)field); break;
    case PARAM_DISTANCE:
        snprintf(out, out_size, "%s", distance_names[*(const closs_distance_t *)field]);
        break;
    case PARAM_REDUCTION:
        snprintf(out, out_size, "%s", cli_reduction_name(*(const closs_reduction_t *)field));
        break;
    case PARAM_PATH: snprintf(out, out_size, "%s", path_names[*(const closs_path_t *)field]); break;
    }
}

void cli_params_print_help(FILE *out) {
    for (int l = 0; l < CLI_LOSS_COUNT; ++l) {
        cli_params defaults;
        cli_params_init(&defaults, (cli_loss)l);
        fprintf(out, "  %s\n", loss_names[l]);
        for (size_t i = 0; i < PARAM_COUNT; ++i) {
            if (param_specs[i].loss != (cli_loss)l) continue;
            char value[32], assignment[64];
            format_value(&defaults, &param_specs[i], value, sizeof value);
            snprintf(assignment, sizeof assignment, "%s=%s", param_specs[i].name, value);
            fprintf(out, "    %-24s %s\n", assignment, param_specs[i].meaning);
        }
    }
}
