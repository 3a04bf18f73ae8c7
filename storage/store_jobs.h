/* store_jobs: jobs of the store and everything hanging off them: step rows
 * (job_metrics), job events, the worker's calls (claim, progress, step
 * updates, cancel checks, succeed/fail/cancel) with the start-up requeue, and
 * artifacts (created only by store_job_succeed, read by store_artifact_get).
 * Included by store.h; see store.h for the conventions every store call
 * follows and docs/internals/store.md for the job life cycle.
 *
 * Owns no state of its own: every call borrows a connection from the store's
 * pool (store.c) for its duration.
 * Threading: every function may be called from any thread. Each state change
 * runs in one write transaction (so two workers can never claim the same
 * job); store_job_get and store_job_list read the job, its steps and its
 * artifacts in one read transaction, from one snapshot. */
#ifndef NNCD_STORE_JOBS_H
#define NNCD_STORE_JOBS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"
/* store.h defines STORE_ID_CAP and struct store before it includes this
 * header, so either may be included first. */
#include "store.h"

/* spec is stored verbatim; the job starts "queued" with one "pending" step row
 * per spec step. */
enum nn_status store_job_insert(struct store *s, const char *tenant, const char *model_id,
				const json_t *spec, char id_out[STORE_ID_CAP], struct nn_err *e);
/* The API view of a job:
 * {"id","model","state","progress","error":{code,message}|null,
 *  "metrics":{"input":{...}|null,"output":{...}|null}|null (eval figures),
 *  "steps":[{"op","state","metrics":{}|null}],
 *  "artifacts":[{"id","sha256","size","format","zstd_sha256"|null,"zstd_size"|null}],
 *  "spec", "created_at","started_at"|null,"finished_at"|null} */
enum nn_status store_job_get(struct store *s, const char *tenant, const char *id, json_t **out,
			     struct nn_err *e);
/* Newest first, optional state filter (NULL = all). {"jobs":[...same view without spec...],
 * "next": cursor|null}. */
enum nn_status store_job_list(struct store *s, const char *tenant, const char *state,
			      const char *after, int limit, json_t **out, struct nn_err *e);
/* queued -> canceled at once; running -> cancel_requested (the worker stops it);
 * NN_ECONFLICT if already finished. *now_state gets the resulting state name. */
enum nn_status store_job_cancel(struct store *s, const char *tenant, const char *id,
				char now_state[16], struct nn_err *e);

/* What a worker needs to run a job. */
struct store_claim {
	char id[STORE_ID_CAP];
	char tenant[STORE_ID_CAP];
	char model_id[STORE_ID_CAP];
	char model_sha256[65];
	json_t *spec; /* owned by the claim: json_decref when done */
};
/* Atomically moves the oldest queued job to running (started_at set).
 * *found false when the queue is empty. */
enum nn_status store_job_claim_next(struct store *s, struct store_claim *out, bool *found,
				    struct nn_err *e);
enum nn_status store_job_set_progress(struct store *s, const char *job_id, double progress,
				      struct nn_err *e);
/* Records the evaluation of the job's input model (eval_model's object);
 * GET shows it as "metrics": {"input": ...}. */
enum nn_status store_job_set_input_metrics(struct store *s, const char *job_id,
					   const json_t *metrics, struct nn_err *e);
/* Records a step's state (and metrics, may be NULL) in job_metrics. */
enum nn_status store_job_step_update(struct store *s, const char *job_id, int index,
				     const char *state, const json_t *metrics, struct nn_err *e);
/* Appends to job_events; data may be NULL. */
enum nn_status store_job_event(struct store *s, const char *job_id, const char *type,
			       const json_t *data, struct nn_err *e);
/* A job's events, oldest first: {"events": [{"id", "ts", "type", "data"}],
 * "next": cursor | null}; `after` is the previous page's cursor (the last
 * event id seen) or NULL; limit 1..1000. NN_ENOTFOUND for an unknown job. */
enum nn_status store_job_events(struct store *s, const char *tenant, const char *id,
				const char *after, int limit, json_t **out, struct nn_err *e);
enum nn_status store_job_cancel_requested(struct store *s, const char *job_id, bool *requested,
					  struct nn_err *e);
/* One transaction: artifact row, state succeeded, progress 1, finished_at.
 * Same as store_job_succeed_zstd with no zstd representation. */
enum nn_status store_job_succeed(struct store *s, const char *job_id, const char *artifact_sha256,
				 int64_t artifact_size, const char *format,
				 char artifact_id_out[STORE_ID_CAP], struct nn_err *e);
/* store_job_succeed that also records the blob holding the artifact's
 * zstd-compressed bytes (zstd_sha256 NULL = none, zstd_size then ignored)
 * in the same row, in the same transaction. */
enum nn_status store_job_succeed_zstd(struct store *s, const char *job_id,
				      const char *artifact_sha256, int64_t artifact_size,
				      const char *format, const char *zstd_sha256, int64_t zstd_size,
				      char artifact_id_out[STORE_ID_CAP], struct nn_err *e);
enum nn_status store_job_fail(struct store *s, const char *job_id, const char *code,
			      const char *message, struct nn_err *e);
enum nn_status store_job_mark_canceled(struct store *s, const char *job_id, struct nn_err *e);
/* At start-up: jobs left running by a crash go back to queued (their steps
 * reset to pending). *count gets how many. */
enum nn_status store_jobs_requeue_running(struct store *s, int *count, struct nn_err *e);

/* ---- artifacts ---- */
struct store_artifact {
	char id[STORE_ID_CAP];
	char job_id[STORE_ID_CAP];
	char sha256[65];
	int64_t size;
	char format[16];
	/* The zstd-compressed representation: "" and -1 when the artifact has
	 * none (jobs that succeeded before schema migration 4). */
	char zstd_sha256[65];
	int64_t zstd_size;
};
enum nn_status store_artifact_get(struct store *s, const char *tenant, const char *id,
				  struct store_artifact *out, struct nn_err *e);

#endif
