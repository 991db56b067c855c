/* curve.c -- per-job CURVE keys and the ZAP handler that admits the workers. */
#include "curve.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "check.h"
#include "log.h"

/* Refused handshakes are logged in full for the first few, then one in every
 * 1000, as rejected messages are. */
#define REFUSED_LOG_FIRST 10
#define REFUSED_LOG_EVERY 1000
#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_POLL_MS 100

int curve_keypair(CurveKeypair *kp, char *err, size_t errlen) {
    if (!zmq_has("curve") || zmq_curve_keypair(kp->public_key, kp->secret_key) != 0) {
        snprintf(err, errlen, "encrypt = curve: this libzmq has no CURVE support (%s); install a libzmq "
                 "built with libsodium, as Debian's is, or set encrypt = none", zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

int curve_job_setup(const Job *job, const char *encrypt, CurveKeypair *kp, char (**public_keys)[CURVE_KEY_TEXT]) {
    *public_keys = NULL;
    if (strcmp(encrypt, "curve") != 0) return 0;
    char err[256];
    if (curve_keypair(kp, err, sizeof err) != 0) job_abort(job, "%s", err);
    *public_keys = xcalloc_aligned((size_t)job->world_size, CURVE_KEY_TEXT);
    job_allgather_strings(job, kp->public_key, CURVE_KEY_TEXT, (char *)*public_keys, "the ranks' CURVE public keys");
    return 1;
}

static void set_string(void *socket, int option, const char *value, const char *name) {
    CHECK(zmq_setsockopt(socket, option, value, strlen(value)) == 0, "%s: %s", name, zmq_strerror(zmq_errno()));
}

void curve_server_socket(void *socket, const CurveKeypair *kp) {
    int one = 1;
    CHECK(zmq_setsockopt(socket, ZMQ_CURVE_SERVER, &one, sizeof one) == 0, "ZMQ_CURVE_SERVER: %s",
          zmq_strerror(zmq_errno()));
    set_string(socket, ZMQ_CURVE_SECRETKEY, kp->secret_key, "ZMQ_CURVE_SECRETKEY");
    /* A ZAP domain makes libzmq ask the handler about every handshake. */
    set_string(socket, ZMQ_ZAP_DOMAIN, "arcface", "ZMQ_ZAP_DOMAIN");
}

void curve_client_socket(void *socket, const CurveKeypair *kp, const char *server_public_key) {
    set_string(socket, ZMQ_CURVE_SERVERKEY, server_public_key, "ZMQ_CURVE_SERVERKEY");
    set_string(socket, ZMQ_CURVE_PUBLICKEY, kp->public_key, "ZMQ_CURVE_PUBLICKEY");
    set_string(socket, ZMQ_CURVE_SECRETKEY, kp->secret_key, "ZMQ_CURVE_SECRETKEY");
}

/* ZAP request (RFC 27): version, request id, domain, address, routing id,
 * mechanism, then the mechanism's credentials (CURVE: the 32-byte client
 * public key). */
enum { ZAP_VERSION, ZAP_REQUEST_ID, ZAP_DOMAIN, ZAP_ADDRESS, ZAP_IDENTITY, ZAP_MECHANISM, ZAP_CREDENTIALS,
       ZAP_FRAMES };

static int zap_allowed(const CurveZap *zap, zmq_msg_t *frames, int n) {
    if (n != ZAP_FRAMES) return 0;
    if (zmq_msg_size(&frames[ZAP_MECHANISM]) != 5 || memcmp(zmq_msg_data(&frames[ZAP_MECHANISM]), "CURVE", 5) != 0)
        return 0;
    if (zmq_msg_size(&frames[ZAP_CREDENTIALS]) != 32) return 0;
    for (int i = 0; i < zap->n_allowed; i++)
        if (memcmp(zmq_msg_data(&frames[ZAP_CREDENTIALS]), zap->allowed[i], 32) == 0) return 1;
    return 0;
}

static void zap_reply(void *rep, zmq_msg_t *request_id, int ok) {
    const char *status = ok ? "200" : "400", *text = ok ? "OK" : "not a worker of this job";
    zmq_send(rep, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(rep, zmq_msg_data(request_id), zmq_msg_size(request_id), ZMQ_SNDMORE);
    zmq_send(rep, status, 3, ZMQ_SNDMORE);
    zmq_send(rep, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(rep, "", 0, ZMQ_SNDMORE); /* user id */
    zmq_send(rep, "", 0, 0);           /* metadata */
}

static void *zap_thread(void *arg) {
    CurveZap *zap = arg;
    void *rep = zmq_socket(zap->zctx, ZMQ_REP);
    CHECK(rep != NULL, "ZAP socket: %s", zmq_strerror(zmq_errno()));
    int zero = 0;
    CHECK(zmq_setsockopt(rep, ZMQ_LINGER, &zero, sizeof zero) == 0, "ZMQ_LINGER: %s", zmq_strerror(zmq_errno()));
    CHECK(zmq_bind(rep, ZAP_ENDPOINT) == 0, "bind %s: %s", ZAP_ENDPOINT, zmq_strerror(zmq_errno()));
    __atomic_store_n(&zap->running, 2, __ATOMIC_RELEASE); /* bound: curve_zap_start may return */
    while (!__atomic_load_n(&zap->stop, __ATOMIC_ACQUIRE)) {
        zmq_pollitem_t item = {.socket = rep, .events = ZMQ_POLLIN};
        if (zmq_poll(&item, 1, ZAP_POLL_MS) <= 0) continue;
        /* Read every frame of the request; keep the first ZAP_FRAMES. */
        zmq_msg_t frames[ZAP_FRAMES];
        int n = 0, more = 1, failed = 0;
        while (more) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, rep, 0) < 0) {
                zmq_msg_close(&m);
                failed = 1;
                break;
            }
            more = zmq_msg_more(&m);
            if (n < ZAP_FRAMES) frames[n] = m;
            else zmq_msg_close(&m);
            n++;
        }
        if (!failed && n >= 2) {
            int ok = zap_allowed(zap, frames, n);
            if (!ok) {
                uint64_t refused = __atomic_add_fetch(&zap->refused, 1, __ATOMIC_RELAXED);
                if (refused <= REFUSED_LOG_FIRST || refused % REFUSED_LOG_EVERY == 0) {
                    char from[64] = "?";
                    if (n > ZAP_ADDRESS) {
                        size_t len = zmq_msg_size(&frames[ZAP_ADDRESS]);
                        if (len >= sizeof from) len = sizeof from - 1;
                        memcpy(from, zmq_msg_data(&frames[ZAP_ADDRESS]), len);
                        from[len] = '\0';
                    }
                    log_warn("refused CURVE handshake #%llu from %s: not a public key of this job's workers",
                             (unsigned long long)refused, from);
                }
            }
            zap_reply(rep, &frames[ZAP_REQUEST_ID], ok);
        }
        for (int i = 0; i < n && i < ZAP_FRAMES; i++) zmq_msg_close(&frames[i]);
    }
    zmq_close(rep);
    return NULL;
}

int curve_zap_start(CurveZap *zap, void *zctx, const char (*allowed)[CURVE_KEY_TEXT], int n_allowed, char *err,
                    size_t errlen) {
    memset(zap, 0, sizeof *zap);
    zap->zctx = zctx;
    zap->allowed = xcalloc_aligned((size_t)(n_allowed > 0 ? n_allowed : 1), 32);
    zap->n_allowed = n_allowed;
    for (int i = 0; i < n_allowed; i++) {
        if (strlen(allowed[i]) != CURVE_KEY_TEXT - 1 || !zmq_z85_decode(zap->allowed[i], allowed[i])) {
            snprintf(err, errlen, "public key %d ('%.40s') is not 40 characters of Z85", i, allowed[i]);
            free(zap->allowed);
            zap->allowed = NULL;
            return -1;
        }
    }
    zap->running = 1;
    CHECK(pthread_create(&zap->thread, NULL, zap_thread, zap) == 0, "cannot start the ZAP thread");
    /* The handler must be bound before the server socket takes a handshake. */
    while (__atomic_load_n(&zap->running, __ATOMIC_ACQUIRE) != 2) sched_yield();
    return 0;
}

uint64_t curve_zap_stop(CurveZap *zap) {
    if (!zap->running) return 0;
    __atomic_store_n(&zap->stop, 1, __ATOMIC_RELEASE);
    pthread_join(zap->thread, NULL);
    free(zap->allowed);
    uint64_t refused = zap->refused;
    memset(zap, 0, sizeof *zap);
    return refused;
}
