/* store_datasets: dataset rows and their arrays (see store_datasets.h for the
 * contract and docs/internals/store.md for the schema).
 *
 * Owns nothing but its queries: each function borrows a connection from the
 * pool (store.c) and uses the helpers of store_db.h. A dataset is two kinds of
 * row: one in `datasets` and one per array in `dataset_arrays` (position keeps
 * the upload's order); both are written and removed in one transaction.
 * Threading: as store.c says; changes take write_mu through sdb_tx_write. */
#include "store_datasets.h"
#include "store_db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DATASET_MAX_ARRAYS 1024
#define DATASET_MAX_DIMS 8

/* Names the API accepts for an array: [A-Za-z0-9_.-]{1,63}. */
static bool valid_array_name(const char *n)
{
	size_t len = strlen(n);
	if (len == 0 || len > 63)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = n[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return false;
	}
	return true;
}

/* One array entry of store_dataset_insert's input: checks it and dumps its
 * shape as compact JSON text (malloc'd into *shape_text). */
static enum nn_status check_array(const char *name, const json_t *a, int64_t samples,
				  char **shape_text, struct nn_err *e)
{
	*shape_text = NULL;
	if (!valid_array_name(name))
		return err_set(e, NN_EINVAL, "invalid", "arrays",
			       "array name '%.64s' must match [A-Za-z0-9_.-]{1,63}", name);
	if (!json_is_object(a))
		return err_set(e, NN_EINVAL, "invalid", "arrays", "array %s: not an object", name);
	const json_t *dtype = json_object_get(a, "dtype");
	const json_t *shape = json_object_get(a, "shape");
	const json_t *sha = json_object_get(a, "sha256");
	const json_t *bytes = json_object_get(a, "bytes");
	if (!json_is_string(dtype) || json_string_length(dtype) == 0 ||
	    json_string_length(dtype) > 32)
		return err_set(e, NN_EINVAL, "invalid", "arrays", "array %s: dtype must be a string",
			       name);
	if (!json_is_string(sha) || !sdb_is_sha_hex(json_string_value(sha)))
		return err_set(e, NN_EINVAL, "invalid", "arrays",
			       "array %s: sha256 must be 64 lowercase hex digits", name);
	if (bytes && (!json_is_integer(bytes) || json_integer_value(bytes) < 0))
		return err_set(e, NN_EINVAL, "invalid", "arrays",
			       "array %s: bytes must be a non-negative integer", name);
	size_t nd = json_array_size(shape);
	if (!json_is_array(shape) || nd == 0 || nd > DATASET_MAX_DIMS)
		return err_set(e, NN_EINVAL, "invalid", "arrays",
			       "array %s: shape must have 1 to %d dimensions", name,
			       DATASET_MAX_DIMS);
	for (size_t i = 0; i < nd; i++) {
		const json_t *d = json_array_get(shape, i);
		if (!json_is_integer(d) || json_integer_value(d) < 0)
			return err_set(e, NN_EINVAL, "invalid", "arrays",
				       "array %s: shape[%zu] must be a non-negative integer", name,
				       i);
	}
	if (json_integer_value(json_array_get(shape, 0)) != samples)
		return err_set(e, NN_EINVAL, "invalid", "arrays",
			       "array %s has %lld samples, the dataset %lld", name,
			       (long long)json_integer_value(json_array_get(shape, 0)),
			       (long long)samples);
	*shape_text = sdb_dump(shape);
	return *shape_text ? NN_OK : sdb_oom(e);
}

enum nn_status store_dataset_insert(struct store *s, const char *tenant, const char *name,
				    const char *format, const char *sha256, int64_t size,
				    int64_t samples, const json_t *arrays, char id_out[STORE_ID_CAP],
				    struct nn_err *e)
{
	if (!format || (strcmp(format, "npy") != 0 && strcmp(format, "npz") != 0))
		return err_set(e, NN_EINVAL, "invalid", "format", "format must be npy or npz");
	if (!sdb_is_sha_hex(sha256))
		return err_set(e, NN_EINVAL, "invalid", "sha256", "not 64 lowercase hex digits");
	if (size < 0)
		return err_set(e, NN_EINVAL, "invalid", "size", "negative size");
	if (samples < 1)
		return err_set(e, NN_EINVAL, "invalid", "samples", "a dataset needs at least 1 sample");
	if (!json_is_object(arrays) || json_object_size(arrays) == 0 ||
	    json_object_size(arrays) > DATASET_MAX_ARRAYS)
		return err_set(e, NN_EINVAL, "invalid", "arrays",
			       "arrays must be an object of 1 to %d arrays", DATASET_MAX_ARRAYS);
	if (name) {
		json_t *probe = json_string(name); /* NULL unless valid UTF-8 */
		if (!probe)
			return err_set(e, NN_EINVAL, "invalid", "name", "name is not valid UTF-8");
		json_decref(probe);
	}
	const char *key;
	const json_t *a;
	json_object_foreach ((json_t *)arrays, key, a) {
		char *shape_text = NULL;
		enum nn_status st = check_array(key, a, samples, &shape_text, e);
		free(shape_text);
		if (st)
			return st;
	}

