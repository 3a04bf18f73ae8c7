/* handlers: what each endpoint does, once the request body (if any) is in.
 *
 * Runs on MHD's request threads: only SQLite, the blob store, spec
 * validation and a bounded-memory scan of uploaded models happen here; jobs
 * are handed to the worker pool through api_hooks. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets.h"
#include "evaluation.h"
#include "onnx_io.h"
#include "request.h"
#include "spec.h"

#define LIST_DEFAULT_LIMIT 50
#define LIST_MAX_LIMIT 1000
#define MODEL_NAME_CAP 256

static const char *query_arg(struct request *rq, const char *key)
{
	return MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, key);
}

static const char *tenant_of(struct request *rq)
{
	(void)rq; /* one tenant until authentication exists */
	return STORE_DEFAULT_TENANT;
}

static bool parse_limit(struct request *rq, int *limit)
{
	const char *text = query_arg(rq, "limit");
	*limit = LIST_DEFAULT_LIMIT;
	if (!text)
		return true;
	char *end;
	errno = 0;
	long v = strtol(text, &end, 10);
	if (errno || *end || end == text || v < 1 || v > LIST_MAX_LIMIT)
		return false;
	*limit = (int)v;
	return true;
}

static enum MHD_Result respond_created(struct request *rq, unsigned status, json_t *body,
				       const char *collection, const char *id)
{
	char location[128];
	snprintf(location, sizeof location, "/v1/%s/%s", collection, id);
	char *text = json_dumps(body, API_JSON_FLAGS);
	json_decref(body);
	if (!text)
		return MHD_NO;
	size_t len = strlen(text);
	struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, location);
	return api_respond_response(rq, status, resp);
}

/* ---- models ---- */

/* Removes a blob unless a row still refers to it. Caller holds blob_gc_lock. */
static void drop_blob_if_unused(struct api_server *srv, const char *sha)
{
	bool in_use = true;
	struct nn_err e = {0};
	if (store_blob_in_use(srv->store, sha, &in_use, &e) == NN_OK && !in_use)
		blob_remove(srv->blobs, sha, &e);
}

static enum MHD_Result models_post(struct request *rq)
{
	struct api_server *srv = rq->srv;
	struct nn_err e = {0};
	json_t *summary = NULL;
	char sha[65];
	int64_t size = 0;
	char id[STORE_ID_CAP];
	const char *name = query_arg(rq, "name");
	if (name && strlen(name) > MODEL_NAME_CAP)
		return api_respond_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_name", "name",
					 "name must be at most %d bytes", MODEL_NAME_CAP);
	if (blob_writer_size(rq->upload) == 0)
		return api_respond_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_model", "",
					 "empty body: send the ONNX file's bytes "
					 "(curl --data-binary @model.onnx)");
	if (onnx_summarize_fd(blob_writer_fd(rq->upload), &summary, &e) != NN_OK) {
		if (e.status == NN_EINVAL && strcmp(e.code, "invalid") == 0)
			snprintf(e.code, sizeof e.code, "invalid_model");
		return api_respond_err(rq, &e);
	}
	if (!name || !name[0]) {
		json_t *graph_name = json_object_get(summary, "graph_name");
		name = json_is_string(graph_name) ? json_string_value(graph_name) : "";
	}
	blob_gc_lock(srv->blobs);
	struct blob_writer *w = rq->upload;
	rq->upload = NULL;
	enum nn_status st = blob_writer_commit(w, sha, &size, &e);
	if (st == NN_OK) {
		st = store_model_insert(srv->store, tenant_of(rq), name, sha, size, summary, id, &e);
		if (st != NN_OK)
			drop_blob_if_unused(srv, sha);
	}
	blob_gc_unlock(srv->blobs);
	json_decref(summary);
	if (st != NN_OK)
		return api_respond_err(rq, &e);
	json_t *model = NULL;
	if (store_model_get(srv->store, tenant_of(rq), id, &model, &e) != NN_OK)
		return api_respond_err(rq, &e);
	json_t *fields = json_pack("{s:s, s:s, s:I}", "model", id, "sha256", sha, "size",
				   (json_int_t)size);
	api_log(srv, API_LOG_INFO, "model uploaded", fields);
	json_decref(fields);
	return respond_created(rq, MHD_HTTP_CREATED, model, "models", id);
}

