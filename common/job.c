/* job.c -- MPI roles, hosts, token, bounded waits and job-wide abort. */
#include "job.h"

#include <arpa/inet.h>
#include <sched.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "log.h"

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void abort_job_handler(int code) { MPI_Abort(MPI_COMM_WORLD, code ? code : 1); }

void job_abort(const Job *job, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_error("%s; ending the job", msg);
    fflush(stderr);
    (void)job;
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1); /* MPI_Abort does not return; this satisfies _Noreturn */
}

void job_wait(const Job *job, MPI_Request *req, const char *what) {
    double start = now_seconds();
    /* Open MPI advances a non-blocking collective only inside MPI calls, one
     * round per call, so a large allreduce needs MPI_Test called back to back.
     * Spin (yielding the core to other ranks) for the first 50 ms, then back
     * off to sleeps of up to 1 ms: quick when the peers are ready, nearly idle
     * when they are still computing. */
    long sleep_ns = 50000;
    for (;;) {
        int done = 0;
        int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) {
            char s[MPI_MAX_ERROR_STRING];
            int len = 0;
            MPI_Error_string(rc, s, &len);
            job_abort(job, "MPI error while waiting for %s: %s", what, s);
        }
        if (done) return;
        double waited = now_seconds() - start;
        if (waited > job->timeout)
            job_abort(job, "timed out after %.0f s waiting for %s", job->timeout, what);
        if (waited < 0.05) {
            sched_yield();
            continue;
        }
        struct timespec ts = {0, sleep_ns};
        nanosleep(&ts, NULL);
        if (sleep_ns < 1000000) sleep_ns *= 2;
    }
}

const char *job_describe_rank(const Job *job, int world_rank, char *buf, size_t len) {
    const char *role = "rank";
    int index = -1;
    for (int i = 0; i < job->n_servers; i++)
        if (job->server_world_ranks[i] == world_rank) role = "ps", index = i;
    for (int i = 0; i < job->n_workers; i++)
        if (job->worker_world_ranks[i] == world_rank) role = "worker", index = i;
    snprintf(buf, len, "%s %d (world rank %d on host %s)", role, index, world_rank,
             world_rank >= 0 && world_rank < job->world_size ? job->hosts[world_rank] : "?");
    return buf;
}

void job_init(Job *job, int *argc, char ***argv, int is_server, double timeout) {
    memset(job, 0, sizeof *job);
    int provided = 0;
    /* Serialized: a worker's gradient allreduce runs on a thread of its own
     * while the main thread computes (worker/grad_allreduce.h). */
    MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided);
    fatal_set_handler(abort_job_handler);
    MPI_Comm_rank(MPI_COMM_WORLD, &job->world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &job->world_size);
    job->is_server = is_server;
    job->timeout = timeout;
    log_set_role(is_server ? "ps" : "worker", -1);

    /* Roles and hosts of every rank in one exchange. */
    typedef struct {
        int is_server;
        char host[JOB_HOST_LEN];
    } RankInfo;
    RankInfo mine = {.is_server = is_server};
    if (gethostname(mine.host, sizeof mine.host - 1) != 0) snprintf(mine.host, sizeof mine.host, "?");
    RankInfo *all = xcalloc_aligned((size_t)job->world_size, sizeof *all);
    MPI_Request req;
    MPI_Iallgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE, MPI_COMM_WORLD, &req);
    job_wait(job, &req, "every rank to start (MPI_Iallgather of roles)");

    job->hosts = xcalloc_aligned((size_t)job->world_size, sizeof *job->hosts);
    job->server_world_ranks = xcalloc_aligned((size_t)job->world_size, sizeof(int));
    job->worker_world_ranks = xcalloc_aligned((size_t)job->world_size, sizeof(int));
    for (int r = 0; r < job->world_size; r++) {
        memcpy(job->hosts[r], all[r].host, JOB_HOST_LEN);
        job->hosts[r][JOB_HOST_LEN - 1] = '\0';
        if (all[r].is_server) {
            if (r == job->world_rank) job->role_rank = job->n_servers;
            job->server_world_ranks[job->n_servers++] = r;
        } else {
            if (r == job->world_rank) job->role_rank = job->n_workers;
            job->worker_world_ranks[job->n_workers++] = r;
        }
    }
    free(all);
    log_set_role(is_server ? "ps" : "worker", job->role_rank);
    if (job->n_servers == 0 || job->n_workers == 0)
        job_abort(job, "a job needs at least one arcface-ps and one arcface-worker rank (got %d and %d); "
                       "launch as: mpirun -np P arcface-ps CONFIG : -np W arcface-worker CONFIG",
                  job->n_servers, job->n_workers);

    int rc = MPI_Comm_split(MPI_COMM_WORLD, is_server, job->role_rank, &job->role_comm);
    CHECK(rc == MPI_SUCCESS, "MPI_Comm_split failed");

    /* The token only has to be unguessable to processes outside the job. */
    uint64_t token = 0;
    if (job->world_rank == 0 && getrandom(&token, sizeof token, 0) != (ssize_t)sizeof token)
        FATAL("getrandom failed: cannot make the job token");
    MPI_Ibcast(&token, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD, &req);
    job_wait(job, &req, "the job token from world rank 0");
    job->token = token;
}

