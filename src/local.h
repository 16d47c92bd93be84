/* local: `dtf local`, the whole cluster on this machine. It picks free
 * loopback ports, starts every ps and worker task as `dtf run SCRIPT
 * --role=... --index=...` (the same binary), prefixes each line the tasks
 * print with the task's name, restarts a task that fails (as a Kubernetes
 * pod would be) and stops everything on Ctrl-C. Host-side code: it prints,
 * but it returns its exit status instead of exiting. */
#ifndef DTF_LOCAL_H
#define DTF_LOCAL_H

#include <stdio.h>

/* argv: the arguments after `local`. argv0 is the dtf binary (used when
 * /proc/self/exe cannot be read). Returns the process exit status:
 * 0 training finished, 1 a task failed past its restarts (or a ps did not
 * stop), 2 bad usage, 128+signal when stopped by SIGINT/SIGTERM/SIGHUP. */
int dtf_local_main(const char *argv0, int argc, char **argv);

/* The text `dtf help local` prints. */
void dtf_local_usage(FILE *f);

#endif
