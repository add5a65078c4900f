/* Concurrency: the reference entry points are re-entrant and the last-error detail is per thread.
 * Several threads call the library at once, each with its own inputs; half of the calls fail on
 * purpose with a message that names the thread's own argument value. Every result must equal the
 * one computed alone, and every thread must read back its own message.
 *
 * Then, in a build with OpenMP: the reference's results do not depend on the number of OpenMP
 * threads (NT-Xent, SupCon, CLIP and SigLIP above the size at which they spread over threads, on
 * 1 thread and on 4, bit for bit).
 *
 * A plain program rather than a Criterion suite: scripts/sanitize.sh runs it under
 * ThreadSanitizer, whose memory layout Criterion's process arena cannot live with. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#    include <omp.h>
#endif

#include "closs.h"

enum { THREADS = 4, ROUNDS = 40, ROWS = 16, DIM = 8 };

typedef struct worker {
    int index;
    double z[ROWS * DIM];
    int64_t labels[ROWS];
    double expected_loss, expected_grad[ROWS * DIM];
    int failures; /* mismatches seen by this thread */
    char first_failure[256];
} worker;

/* Values in [−0.5, 0.5) from a seed. */
static void fill_values(double *x, int64_t count, uint64_t seed) {
    uint64_t state = 0x9E3779B97F4A7C15ull * (seed + 1);
    for (int64_t e = 0; e < count; ++e) {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        x[e] = (double)((state * 0x2545F4914F6CDD1Dull) >> 11) * 0x1.0p-53 - 0.5;
    }
}

static void fill(worker *w) {
    fill_values(w->z, ROWS * DIM, (uint64_t)w->index);
    for (int i = 0; i < ROWS; ++i) w->labels[i] = (i + w->index) % 5;
}

static closs_status_t supcon(const worker *w, double temperature, double *loss, double *grad) {
    closs_supcon_params params = CLOSS_SUPCON_PARAMS_INIT;
    params.temperature = temperature;
    return closs_ref_supcon(&params, closs_matrix(w->z, CLOSS_F64, ROWS, DIM),
                            closs_vector(w->labels, CLOSS_I64, ROWS), NULL, loss, grad, NULL);
}

static void record(worker *w, const char *what) {
    if (w->failures++ == 0) snprintf(w->first_failure, sizeof w->first_failure, "%s", what);
}

static void *work(void *opaque) {
    worker *w = opaque;
    /* A temperature no other thread uses, so the message proves whose error it is. */
    const double bad_temperature = -(double)(w->index + 1);
    char expected_message[64];
    snprintf(expected_message, sizeof expected_message, "temperature = %g", bad_temperature);
    for (int round = 0; round < ROUNDS; ++round) {
        double loss, grad[ROWS * DIM];
        if (supcon(w, 0.1, &loss, grad) != CLOSS_STATUS_SUCCESS) record(w, "a valid call failed");
        else if (loss != w->expected_loss || memcmp(grad, w->expected_grad, sizeof grad) != 0)
            record(w, "a result differs from the one computed alone");
        if (strcmp(closs_last_error(), "") != 0) record(w, "a success left an error message");

        if (supcon(w, bad_temperature, &loss, grad) != CLOSS_STATUS_INVALID_ARGUMENT)
            record(w, "an invalid call was accepted");
        else if (!strstr(closs_last_error(), expected_message)) record(w, closs_last_error());
    }
    return NULL;
}

#ifdef _OPENMP
/* One loss's outputs for a problem: the loss values and every gradient, in one buffer. */
enum { BIG_PAIRS = 96, BIG_EXTRA = 32, BIG_DIM = 96, BIG_ROWS = BIG_PAIRS + BIG_EXTRA };
enum { OUTPUT_COUNT = BIG_PAIRS + (BIG_PAIRS + BIG_ROWS) * BIG_DIM + 2 };

