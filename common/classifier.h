/* classifier.h -- one shard of the margin-softmax classifier: the rows of the
 * classes [start, start + rows), their momentum, and the per-step computation
 * of a parameter server.
 *
 * One step for the global batch X (N, D) with labels:
 *   0. classifier_select (Partial FC, see below): the rows kept this step.
 *   1. classifier_forward: normalise X and the kept rows as the Margin says
 *      (m->norm: both, rows only, or neither), C = Xn Wn^T (SGEMMs over
 *      blocks of kept rows), margin on owned targets, per-sample local
 *      SoftmaxStats.
 *   2. the caller combines the stats over all shards (MPI_Allreduce, or
 *      margin_stats_combine for in-process shards).
 *   3. classifier_backward: dC, then dX partial (N, D) = this shard's
 *      contribution to dLoss/dX (summing the partials of all shards gives the
 *      full gradient).
 *   4. classifier_sgd_step: momentum SGD with weight decay on the kept rows.
 * The loss is the mean over the N samples of the global batch.
 *
 * Memory. Besides weight and momentum the shard keeps one (N, rows) matrix
 * (cosines, then logits, then their gradient dC) and no other (rows, D)
 * buffer: 1M rows of 512 floats with N = 256 take 2 x 1.91 GiB + 0.95 GiB.
 * The logits' pages become resident as steps touch them (N x K floats for K
 * kept rows), so with Partial FC they take about rate x 0.95 GiB.
 * The normalised rows Wn exist only a block of CLASSIFIER_BLOCK_ROWS kept rows
 * at a time, made from weight and the row norms of the forward, and the rows'
 * gradient dW is never stored whole: the SGD step computes it block by block
 * from what the backward leaves (dC, the normalised embeddings, the norms),
 *     dWn (block, D) = dC[:, block]^T Xn,  dW = dWn through the row norm,
 * and applies it to the block's rows at once. classifier_weight_grad gives
 * the same blocks to a caller. Each compute thread has three block buffers
 * (3 MiB at D = 512). The sums over blocks are taken per chunk of blocks
 * (below): the stats and dxnorm of every chunk are kept (N floats each), and
 * dX (N, D) in a buffer per chunk until its turn to be added: the buffers
 * are reserved for every chunk (up to 32 MiB at N = 256, D = 512) but
 * reused as they are freed, so about one per thread becomes resident. All
 * buffers are allocated by classifier_create for up to max_batch samples,
 * every row and parallel_threads() threads; no step allocates.
 *
 * Threads. Every pass of a step runs on the compute threads of parallel.h,
 * each multiplying whole blocks of kept rows with single-threaded SGEMMs
 * (OpenBLAS at one thread, blas_setup). The kept rows fall into blocks of
 * block_rows, the blocks into at most CLASSIFIER_CHUNKS chunks of
 * consecutive blocks; both depend on K, block_rows and rows only. Threads
 * claim whole chunks (forward, backward) or blocks (SGD step, weight
 * gradient); a block's results depend on the block alone, and sums over
 * blocks are taken in block order within a chunk, then in chunk order
 * (dX: into one sum, each chunk's part as soon as the chunks before it are
 * in, by whichever thread finds it due, without waiting). So
 * the kept rows, the stats (hence the loss), dx, the weight gradient, the
 * weights and the momentum are bit-for-bit the same with any number of
 * threads (test_partial_fc checks 1 against 3).
 *
 * Partial FC (An et al. 2022), as the original's sparse update. With a sample
 * rate below 1 (classifier_set_sampling) the softmax of a step runs over a
 * subset of the classes: every positive of the step's global batch plus
 * negatives drawn by the hash rule of sampling.h, the same subset for all N
 * samples and, because the rule depends only on (seed, step, class id), the
 * same subset for any split of the classes over servers. The kept rows are
 * gathered (normalised) block by block, and only they get a gradient, weight
 * decay and a momentum update; the other rows and their momentum stay
 * bit-unchanged that step. The default rate 1 keeps every row, and the
 * computation is then bit-for-bit the unsampled one. */
#ifndef ARCFACE_CLASSIFIER_H
#define ARCFACE_CLASSIFIER_H

#include <stddef.h>
#include <stdint.h>

#include "margin.h"
#include "sampling.h"

/* Kept rows per block of the forward, backward and SGD passes: 512 rows of
 * 512 floats, 1 MiB per block buffer (of three). Blocks of 256 to 4096 rows
 * step within about 10% of each other at 100k rows (bench_classifier, one
 * thread, CPU time); 512 was the fastest in both rounds. */