void job_allgather_strings(const Job *job, const char *mine, size_t width, char *all, const char *what) {
    char *own = xcalloc_aligned(width, 1);
    snprintf(own, width, "%s", mine);
    MPI_Request req;
    MPI_Iallgather(own, (int)width, MPI_CHAR, all, (int)width, MPI_CHAR, MPI_COMM_WORLD, &req);
    job_wait(job, &req, what);
    for (int r = 0; r < job->world_size; r++) all[(size_t)r * width + width - 1] = '\0';
    free(own);
}

void job_exchange_endpoints(const Job *job, const char *mine, char (*endpoints)[JOB_ENDPOINT_LEN]) {
    char (*all)[JOB_ENDPOINT_LEN] = xcalloc_aligned((size_t)job->world_size, JOB_ENDPOINT_LEN);
    job_allgather_strings(job, mine ? mine : "", JOB_ENDPOINT_LEN, (char *)all, "the servers' endpoints");
    for (int p = 0; p < job->n_servers; p++) memcpy(endpoints[p], all[job->server_world_ranks[p]], JOB_ENDPOINT_LEN);
    free(all);
}

static int all_on_this_host(const Job *job) {
    for (int r = 0; r < job->world_size; r++)
        if (strcmp(job->hosts[r], job->hosts[job->world_rank]) != 0) return 0;
    return 1;
}

/* The world rank of the first worker on another host than this rank, or -1. */
static int first_remote_worker(const Job *job) {
    for (int i = 0; i < job->n_workers; i++) {
        int r = job->worker_world_ranks[i];
        if (strcmp(job->hosts[r], job->hosts[job->world_rank]) != 0) return r;
    }
    return -1;
}

static int is_loopback(struct in_addr a) { return (ntohl(a.s_addr) >> 24) == 127; }

static const struct in_addr *ipv4_of(const struct ifaddrs *i) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) return NULL;
    return &((const struct sockaddr_in *)(const void *)i->ifa_addr)->sin_addr;
}

/* "lo 127.0.0.1, eth0 10.0.0.5" (IPv4 interfaces of this host) into buf. */
static void list_interfaces(const struct ifaddrs *ifs, char *buf, size_t len) {
    size_t used = 0;
    buf[0] = '\0';
    for (const struct ifaddrs *i = ifs; i && used < len; i = i->ifa_next) {
        const struct in_addr *a = ipv4_of(i);
        if (!a) continue;
        char text[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, a, text, sizeof text);
        int n = snprintf(buf + used, len - used, "%s%s %s", used ? ", " : "", i->ifa_name, text);
        if (n < 0) break;
        used += (size_t)n;
    }
    if (!buf[0]) snprintf(buf, len, "none");
}

