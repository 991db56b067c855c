/* curve.h -- optional CURVE encryption and authentication of the
 * worker <-> server sockets (config key encrypt = curve).
 *
 * Every rank makes a fresh keypair when the job starts; only the public keys
 * travel, over MPI (never over the network the sockets use). A server is a
 * CURVE server with its own secret key and a ZAP handler that admits exactly
 * the job's workers' public keys; a worker is a CURVE client that knows its
 * server's public key. A peer outside the job -- without a worker's secret key
 * or with a forged server -- completes no handshake, so it can neither read
 * nor send a message; every refused handshake is counted and logged
 * (rate-limited). The job token stays on as the check of every message. */
#ifndef ARCFACE_CURVE_H
#define ARCFACE_CURVE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "job.h"

#define CURVE_KEY_TEXT 41 /* Z85 text of a 32-byte key plus NUL */

typedef struct {
    char public_key[CURVE_KEY_TEXT], secret_key[CURVE_KEY_TEXT];
} CurveKeypair;

/* A fresh keypair (zmq_curve_keypair). Returns 0, or -1 with err when this
 * libzmq was built without CURVE (libsodium). */
int curve_keypair(CurveKeypair *kp, char *err, size_t errlen);

/* Collective over the world when encrypt is "curve" (else nothing happens and
 * 0 is returned): makes this rank's keypair into *kp and gathers every rank's
 * public key into *public_keys (world_size entries, malloc'ed; free() it).
 * Returns 1 when CURVE is on. Failures end the job. */
int curve_job_setup(const Job *job, const char *encrypt, CurveKeypair *kp, char (**public_keys)[CURVE_KEY_TEXT]);

/* Makes socket (not yet bound) a CURVE server with kp's secret key whose
 * handshakes go to the ZAP handler of its context. CHECKs the options. */
void curve_server_socket(void *socket, const CurveKeypair *kp);

/* Makes socket (not yet connected) a CURVE client with kp that accepts only a
 * server holding server_public_key's secret. CHECKs the options. */
void curve_client_socket(void *socket, const CurveKeypair *kp, const char *server_public_key);

/* The ZAP handler of one ZeroMQ context: a thread that admits CURVE clients
 * whose public key is in the allowed set and refuses every other handshake. */
typedef struct {
    void *zctx;
    uint8_t (*allowed)[32]; /* (n_allowed) binary public keys */
    int n_allowed;
    pthread_t thread;
    int stop, running;  /* accessed with __atomic builtins */
    uint64_t refused;   /* handshakes refused so far */
} CurveZap;

/* Starts the handler in zctx (before any CURVE server socket binds) for the
 * given Z85 public keys. Returns 0, or -1 with err (bad key text, inproc bind
 * failure). */
int curve_zap_start(CurveZap *zap, void *zctx, const char (*allowed)[CURVE_KEY_TEXT], int n_allowed, char *err,
                     size_t errlen);

/* Stops and joins the handler thread (call before zmq_ctx_term); returns the
 * number of refused handshakes. Accepts a handler that never started. */
uint64_t curve_zap_stop(CurveZap *zap);

#endif
