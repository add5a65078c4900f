/* The losses the tool knows and their parameters, set from NAME=VALUE arguments on top of the
 * library's *_PARAMS_INIT defaults. Only the syntax of a value is checked here (a complete finite
 * number, 0 or 1, a known name); its range is the library's to judge. */
#ifndef CLOSS_TOOLS_PARAMS_H
#define CLOSS_TOOLS_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "closs.h"

typedef enum cli_loss {
    CLI_LOSS_PAIR,
    CLI_LOSS_TRIPLET,
    CLI_LOSS_NTXENT,
    CLI_LOSS_SUPCON,
    CLI_LOSS_COSINE,
    CLI_LOSS_CLIP,
    CLI_LOSS_SIGLIP,
    CLI_LOSS_COUNT
} cli_loss;

typedef struct cli_params {
    cli_loss loss;
    union {
        closs_pair_params pair;
        closs_triplet_params triplet;
        closs_ntxent_params ntxent;
        closs_supcon_params supcon;
        closs_cosine_params cosine;
        closs_clip_params clip;
        closs_siglip_params siglip;
    } as;           /* the member named by `loss` */
    uint64_t given; /* bit i: the i-th parameter of the table was set, to refuse setting it twice */
} cli_params;

const char *cli_loss_name(cli_loss loss);
/* "pair, triplet, ntxent, supcon, cosine, clip or siglip", for messages. */
const char *cli_loss_names(void);
bool cli_loss_from_name(const char *name, cli_loss *loss);

/* The library's defaults for `loss`. */
void cli_params_init(cli_params *params, cli_loss loss);
/* Applies one "NAME=VALUE" argument; on failure writes a one-line message into err. */
bool cli_params_set(cli_params *params, const char *assignment, char *err, size_t err_size);

/* Replaces every ASCII control character in a message with '?': a message that quotes an argument
 * stays one line even when the argument holds a newline. UTF-8 text is left as it is. */
void cli_make_printable(char *message, size_t size);

closs_reduction_t cli_params_reduction(const cli_params *params);
const char *cli_reduction_name(closs_reduction_t reduction);

/* The input dtypes by name: "f64", "f32", "f16", "bf16" ("?" for another value). */
const char *cli_dtype_name(closs_dtype_t dtype);
bool cli_dtype_from_name(const char *name, closs_dtype_t *dtype);

/* NT-Xent's and SupCon's GPU paths by name: "auto", "fused", "chunked". */
const char *cli_path_name(closs_path_t path);
bool cli_path_from_name(const char *name, closs_path_t *path);

/* Every loss's parameters with their defaults and ranges, for `closs eval --help`. */
void cli_params_print_help(FILE *out);

#endif
