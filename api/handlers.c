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
#include <strings.h>
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

/* A job's events, oldest first, paged by event id (epoch records of
 * training steps, step transitions, the job's start and end). */
static enum MHD_Result job_events(struct request *rq)
{
	int limit;
	if (!parse_limit(rq, &limit))
		return api_respond_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_query", "limit",
					 "limit must be an integer in [1, %d]", LIST_MAX_LIMIT);
	json_t *out = NULL;
	struct nn_err e = {0};
	if (store_job_events(rq->srv->store, tenant_of(rq), rq->id, query_arg(rq, "after"), limit,
			     &out, &e) != NN_OK)
		return api_respond_err(rq, &e);
	return api_respond_json(rq, MHD_HTTP_OK, out);
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

/* Accept-Encoding (RFC 9110 12.5.3), as far as choosing between identity
 * and zstd needs: each coding's qvalue in thousandths, -1 when not listed. */
struct accept_enc {
	bool present; /* at least one Accept-Encoding header line */
	int zstd, identity, star;
};

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ); -1 if malformed. */
static int parse_qvalue(const char *p, size_t n)
{
	if (n == 0 || (p[0] != '0' && p[0] != '1'))
		return -1;
	int q = (p[0] - '0') * 1000;
	if (n == 1)
		return q;
	if (p[1] != '.' || n > 5)
		return -1;
	int scale = 100;
	for (size_t i = 2; i < n; i++, scale /= 10) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		q += (p[i] - '0') * scale;
	}
	return q > 1000 ? -1 : q;
}

/* One Accept-Encoding line: "zstd;q=0.5, gzip, *;q=0". A malformed element
 * is ignored (it is not the client's other preferences' fault). */
static void accept_enc_parse(struct accept_enc *a, const char *v)
{
	a->present = true;
	while (*v) {
		size_t len = strcspn(v, ",");
		const char *el = v, *el_end = v + len;
		v += len + (v[len] == ',');
		while (el < el_end && is_ows(*el))
			el++;
		const char *tok = el;
		while (el < el_end && *el != ';' && !is_ows(*el))
			el++;
		size_t tok_len = (size_t)(el - tok);
		if (tok_len == 0)
			continue;
		int q = 1000;
		bool bad = false;
		while (el < el_end && !bad) {
			while (el < el_end && is_ows(*el))
				el++;
			if (el == el_end)
				break;
			if (*el != ';') {
				bad = true;
				break;
			}
			el++;
			while (el < el_end && is_ows(*el))
				el++;
			const char *param = el;
			while (el < el_end && *el != ';' && !is_ows(*el))
				el++;
			size_t plen = (size_t)(el - param);
			if (plen >= 2 && (param[0] == 'q' || param[0] == 'Q') && param[1] == '=')
				q = parse_qvalue(param + 2, plen - 2);
			bad = q < 0;
		}
		if (bad)
			continue;
		int *slot = NULL;
		if (tok_len == 4 && strncasecmp(tok, "zstd", 4) == 0)
			slot = &a->zstd;
		else if (tok_len == 8 && strncasecmp(tok, "identity", 8) == 0)
			slot = &a->identity;
		else if (tok_len == 1 && tok[0] == '*')
			slot = &a->star;
		if (slot && q > *slot)
			*slot = q;
	}
}

static enum MHD_Result accept_enc_line(void *cls, enum MHD_ValueKind kind, const char *key,
				       const char *value)
{
	(void)kind;
	if (key && value && strcasecmp(key, MHD_HTTP_HEADER_ACCEPT_ENCODING) == 0)
		accept_enc_parse(cls, value);
	return MHD_YES;
}

/* Whether the request's Accept-Encoding lines (all of them) prefer zstd:
 * acceptable (q > 0, listed or through "*") and at least as wanted as
 * identity when identity has a qvalue of its own (listed, or through "*"
 * beside a listed zstd). Identity that is only implicitly acceptable loses
 * to any acceptable zstd, as a client that lists zstd expects. No header
 * at all means identity, as before zstd existed. */
static bool accept_prefers_zstd(struct request *rq)
{
	struct accept_enc a = {.zstd = -1, .identity = -1, .star = -1};
	MHD_get_connection_values(rq->conn, MHD_HEADER_KIND, accept_enc_line, &a);
	if (!a.present)
		return false;
	int qz = a.zstd >= 0 ? a.zstd : (a.star >= 0 ? a.star : 0);
	if (qz <= 0)
		return false;
	if (a.identity >= 0)
		return qz >= a.identity;
	if (a.star >= 0)
		return qz >= a.star;
	return true;
}

