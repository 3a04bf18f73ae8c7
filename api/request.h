/* request: per-request state shared by api/server.c (life cycle, streaming)
 * and api/handlers.c (endpoint logic). Private to api/.
 *
 * One struct request lives from MHD's first call of the access handler to
 * its completion callback, which frees it in one place. Only the MHD thread
 * serving the connection touches it. */
#ifndef NNCD_API_REQUEST_H
#define NNCD_API_REQUEST_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>
#include <microhttpd.h>

#include "blob.h"
#include "err.h"
#include "server.h"
#include "store.h"

#define API_JSON_BODY_CAP ((size_t)1 << 20)
/* 15 significant digits: 0.8 prints as 0.8, not 0.80000000000000004. */
#define API_JSON_FLAGS (JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15))

enum route {
	ROUTE_NOT_FOUND = 0,
	ROUTE_HEALTHZ,
	ROUTE_READYZ,
	ROUTE_MODELS,
	ROUTE_MODEL,
	ROUTE_JOBS,
	ROUTE_JOB,
	ROUTE_JOB_CANCEL,
	ROUTE_JOB_REPORT,
	ROUTE_JOB_EVENTS,
	ROUTE_ARTIFACT,
	ROUTE_DATASETS,
	ROUTE_DATASET,
};

enum body_kind {
	BODY_NONE = 0,    /* anything sent is read and dropped */
	BODY_MODEL,       /* streamed into a blob writer (models and datasets) */
	BODY_JSON,        /* buffered up to API_JSON_BODY_CAP */
};

struct api_server {
	struct MHD_Daemon *mhd;
	struct store *store;
	struct blob_store *blobs;
	struct api_hooks hooks;
	uint64_t max_upload;
	char address[80];
	_Atomic bool ready;
};

struct request {
	struct api_server *srv;
	struct MHD_Connection *conn;
	enum route route;
	char id[STORE_ID_CAP];
	const char *method;
	const char *url;
	enum body_kind body_kind;
	struct blob_writer *upload;
	char *body;
	size_t body_len;
	uint64_t received;
	uint64_t discarded;  /* bytes dropped after body_failed */
	bool responded;      /* a response was queued (possibly early, e.g. 413) */
	bool body_failed;    /* streaming failed: body_err says why */
	struct nn_err body_err;
	unsigned status;
	struct timespec started;
};

/* Responses. Each queues on rq->conn and records the status. body is stolen. */
enum MHD_Result api_respond_json(struct request *rq, unsigned status, json_t *body);
enum MHD_Result api_respond_error(struct request *rq, unsigned status, const char *code,
				  const char *field, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
/* Maps the status of e to an HTTP code and sends e's code/message/field. */
enum MHD_Result api_respond_err(struct request *rq, const struct nn_err *e);
enum MHD_Result api_respond_response(struct request *rq, unsigned status,
				     struct MHD_Response *resp);
unsigned api_http_status(enum nn_status status);

/* Endpoint handlers, called on the final call of the access handler. */
enum MHD_Result api_handle(struct request *rq);

void api_log(const struct api_server *srv, enum api_log_level level, const char *msg,
	     const json_t *fields);

#endif