	char id[STORE_ID_CAP];
	store_new_id("ds_", id);
	struct conn *c = NULL;
	char *shape_text = NULL;
	enum nn_status st = sdb_conn_get(s, &c, e);
	if (st)
		goto out;
	if ((st = sdb_tx_write(c, e)))
		goto out;
	if ((st = sdb_run(c,
			  "INSERT INTO datasets(id, tenant_id, seq, name, format, sha256, size,"
			  " samples, created_at) VALUES (?, ?,"
			  " (SELECT COALESCE(MAX(seq), 0) + 1 FROM datasets), ?, ?, ?, ?, ?, " NOW ")",
			  NULL, e, "sssssii", id, tenant, name, format, sha256, size, samples)))
		goto out;
	int pos = 0;
	json_object_foreach ((json_t *)arrays, key, a) {
		if ((st = check_array(key, a, samples, &shape_text, e)))
			goto out;
		const json_t *bytes = json_object_get(a, "bytes");
		if ((st = sdb_run(c,
				  "INSERT INTO dataset_arrays(dataset_id, position, name, dtype,"
				  " shape, sha256, bytes) VALUES (?, ?, ?, ?, ?, ?, ?)",
				  NULL, e, "snssssi", id, pos, key,
				  json_string_value(json_object_get(a, "dtype")), shape_text,
				  json_string_value(json_object_get(a, "sha256")),
				  (int64_t)(bytes ? json_integer_value(bytes) : 0))))
			goto out;
		free(shape_text);
		shape_text = NULL;
		pos++;
	}
	if ((st = sdb_tx_commit(c, e)))
		goto out;
	memcpy(id_out, id, sizeof id);
out:
	free(shape_text);
	sdb_conn_put(c);
	return st;
}

/* The arrays of one dataset, in upload order: {"<name>": {"dtype","shape"
 * [,"sha256","bytes"]}}. with_blobs adds what a worker needs. */
static enum nn_status read_arrays(struct conn *c, const char *id, bool with_blobs, json_t **out,
				  struct nn_err *e)
{
	*out = NULL;
	sqlite3_stmt *q = NULL;
	json_t *arrays = json_object();
	enum nn_status st = NN_OK;
	if (!arrays)
		return sdb_oom(e);
	if ((st = sdb_query(c,
			    "SELECT name, dtype, shape, sha256, bytes FROM dataset_arrays"
			    " WHERE dataset_id = ? ORDER BY position",
			    &q, e, "s", id)))
		goto out;
	for (;;) {
		bool row, bad = false;
		if ((st = sdb_row(c, q, &row, e)))
			goto out;
		if (!row)
			break;
		const char *name = sdb_col_text(q, 0);
		json_t *shape = sdb_col_json(q, 2, &bad);
		if (bad || !name || !json_is_array(shape)) {
			json_decref(shape);
			st = err_set(e, NN_EIO, "db_error", NULL,
				     "dataset %s: stored array is corrupt", id);
			goto out;
		}
		json_t *a = json_object();
		if (!a || json_object_set_new(arrays, name, a) ||
		    json_object_set_new(a, "dtype", sdb_col_json_str(q, 1)) ||
		    json_object_set_new(a, "shape", shape) ||
		    (with_blobs &&
		     (json_object_set_new(a, "sha256", sdb_col_json_str(q, 3)) ||
		      json_object_set_new(a, "bytes", json_integer(sqlite3_column_int64(q, 4)))))) {
			st = sdb_oom(e);
			goto out;
		}
	}
	*out = arrays;
	arrays = NULL;
out:
	sdb_done(q);
	json_decref(arrays);
	return st;
}

/* API view of the current row of q (columns id, name, format, sha256, size,
 * samples, created_at), arrays read on the same connection. */
