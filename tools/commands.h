/* The subcommands of the closs tool. Each takes the arguments from its own name on (argv[0] is
 * "eval", "bench", ...) and returns the process exit status. */
#ifndef CLOSS_TOOLS_COMMANDS_H
#define CLOSS_TOOLS_COMMANDS_H

/* Exit statuses shared by every subcommand. */
#define CLOSS_EXIT_OK      0
#define CLOSS_EXIT_FAILURE 1 /* the library or the system failed on valid input */
#define CLOSS_EXIT_USAGE   2 /* a bad command line or bad input */

/* closs eval LOSS --in DIR --out DIR ...: a loss and its gradients on .npy files. */
int closs_eval_main(int argc, char **argv);
/* closs bench ...: verify and time every loss on built-in inputs (the README's main job). */
int closs_bench_main(int argc, char **argv);

#endif
