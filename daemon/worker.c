#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <unistd.h>

#include "blob_zstd.h"
#include "eval.h"
#include "job_data.h"
#include "onnx_io.h"
#include "pipeline.h"
#include "spec.h"

struct worker_slot {
	struct worker_pool *pool;
	pthread_t thread;
	bool started;
	char job_id[STORE_ID_CAP]; /* guarded by pool->lock; "" when idle */
	atomic_bool cancel;
	atomic_bool interrupted; /* set by shutdown, not by a user */
};

struct worker_pool {
	struct store *store;
	struct blob_store *blobs;
	const struct logger *log;
	pthread_mutex_t lock;
	pthread_cond_t wake;   /* new work or stopping */
	pthread_cond_t idle;   /* a job finished */
	bool stopping;
	unsigned pending_wakeups;
	unsigned n;
	unsigned exec_threads; /* executor threads per job: cores / workers, at least 1 */
	struct worker_slot *slots;
};

/* State of one job run, handed to the pipeline hooks. */
struct job_run {
	struct worker_slot *slot;
	const char *job_id;
	struct timespec last_progress;
};

static double seconds_between(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static void log_job(const struct worker_pool *pool, enum log_level level, const char *msg,
		    const char *job_id, const struct nn_err *e)
{
	json_t *fields = json_pack("{s:s}", "job", job_id);
	if (e && fields) {
		json_object_set_new(fields, "code", json_string(e->code));
		json_object_set_new(fields, "error", json_string(e->message));
	}
	log_json(pool->log, level, msg, fields);
	json_decref(fields);
}

static void on_step(void *ud, size_t index, const char *op, const char *state,
		    const json_t *metrics)
{
	struct job_run *run = ud;
	struct worker_pool *pool = run->slot->pool;
	struct nn_err e = {0};
	if (store_job_step_update(pool->store, run->job_id, (int)index, state, metrics, &e) != NN_OK)
		log_job(pool, LOG_WARN, "cannot record step state", run->job_id, &e);
	json_t *data = json_pack("{s:I, s:s, s:s}", "index", (json_int_t)index, "op", op, "state",
				 state);
	char type[32];
	snprintf(type, sizeof type, "step_%s", state);
	store_job_event(pool->store, run->job_id, type, data, &e);
	json_decref(data);
}

/* A step's own event (one per training epoch, ...), tagged with the step. */
static void on_event(void *ud, size_t index, const char *op, const char *type, const json_t *data)
{
	struct job_run *run = ud;
	struct nn_err e = {0};
	json_t *ev = json_is_object(data) ? json_copy((json_t *)data) : json_object();
	if (!ev)
		return;
	json_object_set_new(ev, "step", json_integer((json_int_t)index));
	json_object_set_new(ev, "op", json_string(op ? op : ""));
	if (store_job_event(run->slot->pool->store, run->job_id, type, ev, &e) != NN_OK)
		log_job(run->slot->pool, LOG_WARN, "cannot record a step event", run->job_id, &e);
	json_decref(ev);
}

/* Records progress at most every 200 ms, and looks for a cancel request made
 * through the store (by another process or a restarted API). */
static void on_progress(void *ud, double progress)
{
	struct job_run *run = ud;
	struct worker_pool *pool = run->slot->pool;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (progress < 1.0 && seconds_between(&run->last_progress, &now) < 0.2)
		return;
	run->last_progress = now;
	struct nn_err e = {0};
	store_job_set_progress(pool->store, run->job_id, progress, &e);
	bool requested = false;
	if (store_job_cancel_requested(pool->store, run->job_id, &requested, &e) == NN_OK &&
	    requested)
		atomic_store(&run->slot->cancel, true);
}

static enum nn_status write_to_blob(void *ud, const void *data, size_t len, struct nn_err *e)
{
	return blob_writer_write(ud, data, len, e);
}

/* Serialises the model straight into a blob writer (no second copy in
 * memory). The writer is returned uncommitted: committing and recording the
 * row happen together under blob_gc_lock. */
static enum nn_status write_artifact(struct worker_pool *pool, const struct onnx_model *model,
				     struct blob_writer **out, struct nn_err *e)
{
	struct blob_writer *w = NULL;
	enum nn_status st = blob_writer_new(pool->blobs, &w, e);
	if (st != NN_OK)
		return st;
	st = onnx_save(model, write_to_blob, w, e);
	if (st != NN_OK) {
		blob_writer_abort(w);
		return st;
	}
	*out = w;
	return NN_OK;
}

/* The artifact's zstd-compressed copy, read back from the uncommitted
 * writer's temp file (the model is never serialised twice nor held whole in
 * memory); returned uncommitted like write_artifact's. NN_ECANCELED when the
 * job is canceled meanwhile. Any other failure only costs the transport
 * representation: logged, *out stays NULL and the job still succeeds. */
static enum nn_status write_artifact_zstd(struct worker_slot *slot, const char *job_id,
					  const struct blob_writer *artifact,
					  struct blob_writer **out)
{
	struct worker_pool *pool = slot->pool;
	struct nn_err e = {0};
	struct blob_writer *w = NULL;
	int64_t zsize = 0;
	/* Level 9 on this thread: zstd worker threads gained 0-17% at that
	 * level, not worth a core (docs/internals/blob.md, "zstd copy of
	 * artifacts"). */
	struct blob_zstd_opts opts = {.level = BLOB_ZSTD_LEVEL, .workers = 0};
	*out = NULL;
	enum nn_status st = blob_writer_new(pool->blobs, &w, &e);
	if (st == NN_OK)
		st = blob_zstd_compress_fd(blob_writer_fd(artifact), blob_writer_size(artifact), w,
					   &opts, &slot->cancel, &zsize, &e);
	if (st == NN_OK) {
		*out = w;
		return NN_OK;
	}
	blob_writer_abort(w);
	if (st == NN_ECANCELED)
		return st;
	err_prefix(&e, "compressing the artifact with zstd");
	log_job(pool, LOG_WARN, "artifact stored without its zstd copy", job_id, &e);
	return NN_OK;
}

/* What save_artifact recorded. */
struct saved_artifact {
	char id[STORE_ID_CAP];
	char sha[65];
	int64_t size;
	char zstd_sha[65]; /* "" when there is no zstd copy */
	int64_t zstd_size;
};

/* Writes the artifact and its zstd copy, then commits both blobs and the
 * job's success in one step under blob_gc_lock (a blob never exists for
 * long without the row that keeps it). */
static enum nn_status save_artifact(struct worker_slot *slot, const struct store_claim *claim,
				    const struct onnx_model *model, struct saved_artifact *out,
				    struct nn_err *e)
{
	struct worker_pool *pool = slot->pool;
	struct blob_writer *writer = NULL, *zwriter = NULL;
	*out = (struct saved_artifact){.zstd_size = -1};
	enum nn_status st = write_artifact(pool, model, &writer, e);
	if (st == NN_OK) {
		st = write_artifact_zstd(slot, claim->id, writer, &zwriter);
		if (st == NN_ECANCELED) {
			blob_writer_abort(writer);
			return err_set(e, NN_ECANCELED, "canceled", NULL, "canceled");
		}
	}
	if (st != NN_OK) {
		err_prefix(e, "saving the artifact");
		return st;
	}
	blob_gc_lock(pool->blobs);
	st = blob_writer_commit(writer, out->sha, &out->size, e);
	if (st == NN_OK && zwriter) {
		struct nn_err ze = {0};
		if (blob_writer_commit(zwriter, out->zstd_sha, &out->zstd_size, &ze) != NN_OK) {
			out->zstd_sha[0] = '\0';
			out->zstd_size = -1;
			log_job(pool, LOG_WARN, "artifact stored without its zstd copy", claim->id,
				&ze);
		}
	} else {
		blob_writer_abort(zwriter);
	}
	if (st == NN_OK)
		st = store_job_succeed_zstd(pool->store, claim->id, out->sha, out->size, "onnx",
					    out->zstd_sha[0] ? out->zstd_sha : NULL,
					    out->zstd_size, out->id, e);
	blob_gc_unlock(pool->blobs);
	if (st != NN_OK)
		err_prefix(e, "saving the artifact");
	return st;
}

static void finish_failed(struct worker_pool *pool, const char *job_id, const struct nn_err *err)
{
	struct nn_err e = {0};
	const char *code = err->code[0] ? err->code : err_status_name(err->status);
	if (store_job_fail(pool->store, job_id, code, err->message, &e) != NN_OK)
		log_job(pool, LOG_ERROR, "cannot record job failure", job_id, &e);
	json_t *data = json_pack("{s:s, s:s}", "code", code, "message", err->message);
	store_job_event(pool->store, job_id, "failed", data, &e);
	json_decref(data);
	log_job(pool, LOG_WARN, "job failed", job_id, err);
}

/* What a job loads before its steps: data, and the input model's outputs
 * on the evaluation data (fidelity's reference). */
struct job_eval {
	struct job_inputs in;
	struct eval_outputs reference;
	struct pipeline_eval pipeline;
};

static void job_eval_free(struct job_eval *ev)
{
	job_inputs_free(&ev->in);
	eval_outputs_free(&ev->reference);
}

/* Loads the data the spec names; when it asks for "eval", evaluates the
 * input model, records its figures and fills ev->pipeline for the steps. */
static enum nn_status evaluate_input(struct worker_slot *slot, const struct store_claim *claim,
				     const struct onnx_model *model, struct job_eval *ev,
				     struct nn_err *e)
{
	struct worker_pool *pool = slot->pool;
	struct job_store_source where = {pool->store, pool->blobs, claim->tenant};
	struct job_source src;
	job_source_store(&src, &where);
	enum nn_status st = job_inputs_load(&src, claim->spec, model, pool->exec_threads, &ev->in, e);
	if (st != NN_OK) {
		err_prefix(e, "loading the job's data");
		return st;
	}
	if (!ev->in.spec.requested)
		return NN_OK;
	struct eval_opts opts = {.metrics = ev->in.spec.metrics, .threads = pool->exec_threads};
	struct step_ctx ctx = {.cancel = &slot->cancel};
	json_t *figures = NULL;
	st = eval_model(model, ev->in.pipeline.eval, &opts, NULL,
			(opts.metrics & EVAL_FIDELITY) ? &ev->reference : NULL, &ctx, &figures, e);
	if (st != NN_OK) {
		if (st != NN_ECANCELED)
			err_prefix(e, "evaluating the input model");
		return st;
	}
	struct nn_err se = {0};
	if (store_job_set_input_metrics(pool->store, claim->id, figures, &se) != NN_OK)
		log_job(pool, LOG_WARN, "cannot record the input model's metrics", claim->id, &se);
	store_job_event(pool->store, claim->id, "input_evaluated", figures, &se);
	json_decref(figures);
	if (ev->reference.values)
		ev->in.pipeline.reference = &ev->reference;
	ev->pipeline = (struct pipeline_eval){ev->in.pipeline.eval, opts, ev->in.pipeline.reference};
	return NN_OK;
}

static void run_job(struct worker_slot *slot, const struct store_claim *claim)
{
	struct worker_pool *pool = slot->pool;
	struct nn_err err = {0};
	struct onnx_model *model = NULL;
	struct job_run run = {.slot = slot, .job_id = claim->id};
	clock_gettime(CLOCK_MONOTONIC, &run.last_progress);
	struct timespec started = run.last_progress;
	log_job(pool, LOG_INFO, "job started", claim->id, NULL);
	store_job_event(pool->store, claim->id, "started", NULL, &err);

	char path[1200];
	blob_path(pool->blobs, claim->model_sha256, path, sizeof path);
	if (onnx_load_file(path, &model, &err) != NN_OK) {
		err_prefix(&err, "loading model %s", claim->model_id);
		finish_failed(pool, claim->id, &err);
		return;
	}
	struct pipeline_hooks hooks = {
		.ud = &run, .on_step = on_step, .on_progress = on_progress, .on_event = on_event,
		.cancel = &slot->cancel,
	};
	struct job_eval ev = {0};
	enum nn_status st = evaluate_input(slot, claim, model, &ev, &err);
	if (st == NN_OK) {
		hooks.eval = ev.in.spec.requested ? &ev.pipeline : NULL;
		hooks.data = &ev.in.pipeline;
		st = pipeline_run(model, claim->spec, &hooks, &err);
	}
	job_eval_free(&ev);
	struct saved_artifact art;
	if (st == NN_OK)
		st = save_artifact(slot, claim, model, &art, &err);
	onnx_free(model);
	if (st == NN_ECANCELED) {
		if (atomic_load(&slot->interrupted)) {
			log_job(pool, LOG_WARN, "job interrupted by shutdown; re-queued at next start",
				claim->id, NULL);
			return;
		}
		struct nn_err e = {0};
		store_job_mark_canceled(pool->store, claim->id, &e);
		store_job_event(pool->store, claim->id, "canceled", NULL, &e);
		log_job(pool, LOG_INFO, "job canceled", claim->id, NULL);
		return;
	}
	if (st != NN_OK) {
		finish_failed(pool, claim->id, &err);
		return;
	}
	struct timespec done;
	clock_gettime(CLOCK_MONOTONIC, &done);
	json_t *data = json_pack("{s:s, s:s, s:I, s:o, s:f}", "artifact", art.id, "sha256", art.sha,
				 "size", (json_int_t)art.size, "zstd_size",
				 art.zstd_sha[0] ? json_integer(art.zstd_size) : json_null(),
				 "seconds", seconds_between(&started, &done));
	store_job_event(pool->store, claim->id, "succeeded", data, &err);
	json_object_set_new(data, "job", json_string(claim->id));
	log_json(pool->log, LOG_INFO, "job succeeded", data);
	json_decref(data);
}

static bool wait_for_work(struct worker_pool *pool)
{
	pthread_mutex_lock(&pool->lock);
	if (!pool->stopping && pool->pending_wakeups == 0) {
		/* Also poll: jobs may be queued by a restart's requeue or another process. */
		struct timespec deadline;
		clock_gettime(CLOCK_REALTIME, &deadline);
		deadline.tv_sec += 1;
		pthread_cond_timedwait(&pool->wake, &pool->lock, &deadline);
	}
	if (pool->pending_wakeups)
		pool->pending_wakeups--;
	bool stopping = pool->stopping;
	pthread_mutex_unlock(&pool->lock);
	return !stopping;
}

static void *worker_main(void *arg)
{
	struct worker_slot *slot = arg;
	struct worker_pool *pool = slot->pool;
	for (;;) {
		pthread_mutex_lock(&pool->lock);
		bool stopping = pool->stopping;
		pthread_mutex_unlock(&pool->lock);
		if (stopping)
			break;
		struct store_claim claim = {0};
		bool found = false;
		struct nn_err e = {0};
		if (store_job_claim_next(pool->store, &claim, &found, &e) != NN_OK) {
			log_json(pool->log, LOG_ERROR, "cannot claim a job", NULL);
			log_msg(pool->log, LOG_ERROR, "claim: %s", e.message);
			if (!wait_for_work(pool))
				break;
			continue;
		}
		if (!found) {
			if (!wait_for_work(pool))
				break;
			continue;
		}
		pthread_mutex_lock(&pool->lock);
		snprintf(slot->job_id, sizeof slot->job_id, "%s", claim.id);
		atomic_store(&slot->cancel, false);
		pthread_mutex_unlock(&pool->lock);

		run_job(slot, &claim);
		json_decref(claim.spec);

		pthread_mutex_lock(&pool->lock);
		slot->job_id[0] = '\0';
		pthread_cond_broadcast(&pool->idle);
		pthread_mutex_unlock(&pool->lock);
	}
	return NULL;
}

enum nn_status worker_pool_start(struct store *store, struct blob_store *blobs,
				 const struct logger *log, unsigned workers,
				 struct worker_pool **out, struct nn_err *e)
{
	struct worker_pool *pool = calloc(1, sizeof *pool);
	if (!pool)
		return err_set(e, NN_ENOMEM, NULL, NULL, "out of memory");
	pool->slots = calloc(workers ? workers : 1, sizeof *pool->slots);
	if (!pool->slots) {
		free(pool);
		return err_set(e, NN_ENOMEM, NULL, NULL, "out of memory");
	}
	pool->store = store;
	pool->blobs = blobs;
	pool->log = log;
	pool->n = workers;
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	pool->exec_threads = cores > (long)workers && workers ? (unsigned)(cores / (long)workers) : 1;
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->wake, NULL);
	pthread_cond_init(&pool->idle, NULL);
	for (unsigned i = 0; i < workers; i++) {
		struct worker_slot *slot = &pool->slots[i];
		slot->pool = pool;
		atomic_init(&slot->cancel, false);
		atomic_init(&slot->interrupted, false);
		int rc = pthread_create(&slot->thread, NULL, worker_main, slot);
		if (rc != 0) {
			worker_pool_stop(pool, 0);
			return err_set(e, NN_ENOMEM, NULL, NULL, "cannot start worker thread: %s",
				       strerror(rc));
		}
		slot->started = true;
	}
	*out = pool;
	return NN_OK;
}