static closs_status_t run_loss(int loss, const double *x, const double *upstream, double *out) {
    const closs_matrix_t a = closs_matrix(x, CLOSS_F64, BIG_PAIRS, BIG_DIM);
    const closs_matrix_t b = closs_matrix(x + BIG_PAIRS * BIG_DIM, CLOSS_F64, BIG_ROWS, BIG_DIM);
    const closs_matrix_t z = closs_matrix(x, CLOSS_F64, 2 * BIG_PAIRS, BIG_DIM);
    double *grad_a = out + BIG_PAIRS, *grad_b = grad_a + BIG_PAIRS * BIG_DIM;
    double *scalars = grad_b + BIG_ROWS * BIG_DIM;
    static int64_t labels[2 * BIG_PAIRS];
    for (int i = 0; i < 2 * BIG_PAIRS; ++i) labels[i] = i % 7;
    switch (loss) {
    case 0: {
        closs_ntxent_params params = CLOSS_NTXENT_PARAMS_INIT;
        params.reduction = CLOSS_REDUCTION_SUM;
        return closs_ref_ntxent(&params, z, NULL, out, grad_a);
    }
    case 1: {
        closs_supcon_params params = CLOSS_SUPCON_PARAMS_INIT;
        return closs_ref_supcon(&params, z, closs_vector(labels, CLOSS_I64, 2 * BIG_PAIRS), NULL,
                                out, grad_a, NULL);
    }
    case 2: {
        closs_clip_params params = CLOSS_CLIP_PARAMS_INIT;
        params.reduction = CLOSS_REDUCTION_NONE;
        return closs_ref_clip(&params, a, b, upstream, out, grad_a, grad_b, scalars);
    }
    default: {
        closs_siglip_params params = CLOSS_SIGLIP_PARAMS_INIT;
        params.reduction = CLOSS_REDUCTION_NONE;
        return closs_ref_siglip(&params, a, b, upstream, out, grad_a, grad_b, scalars, scalars + 1);
    }
    }
}

/* Every loss on 1 and on 4 OpenMP threads: the same bits. Returns the number of losses that
 * differ (or fail). */
static int thread_count_independence(void) {
    static const char *const names[] = {"ntxent", "supcon", "clip", "siglip"};
    double *x = malloc((BIG_PAIRS + BIG_ROWS) * BIG_DIM * sizeof(double));
    double *one = malloc(OUTPUT_COUNT * sizeof(double)),
           *four = malloc(OUTPUT_COUNT * sizeof(double));
    double upstream[BIG_PAIRS];
    if (!x || !one || !four) return 1;
    fill_values(x, (BIG_PAIRS + BIG_ROWS) * BIG_DIM, 77);
    fill_values(upstream, BIG_PAIRS, 78);
    int failed = 0;
    for (int loss = 0; loss < 4; ++loss) {
        memset(one, 0, OUTPUT_COUNT * sizeof(double));
        memset(four, 0, OUTPUT_COUNT * sizeof(double));
        omp_set_num_threads(1);
        closs_status_t first = run_loss(loss, x, upstream, one);
        omp_set_num_threads(4);
        closs_status_t second = run_loss(loss, x, upstream, four);
        if (first != CLOSS_STATUS_SUCCESS || second != CLOSS_STATUS_SUCCESS) {
            fprintf(stderr, "threads: %s failed: %s\n", names[loss], closs_last_error());
            ++failed;
        } else if (memcmp(one, four, OUTPUT_COUNT * sizeof(double)) != 0) {
            fprintf(stderr, "threads: %s differs between 1 and 4 OpenMP threads\n", names[loss]);
            ++failed;
        }
    }
    printf("threads: the reference's bits on 1 and 4 OpenMP threads: %d of 4 losses differ\n",
           failed);
    free(x);
    free(one);
    free(four);
    return failed;
}
#endif

int main(void) {
    static worker workers[THREADS];
    for (int t = 0; t < THREADS; ++t) {
        workers[t].index = t;
        fill(&workers[t]);
        if (supcon(&workers[t], 0.1, &workers[t].expected_loss, workers[t].expected_grad) !=
            CLOSS_STATUS_SUCCESS) {
            fprintf(stderr, "threads: the single-threaded call failed: %s\n", closs_last_error());
            return 1;
        }
    }
    pthread_t threads[THREADS];
    for (int t = 0; t < THREADS; ++t)
        if (pthread_create(&threads[t], NULL, work, &workers[t]) != 0) return 1;
    for (int t = 0; t < THREADS; ++t)
        if (pthread_join(threads[t], NULL) != 0) return 1;
    int failed = 0;
    for (int t = 0; t < THREADS; ++t) {
        if (workers[t].failures == 0) continue;
        ++failed;
        fprintf(stderr, "threads: thread %d: %d failures, first: %s\n", t, workers[t].failures,
                workers[t].first_failure);
    }
    printf("threads: %d passed, %d failed\n", THREADS - failed, failed);
#ifdef _OPENMP
    failed += thread_count_independence();
#endif
    return failed ? 1 : 0;
}