static enum nn_status view_of_row(struct conn *c, sqlite3_stmt *q, json_t **out, struct nn_err *e)
{
	*out = NULL;
	const char *id = sdb_col_text(q, 0);
	if (!id)
		return err_set(e, NN_EIO, "db_error", NULL, "dataset row without an id");
	json_t *o = json_object();
	if (!o || json_object_set_new(o, "id", sdb_col_json_str(q, 0)) ||
	    json_object_set_new(o, "name", sdb_col_json_str(q, 1)) ||
	    json_object_set_new(o, "format", sdb_col_json_str(q, 2)) ||
	    json_object_set_new(o, "sha256", sdb_col_json_str(q, 3)) ||
	    json_object_set_new(o, "size", json_integer(sqlite3_column_int64(q, 4))) ||
	    json_object_set_new(o, "samples", json_integer(sqlite3_column_int64(q, 5)))) {
		json_decref(o);
		return sdb_oom(e);
	}
	/* created_at is read before the nested query steps another statement. */
	json_t *created = sdb_col_json_str(q, 6);
	json_t *arrays = NULL;
	enum nn_status st = read_arrays(c, json_string_value(json_object_get(o, "id")), false,
					&arrays, e);
	if (st) {
		json_decref(created);
		json_decref(o);
		return st;
	}
	if (json_object_set_new(o, "arrays", arrays) ||
	    json_object_set_new(o, "created_at", created)) {
		json_decref(o);
		return sdb_oom(e);
	}
	*out = o;
	return NN_OK;
}

enum nn_status store_dataset_get(struct store *s, const char *tenant, const char *id,
				 json_t **out, struct nn_err *e)
{
	*out = NULL;
	if (!sdb_fits_id(id))
		return err_set(e, NN_ENOTFOUND, "not_found", NULL, "no dataset '%.64s'",
			       id ? id : "");
	struct conn *c = NULL;
	sqlite3_stmt *q = NULL;
	bool row;
	enum nn_status st = sdb_conn_get(s, &c, e);
	if (st)
		return st;
	/* One snapshot for the row and its arrays. */
	if ((st = sdb_tx_read(c, e)))
		goto out;
	if ((st = sdb_query(c,
			    "SELECT id, name, format, sha256, size, samples, created_at FROM datasets"
			    " WHERE tenant_id = ? AND id = ?",
			    &q, e, "ss", tenant, id)))
		goto out;
	if ((st = sdb_row(c, q, &row, e)))
		goto out;
	if (!row) {
		st = err_set(e, NN_ENOTFOUND, "not_found", NULL, "no dataset '%s'", id);
		goto out;
	}
	st = view_of_row(c, q, out, e);
out:
	sdb_done(q);
	sdb_conn_put(c);
	return st;
}

enum nn_status store_dataset_list(struct store *s, const char *tenant, const char *after,
				  int limit, json_t **out, struct nn_err *e)
{
	*out = NULL;
	int64_t cursor = 0;
	enum nn_status st = sdb_parse_cursor(after, &cursor, e);
	if (st || (st = sdb_check_limit(limit, e)))
		return st;
	struct conn *c = NULL;
	sqlite3_stmt *q = NULL;
	json_t *res = json_object(), *arr = json_array();
	if (!res || !arr || json_object_set(res, "datasets", arr)) {
		st = sdb_oom(e);
		goto out;
	}
	if ((st = sdb_conn_get(s, &c, e)))
		goto out;
	if ((st = sdb_tx_read(c, e)))
		goto out;
	/* One more row than asked tells whether there is a next page. */
	if ((st = sdb_query(c,
			    "SELECT id, name, format, sha256, size, samples, created_at, seq"
			    " FROM datasets WHERE tenant_id = ? AND seq < ?"
			    " ORDER BY seq DESC LIMIT ?",
			    &q, e, "sin", tenant, cursor, limit + 1)))
		goto out;
	int n = 0;
	int64_t last_seq = 0;
	bool more = false;
	for (;;) {
		bool row;
		if ((st = sdb_row(c, q, &row, e)))
			goto out;
		if (!row)
			break;
		if (n == limit) {
			more = true;
			break;
		}
		json_t *v = NULL;
		if ((st = view_of_row(c, q, &v, e)))
			goto out;
		if (json_array_append_new(arr, v)) {
			st = sdb_oom(e);
			goto out;
		}
		last_seq = sqlite3_column_int64(q, 7);
		n++;
	}
	st = sdb_page_finish(&res, more, last_seq, out, e);
out:
	sdb_done(q);
	sdb_conn_put(c);
	json_decref(arr);
	json_decref(res);
	return st;
}

