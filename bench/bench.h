/* `closs bench` as a subcommand of the closs tool (tools/main.c): verify and time every loss on
 * built-in inputs. The bench's one entry point; the rest of bench/ is behind it. */
#ifndef CLOSS_BENCH_BENCH_H
#define CLOSS_BENCH_BENCH_H

/* The arguments from "bench" on (argv[0] is "bench"); returns the process exit status
 * (tools/commands.h: CLOSS_EXIT_OK, CLOSS_EXIT_FAILURE, CLOSS_EXIT_USAGE). */
int closs_bench_main(int argc, char **argv);

#endif
