/* stop_request.h -- SIGTERM, SIGINT and SIGUSR1 ask the job to stop cleanly.
 *
 * A handler only records the signal; the training loops look at it between
 * steps and agree, through the step's messages, on one step at which every
 * rank stops (see docs/design.md, "Stopping on a signal"). The first signal
 * asks for that stop; the handler then restores the default action, so a
 * second one ends the process at once. SIGUSR1 is in the set because mpirun
 * forwards it to every rank (it kills the ranks on SIGTERM) and Slurm's
 * `--signal` sends it before the time limit. */
#ifndef ARCFACE_STOP_REQUEST_H
#define ARCFACE_STOP_REQUEST_H

/* Installs the handlers (sigaction, SA_RESTART off so blocking waits return
 * with EINTR and notice sooner). Can't fail in practice; CHECKs sigaction. */
void stop_request_install(void);

/* The signal number that asked to stop, or 0 when none came; the value never
 * goes back to 0. The first call that sees a signal logs it once. Not for
 * use inside a signal handler. */
int stop_request_signal(void);

#endif