static enum MHD_Result models_get(struct request *rq)
{
	int limit;
	if (!parse_limit(rq, &limit))
		return api_respond_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_query", "limit",
					 "limit must be an integer in [1, %d]", LIST_MAX_LIMIT);
	json_t *out = NULL;
	struct nn_err e = {0};
	if (store_model_list(rq->srv->store, tenant_of(rq), query_arg(rq, "after"), limit, &out, &e) !=
	    NN_OK)
		return api_respond_err(rq, &e);
	return api_respond_json(rq, MHD_HTTP_OK, out);
}

static enum MHD_Result model_get(struct request *rq)
{
	json_t *out = NULL;
	struct nn_err e = {0};
	if (store_model_get(rq->srv->store, tenant_of(rq), rq->id, &out, &e) != NN_OK)
		return api_respond_err(rq, &e);
	return api_respond_json(rq, MHD_HTTP_OK, out);
}

static enum MHD_Result model_delete(struct request *rq)
{
	struct api_server *srv = rq->srv;
	struct nn_err e = {0};
	char sha[65];
	blob_gc_lock(srv->blobs);
	enum nn_status st = store_model_delete(srv->store, tenant_of(rq), rq->id, sha, &e);
	if (st == NN_OK)
		drop_blob_if_unused(srv, sha);
	blob_gc_unlock(srv->blobs);
	if (st != NN_OK)
		return api_respond_err(rq, &e);
	struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
	return api_respond_response(rq, MHD_HTTP_NO_CONTENT, resp);
}

/* ---- jobs ---- */

static enum MHD_Result jobs_post(struct request *rq)
{
	struct api_server *srv = rq->srv;
	struct nn_err e = {0};
	json_error_t jerr;
	if (!rq->body || rq->body_len == 0)
		return api_respond_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_json", "",
					 "empty body: send the job spec as a JSON object");
	json_t *spec = json_loadb(rq->body, rq->body_len, JSON_REJECT_DUPLICATES, &jerr);
	if (!spec)
		return api_respond_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_json", "",
					 "body is not valid JSON: %s (line %d, column %d)", jerr.text,
					 jerr.line, jerr.column);
	enum MHD_Result rc;
	json_t *summary = NULL;
	char sha[65];
	char id[STORE_ID_CAP];
	if (!json_is_object(spec)) {
		rc = api_respond_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_json", "",
				       "the job spec must be a JSON object");
		goto done;
	}
	json_t *model = json_object_get(spec, "model");
	if (!json_is_string(model)) {
		rc = api_respond_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_spec", "model",
				       "\"model\" must be the id of an uploaded model (\"mdl_…\")");
		goto done;
	}
	const char *model_id = json_string_value(model);
	if (store_model_blob(srv->store, tenant_of(rq), model_id, sha, &summary, &e) != NN_OK) {
		if (e.status == NN_ENOTFOUND)
			rc = api_respond_error(rq, MHD_HTTP_BAD_REQUEST, "unknown_model", "model",
					       "no model with id '%s'", model_id);
		else
			rc = api_respond_err(rq, &e);
		goto done;
	}
	if (spec_validate(spec, summary, &e) != NN_OK ||
	    api_eval_check_spec(rq, spec, summary, sha, &e) != NN_OK) {
		rc = api_respond_err(rq, &e);
		goto done;
	}
	if (store_job_insert(srv->store, tenant_of(rq), model_id, spec, id, &e) != NN_OK) {
		rc = api_respond_err(rq, &e);
		goto done;
	}
	/* Read the view before waking a worker, so the 202 shows the job as
	 * queued, as the contract says, rather than whatever a fast worker made it. */
	json_t *job = NULL;
	enum nn_status view_st = store_job_get(srv->store, tenant_of(rq), id, &job, &e);
	if (srv->hooks.job_queued)
		srv->hooks.job_queued(srv->hooks.ud);
	if (view_st != NN_OK) {
		rc = api_respond_err(rq, &e);
		goto done;
	}
	json_t *fields = json_pack("{s:s, s:s}", "job", id, "model", model_id);
	api_log(srv, API_LOG_INFO, "job queued", fields);
	json_decref(fields);
	rc = respond_created(rq, MHD_HTTP_ACCEPTED, job, "jobs", id);
