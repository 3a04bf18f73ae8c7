/* api_datasets: dataset upload (ingest and validation), list, get, delete.
 * See datasets.h for the contract and docs/API.md ("Datasets") for the
 * answers and every error.
 *
 * Owns, per upload, the blob writers of the arrays being ingested (at most
 * NPZ_MAX_MEMBERS) until they are committed or aborted; nothing outlives the
 * request. Validation reads the arrays with pread in bounded chunks (npy.c's
 * scans and the label scan here), so memory stays small whatever the upload
 * size. Runs on MHD request threads. */
#include "datasets.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"
#include "npy.h"
#include "npz.h"

#define DS_LIST_DEFAULT_LIMIT 50
#define DS_LIST_MAX_LIMIT 1000
#define DS_NAME_CAP 256
#define DS_ARRAY_NAME_CAP 64
/* Decompression cap for an .npz: this many times --max-upload, and never
 * more than DS_NPZ_TOTAL_CAP, summed over all members. */
#define DS_NPZ_INFLATE_FACTOR 4
#define DS_NPZ_TOTAL_CAP ((uint64_t)16 << 30)

struct ds_array {
	char name[DS_ARRAY_NAME_CAP];
	struct blob_writer *w; /* owned until committed (then NULL) */
	struct npy_header h;
	char sha[65];          /* set once committed */
	int64_t bytes;
	bool committed;
};

struct ds_ingest {
	struct ds_array a[NPZ_MAX_MEMBERS];
	size_t n;
	const char *format; /* "npy" or "npz" */
	char sha[65];       /* the upload's */
	int64_t size;
	int64_t samples;
};

static const char *query_arg(struct request *rq, const char *key)
{
	return MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, key);
}

static const char *tenant_of(struct request *rq)
{
	(void)rq; /* one tenant until authentication exists */
	return STORE_DEFAULT_TENANT;
}

static bool valid_array_name(const char *n)
{
	size_t len = strlen(n);
	if (len == 0 || len >= DS_ARRAY_NAME_CAP)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = n[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return false;
	}
	return true;
}

/* Every check one array must pass on its own (the N match and the model fit
 * come after all arrays are read). */
static enum nn_status check_array(struct ds_array *a, struct nn_err *e)
{
	return dataset_check_array(blob_writer_fd(a->w), a->name, &a->h, e);
}