/* If-None-Match (RFC 9110 13.1.2): "*" or a list of entity tags, compared
 * weakly (W/"x" matches "x"). A bare tag without quotes is tolerated. */
static bool if_none_match(const char *header, const char *tag)
{
	if (!header)
		return false;
	size_t tag_len = strlen(tag);
	const char *p = header;
	while (*p) {
		while (*p == ',' || is_ows(*p))
			p++;
		if (!*p)
			break;
		if (*p == '*')
			return true;
		if (p[0] == 'W' && p[1] == '/')
			p += 2;
		bool quoted = *p == '"';
		const char *start = p + quoted;
		const char *stop = quoted ? strchr(start, '"') : start + strcspn(start, ", \t");
		if (!stop)
			return false;
		if ((size_t)(stop - start) == tag_len && memcmp(start, tag, tag_len) == 0)
			return true;
		p = stop + quoted;
	}
	return false;
}

static enum MHD_Result artifact_get(struct request *rq)
{
	struct api_server *srv = rq->srv;
	struct nn_err e = {0};
	struct store_artifact art;
	/* Which representation: ?encoding= decides when given; otherwise
	 * Accept-Encoding, and the answer then varies with that header. */
	const char *enc = query_arg(rq, "encoding");
	bool want_zstd, negotiated = enc == NULL;
	if (enc && strcasecmp(enc, "zstd") == 0)
		want_zstd = true;
	else if (enc && strcasecmp(enc, "identity") == 0)
		want_zstd = false;
	else if (enc)
		return api_respond_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_query", "encoding",
					 "encoding must be zstd or identity (got '%.64s')", enc);
	else
		want_zstd = accept_prefers_zstd(rq);
	if (store_artifact_get(srv->store, tenant_of(rq), rq->id, &art, &e) != NN_OK)
		return api_respond_err(rq, &e);
	bool zstd = want_zstd && art.zstd_sha256[0];
	if (want_zstd && !zstd && !negotiated)
		return api_respond_error(rq, MHD_HTTP_NOT_ACCEPTABLE, "encoding_unavailable",
					 "encoding",
					 "artifact %s has no zstd copy (its job finished before nncd "
					 "stored them): download it without ?encoding=zstd",
					 art.id);
	/* A different representation, a different strong ETag: its own hash. */
	const char *sha = zstd ? art.zstd_sha256 : art.sha256;
	char etag[72];
	snprintf(etag, sizeof etag, "\"%s\"", sha);
	const char *inm = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
						      MHD_HTTP_HEADER_IF_NONE_MATCH);
	if (if_none_match(inm, sha)) {
		struct MHD_Response *resp =
			MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
		if (resp) {
			MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
			if (negotiated)
				MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY,
							MHD_HTTP_HEADER_ACCEPT_ENCODING);
		}
		return api_respond_response(rq, MHD_HTTP_NOT_MODIFIED, resp);
	}
	int fd;
	int64_t size;
	if (blob_open(srv->blobs, sha, &fd, &size, &e) != NN_OK) {
		if (e.status == NN_ENOTFOUND)
			err_set(&e, NN_EINTERNAL, "blob_missing", NULL,
				"artifact %s has no stored bytes%s", art.id,
				zstd ? " for its zstd copy" : "");
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
		if (resp) {
			MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, content_range);
			if (negotiated)
				MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY,
							MHD_HTTP_HEADER_ACCEPT_ENCODING);
		}
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
	/* Asked for by ?encoding=zstd, the bytes are a .zst file to whoever
	 * saves them; negotiated, the client's HTTP layer decodes them. */
	char disposition[96];
	snprintf(disposition, sizeof disposition, "attachment; filename=\"%s.onnx%s\"", art.id,
		 zstd && !negotiated ? ".zst" : "");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_DISPOSITION, disposition);
	if (zstd)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_ENCODING, "zstd");
	if (negotiated)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, MHD_HTTP_HEADER_ACCEPT_ENCODING);
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
	case ROUTE_JOB_EVENTS: return job_events(rq);
	case ROUTE_ARTIFACT: return artifact_get(rq);
	case ROUTE_DATASETS: return get ? api_datasets_list(rq) : api_datasets_post(rq);
	case ROUTE_DATASET: return get ? api_datasets_get(rq) : api_datasets_delete(rq);
	case ROUTE_NOT_FOUND: break;
	}
	return api_respond_error(rq, MHD_HTTP_NOT_FOUND, "not_found", "", "no such endpoint");
}