void worker_pool_notify(struct worker_pool *pool)
{
	pthread_mutex_lock(&pool->lock);
	if (pool->pending_wakeups < pool->n)
		pool->pending_wakeups++;
	pthread_cond_signal(&pool->wake);
	pthread_mutex_unlock(&pool->lock);
}

void worker_pool_cancel(struct worker_pool *pool, const char *job_id)
{
	pthread_mutex_lock(&pool->lock);
	for (unsigned i = 0; i < pool->n; i++)
		if (strcmp(pool->slots[i].job_id, job_id) == 0)
			atomic_store(&pool->slots[i].cancel, true);
	pthread_mutex_unlock(&pool->lock);
}

static bool any_busy(const struct worker_pool *pool)
{
	for (unsigned i = 0; i < pool->n; i++)
		if (pool->slots[i].job_id[0])
			return true;
	return false;
}

void worker_pool_stop(struct worker_pool *pool, unsigned grace_seconds)
{
	if (!pool)
		return;
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += grace_seconds;
	pthread_mutex_lock(&pool->lock);
	pool->stopping = true;
	pthread_cond_broadcast(&pool->wake);
	while (any_busy(pool)) {
		if (pthread_cond_timedwait(&pool->idle, &pool->lock, &deadline) == ETIMEDOUT)
			break;
	}
	if (any_busy(pool)) {
		log_json(pool->log, LOG_WARN, "grace period over: interrupting running jobs", NULL);
		for (unsigned i = 0; i < pool->n; i++) {
			atomic_store(&pool->slots[i].interrupted, true);
			atomic_store(&pool->slots[i].cancel, true);
		}
	}
	pthread_mutex_unlock(&pool->lock);
	for (unsigned i = 0; i < pool->n; i++)
		if (pool->slots[i].started)
			pthread_join(pool->slots[i].thread, NULL);
	pthread_cond_destroy(&pool->idle);
	pthread_cond_destroy(&pool->wake);
	pthread_mutex_destroy(&pool->lock);
	free(pool->slots);
	free(pool);
}
