/* nncd: process entry. `serve` wires storage, the worker pool and the HTTP
 * server together and owns their lifetime and signals; `compress` and `eval`
 * (cli_compress, cli_eval) run the engine offline on files, without the server.
 *
 * Signals: SIGINT/SIGTERM are blocked in every thread and taken by sigwait()
 * in the main thread, so no handler runs in a random thread. */
#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "blob.h"
#include "cli_compress.h"
#include "cli_eval.h"
#include "config.h"
#include "log.h"
#include "onnx_io.h"
#include "pipeline.h"
#include "server.h"
#include "spec.h"
#include "store.h"
#include "worker.h"

#ifndef NNCD_VERSION
#define NNCD_VERSION "dev"
#endif

static enum nn_status mkdir_p(const char *path, struct nn_err *e)
{
	char buf[1024];
	if (strlen(path) >= sizeof buf)
		return err_set(e, NN_EINVAL, "invalid_config", "data-dir", "path too long");
	snprintf(buf, sizeof buf, "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) != 0 && errno != EEXIST)
			return err_set(e, NN_EIO, "io_error", "data-dir", "mkdir %s: %s", buf,
				       strerror(errno));
		*p = '/';
	}
	if (mkdir(buf, 0755) != 0 && errno != EEXIST)
		return err_set(e, NN_EIO, "io_error", "data-dir", "mkdir %s: %s", buf, strerror(errno));
	return NN_OK;
}

