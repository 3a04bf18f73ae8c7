/* store_models: model rows (see store_models.h for the contract and
 * docs/internals/store.md for the schema and the soft delete).
 *
 * Owns nothing but its queries: each function borrows a connection from the
 * pool (store.c) and uses the helpers of store_db.h.
 * Threading: as store.c says; changes take write_mu through sdb_tx_write. */
#include "store_models.h"
#include "store_db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- models ---- */

enum nn_status store_model_insert(struct store *s, const char *tenant, const char *name,
				  const char *sha256, int64_t size, const json_t *summary,
				  char id_out[STORE_ID_CAP], struct nn_err *e)
{
	if (!sdb_is_sha_hex(sha256))
		return err_set(e, NN_EINVAL, "invalid", "sha256", "not 64 lowercase hex digits");
	if (size < 0)
		return err_set(e, NN_EINVAL, "invalid", "size", "negative size");
	if (summary && !json_is_object(summary))
		return err_set(e, NN_EINVAL, "invalid", "summary", "summary must be an object");
	if (name) {
		json_t *probe = json_string(name); /* NULL unless valid UTF-8 */
		if (!probe)
			return err_set(e, NN_EINVAL, "invalid", "name", "name is not valid UTF-8");
		json_decref(probe);
	}
	char *sum = sdb_dump(summary);
	if (summary && !sum)
		return sdb_oom(e);
	char id[STORE_ID_CAP];
	store_new_id("mdl_", id);
	struct conn *c = NULL;
	enum nn_status st = sdb_conn_get(s, &c, e);
	if (st)
		goto out;
	if ((st = sdb_tx_write(c, e)))
		goto out;
	st = sdb_run(c,
		    "INSERT INTO models(id, tenant_id, name, sha256, size, summary, created_at, seq)"
		    " VALUES (?, ?, ?, ?, ?, ?, " NOW ","
		    " (SELECT COALESCE(MAX(seq), 0) + 1 FROM models))",
		    NULL, e, "ssssis", id, tenant, name, sha256, size, sum);
	if (st)
		goto out;
	if ((st = sdb_tx_commit(c, e)))
		goto out;
	memcpy(id_out, id, sizeof id);
out:
	sdb_conn_put(c);
	free(sum);
	return st;
}

enum nn_status store_model_get(struct store *s, const char *tenant, const char *id, json_t **out,
			       struct nn_err *e)
{
	*out = NULL;
	if (!sdb_fits_id(id))
		return err_set(e, NN_ENOTFOUND, "not_found", NULL, "no model '%.64s'", id ? id : "");
	struct conn *c = NULL;
	sqlite3_stmt *q = NULL;
	json_t *o = NULL;
	bool row, bad = false;
	enum nn_status st = sdb_conn_get(s, &c, e);
	if (st)
		return st;
	if ((st = sdb_query(c,
		     "SELECT id, name, sha256, size, created_at, summary FROM models"
		     " WHERE tenant_id = ? AND id = ? AND deleted_at IS NULL",
		     &q, e, "ss", tenant, id)))
		goto out;
	if ((st = sdb_row(c, q, &row, e)))
		goto out;
	if (!row) {
		st = err_set(e, NN_ENOTFOUND, "not_found", NULL, "no model '%s'", id);
		goto out;
	}
	json_t *sum = sdb_col_json(q, 5, &bad);
	if (bad) {
		st = err_set(e, NN_EIO, "db_error", NULL, "model %s: stored summary is corrupt", id);
		goto out;
	}
	/* Core fields first (they read first in a terminal) and they win over
	 * summary keys of the same name. */
	o = json_object();
	if (!o || json_object_set_new(o, "id", sdb_col_json_str(q, 0)) ||
	    json_object_set_new(o, "name", sdb_col_json_str(q, 1)) ||
	    json_object_set_new(o, "sha256", sdb_col_json_str(q, 2)) ||
	    json_object_set_new(o, "size", json_integer(sqlite3_column_int64(q, 3))) ||
	    json_object_set_new(o, "created_at", sdb_col_json_str(q, 4)) ||
	    (json_is_object(sum) && json_object_update_missing(o, sum))) {
		json_decref(sum);
		st = sdb_oom(e);
		goto out;
	}
	json_decref(sum);
	*out = o;
	o = NULL;
out:
	sdb_done(q);
	sdb_conn_put(c);
	json_decref(o);
	return st;
}