/* {"<name>": {"dtype","shape"[,"sha256","bytes"]}} of the arrays read so far. */
static json_t *arrays_json(const struct ds_ingest *in, bool with_blobs)
{
	json_t *o = json_object();
	for (size_t i = 0; o && i < in->n; i++) {
		const struct ds_array *a = &in->a[i];
		json_t *shape = json_array(), *v = json_object();
		for (int d = 0; shape && d < a->h.ndim; d++)
			if (json_array_append_new(shape, json_integer(a->h.shape[d])))
				break;
		if (!shape || !v || json_object_set_new(v, "dtype", json_string(dtype_name(a->h.dtype))) ||
		    json_object_set_new(v, "shape", shape) ||
		    (with_blobs && (json_object_set_new(v, "sha256", json_string(a->sha)) ||
				    json_object_set_new(v, "bytes", json_integer(a->bytes)))) ||
		    json_object_set_new(o, a->name, v)) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

static enum nn_status to_writer(void *ud, const void *data, size_t len, struct nn_err *e)
{
	return blob_writer_write(ud, data, len, e);
}

/* Unpacks every member of the archive in fd into a blob writer of its own. */
static enum nn_status unpack_npz(struct api_server *srv, int fd, struct ds_ingest *in,
				 struct nn_err *e)
{
	uint64_t total = DS_NPZ_TOTAL_CAP;
	if (srv->max_upload <= DS_NPZ_TOTAL_CAP / DS_NPZ_INFLATE_FACTOR)
		total = srv->max_upload * DS_NPZ_INFLATE_FACTOR;
	struct npz_limits lim = {.max_member_bytes = total, .max_total_bytes = total};
	struct npz *z = NULL;
	enum nn_status st = npz_open(fd, &lim, &z, e);
	if (st == NN_ETOOBIG) {
		/* The upload itself was within --max-upload: what it would
		 * inflate to is a property of the dataset, so a 400 like the
		 * other bad datasets, not a 413. */
		char msg[sizeof e->message];
		snprintf(msg, sizeof msg, "%s", e->message);
		return err_set(e, NN_EINVAL, "invalid_dataset", NULL,
			       "%.400s (refused as a decompression bomb)", msg);
	}
	if (st != NN_OK)
		return st;
	size_t n = npz_member_count(z);
	if (n == 0) {
		st = err_set(e, NN_EINVAL, "invalid_dataset", NULL,
			     "the .npz archive holds no arrays");
		goto out;
	}
	for (size_t i = 0; i < n && i < NPZ_MAX_MEMBERS; i++) {
		const struct npz_member *m = npz_member_at(z, i);
		if (!valid_array_name(m->name)) {
			st = err_set(e, NN_EINVAL, "invalid_dataset", NULL,
				     "npz member '%.80s': array names must match "
				     "[A-Za-z0-9_.-]{1,63}",
				     m->name);
			goto out;
		}
		struct ds_array *a = &in->a[in->n];
		snprintf(a->name, sizeof a->name, "%s", m->name);
		if ((st = blob_writer_new(srv->blobs, &a->w, e)) != NN_OK)
			goto out;
		in->n++;
		if ((st = npz_extract(z, i, to_writer, a->w, e)) != NN_OK)
			goto out;
	}
out:
	npz_close(z);
	return st;
}

/* Drops blobs nothing refers to. Caller holds blob_gc_lock. */
static void drop_blob_if_unused(struct api_server *srv, const char *sha)
{
	bool in_use = true;
	struct nn_err e = {0};
	if (store_blob_in_use(srv->store, sha, &in_use, &e) == NN_OK && !in_use)
		blob_remove(srv->blobs, sha, &e);
}

static void ingest_free(struct ds_ingest *in)
{
	for (size_t i = 0; i < in->n; i++)
		blob_writer_abort(in->a[i].w);
	free(in);
}

/* Validates the upload and fills in (arrays, samples, upload hash). The
 * upload writer is consumed: an .npy's becomes its array's writer, an .npz's
 * is aborted once unpacked. NN_EINVAL answers are 400 invalid_dataset. */
static enum nn_status ingest(struct request *rq, const json_t *model_input, struct ds_ingest *in,
			     struct nn_err *e)
{
	struct api_server *srv = rq->srv;
	const char *array = query_arg(rq, "array");
	unsigned char magic[6] = {0};
	int fd = blob_writer_fd(rq->upload);
	ssize_t got = pread(fd, magic, sizeof magic, 0);
	enum nn_status st;
	if (got == (ssize_t)sizeof magic && memcmp(magic, "\x93NUMPY", 6) == 0) {
		in->format = "npy";
		snprintf(in->a[0].name, sizeof in->a[0].name, "%s", array ? array : "x");
		in->a[0].w = rq->upload;
		rq->upload = NULL;
		in->n = 1;
	} else if (got >= 4 && memcmp(magic, "PK\x03\x04", 4) == 0) {
		if (array)
			return err_set(e, NN_EINVAL, "invalid_query", "array",
				       "array= names the array of an .npy upload; an .npz names "
				       "its arrays itself");
		in->format = "npz";
		if ((st = unpack_npz(srv, fd, in, e)) != NN_OK)
			return st;
		if ((st = blob_writer_sha256(rq->upload, in->sha, e)) != NN_OK)
			return st;
		in->size = blob_writer_size(rq->upload);
		blob_writer_abort(rq->upload); /* the archive itself is not kept */
		rq->upload = NULL;
	} else {
		return err_set(e, NN_EINVAL, "invalid_dataset", NULL,
			       "not an .npy or .npz file: the body starts with neither the .npy "
			       "magic nor a ZIP header");
	}
	for (size_t i = 0; i < in->n; i++) {
		if ((st = check_array(&in->a[i], e)) != NN_OK)
			return st;
		if (i > 0 && in->a[i].h.shape[0] != in->a[0].h.shape[0])
			return err_set(e, NN_EINVAL, "invalid_dataset", NULL,
				       "mismatched N: %s has %" PRId64 " samples, %s has %" PRId64,
				       in->a[0].name, in->a[0].h.shape[0], in->a[i].name,
				       in->a[i].h.shape[0]);
	}
	in->samples = in->a[0].h.shape[0];
	if (model_input) {
		json_t *arrays = arrays_json(in, false);
		char input[64], labels[64];
		if (!arrays)
			return err_set(e, NN_ENOMEM, "out_of_memory", NULL, "dataset arrays");
		st = dataset_check_fit(arrays, model_input, "model", input, labels, e);
		json_decref(arrays);
		if (st != NN_OK)
			return st;
	}
	return NN_OK;
}

/* Commits every array blob and inserts the rows, under blob_gc_lock; on any
 * failure drops the blobs committed here that nothing refers to. */
static enum nn_status store_ingest(struct request *rq, const char *name, struct ds_ingest *in,
				   char id[STORE_ID_CAP], struct nn_err *e)
{
	struct api_server *srv = rq->srv;
	enum nn_status st = NN_OK;
	json_t *arrays = NULL;
	blob_gc_lock(srv->blobs);
	for (size_t i = 0; i < in->n && st == NN_OK; i++) {
		struct ds_array *a = &in->a[i];
		struct blob_writer *w = a->w;
		a->w = NULL; /* commit frees it, also on failure */
		st = blob_writer_commit(w, a->sha, &a->bytes, e);
		a->committed = st == NN_OK;
	}
	if (st == NN_OK && strcmp(in->format, "npy") == 0) {
		/* The upload blob is the array blob. */
		memcpy(in->sha, in->a[0].sha, sizeof in->sha);
		in->size = in->a[0].bytes;
	}
	if (st == NN_OK) {
		arrays = arrays_json(in, true);
		st = arrays ? store_dataset_insert(srv->store, tenant_of(rq), name, in->format,
						   in->sha, in->size, in->samples, arrays, id, e)
			    : err_set(e, NN_ENOMEM, "out_of_memory", NULL, "dataset arrays");
	}
	if (st != NN_OK)
		for (size_t i = 0; i < in->n; i++)
			if (in->a[i].committed)
				drop_blob_if_unused(srv, in->a[i].sha);
	blob_gc_unlock(srv->blobs);
	json_decref(arrays);
	return st;
}

static enum MHD_Result respond_created(struct request *rq, json_t *body, const char *id)
{
	char location[128];
	snprintf(location, sizeof location, "/v1/datasets/%s", id);
	char *text = json_dumps(body, API_JSON_FLAGS);
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
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(len + 1, with_newline, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(with_newline);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, location);
	return api_respond_response(rq, MHD_HTTP_CREATED, resp);
}

/* Refusals drop the upload's temp file before answering: a client that
 * reads the 400 must find tmp/ already empty (the completion callback, which
 * would also remove it, runs after the answer is sent). */
static void drop_upload(struct request *rq)
{
	blob_writer_abort(rq->upload);
	rq->upload = NULL;
}

static enum MHD_Result refuse(struct request *rq, const struct nn_err *e)
{
	drop_upload(rq);
	return api_respond_err(rq, e);
}

enum MHD_Result api_datasets_post(struct request *rq)
{
	struct api_server *srv = rq->srv;
	struct nn_err e = {0};
	json_t *summary = NULL;
	struct ds_ingest *in = NULL;
	enum MHD_Result rc;
	char id[STORE_ID_CAP];
	const char *name = query_arg(rq, "name");
	const char *array = query_arg(rq, "array");
	const char *model = query_arg(rq, "model");

	if (name && strlen(name) > DS_NAME_CAP) {
		drop_upload(rq);
		return api_respond_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_name", "name",
					 "name must be at most %d bytes", DS_NAME_CAP);
	}
	if (array && !valid_array_name(array)) {
		drop_upload(rq);
		return api_respond_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_query", "array",
					 "array must match [A-Za-z0-9_.-]{1,63}");
	}
	if (!rq->upload || blob_writer_size(rq->upload) == 0) {
		drop_upload(rq);
		return api_respond_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_dataset", "",
					 "empty body: send the .npy or .npz file's bytes "
					 "(curl --data-binary @data.npz)");
	}
	if (model) {
		char sha[65];
		if (store_model_blob(srv->store, tenant_of(rq), model, sha, &summary, &e) != NN_OK) {
			drop_upload(rq);
			if (e.status == NN_ENOTFOUND)
				return api_respond_error(rq, MHD_HTTP_BAD_REQUEST, "unknown_model",
							 "model", "no model with id '%.64s'", model);
			return api_respond_err(rq, &e);
		}
	}
	const json_t *model_input = json_array_get(json_object_get(summary, "inputs"), 0);
	if (model && !json_is_object(model_input)) {
		json_decref(summary);
		drop_upload(rq);
		return api_respond_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_dataset", "model",
					 "model %s has no graph input to check the dataset against",
					 model);
	}
	in = calloc(1, sizeof *in);
	if (!in) {
		json_decref(summary);
		drop_upload(rq);
		return api_respond_error(rq, MHD_HTTP_SERVICE_UNAVAILABLE, "out_of_memory", "",
					 "out of memory");
	}
	enum nn_status st = ingest(rq, model_input, in, &e);
	json_decref(summary);
	if (st == NN_OK)
		st = store_ingest(rq, name ? name : "", in, id, &e);
	if (st != NN_OK) {
		ingest_free(in);
		return refuse(rq, &e);
	}
	json_t *fields = json_pack("{s:s, s:s, s:s, s:I, s:I, s:i}", "dataset", id, "format",
				   in->format, "sha256", in->sha, "size", (json_int_t)in->size,
				   "samples", (json_int_t)in->samples, "arrays", (int)in->n);
	api_log(srv, API_LOG_INFO, "dataset uploaded", fields);
	json_decref(fields);
	ingest_free(in);
	json_t *view = NULL;
	if (store_dataset_get(srv->store, tenant_of(rq), id, &view, &e) != NN_OK)
		return api_respond_err(rq, &e);
	rc = respond_created(rq, view, id);
	return rc;
}

