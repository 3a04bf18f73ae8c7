/* store: nncd's state in SQLite (WAL): tenants, models, jobs, artifacts, job
 * metrics and job events, behind functions named for what they do.
 *
 * Schema changes are numbered migrations applied in order at open (PRAGMA
 * user_version records the last one). Every row belongs to a tenant; until
 * authentication exists all calls use STORE_DEFAULT_TENANT.
 * Thread-safety: a struct store may be used from any number of threads; it
 * hands each call a connection from an internal pool (one connection is never
 * used by two threads at once). Multi-row changes run in one transaction.
 * Returned JSON objects are new references the caller decrefs. Timestamps are
 * RFC 3339 UTC strings with milliseconds ("2026-11-28T22:03:01.123Z"). */
#ifndef NNCD_STORE_H
#define NNCD_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"

#define STORE_DEFAULT_TENANT "default"
#define STORE_ID_CAP 48 /* "mdl_" + 26 base32 chars + NUL fits with room */

struct store;

/* Opens (creating if needed) DATA_DIR/nncd.db and migrates it. */
enum nn_status store_open(const char *data_dir, struct store **out, struct nn_err *e);
void store_close(struct store *s);

/* New opaque id: prefix + 26 chars of base32 from 130 random bits (getrandom). */
void store_new_id(const char *prefix, char out[STORE_ID_CAP]);

/* ---- models ---- */
/* summary: onnx_summarize_fd's JSON (stored as is). */
enum nn_status store_model_insert(struct store *s, const char *tenant, const char *name,
				  const char *sha256, int64_t size, const json_t *summary,
				  char id_out[STORE_ID_CAP], struct nn_err *e);
/* {"id","name","sha256","size","created_at", ...summary fields merged in} */
enum nn_status store_model_get(struct store *s, const char *tenant, const char *id, json_t **out,
			       struct nn_err *e);
/* Newest first. {"models":[{id,name,sha256,size,created_at}...], "next": cursor|null};
 * `after` is the previous page's cursor or NULL; limit 1..1000. */
enum nn_status store_model_list(struct store *s, const char *tenant, const char *after, int limit,
				json_t **out, struct nn_err *e);
/* NN_ENOTFOUND; NN_ECONFLICT while a queued or running job uses it.
 * sha_out receives the model's blob hash so the caller can remove the blob
 * when store_blob_in_use says nothing else refers to it. */
enum nn_status store_model_delete(struct store *s, const char *tenant, const char *id,
				  char sha_out[65], struct nn_err *e);
/* Blob hash of a model (for workers). */
enum nn_status store_model_blob(struct store *s, const char *tenant, const char *id,
				char sha_out[65], json_t **summary_out, struct nn_err *e);

/* Whether any model or artifact row refers to the blob. */
enum nn_status store_blob_in_use(struct store *s, const char *sha256, bool *in_use,
				 struct nn_err *e);

/* ---- jobs ---- */
/* spec is stored verbatim; the job starts "queued" with one "pending" step row
 * per spec step. */
enum nn_status store_job_insert(struct store *s, const char *tenant, const char *model_id,
				const json_t *spec, char id_out[STORE_ID_CAP], struct nn_err *e);
/* The API view of a job:
 * {"id","model","state","progress","error":{code,message}|null,
 *  "steps":[{"op","state","metrics":{}|null}], "artifacts":[{"id","sha256","size","format"}],
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
/* Records a step's state (and metrics, may be NULL) in job_metrics. */
enum nn_status store_job_step_update(struct store *s, const char *job_id, int index,
				     const char *state, const json_t *metrics, struct nn_err *e);
/* Appends to job_events; data may be NULL. */
enum nn_status store_job_event(struct store *s, const char *job_id, const char *type,
			       const json_t *data, struct nn_err *e);
enum nn_status store_job_cancel_requested(struct store *s, const char *job_id, bool *requested,
					  struct nn_err *e);
/* One transaction: artifact row, state succeeded, progress 1, finished_at. */
enum nn_status store_job_succeed(struct store *s, const char *job_id, const char *artifact_sha256,
				 int64_t artifact_size, const char *format,
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
};
enum nn_status store_artifact_get(struct store *s, const char *tenant, const char *id,
				  struct store_artifact *out, struct nn_err *e);

/* ---- health ---- */
/* A trivial query through the pool: readiness. */
enum nn_status store_ping(struct store *s, struct nn_err *e);
/* PRAGMA integrity_check == ok. */
enum nn_status store_integrity_check(struct store *s, bool *ok, struct nn_err *e);

#endif