/* One daemon per data dir: a second one would claim the same jobs. */
static enum nn_status lock_data_dir(const char *dir, int *fd_out, struct nn_err *e)
{
	char path[1100];
	snprintf(path, sizeof path, "%s/LOCK", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return err_set(e, NN_EIO, "io_error", "data-dir", "open %s: %s", path, strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		close(fd);
		return err_set(e, NN_ECONFLICT, "data_dir_locked", "data-dir",
			       "another nncd is using %s", dir);
	}
	*fd_out = fd;
	return NN_OK;
}

struct gc_ctx {
	struct store *store;
	struct blob_store *blobs;
	int removed;
};

/* A crash between writing an artifact blob and committing its row leaves a
 * blob nothing refers to; remove those before serving. */
static void gc_blob(void *ud, const char *sha)
{
	struct gc_ctx *gc = ud;
	bool in_use = true;
	struct nn_err e = {0};
	if (store_blob_in_use(gc->store, sha, &in_use, &e) == NN_OK && !in_use &&
	    blob_remove(gc->blobs, sha, &e) == NN_OK)
		gc->removed++;
}

/* What the HTTP layer's hooks reach: the logger and the worker pool. */
struct daemon_ctx {
	struct logger lg;
	struct worker_pool *pool;
};

static void api_log_hook(void *ud, enum api_log_level level, const char *msg,
			 const json_t *fields)
{
	struct daemon_ctx *ctx = ud;
	log_json(&ctx->lg, (enum log_level)level, msg, fields);
}

static void job_queued_hook(void *ud)
{
	struct daemon_ctx *ctx = ud;
	worker_pool_notify(ctx->pool);
}

static void job_cancel_hook(void *ud, const char *job_id)
{
	struct daemon_ctx *ctx = ud;
	worker_pool_cancel(ctx->pool, job_id);
}

static int fail_start(struct logger *lg, const char *what, const struct nn_err *e)
{
	json_t *fields = json_pack("{s:s, s:s}", "error", e->message, "code", e->code);
	log_json(lg, LOG_ERROR, what, fields);
	json_decref(fields);
	return 1;
}

static int cmd_serve(int argc, char **argv)
{
	struct daemon_ctx ctx = {.lg = {.min_level = LOG_INFO, .fd = STDERR_FILENO}};
	struct logger *lg = &ctx.lg;
	struct config cfg;
	struct nn_err e = {0};
	if (config_load(&cfg, argc, argv, &e) != NN_OK) {
		fprintf(stderr, "nncd serve: %s\n", e.message);
		config_usage("nncd");
		return 2;
	}
	lg->min_level = cfg.log_level;

	sigset_t stop_signals;
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	signal(SIGPIPE, SIG_IGN);

	int rc = 1, lock_fd = -1;
	struct store *store = NULL;
	struct blob_store *blobs = NULL;
	struct worker_pool *pool = NULL;
	struct api_server *srv = NULL;

	if (mkdir_p(cfg.data_dir, &e) != NN_OK || lock_data_dir(cfg.data_dir, &lock_fd, &e) != NN_OK) {
		rc = fail_start(lg, "cannot use the data dir", &e);
		goto done;
	}
	if (store_open(cfg.data_dir, &store, &e) != NN_OK) {
		rc = fail_start(lg, "cannot open the database", &e);
		goto done;
	}
	if (blob_store_open(cfg.data_dir, &blobs, &e) != NN_OK) {
		rc = fail_start(lg, "cannot open the blob store", &e);
		goto done;
	}
	int requeued = 0;
	if (store_jobs_requeue_running(store, &requeued, &e) != NN_OK) {
		rc = fail_start(lg, "cannot re-queue interrupted jobs", &e);
		goto done;
	}
	struct gc_ctx gc = {.store = store, .blobs = blobs};
	if (blob_foreach(blobs, gc_blob, &gc, &e) != NN_OK)
		log_msg(lg, LOG_WARN, "blob garbage collection: %s", e.message);
	if (requeued || gc.removed) {
		json_t *fields = json_pack("{s:i, s:i}", "requeued_jobs", requeued,
					   "removed_orphan_blobs", gc.removed);
		log_json(lg, LOG_INFO, "recovered from an unclean stop", fields);
		json_decref(fields);
	}
	/* OpenBLAS's thread count is process-global: keep it at 1 and let each
	 * job's executor split its batches over cores / workers threads (the
	 * worker pool's rule), so BLAS threads x busy threads never exceed the
	 * cores. */
	openblas_set_num_threads(1);
	if (worker_pool_start(store, blobs, lg, cfg.workers, &pool, &e) != NN_OK) {
		rc = fail_start(lg, "cannot start workers", &e);
		goto done;
	}
	ctx.pool = pool;
	struct api_hooks hooks = {.ud = &ctx, .job_queued = job_queued_hook,
				  .job_cancel = job_cancel_hook, .log = api_log_hook};
	struct api_config api_cfg = {.listen = cfg.listen, .max_upload = cfg.max_upload,
				     .threads = cfg.http_threads};
	if (api_server_start(&api_cfg, store, blobs, &hooks, &srv, &e) != NN_OK) {
		rc = fail_start(lg, "cannot start the HTTP server", &e);
		goto done;
	}
	api_server_set_ready(srv, true);
	json_t *fields = json_pack("{s:s, s:s, s:i, s:I, s:s}", "listen", api_server_address(srv),
				   "data_dir", cfg.data_dir, "workers", (int)cfg.workers,
				   "max_upload", (json_int_t)cfg.max_upload, "version", NNCD_VERSION);
	log_json(lg, LOG_INFO, "listening", fields);
	json_decref(fields);

	int sig = 0;
	sigwait(&stop_signals, &sig);
	log_msg(lg, LOG_INFO, "signal %d: draining (grace %u s)", sig, cfg.grace_seconds);
	api_server_set_ready(srv, false);
	api_server_quiesce(srv);
	worker_pool_stop(pool, cfg.grace_seconds);
	pool = NULL;
	rc = 0;
done:
	/* Workers first: an HTTP thread may still poke the pool until MHD stops,
	 * so on the error path stop the server before the pool. */
	api_server_stop(srv);
	worker_pool_stop(pool, 0);
	blob_store_close(blobs);
	store_close(store);
	if (lock_fd >= 0)
		close(lock_fd);
	if (rc == 0)
		log_json(lg, LOG_INFO, "stopped", NULL);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		config_usage("nncd");
		return 2;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "serve") == 0)
		return cmd_serve(argc - 2, argv + 2);
	if (strcmp(cmd, "compress") == 0)
		return cli_compress_main(argc - 2, argv + 2);
	if (strcmp(cmd, "eval") == 0)
		return cli_eval_main(argc - 2, argv + 2);
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("nncd %s\n", NNCD_VERSION);
		return 0;
	}
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		config_usage("nncd");
		return 0;
	}
	fprintf(stderr, "nncd: unknown command '%s'\n", cmd);
	config_usage("nncd");
	return 2;
}
