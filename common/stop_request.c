/* stop_request.c -- records a stop signal for the training loops to act on. */
#include "stop_request.h"

#include <signal.h>
#include <string.h>

#include "check.h"
#include "log.h"

static volatile sig_atomic_t requested_signal;

static void on_stop_signal(int signum) {
    if (!requested_signal) requested_signal = signum;
    /* A second signal of any of the three takes the default action: the
     * user who presses Ctrl-C twice means it. */
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGUSR1, SIG_DFL);
}

void stop_request_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    const int signals[] = {SIGTERM, SIGINT, SIGUSR1};
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++)
        CHECK(sigaction(signals[i], &sa, NULL) == 0, "sigaction(%d) failed", signals[i]);
}

int stop_request_signal(void) {
    static int logged;
    int signum = requested_signal;
    if (signum && !logged) {
        logged = 1;
        log_warn("received %s: the job stops after this step, with a checkpoint when output_dir is set (a second "
                 "signal ends this process at once)", signum == SIGTERM ? "SIGTERM" : signum == SIGINT ? "SIGINT"
                 : "SIGUSR1");
    }
    return signum;
}
