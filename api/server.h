/* api_server: nncd's HTTP interface on libmicrohttpd.
 *
 * Owns the MHD daemon (internal thread pool, epoll), routing, per-request
 * state and the handlers. Request threads only stream bytes, touch SQLite and
 * the blob store, and validate specs; compression runs on the daemon's worker
 * pool, reached through api_hooks. Thread-safety: start/stop from one thread;
 * set_ready from any thread. */
#ifndef NNCD_API_SERVER_H
#define NNCD_API_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "blob.h"
#include "err.h"
#include "store.h"

enum api_log_level { API_LOG_DEBUG = 0, API_LOG_INFO, API_LOG_WARN, API_LOG_ERROR };

struct api_hooks {
	void *ud;
	/* A job row was committed in state queued: wake a worker. */
	void (*job_queued)(void *ud);
	/* Cancellation was requested for a running job. */
	void (*job_cancel)(void *ud, const char *job_id);
	/* Structured log line; fields may be NULL and are borrowed. */
	void (*log)(void *ud, enum api_log_level level, const char *msg, const json_t *fields);
};

struct api_config {
	const char *listen;   /* "HOST:PORT"; port 0 picks a free one */
	uint64_t max_upload;  /* bytes, for model uploads */
	unsigned threads;     /* MHD thread pool size */
};

struct api_server;

enum nn_status api_server_start(const struct api_config *cfg, struct store *store,
				struct blob_store *blobs, const struct api_hooks *hooks,
				struct api_server **out, struct nn_err *e);
/* The bound address as "HOST:PORT" (the real port when 0 was asked). */
const char *api_server_address(const struct api_server *srv);
/* /readyz answers 200 only while ready. */
void api_server_set_ready(struct api_server *srv, bool ready);
/* Stops accepting new connections; requests in flight finish. */
void api_server_quiesce(struct api_server *srv);
void api_server_stop(struct api_server *srv);

#endif
