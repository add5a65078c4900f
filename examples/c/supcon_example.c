/* SupCon loss and its gradient for six embeddings of three classes, on the CPU reference. */
#include <closs.h>
#include <stdio.h>

int main(void) {
    const double z[6][4] = {{1.0, 0.2, 0.0, 0.1},  {0.9, 0.1, 0.1, 0.0}, {0.0, 1.0, 0.3, 0.0},
                            {0.1, 0.8, 0.2, 0.1},  {0.0, 0.1, 1.0, 0.4}, {0.2, 0.0, 0.9, 0.5}};
    const int64_t labels[6] = {0, 0, 1, 1, 2, 2};
    double loss, grad[6][4];
    int64_t valid;

    closs_supcon_params params = CLOSS_SUPCON_PARAMS_INIT; /* τ = 0.07, normalised, mean */
    params.temperature = 0.1;
    closs_status_t status = closs_ref_supcon(&params, closs_matrix(z, CLOSS_F64, 6, 4),
                                             closs_vector(labels, CLOSS_I64, 6), NULL, &loss,
                                             &grad[0][0], &valid);
    if (status != CLOSS_STATUS_SUCCESS) {
        fprintf(stderr, "closs: %s (%s)\n", closs_status_string(status), closs_last_error());
        return 1;
    }
    printf("SupCon loss %.6f over %lld anchors; dL/dz[0] = (%.4f, %.4f, %.4f, %.4f)\n", loss,
           (long long)valid, grad[0][0], grad[0][1], grad[0][2], grad[0][3]);
    return 0;
}