enum nn_status store_model_list(struct store *s, const char *tenant, const char *after, int limit,
				json_t **out, struct nn_err *e)
{
	*out = NULL;
	int64_t cursor = 0;
	enum nn_status st = sdb_parse_cursor(after, &cursor, e);
	if (st || (st = sdb_check_limit(limit, e)))
		return st;
	struct conn *c = NULL;
	sqlite3_stmt *q = NULL;
	json_t *res = json_object(), *arr = json_array();
	if (!res || !arr || json_object_set(res, "models", arr)) {
		st = sdb_oom(e);
		goto out;
	}
	if ((st = sdb_conn_get(s, &c, e)))
		goto out;
	/* One more row than asked tells whether there is a next page. */
	if ((st = sdb_query(c,
		     "SELECT id, name, sha256, size, created_at, seq FROM models"
		     " WHERE tenant_id = ? AND deleted_at IS NULL AND seq < ?"
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
		json_t *m = json_object();
		if (!m || json_array_append_new(arr, m) ||
		    json_object_set_new(m, "id", sdb_col_json_str(q, 0)) ||
		    json_object_set_new(m, "name", sdb_col_json_str(q, 1)) ||
		    json_object_set_new(m, "sha256", sdb_col_json_str(q, 2)) ||
		    json_object_set_new(m, "size", json_integer(sqlite3_column_int64(q, 3))) ||
		    json_object_set_new(m, "created_at", sdb_col_json_str(q, 4))) {
			st = sdb_oom(e);
			goto out;
		}
		last_seq = sqlite3_column_int64(q, 5);
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

enum nn_status store_model_delete(struct store *s, const char *tenant, const char *id,
				  char sha_out[65], struct nn_err *e)
{
	if (!sdb_fits_id(id))
		return err_set(e, NN_ENOTFOUND, "not_found", NULL, "no model '%.64s'", id ? id : "");
	struct conn *c = NULL;
	sqlite3_stmt *q = NULL;
	bool row;
	char sha[65];
	enum nn_status st = sdb_conn_get(s, &c, e);
	if (st)
		return st;
	if ((st = sdb_tx_write(c, e)))
		goto out;
	if ((st = sdb_query(c,
		     "SELECT sha256 FROM models WHERE tenant_id = ? AND id = ? AND deleted_at IS NULL",
		     &q, e, "ss", tenant, id)))
		goto out;
	if ((st = sdb_row(c, q, &row, e)))
		goto out;
	if (!row) {
		st = err_set(e, NN_ENOTFOUND, "not_found", NULL, "no model '%s'", id);
		goto out;
	}
	if (!sdb_col_copy(q, 0, sha, sizeof sha)) {
		st = err_set(e, NN_EIO, "db_error", NULL, "model %s: stored sha256 is corrupt", id);
		goto out;
	}
	sdb_done(q);
	if ((st = sdb_query(c,
		     "SELECT id FROM jobs WHERE model_id = ? AND state IN ('queued', 'running')"
		     " LIMIT 1",
		     &q, e, "s", id)))
		goto out;
	if ((st = sdb_row(c, q, &row, e)))
		goto out;
	if (row) {
		st = err_set(e, NN_ECONFLICT, "conflict", NULL,
			     "model %s is used by job %s, which is not finished", id, sdb_col_text(q, 0));
		goto out;
	}
	sdb_done(q);
	q = NULL;
	/* Soft delete: finished jobs keep a valid model_id; the row is hidden
	 * from every read from now on. */
	if ((st = sdb_run(c, "UPDATE models SET deleted_at = " NOW " WHERE id = ?", NULL, e, "s",
			 id)))
		goto out;
	if ((st = sdb_tx_commit(c, e)))
		goto out;
	if (sha_out)
		memcpy(sha_out, sha, sizeof sha);
out:
	sdb_done(q);
	sdb_conn_put(c);
	return st;
}

enum nn_status store_model_blob(struct store *s, const char *tenant, const char *id,
				char sha_out[65], json_t **summary_out, struct nn_err *e)
{
	if (summary_out)
		*summary_out = NULL;
	if (!sdb_fits_id(id))
		return err_set(e, NN_ENOTFOUND, "not_found", NULL, "no model '%.64s'", id ? id : "");
	struct conn *c = NULL;
	sqlite3_stmt *q = NULL;
	bool row, bad = false;
	enum nn_status st = sdb_conn_get(s, &c, e);
	if (st)
		return st;
	if ((st = sdb_query(c,
		     "SELECT sha256, summary FROM models"
		     " WHERE tenant_id = ? AND id = ? AND deleted_at IS NULL",
		     &q, e, "ss", tenant, id)))
		goto out;
	if ((st = sdb_row(c, q, &row, e)))
		goto out;
	if (!row) {
		st = err_set(e, NN_ENOTFOUND, "not_found", NULL, "no model '%s'", id);
		goto out;
	}
	if (!sdb_col_copy(q, 0, sha_out, 65)) {
		st = err_set(e, NN_EIO, "db_error", NULL, "model %s: stored sha256 is corrupt", id);
		goto out;
	}
	if (summary_out) {
		json_t *sum = sdb_col_json(q, 1, &bad);
		if (bad) {
			st = err_set(e, NN_EIO, "db_error", NULL,
				     "model %s: stored summary is corrupt", id);
			goto out;
		}
		if (json_is_null(sum)) {
			json_decref(sum);
			sum = json_object();
		}
		if (!sum) {
			st = sdb_oom(e);
			goto out;
		}
		*summary_out = sum;
	}
out:
	sdb_done(q);
	sdb_conn_put(c);
	return st;
}
