/* The subcommands of the closs tool and their exit statuses (`closs bench`'s entry point is
 * bench/bench.h). Each takes the arguments from its own name on (argv[0] is "eval", "bench", ...)
 * and returns the process exit status. */
#ifndef CLOSS_TOOLS_COMMANDS_H
#define CLOSS_TOOLS_COMMANDS_H

/* Exit statuses shared by every subcommand. */
#define CLOSS_EXIT_OK      0
#define CLOSS_EXIT_FAILURE 1 /* the library or the system failed on valid input */
#define CLOSS_EXIT_USAGE   2 /* a bad command line or bad input */

/* closs eval LOSS --in DIR --out DIR ...: a loss and its gradients on .npy files. */
int closs_eval_main(int argc, char **argv);

#endif