enum MHD_Result api_datasets_list(struct request *rq)
{
	const char *text = query_arg(rq, "limit");
	int limit = DS_LIST_DEFAULT_LIMIT;
	if (text) {
		char *end;
		errno = 0;
		long v = strtol(text, &end, 10);
		if (errno || *end || end == text || v < 1 || v > DS_LIST_MAX_LIMIT)
			return api_respond_error(rq, MHD_HTTP_BAD_REQUEST, "invalid_query", "limit",
						 "limit must be an integer in [1, %d]",
						 DS_LIST_MAX_LIMIT);
		limit = (int)v;
	}
	json_t *out = NULL;
	struct nn_err e = {0};
	if (store_dataset_list(rq->srv->store, tenant_of(rq), query_arg(rq, "after"), limit, &out,
			       &e) != NN_OK)
		return api_respond_err(rq, &e);
	return api_respond_json(rq, MHD_HTTP_OK, out);
}

enum MHD_Result api_datasets_get(struct request *rq)
{
	json_t *out = NULL;
	struct nn_err e = {0};
	if (store_dataset_get(rq->srv->store, tenant_of(rq), rq->id, &out, &e) != NN_OK)
		return api_respond_err(rq, &e);
	return api_respond_json(rq, MHD_HTTP_OK, out);
}

enum MHD_Result api_datasets_delete(struct request *rq)
{
	struct api_server *srv = rq->srv;
	struct nn_err e = {0};
	json_t *shas = NULL;
	blob_gc_lock(srv->blobs);
	enum nn_status st = store_dataset_delete(srv->store, tenant_of(rq), rq->id, &shas, &e);
	if (st == NN_OK) {
		size_t i;
		json_t *sha;
		json_array_foreach(shas, i, sha) {
			if (json_is_string(sha))
				drop_blob_if_unused(srv, json_string_value(sha));
		}
	}
	blob_gc_unlock(srv->blobs);
	json_decref(shas);
	if (st != NN_OK)
		return api_respond_err(rq, &e);
	struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
	return api_respond_response(rq, MHD_HTTP_NO_CONTENT, resp);
}
