/* worker: the pool of threads that run compression jobs.
 *
 * Each worker claims the oldest queued job from the store in a transaction,
 * loads the model blob, runs the engine pipeline with progress and cancel
 * hooks, writes the artifact to the blob store and commits the result (or the
 * failure) in one transaction. Threading: notify/cancel may be called from any
 * thread (HTTP threads); start/stop from the main thread. */
#ifndef NNCD_WORKER_H
#define NNCD_WORKER_H

#include "blob.h"
#include "err.h"
#include "log.h"
#include "store.h"

struct worker_pool;

enum nn_status worker_pool_start(struct store *store, struct blob_store *blobs,
				 const struct logger *log, unsigned workers,
				 struct worker_pool **out, struct nn_err *e);
/* A job was queued: wake one idle worker. */
void worker_pool_notify(struct worker_pool *pool);
/* Asks the worker running job_id (if any here) to stop within one check. */
void worker_pool_cancel(struct worker_pool *pool, const char *job_id);
/* Stops claiming, waits up to grace_seconds for running jobs, then interrupts
 * the rest (they stay "running" in the store and are re-queued at the next
 * start), joins the threads and frees the pool. */
void worker_pool_stop(struct worker_pool *pool, unsigned grace_seconds);

#endif