#define CLASSIFIER_BLOCK_ROWS 512
/* At most this many chunks of blocks, each with its own partial sums (dX
 * (N, D), dxnorm and stats (N)). Threads claim whole chunks in the forward
 * and backward, so a step over K kept rows keeps min(64, threads) threads
 * busy up to the last chunk: balanced for thread counts that divide 64 (or
 * much smaller). */
#define CLASSIFIER_CHUNKS 64

/* One compute thread's scratch. */
typedef struct {
    float *wn, *dwn, *dw;    /* (CLASSIFIER_BLOCK_ROWS, D) each: a block of kept rows as
                                multiplied (normalised or gathered), its dWn and its dW */
    SoftmaxStats *stats;     /* (N) a block's stats */
    float *target_dz;        /* (N) a block's dz/dcos of the targets */
    float *dxnorm;           /* (N) a block's part of d loss / d||x|| */
} ClassifierScratch;

typedef struct {
    int64_t start, rows; /* owned classes [start, start + rows) */
    int dim;             /* embedding size D */
    int max_batch;       /* global batch capacity N */
    float *weight;       /* (rows, D) */
    float *momentum;     /* (rows, D) */
    /* workspaces */
    float *wnorm;         /* (rows) norms of the kept rows in keep order, from the forward;
                             unused for MARGIN_NORM_NONE */
    float *xn, *xnorm;    /* embeddings as multiplied (N, D): normalised, or a copy of the
                             raw ones for MARGIN_NORM_NONE; norms (N) */
    float *dxnorm;        /* (N) gradient of the norms (MARGIN_NORM_WEIGHTS) */
    float *logits;        /* (N, K) block by block: the block of kept rows j0 .. j0 + n - 1
                             is the (N, n) matrix at logits + N * j0, leading dimension n;
                             cos, then z, then dcos; not pre-faulted */
    float *target_dz;     /* (N) */
    float *dxn;           /* (N, D) d loss / d xn: the chunks' parts summed */
    int64_t block_rows;   /* rows per block, CLASSIFIER_BLOCK_ROWS; a test may lower it
                             (never raise it) to have a small shard span several blocks */
    int slots;            /* scratch sets: parallel_threads() at create, the most
                             threads a step uses */
    ClassifierScratch *scratch; /* (slots) */
    int chunks;           /* chunk partial sums held: min(CLASSIFIER_CHUNKS, blocks of
                             CLASSIFIER_BLOCK_ROWS in rows), at least 1 */
    SoftmaxStats *chunk_stats; /* (chunks, N) */
    float *chunk_dx;      /* (chunks - 1, max_batch, D) dX buffers; not pre-faulted */
    float *chunk_dxnorm;  /* (chunks, N) */
    SoftmaxStats *stats;  /* (N) local stats of the last forward */
    int last_n;           /* N of the last forward */
    MarginNorm last_norm; /* normalisation of the last forward */
    int grad_ready;       /* a backward ran and its SGD step has not */
    /* Partial FC. The kept rows are those of the last classifier_select (or
     * every row); forward, backward and the SGD step all work on them. With
     * fewer kept rows than rows, wnorm and the logits' columns hold the kept
     * rows in keep order (column j is local row keep[j]). */
    float sample_rate;    /* (0, 1]; 1 = every row (the default) */
    uint64_t sample_seed; /* seed of the hash that draws the negatives */
    int32_t *keep;        /* (rows) sorted local rows kept this step; keep[j] = j for all rows */
    int64_t n_keep;       /* K, the number of kept rows */
    uint8_t *keep_mark;   /* (rows) selection scratch, all zero between calls */
    int64_t *col_label;   /* (N) a sample's target as a column of the kept rows, -1 if not owned */
    int select_pending;   /* a classifier_select awaits its forward */
    int select_n;         /* N of that classifier_select */
} ClassifierShard;

/* Allocates the shard (sample rate 1: every row kept) and initialises row c
 * (global class id) with normal(0, 0.01) values that depend only on (seed, c, d):
 *     weight[c - start][d] = 0.01f * rng_normal(rng_hash4(seed, RNG_CLASSIFIER_INIT, c, d)),
 * so any split of the classes over servers starts from the same matrix. A
 * shard of 4M elements or more is drawn on one thread per online CPU (joined
 * before it returns; the values do not depend on the thread count).
 * rows may be 0 (a server with no classes); at most INT_MAX (BLAS takes ints).
 * Scratch is allocated for parallel_threads() compute threads, the most a
 * step will use: set the thread count first (blas_setup).
 * Returns 0, or -1 with a message in err when the sizes are invalid (c is then
 * zeroed, so classifier_destroy is still safe); allocation failure is fatal. */
int classifier_create(ClassifierShard *c, int64_t start, int64_t rows, int dim, int max_batch,
                      uint64_t seed, char *err, size_t errlen);
