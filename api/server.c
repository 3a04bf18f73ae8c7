/* api_server: libmicrohttpd life cycle, routing and request-body streaming.
 *
 * MHD calls the access handler several times per request: the first call only
 * announces the headers (we route, check limits and allocate state), later
 * calls hand over body chunks (streamed to the blob store or buffered for
 * JSON), and the final call with no data runs the handler. Responses are
 * queued on that final call except for early rejections (413/415), where MHD
 * then closes the connection instead of reading a body we do not want.
 * The completion callback frees the request state in one place. */
#include "server.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "request.h"

void api_log(const struct api_server *srv, enum api_log_level level, const char *msg,
	     const json_t *fields)
{
	if (srv->hooks.log)
		srv->hooks.log(srv->hooks.ud, level, msg, fields);
}

unsigned api_http_status(enum nn_status status)
{
	switch (status) {
	case NN_OK: return MHD_HTTP_OK;
	case NN_EINVAL: return MHD_HTTP_BAD_REQUEST;
	case NN_EUNSUPPORTED: return MHD_HTTP_BAD_REQUEST;
	case NN_ENOTFOUND: return MHD_HTTP_NOT_FOUND;
	case NN_ECONFLICT: return MHD_HTTP_CONFLICT;
	case NN_ETOOBIG: return MHD_HTTP_CONTENT_TOO_LARGE;
	case NN_ENOSPC: return MHD_HTTP_INSUFFICIENT_STORAGE;
	case NN_ENOMEM: return MHD_HTTP_SERVICE_UNAVAILABLE;
	case NN_ECANCELED: return MHD_HTTP_CONFLICT;
	case NN_EIO:
	case NN_EINTERNAL: return MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
	return MHD_HTTP_INTERNAL_SERVER_ERROR;
}

enum MHD_Result api_respond_response(struct request *rq, unsigned status, struct MHD_Response *resp)
{
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	enum MHD_Result rc = MHD_queue_response(rq->conn, status, resp);
	MHD_destroy_response(resp);
	rq->responded = true;
	rq->status = status;
	return rc;
}

enum MHD_Result api_respond_json(struct request *rq, unsigned status, json_t *body)
{
	char *text = body ? json_dumps(body, API_JSON_FLAGS) : NULL;
	json_decref(body);
	if (!text)
		return MHD_NO;
	size_t len = strlen(text);
	char *with_newline = realloc(text, len + 2);
	if (!with_newline) {
		free(text);
		return MHD_NO;
	}
	with_newline[len] = '\n';
	with_newline[len + 1] = '\0';
	struct MHD_Response *resp = MHD_create_response_from_buffer(len + 1, with_newline,
								   MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(with_newline);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	return api_respond_response(rq, status, resp);
}

static json_t *error_body(const char *code, const char *field, const char *message)
{
	json_t *err = json_pack("{s:s, s:s}", "code", code, "message", message);
	if (err && field && field[0])
		json_object_set_new(err, "field", json_string(field));
	return json_pack("{s:o}", "error", err);
}

enum MHD_Result api_respond_error(struct request *rq, unsigned status, const char *code,
				  const char *field, const char *fmt, ...)
{
	char message[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(message, sizeof message, fmt, ap);
	va_end(ap);
	return api_respond_json(rq, status, error_body(code, field, message));
}

enum MHD_Result api_respond_err(struct request *rq, const struct nn_err *e)
{
	unsigned status = api_http_status(e->status);
	const char *code = e->code[0] ? e->code : err_status_name(e->status);
	if (status >= 500) {
		json_t *fields = json_pack("{s:s, s:s, s:s}", "code", code, "error", e->message,
					   "path", rq->url);
		api_log(rq->srv, API_LOG_ERROR, "request failed", fields);
		json_decref(fields);
	}
	return api_respond_json(rq, status, error_body(code, e->field, e->message));
}

/* ---- routing ---- */

static bool valid_id_segment(const char *s, size_t len)
{
	if (len == 0 || len >= STORE_ID_CAP)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
			return false;
	}
	return true;
}

/* Matches "/prefix/{id}" or "/prefix/{id}/suffix"; copies id. */
static bool match_id_path(const char *url, const char *prefix, const char *suffix, char *id)
{
	size_t plen = strlen(prefix);
	if (strncmp(url, prefix, plen) != 0)
		return false;
	const char *seg = url + plen;
	const char *slash = strchr(seg, '/');
	size_t len = slash ? (size_t)(slash - seg) : strlen(seg);
	if (suffix) {
		if (!slash || strcmp(slash, suffix) != 0)
			return false;
	} else if (slash) {
		return false;
	}
	if (!valid_id_segment(seg, len))
		return false;
	memcpy(id, seg, len);
	id[len] = '\0';
	return true;
}

static enum route route_url(const char *url, char *id)
{
	if (strcmp(url, "/healthz") == 0)
		return ROUTE_HEALTHZ;
	if (strcmp(url, "/readyz") == 0)
		return ROUTE_READYZ;
	if (strcmp(url, "/v1/models") == 0)
		return ROUTE_MODELS;
	if (strcmp(url, "/v1/jobs") == 0)
		return ROUTE_JOBS;
	if (strcmp(url, "/v1/datasets") == 0)
		return ROUTE_DATASETS;
	if (match_id_path(url, "/v1/datasets/", NULL, id))
		return ROUTE_DATASET;
	if (match_id_path(url, "/v1/models/", NULL, id))
		return ROUTE_MODEL;
	if (match_id_path(url, "/v1/jobs/", "/cancel", id))
		return ROUTE_JOB_CANCEL;
	if (match_id_path(url, "/v1/jobs/", "/report", id))
		return ROUTE_JOB_REPORT;
	if (match_id_path(url, "/v1/jobs/", "/events", id))
		return ROUTE_JOB_EVENTS;
	if (match_id_path(url, "/v1/jobs/", NULL, id))
		return ROUTE_JOB;
	if (match_id_path(url, "/v1/artifacts/", NULL, id))
		return ROUTE_ARTIFACT;
	return ROUTE_NOT_FOUND;
}

static const char *allowed_methods(enum route r)
{
	switch (r) {
	case ROUTE_HEALTHZ:
	case ROUTE_READYZ:
	case ROUTE_JOB:
	case ROUTE_JOB_REPORT:
	case ROUTE_JOB_EVENTS:
	case ROUTE_ARTIFACT: return "GET, HEAD";
	case ROUTE_MODELS:
	case ROUTE_JOBS:
	case ROUTE_DATASETS: return "GET, HEAD, POST";
	case ROUTE_MODEL:
	case ROUTE_DATASET: return "GET, HEAD, DELETE";
	case ROUTE_JOB_CANCEL: return "POST";
	case ROUTE_NOT_FOUND: return "";
	}
	return "";
}

static bool method_allowed(enum route r, const char *method)
{
	const char *allowed = allowed_methods(r);
	size_t mlen = strlen(method);
	for (const char *p = allowed; (p = strstr(p, method)) != NULL; p += mlen) {
		bool starts = p == allowed || p[-1] == ' ';
		bool ends = p[mlen] == '\0' || p[mlen] == ',';
		if (starts && ends)
			return true;
	}
	return false;
}

static enum MHD_Result respond_method_not_allowed(struct request *rq)
{
	json_t *body = error_body("method_not_allowed", "", "");
	char message[160];
	snprintf(message, sizeof message, "%s is not allowed on %s; allowed: %s", rq->method, rq->url,
		 allowed_methods(rq->route));
	json_object_set_new(json_object_get(body, "error"), "message", json_string(message));
	char *text = json_dumps(body, API_JSON_FLAGS);
	json_decref(body);
	if (!text)
		return MHD_NO;
	struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(text), text,
								   MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allowed_methods(rq->route));
	return api_respond_response(rq, MHD_HTTP_METHOD_NOT_ALLOWED, resp);
}

/* ---- body intake ---- */

static bool media_type_is(const char *value, const char *type)
{
	size_t len = strlen(type);
	return strncasecmp(value, type, len) == 0 &&
	       (value[len] == '\0' || value[len] == ';' || value[len] == ' ');
}

/* curl --data-binary without -H sends application/x-www-form-urlencoded:
 * accepted, since the bytes are then checked as ONNX anyway. */
static bool model_content_type_ok(const char *ct)
{
	return !ct || !ct[0] || media_type_is(ct, "application/octet-stream") ||
	       media_type_is(ct, "application/x-www-form-urlencoded") ||
	       media_type_is(ct, "application/x-onnx") || media_type_is(ct, "application/onnx") ||
	       media_type_is(ct, "application/x-protobuf");
}

/* curl -d sends application/x-www-form-urlencoded; we read the raw bytes as JSON. */
static bool json_content_type_ok(const char *ct)
{
	return !ct || !ct[0] || media_type_is(ct, "application/json") ||
	       media_type_is(ct, "application/x-www-form-urlencoded") ||
	       media_type_is(ct, "text/plain");
}

static bool parse_content_length(struct request *rq, uint64_t *out)
{
	const char *cl = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (!cl)
		return false;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(cl, &end, 10);
	if (errno || end == cl)
		return false;
	*out = v;
	return true;
}

/* Decides on the first call what to do with the body; may respond at once. */
static enum MHD_Result begin_request(struct request *rq)
{
	const char *ct = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_CONTENT_TYPE);
	uint64_t content_length = 0;
	bool has_length = parse_content_length(rq, &content_length);
	bool is_post = strcmp(rq->method, MHD_HTTP_METHOD_POST) == 0;

	bool dataset = rq->route == ROUTE_DATASETS;
	if ((rq->route == ROUTE_MODELS || dataset) && is_post) {
		if (!model_content_type_ok(ct))
			return api_respond_error(rq, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
						 "unsupported_media_type", "",
						 "send the raw %s bytes with Content-Type: "
						 "application/octet-stream (got %s)",
						 dataset ? ".npy/.npz" : "ONNX", ct);
		if (has_length && content_length > rq->srv->max_upload)
			return api_respond_error(rq, MHD_HTTP_CONTENT_TOO_LARGE, "too_large", "",
						 "%s of %llu bytes exceeds the upload limit of "
						 "%llu bytes (--max-upload)",
						 dataset ? "dataset" : "model",
						 (unsigned long long)content_length,
						 (unsigned long long)rq->srv->max_upload);
		struct nn_err e = {0};
		if (blob_writer_new(rq->srv->blobs, &rq->upload, &e) != NN_OK)
			return api_respond_err(rq, &e);
		rq->body_kind = BODY_MODEL;
		return MHD_YES;
	}
	if (rq->route == ROUTE_JOBS && is_post) {
		if (!json_content_type_ok(ct))
			return api_respond_error(rq, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
						 "unsupported_media_type", "",
						 "send the job spec as JSON (Content-Type: "
						 "application/json), got %s", ct);
		if (has_length && content_length > API_JSON_BODY_CAP)
			return api_respond_error(rq, MHD_HTTP_CONTENT_TOO_LARGE, "too_large", "",
						 "job spec of %llu bytes exceeds %zu bytes",
						 (unsigned long long)content_length, API_JSON_BODY_CAP);
		rq->body_kind = BODY_JSON;
		return MHD_YES;
	}
	rq->body_kind = BODY_NONE;
	return MHD_YES;
}

