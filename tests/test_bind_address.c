/* test_bind_address.c -- job_bind_address: the interface key, then
 * ARCFACE_INTERFACE, then auto; loopback is never given to a worker on
 * another host; every error names the host and what to set. Runs without MPI
 * (job_bind_address makes no MPI call) on a hand-made Job. Only lo/127.0.0.1
 * is assumed to exist; tests/integration_multihost.sh covers real hosts. */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "testutil.h"

/* World ranks 0, 1 are servers, 2, 3 workers; this process is world rank 0. */
static Job make_job(char (*hosts)[JOB_HOST_LEN], const char *h0, const char *h1, const char *h2, const char *h3) {
    static int servers[2] = {0, 1}, workers[2] = {2, 3};
    snprintf(hosts[0], JOB_HOST_LEN, "%s", h0);
    snprintf(hosts[1], JOB_HOST_LEN, "%s", h1);
    snprintf(hosts[2], JOB_HOST_LEN, "%s", h2);
    snprintf(hosts[3], JOB_HOST_LEN, "%s", h3);
    return (Job){.world_rank = 0, .world_size = 4, .is_server = 1, .n_servers = 2, .n_workers = 2,
                 .server_world_ranks = servers, .worker_world_ranks = workers, .hosts = hosts};
}

/* Calls job_bind_address with ARCFACE_INTERFACE = env (NULL = unset). */
static int choose(const Job *job, const char *key, const char *env, char *addr, char *err) {
    if (env)
        setenv("ARCFACE_INTERFACE", env, 1);
    else
        unsetenv("ARCFACE_INTERFACE");
    addr[0] = err[0] = '\0';
    return job_bind_address(job, key, addr, 64, err, 512);
}

static int has(const char *s, const char *part) { return strstr(s, part) != NULL; }

/* Whether this host has 127.0.0.1 on an interface named lo (not so in a
 * network namespace whose lo is down). */
static int have_lo(void) {
    struct ifaddrs *ifs = NULL;
    if (getifaddrs(&ifs) != 0) return 0;
    int found = 0;
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next)
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET && strcmp(i->ifa_name, "lo") == 0 &&
            ((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr.s_addr == htonl(INADDR_LOOPBACK))
            found = 1;
    freeifaddrs(ifs);
    return found;
}

int main(void) {
    char hosts[4][JOB_HOST_LEN], addr[64], err[512];
    if (!have_lo()) {
        printf("test_bind_address: skipped: no interface lo with 127.0.0.1 here\n");
        return 77;
    }

    Job one = make_job(hosts, "alpha", "alpha", "alpha", "alpha");
    EXPECT(choose(&one, "", NULL, addr, err) == 0 && strcmp(addr, "127.0.0.1") == 0, "one host, auto: %s %s", addr, err);
    EXPECT(choose(&one, "lo", NULL, addr, err) == 0 && strcmp(addr, "127.0.0.1") == 0, "interface = lo: %s", err);
    EXPECT(choose(&one, "127.0.0.1", NULL, addr, err) == 0 && strcmp(addr, "127.0.0.1") == 0, "address: %s", err);
    EXPECT(choose(&one, "", "lo", addr, err) == 0 && strcmp(addr, "127.0.0.1") == 0, "ARCFACE_INTERFACE = lo: %s",
           err);
    EXPECT(choose(&one, "nosuch0", NULL, addr, err) == -1 && has(err, "host alpha has no interface 'nosuch0'") &&
               has(err, "(from interface)") && has(err, "lo 127.0.0.1"),
           "wrong name: %s", err);
    EXPECT(choose(&one, "", "nosuch0", addr, err) == -1 && has(err, "(from ARCFACE_INTERFACE)") && has(err, "alpha"),
           "wrong ARCFACE_INTERFACE: %s", err);
    /* The key wins over the environment. */
    EXPECT(choose(&one, "lo", "nosuch0", addr, err) == 0 && strcmp(addr, "127.0.0.1") == 0, "key first: %s", err);
    /* 0.0.0.0 binds but cannot be connected to from elsewhere: not an address of the host. */
    EXPECT(choose(&one, "0.0.0.0", NULL, addr, err) == -1 && has(err, "interface = 0.0.0.0 is not an address of host alpha"),
           "0.0.0.0: %s", err);

    /* Worker 1 (world rank 3) on another host: loopback is an error naming both hosts. */
    Job two = make_job(hosts, "alpha", "beta", "alpha", "beta");
    EXPECT(choose(&two, "lo", NULL, addr, err) == -1 && has(err, "interface = lo is the loopback address 127.0.0.1 on host alpha") &&
               has(err, "worker 1 (world rank 3 on host beta) cannot reach"),
           "lo across hosts: %s", err);
    EXPECT(choose(&two, "127.0.0.1", NULL, addr, err) == -1 && has(err, "loopback"), "127.0.0.1 across hosts: %s", err);
    EXPECT(choose(&two, "", "lo", addr, err) == -1 && has(err, "ARCFACE_INTERFACE = lo"), "env lo across hosts: %s", err);
    int rc = choose(&two, "", NULL, addr, err);
    if (rc == 0)
        EXPECT(strncmp(addr, "127.", 4) != 0, "auto across hosts chose %s", addr);
    else
        EXPECT(has(err, "host alpha has no non-loopback IPv4 interface") && has(err, "ARCFACE_INTERFACE"),
               "auto across hosts without a network: %s", err);

    /* Another server elsewhere, but this server's workers share its host: loopback reaches them. */
    Job local_workers = make_job(hosts, "alpha", "beta", "alpha", "alpha");
    EXPECT(choose(&local_workers, "lo", NULL, addr, err) == 0 && strcmp(addr, "127.0.0.1") == 0,
           "lo with local workers: %s", err);
    unsetenv("ARCFACE_INTERFACE");
    return test_finish("test_bind_address");
}