enum nn_status store_dataset_arrays(struct store *s, const char *tenant, const char *id,
				    json_t **out, struct nn_err *e)
{
	*out = NULL;
	if (!sdb_fits_id(id))
		return err_set(e, NN_ENOTFOUND, "not_found", NULL, "no dataset '%.64s'",
			       id ? id : "");
	struct conn *c = NULL;
	sqlite3_stmt *q = NULL;
	bool row;
	enum nn_status st = sdb_conn_get(s, &c, e);
	if (st)
		return st;
	if ((st = sdb_tx_read(c, e)))
		goto out;
	if ((st = sdb_query(c, "SELECT 1 FROM datasets WHERE tenant_id = ? AND id = ?", &q, e, "ss",
			    tenant, id)))
		goto out;
	if ((st = sdb_row(c, q, &row, e)))
		goto out;
	sdb_done(q);
	q = NULL;
	if (!row) {
		st = err_set(e, NN_ENOTFOUND, "not_found", NULL, "no dataset '%s'", id);
		goto out;
	}
	st = read_arrays(c, id, true, out, e);
out:
	sdb_done(q);
	sdb_conn_put(c);
	return st;
}

enum nn_status store_dataset_delete(struct store *s, const char *tenant, const char *id,
				    json_t **array_shas, struct nn_err *e)
{
	if (array_shas)
		*array_shas = NULL;
	if (!sdb_fits_id(id))
		return err_set(e, NN_ENOTFOUND, "not_found", NULL, "no dataset '%.64s'",
			       id ? id : "");
	struct conn *c = NULL;
	sqlite3_stmt *q = NULL;
	bool row;
	json_t *shas = json_array();
	enum nn_status st = NN_OK;
	if (!shas)
		return sdb_oom(e);
	if ((st = sdb_conn_get(s, &c, e)))
		goto out;
	if ((st = sdb_tx_write(c, e)))
		goto out;
	if ((st = sdb_query(c, "SELECT 1 FROM datasets WHERE tenant_id = ? AND id = ?", &q, e, "ss",
			    tenant, id)))
		goto out;
	if ((st = sdb_row(c, q, &row, e)))
		goto out;
	sdb_done(q);
	q = NULL;
	if (!row) {
		st = err_set(e, NN_ENOTFOUND, "not_found", NULL, "no dataset '%s'", id);
		goto out;
	}
	/* A job names its datasets only inside its spec (top level, eval, or a
	 * step), stored verbatim; ids are random, so a substring match finds
	 * exactly the jobs that name this one. A cancel request leaves the job
	 * running until the worker stops, so it still counts. */
	if ((st = sdb_query(c,
			    "SELECT id FROM jobs WHERE state IN ('queued', 'running')"
			    " AND instr(spec, ?) > 0 LIMIT 1",
			    &q, e, "s", id)))
		goto out;
	if ((st = sdb_row(c, q, &row, e)))
		goto out;
	if (row) {
		st = err_set(e, NN_ECONFLICT, "conflict", NULL,
			     "dataset %s is used by job %s, which is not finished", id,
			     sdb_col_text(q, 0));
		goto out;
	}
	sdb_done(q);
	q = NULL;
	if ((st = sdb_query(c, "SELECT DISTINCT sha256 FROM dataset_arrays WHERE dataset_id = ?", &q,
			    e, "s", id)))
		goto out;
	for (;;) {
		if ((st = sdb_row(c, q, &row, e)))
			goto out;
		if (!row)
			break;
		if (json_array_append_new(shas, sdb_col_json_str(q, 0))) {
			st = sdb_oom(e);
			goto out;
		}
	}
	sdb_done(q);
	q = NULL;
	if ((st = sdb_run(c, "DELETE FROM dataset_arrays WHERE dataset_id = ?", NULL, e, "s", id)))
		goto out;
	if ((st = sdb_run(c, "DELETE FROM datasets WHERE id = ?", NULL, e, "s", id)))
		goto out;
	if ((st = sdb_tx_commit(c, e)))
		goto out;
	if (array_shas) {
		*array_shas = shas;
		shas = NULL;
	}
out:
	sdb_done(q);
	sdb_conn_put(c);
	json_decref(shas);
	return st;
}