/* Frees every buffer and zeroes *c. Accepts NULL, a zeroed or an already
 * destroyed shard. */
void classifier_destroy(ClassifierShard *c);

/* Sets Partial FC's sample rate and the seed of its draws for the following
 * steps. rate 1 (the default) keeps every row. Returns 0, or -1 with a
 * message in err when rate is not in (0, 1] (the shard is then unchanged). */
int classifier_set_sampling(ClassifierShard *c, float rate, uint64_t seed, char *err, size_t errlen);

/* Chooses the rows the next classifier_forward, classifier_backward and
 * classifier_sgd_step work on: every class of the shard among labels (N, the
 * global batch's class ids, the same array the forward gets), plus the
 * negatives that sampling_draw(c->sample_seed, step, class, c->sample_rate)
 * keeps (sampling.h). With sample rate 1 it keeps every row without hashing.
 * Required before every classifier_forward when the sample rate is below 1
 * (the forward CHECKs it); optional at rate 1. N <= max_batch (CHECKed).
 * The rows stay chosen until the next classifier_select, so it must not run
 * between a forward and its SGD step. Can't fail. */
void classifier_select(ClassifierShard *c, const int64_t *labels, int N, int64_t step);

/* x (N, D) raw embeddings, labels (N) global class ids. Writes the shard's
 * local stats over the kept rows into c->stats (N). N <= max_batch. m should
 * pass margin_check. Uses the rows of the classifier_select just before it,
 * with the same labels and N (CHECKed: N, and that every owned label is
 * kept); without one it keeps every row, which is allowed at sample rate 1
 * only (CHECKed). The backward and the SGD step make the rows as multiplied
 * again from c->weight (and the norms found here), and with MARGIN_NORM_NONE
 * and every row kept the SGEMM reads c->weight itself (no copy): the weights
 * must not change between a forward and its classifier_sgd_step. */
void classifier_forward(ClassifierShard *c, const float *x, const int64_t *labels, int N,
                        const Margin *m);

/* combined (N): the stats combined over all shards, for the batch of the last
 * classifier_forward, its labels (CHECKed against the forward's) and the same
 * m (its norm is CHECKed). Writes dx (N, D) (overwritten, not accumulated)
 * with this shard's part of d(mean loss)/dx, including the norm's derivative
 * when the embeddings are raw. Leaves dC in c->logits, from which
 * classifier_weight_grad and classifier_sgd_step compute the kept rows'
 * gradient. Overwrites c->logits, so it runs once per forward. */
void classifier_backward(ClassifierShard *c, float *dx, const SoftmaxStats *combined,
                         const int64_t *labels, const Margin *m);

/* Writes into out (count, D) d(mean loss)/d(weight) of the kept rows
 * keep[first] .. keep[first + count - 1] (keep order), as left by the last
 * classifier_backward: the rows classifier_sgd_step would update, with the
 * gradient it would apply, computed by the same block routine over the same
 * blocks (so bit for bit the same values: SGEMM's rounding of a row may depend
 * on where the row falls in a call). 0 <= first <= first + count <= n_keep
 * (CHECKed), and it must come after a classifier_backward and before its
 * classifier_sgd_step (CHECKed). Runs on the compute threads; weights,
 * momentum and the step's state are unchanged. Costs the SGEMMs of every
 * block the range touches. */
void classifier_weight_grad(ClassifierShard *c, int64_t first, int64_t count, float *out);

/* v = momentum * v + dweight + weight_decay * w;  w -= lr * v  (PyTorch SGD with
 * dampening 0, no Nesterov; v starts at 0, so the first step is v = g as in PyTorch),
 * on the kept rows only (every row unless a sample rate below 1 is set), with
 * dweight the gradient of the last classifier_backward (classifier_weight_grad),
 * computed and applied a block of rows at a time. Runs once per backward
 * (CHECKed: a classifier_backward since the last step).
 *
 * This is the original Partial FC's sparse update: its optimizer is handed
 * only the sampled sub-matrix and that sub-matrix's momentum, which are
 * written back afterwards, so an unsampled row gets neither weight decay nor a
 * momentum step: its momentum is not decayed but waits, unchanged, for the
 * next step that samples the row (insightface's partial_fc.py: the optimizer
 * gets Parameter(weight[index]) with momentum_buffer weight_mom[index], and
 * update() writes both back at index). Treating the unsampled rows as having a
 * zero gradient instead would decay their momentum, apply weight decay and
 * keep moving them, and would cost a pass over the whole shard every step. */
void classifier_sgd_step(ClassifierShard *c, float lr, float momentum, float weight_decay);

#endif
