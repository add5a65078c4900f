/* The closs command-line tool: `closs COMMAND ...` hands the arguments to the subcommand. */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "closs.h"
#include "commands.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"eval", closs_eval_main, "a loss and its gradients on .npy inputs"},
    {"bench", closs_bench_main, "verify and time every loss on built-in inputs"},
};

static void print_usage(FILE *out) {
    fprintf(out, "usage: closs COMMAND [ARGS ...]\n"
                 "       closs --help | --version\n"
                 "\n"
                 "Contrastive and metric-learning losses with their gradients.\n"
                 "\n"
                 "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; ++i)
        fprintf(out, "  %-6s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'closs COMMAND --help' describes a command.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        print_usage(stderr);
        return CLOSS_EXIT_USAGE;
    }
    const char *command = argv[1];
    if (strcmp(command, "--help") == 0 || strcmp(command, "-h") == 0) {
        print_usage(stdout);
        return CLOSS_EXIT_OK;
    }
    if (strcmp(command, "--version") == 0) {
        printf("closs %s\n", closs_version_string());
        return CLOSS_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; ++i)
        if (strcmp(command, commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "closs: error: unknown command '%s'; see 'closs --help'\n", command);
    return CLOSS_EXIT_USAGE;
}