done:
	json_decref(summary);
	json_decref(spec);
	return rc;
}

static bool known_job_state(const char *s)
{
	static const char *const states[] = {"queued", "running", "succeeded", "failed",
					     "canceled"};
	for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
		if (strcmp(s, states[i]) == 0)
			return true;
	return false;
}

static enum MHD_Result jobs_get(struct request *rq)
{
	int limit;
	if (!parse_limit(rq, &limit))
		return api_respond_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_query", "limit",
					 "limit must be an integer in [1, %d]", LIST_MAX_LIMIT);
	const char *state = query_arg(rq, "state");
	if (state && !known_job_state(state))
		return api_respond_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_query", "state",
					 "state must be one of queued, running, succeeded, failed, "
					 "canceled (got '%s')", state);
	json_t *out = NULL;
	struct nn_err e = {0};
	if (store_job_list(rq->srv->store, tenant_of(rq), state, query_arg(rq, "after"), limit, &out,
			   &e) != NN_OK)
		return api_respond_err(rq, &e);
	return api_respond_json(rq, MHD_HTTP_OK, out);
}

static enum MHD_Result job_get(struct request *rq)
{
	json_t *out = NULL;
	struct nn_err e = {0};
	if (store_job_get(rq->srv->store, tenant_of(rq), rq->id, &out, &e) != NN_OK)
		return api_respond_err(rq, &e);
	return api_respond_json(rq, MHD_HTTP_OK, out);
}

static enum MHD_Result job_cancel(struct request *rq)
{
	struct api_server *srv = rq->srv;
	struct nn_err e = {0};
	char state[16];
	if (store_job_cancel(srv->store, tenant_of(rq), rq->id, state, &e) != NN_OK)
		return api_respond_err(rq, &e);
	if (strcmp(state, "running") == 0 && srv->hooks.job_cancel)
		srv->hooks.job_cancel(srv->hooks.ud, rq->id);
	return job_get(rq);
}

/* ---- artifacts ---- */

/* Parses a single "bytes=a-b" / "bytes=a-" / "bytes=-n" range. Returns 1 for a
 * satisfiable range, 0 to ignore the header (absent, malformed or several
 * ranges: serving the whole body is allowed), -1 if unsatisfiable. */
static int parse_range(const char *header, int64_t size, int64_t *first, int64_t *last)
{
	if (!header || strncmp(header, "bytes=", 6) != 0 || strchr(header, ','))
		return 0;
	const char *p = header + 6;
	char *end;
	if (*p == '-') {
		errno = 0;
		long long n = strtoll(p + 1, &end, 10);
		if (errno || end == p + 1 || *end || n < 0)
			return 0;
		if (n == 0 || size == 0)
			return -1;
		*first = n >= size ? 0 : size - n;
		*last = size - 1;
		return 1;
	}
	errno = 0;
	long long a = strtoll(p, &end, 10);
	if (errno || end == p || *end != '-' || a < 0)
		return 0;
	const char *q = end + 1;
	long long b = size - 1;
	if (*q) {
		b = strtoll(q, &end, 10);
		if (errno || end == q || *end || b < a)
			return 0;
	}
	if (a >= size)
		return -1;
	*first = a;
	*last = b >= size ? size - 1 : b;
	return 1;
}