int job_bind_address(const Job *job, const char *interface, char *addr, size_t len, char *err,
                     size_t errlen) {
    const char *host = job->hosts[job->world_rank];
    const char *setting = interface, *source = "interface";
    const char *env = getenv("ARCFACE_INTERFACE");
    if (!setting[0] && env && env[0]) {
        setting = env;
        source = "ARCFACE_INTERFACE";
    }
    int remote = first_remote_worker(job);
    char peer[128] = "";
    if (remote >= 0) job_describe_rank(job, remote, peer, sizeof peer);

    if (!setting[0] && all_on_this_host(job)) {
        snprintf(addr, len, "127.0.0.1");
        log_info("bind address 127.0.0.1 (auto: every rank runs on host %s; interface and "
                 "ARCFACE_INTERFACE are empty)", host);
        return 0;
    }

    struct ifaddrs *ifs = NULL;
    if (getifaddrs(&ifs) != 0) {
        snprintf(err, errlen, "getifaddrs failed on host %s: cannot list network interfaces", host);
        return -1;
    }
    char known[512];
    list_interfaces(ifs, known, sizeof known);
    struct in_addr want;
    int is_address = setting[0] && inet_pton(AF_INET, setting, &want) == 1;
    const struct ifaddrs *chosen = NULL;
    for (const struct ifaddrs *i = ifs; i && !chosen; i = i->ifa_next) {
        const struct in_addr *a = ipv4_of(i);
        if (!a) continue;
        if (is_address)
            chosen = a->s_addr == want.s_addr ? i : NULL;
        else if (setting[0])
            chosen = strcmp(i->ifa_name, setting) == 0 ? i : NULL;
        else
            chosen = (i->ifa_flags & IFF_UP) && !(i->ifa_flags & IFF_LOOPBACK) && !is_loopback(*a) ? i : NULL;
    }
    int rc = -1;
    if (!chosen) {
        if (is_address)
            snprintf(err, errlen, "%s = %s is not an address of host %s; set interface or ARCFACE_INTERFACE "
                     "to an interface name (the same on every host) or to an address of this host (host %s "
                     "has: %s)", source, setting, host, host, known);
        else if (setting[0])
            snprintf(err, errlen, "host %s has no interface '%s' with an IPv4 address (from %s); set interface "
                     "or ARCFACE_INTERFACE to one of its interfaces: %s", host, setting, source, known);
        else
            snprintf(err, errlen, "ranks run on several hosts but host %s has no non-loopback IPv4 interface "
                     "that is up; set interface or ARCFACE_INTERFACE to the network between the hosts "
                     "(host %s has: %s)", host, host, known);
        goto done;
    }
    struct in_addr a = *ipv4_of(chosen);
    inet_ntop(AF_INET, &a, addr, (socklen_t)len);
    if (is_loopback(a) && remote >= 0) {
        snprintf(err, errlen, "%s = %s is the loopback address %s on host %s, which %s cannot reach; set "
                 "interface or ARCFACE_INTERFACE to the network between the hosts, or leave both empty for "
                 "the first non-loopback address (host %s has: %s)", source, setting, addr, host, peer, host,
                 known);
        goto done;
    }
    if (setting[0])
        log_info("bind address %s (%s = %s, interface %s on host %s)", addr, source, setting, chosen->ifa_name,
                 host);
    else
        log_info("bind address %s (auto: ranks on several hosts, first non-loopback interface %s on host %s; "
                 "set interface or ARCFACE_INTERFACE to choose another)", addr, chosen->ifa_name, host);
    rc = 0;
done:
    freeifaddrs(ifs);
    return rc;
}

void job_finalize(Job *job) {
    MPI_Request req;
    MPI_Ibarrier(MPI_COMM_WORLD, &req);
    job_wait(job, &req, "every rank to finish (final barrier)");
    MPI_Comm_free(&job->role_comm);
    free(job->hosts);
    free(job->server_world_ranks);
    free(job->worker_world_ranks);
    MPI_Finalize();
}

JobData job_share_data(const Job *job, const TrainConfig *cfg, int64_t dataset_classes, int64_t dataset_samples) {
    int64_t facts[2] = {dataset_classes, dataset_samples};
    MPI_Request req;
    MPI_Ibcast(facts, 2, MPI_INT64_T, job->worker_world_ranks[0], MPI_COMM_WORLD, &req);
    job_wait(job, &req, "the training set's size from worker 0");
    JobData d = {.num_classes = facts[0], .samples = facts[1]};
    d.steps_per_epoch = d.samples / ((int64_t)job->n_workers * cfg->batch_size);
    if (cfg->num_classes != 0) {
        if (cfg->num_classes < d.num_classes)
            job_abort(job, "num_classes = %lld but the training set has %lld identities", (long long)cfg->num_classes,
                      (long long)d.num_classes);
        d.num_classes = cfg->num_classes;
    }
    return d;
}
