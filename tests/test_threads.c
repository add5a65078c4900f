/* Concurrency: the reference entry points are re-entrant and the last-error detail is per thread.
 * Several threads call the library at once, each with its own inputs; half of the calls fail on
 * purpose with a message that names the thread's own argument value. Every result must equal the
 * one computed alone, and every thread must read back its own message.
 *
 * A plain program rather than a Criterion suite: scripts/sanitize.sh runs it under
 * ThreadSanitizer, whose memory layout Criterion's process arena cannot live with. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

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

static void fill(worker *w) {
    uint64_t state = 0x9E3779B97F4A7C15ull * (uint64_t)(w->index + 1);
    for (int e = 0; e < ROWS * DIM; ++e) {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        w->z[e] = (double)((state * 0x2545F4914F6CDD1Dull) >> 11) * 0x1.0p-53 - 0.5;
    }
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
    return failed ? 1 : 0;
}