static enum MHD_Result artifact_get(struct request *rq)
{
	struct api_server *srv = rq->srv;
	struct nn_err e = {0};
	struct store_artifact art;
	if (store_artifact_get(srv->store, tenant_of(rq), rq->id, &art, &e) != NN_OK)
		return api_respond_err(rq, &e);
	char etag[72];
	snprintf(etag, sizeof etag, "\"%s\"", art.sha256);
	const char *inm = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
						      MHD_HTTP_HEADER_IF_NONE_MATCH);
	if (inm && (strstr(inm, art.sha256) || strcmp(inm, "*") == 0)) {
		struct MHD_Response *resp =
			MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
		if (resp)
			MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
		return api_respond_response(rq, MHD_HTTP_NOT_MODIFIED, resp);
	}
	int fd;
	int64_t size;
	if (blob_open(srv->blobs, art.sha256, &fd, &size, &e) != NN_OK) {
		if (e.status == NN_ENOTFOUND)
			err_set(&e, NN_EINTERNAL, "blob_missing", NULL,
				"artifact %s has no stored bytes", art.id);
		return api_respond_err(rq, &e);
	}
	int64_t first = 0, last = size - 1;
	const char *range = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
							MHD_HTTP_HEADER_RANGE);
	int r = parse_range(range, size, &first, &last);
	if (r < 0) {
		close(fd);
		char content_range[64];
		snprintf(content_range, sizeof content_range, "bytes */%" PRId64, size);
		struct MHD_Response *resp =
			MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
		if (resp)
			MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, content_range);
		return api_respond_response(rq, MHD_HTTP_RANGE_NOT_SATISFIABLE, resp);
	}
	uint64_t len = size == 0 ? 0 : (uint64_t)(last - first + 1);
	/* sendfile from the blob: MHD owns fd from here and closes it. */
	struct MHD_Response *resp = MHD_create_response_from_fd_at_offset64(len, fd,
									    (uint64_t)first);
	if (!resp) {
		close(fd);
		return MHD_NO;
	}
	char disposition[96];
	snprintf(disposition, sizeof disposition, "attachment; filename=\"%s.onnx\"", art.id);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_DISPOSITION, disposition);
	unsigned status = MHD_HTTP_OK;
	if (r > 0) {
		char content_range[96];
		snprintf(content_range, sizeof content_range, "bytes %" PRId64 "-%" PRId64 "/%" PRId64,
			 first, last, size);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, content_range);
		status = MHD_HTTP_PARTIAL_CONTENT;
	}
	return api_respond_response(rq, status, resp);
}

/* ---- probes ---- */

static enum MHD_Result healthz(struct request *rq)
{
	return api_respond_json(rq, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"));
}

static enum MHD_Result readyz(struct request *rq)
{
	struct nn_err e = {0};
	if (!rq->srv->ready)
		return api_respond_json(rq, MHD_HTTP_SERVICE_UNAVAILABLE,
					json_pack("{s:s}", "status", "not_ready"));
	if (store_ping(rq->srv->store, &e) != NN_OK)
		return api_respond_json(rq, MHD_HTTP_SERVICE_UNAVAILABLE,
					json_pack("{s:s, s:s}", "status", "not_ready", "reason",
						  e.message));
	return api_respond_json(rq, MHD_HTTP_OK, json_pack("{s:s}", "status", "ready"));
}

static bool is_method(const struct request *rq, const char *m)
{
	return strcmp(rq->method, m) == 0;
}

enum MHD_Result api_handle(struct request *rq)
{
	bool get = is_method(rq, MHD_HTTP_METHOD_GET) || is_method(rq, MHD_HTTP_METHOD_HEAD);
	switch (rq->route) {
	case ROUTE_HEALTHZ: return healthz(rq);
	case ROUTE_READYZ: return readyz(rq);
	case ROUTE_MODELS: return get ? models_get(rq) : models_post(rq);
	case ROUTE_MODEL: return get ? model_get(rq) : model_delete(rq);
	case ROUTE_JOBS: return get ? jobs_get(rq) : jobs_post(rq);
	case ROUTE_JOB: return job_get(rq);
	case ROUTE_JOB_CANCEL: return job_cancel(rq);
	case ROUTE_JOB_REPORT: return api_eval_report(rq);
	case ROUTE_ARTIFACT: return artifact_get(rq);
	case ROUTE_DATASETS: return get ? api_datasets_list(rq) : api_datasets_post(rq);
	case ROUTE_DATASET: return get ? api_datasets_get(rq) : api_datasets_delete(rq);
	case ROUTE_NOT_FOUND: break;
	}
	return api_respond_error(rq, MHD_HTTP_NOT_FOUND, "not_found", "", "no such endpoint");
}