/* MHD cannot queue a response while a body is still arriving (it would drop
 * the connection without an answer), so a body that crosses a limit is
 * discarded as it comes and answered 413 at its end. Past this much extra the
 * connection is closed instead: nobody should be made to read gigabytes only
 * to refuse them. */
#define API_DISCARD_CAP ((uint64_t)256 << 20)

static enum MHD_Result refuse_body(struct request *rq, size_t len, enum nn_status status,
				   const char *code, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static enum MHD_Result refuse_body(struct request *rq, size_t len, enum nn_status status,
				   const char *code, const char *fmt, ...)
{
	if (!rq->body_failed) {
		va_list ap;
		va_start(ap, fmt);
		err_setv(&rq->body_err, status, code, NULL, fmt, ap);
		va_end(ap);
		rq->body_failed = true;
		blob_writer_abort(rq->upload);
		rq->upload = NULL;
		free(rq->body);
		rq->body = NULL;
		rq->body_len = 0;
	}
	rq->discarded += len;
	return rq->discarded > API_DISCARD_CAP ? MHD_NO : MHD_YES;
}

static enum MHD_Result take_model_chunk(struct request *rq, const char *data, size_t len)
{
	if (rq->received + len > rq->srv->max_upload)
		return refuse_body(rq, len, NN_ETOOBIG, "too_large",
				   "%s exceeds the upload limit of %llu bytes (--max-upload)",
				   rq->route == ROUTE_DATASETS ? "dataset" : "model",
				   (unsigned long long)rq->srv->max_upload);
	rq->received += len;
	if (blob_writer_write(rq->upload, data, len, &rq->body_err) != NN_OK)
		return refuse_body(rq, len, rq->body_err.status, rq->body_err.code, "%s",
				   rq->body_err.message);
	return MHD_YES;
}

static enum MHD_Result take_json_chunk(struct request *rq, const char *data, size_t len)
{
	if (rq->body_len + len > API_JSON_BODY_CAP)
		return refuse_body(rq, len, NN_ETOOBIG, "too_large", "job spec exceeds %zu bytes",
				   API_JSON_BODY_CAP);
	char *grown = realloc(rq->body, rq->body_len + len + 1);
	if (!grown)
		return refuse_body(rq, len, NN_ENOMEM, "out_of_memory",
				   "out of memory reading the request body");
	rq->body = grown;
	memcpy(rq->body + rq->body_len, data, len);
	rq->body_len += len;
	rq->body[rq->body_len] = '\0';
	return MHD_YES;
}

static enum MHD_Result take_chunk(struct request *rq, const char *data, size_t len)
{
	if (rq->responded)
		return MHD_YES; /* already answered (e.g. 413): drop the rest */
	if (rq->body_failed)
		return refuse_body(rq, len, NN_OK, NULL, "%s", "");
	switch (rq->body_kind) {
	case BODY_MODEL: return take_model_chunk(rq, data, len);
	case BODY_JSON: return take_json_chunk(rq, data, len);
	case BODY_NONE: return MHD_YES;
	}
	return MHD_YES;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
				 const char *method, const char *version, const char *upload_data,
				 size_t *upload_data_size, void **req_cls)
{
	(void)version;
	struct api_server *srv = cls;
	struct request *rq = *req_cls;
	if (!rq) {
		rq = calloc(1, sizeof *rq);
		if (!rq)
			return MHD_NO;
		rq->srv = srv;
		rq->conn = conn;
		rq->method = method;
		rq->url = url;
		clock_gettime(CLOCK_MONOTONIC, &rq->started);
		*req_cls = rq;
		rq->route = route_url(url, rq->id);
		if (rq->route == ROUTE_NOT_FOUND)
			return api_respond_error(rq, MHD_HTTP_NOT_FOUND, "not_found", "",
						 "no such endpoint: %s %s", method, url);
		if (!method_allowed(rq->route, method))
			return respond_method_not_allowed(rq);
		return begin_request(rq);
	}
	if (*upload_data_size) {
		enum MHD_Result rc = take_chunk(rq, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return rc;
	}
	if (rq->responded)
		return MHD_YES;
	if (rq->body_failed)
		return api_respond_err(rq, &rq->body_err);
	return api_handle(rq);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
			 enum MHD_RequestTerminationCode toe)
{
	(void)conn;
	struct api_server *srv = cls;
	struct request *rq = *req_cls;
	if (!rq)
		return;
	blob_writer_abort(rq->upload);
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	double ms = (double)(now.tv_sec - rq->started.tv_sec) * 1e3 +
		    (double)(now.tv_nsec - rq->started.tv_nsec) / 1e6;
	json_t *fields = json_pack("{s:s, s:s, s:i, s:f, s:I}", "method", rq->method, "path", rq->url,
				   "status", (int)rq->status, "ms", ms, "bytes_in",
				   (json_int_t)(rq->received + rq->body_len));
	if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
		json_object_set_new(fields, "terminated", json_integer((int)toe));
	api_log(srv, rq->status >= 500 ? API_LOG_WARN : API_LOG_DEBUG, "request", fields);
	json_decref(fields);
	free(rq->body);
	free(rq);
	*req_cls = NULL;
}

/* ---- life cycle ---- */

static enum nn_status parse_listen(const char *listen, struct sockaddr_storage *addr,
				   socklen_t *addr_len, struct nn_err *e)
{
	char host[256], port[16];
	const char *colon = strrchr(listen, ':');
	if (!colon || colon == listen || strlen(colon + 1) == 0 || strlen(colon + 1) >= sizeof port)
		return err_set(e, NN_EINVAL, "invalid_config", "listen",
			       "--listen must be HOST:PORT, got '%s'", listen);
	size_t hlen = (size_t)(colon - listen);
	if (hlen >= sizeof host)
		return err_set(e, NN_EINVAL, "invalid_config", "listen", "host name too long");
	memcpy(host, listen, hlen);
	host[hlen] = '\0';
	if (host[0] == '[' && hlen > 2 && host[hlen - 1] == ']') {
		memmove(host, host + 1, hlen - 2);
		host[hlen - 2] = '\0';
	}
	snprintf(port, sizeof port, "%s", colon + 1);
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0)
		return err_set(e, NN_EINVAL, "invalid_config", "listen", "cannot resolve '%s': %s",
			       listen, gai_strerror(rc));
	memcpy(addr, res->ai_addr, res->ai_addrlen);
	*addr_len = res->ai_addrlen;
	freeaddrinfo(res);
	return NN_OK;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct api_server *srv = cls;
	char message[512];
	vsnprintf(message, sizeof message, fmt, ap);
	size_t len = strlen(message);
	while (len && (message[len - 1] == '\n' || message[len - 1] == '\r'))
		message[--len] = '\0';
	json_t *fields = json_pack("{s:s}", "detail", message);
	api_log(srv, API_LOG_WARN, "libmicrohttpd", fields);
	json_decref(fields);
}

enum nn_status api_server_start(const struct api_config *cfg, struct store *store,
				struct blob_store *blobs, const struct api_hooks *hooks,
				struct api_server **out, struct nn_err *e)
{
	struct sockaddr_storage addr;
	socklen_t addr_len;
	enum nn_status st = parse_listen(cfg->listen, &addr, &addr_len, e);
	if (st != NN_OK)
		return st;
	struct api_server *srv = calloc(1, sizeof *srv);
	if (!srv)
		return err_set(e, NN_ENOMEM, NULL, NULL, "out of memory");
	srv->store = store;
	srv->blobs = blobs;
	if (hooks)
		srv->hooks = *hooks;
	srv->max_upload = cfg->max_upload;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC |
			 MHD_USE_ERROR_LOG;
	if (addr.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	unsigned threads = cfg->threads ? cfg->threads : 2;
	srv->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_access, srv,
				    MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv,
				    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
				    MHD_OPTION_THREAD_POOL_SIZE, threads,
				    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(1 << 20),
				    MHD_OPTION_CONNECTION_TIMEOUT, 120u,
				    MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
				    MHD_OPTION_END);
	if (!srv->mhd) {
		free(srv);
		return err_set(e, NN_EIO, "listen_failed", "listen",
			       "cannot listen on %s (address in use or not local?)", cfg->listen);
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_BIND_PORT);
	unsigned port = info ? info->port : 0;
	char host[64] = "";
	if (addr.ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&addr)->sin6_addr, host, sizeof host);
		snprintf(srv->address, sizeof srv->address, "[%s]:%u", host, port);
	} else {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&addr)->sin_addr, host, sizeof host);
		snprintf(srv->address, sizeof srv->address, "%s:%u", host, port);
	}
	*out = srv;
	return NN_OK;
}

const char *api_server_address(const struct api_server *srv)
{
	return srv->address;
}

void api_server_set_ready(struct api_server *srv, bool ready)
{
	srv->ready = ready;
}

void api_server_quiesce(struct api_server *srv)
{
	if (!srv || !srv->mhd)
		return;
	MHD_socket fd = MHD_quiesce_daemon(srv->mhd);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
}

void api_server_stop(struct api_server *srv)
{
	if (!srv)
		return;
	if (srv->mhd)
		MHD_stop_daemon(srv->mhd);
	free(srv);
}
