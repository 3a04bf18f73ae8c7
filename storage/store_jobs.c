/* store_jobs: jobs, their steps (job_metrics) and events, the worker's calls
 * and artifacts (see store_jobs.h for the contract and
 * docs/internals/store.md for the job life cycle).
 *
 * Owns nothing but its queries: each function borrows a connection from the
 * pool (store.c) and uses the helpers of store_db.h.
 * Threading: as store.c says; every state change runs in one write
 * transaction (sdb_tx_write takes write_mu), which is what keeps two claimers
 * from getting the same job. */
#include "store_jobs.h"
#include "store_db.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A job that was running when the process died this many times is failed at
 * start-up instead of being queued again: one model that crashes the daemon
 * must not put it in a restart loop. */
#define STORE_MAX_ATTEMPTS 5

static bool valid_state(const char *st)
{
	static const char *const states[] = {"queued", "running", "succeeded", "failed",
					     "canceled"};
	for (size_t i = 0; st && i < sizeof states / sizeof states[0]; i++)
		if (strcmp(st, states[i]) == 0)
			return true;
	return false;
}

static bool valid_step_state(const char *st)
{
	static const char *const states[] = {"pending",	 "running",  "succeeded",
					     "failed",	 "canceled", "skipped"};
	for (size_t i = 0; st && i < sizeof states / sizeof states[0]; i++)
		if (strcmp(st, states[i]) == 0)
			return true;
	return false;
}

/* ---- jobs ---- */

enum nn_status store_job_insert(struct store *s, const char *tenant, const char *model_id,
				const json_t *spec, char id_out[STORE_ID_CAP], struct nn_err *e)
{
	if (!json_is_object(spec))
		return err_set(e, NN_EINVAL, "invalid_spec", NULL, "the spec must be a JSON object");
	/* No steps is a job that only evaluates its model. */
	const json_t *steps = json_object_get(spec, "steps");
	if (steps && !json_is_array(steps))
		return err_set(e, NN_EINVAL, "invalid_spec", "steps", "must be an array");
	for (size_t i = 0; i < json_array_size(steps); i++) {
		const json_t *op = json_object_get(json_array_get(steps, i), "op");
		if (!json_is_string(op)) {
			char field[48];
			snprintf(field, sizeof field, "steps[%zu].op", i);
			return err_set(e, NN_EINVAL, "invalid_spec", field, "must be a string");
		}
	}
	if (json_array_size(steps) > INT_MAX)
		return err_set(e, NN_EINVAL, "invalid_spec", "steps", "too many steps");
	if (!sdb_fits_id(model_id))
		return err_set(e, NN_ENOTFOUND, "not_found", "model", "no model '%.64s'",
			       model_id ? model_id : "");
	char *text = sdb_dump(spec);
	if (!text)
		return sdb_oom(e);
	char id[STORE_ID_CAP];
	store_new_id("job_", id);
	struct conn *c = NULL;
	sqlite3_stmt *q = NULL;
	bool row;
	enum nn_status st = sdb_conn_get(s, &c, e);
	if (st)
		goto out;
	if ((st = sdb_tx_write(c, e)))
		goto out;
	/* Checked inside the write transaction so a concurrent delete of the
	 * model cannot slip between the check and the insert. */
	if ((st = sdb_query(c,
		     "SELECT 1 FROM models WHERE tenant_id = ? AND id = ? AND deleted_at IS NULL",
		     &q, e, "ss", tenant, model_id)))
		goto out;
	if ((st = sdb_row(c, q, &row, e)))
		goto out;
	sdb_done(q);
	q = NULL;
	if (!row) {
		st = err_set(e, NN_ENOTFOUND, "not_found", "model", "no model '%s'", model_id);
		goto out;
	}
	if ((st = sdb_run(c,
			 "INSERT INTO jobs(id, tenant_id, model_id, spec, state, created_at, seq)"
			 " VALUES (?, ?, ?, ?, 'queued', " NOW ","
			 " (SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs))",
			 NULL, e, "ssss", id, tenant, model_id, text)))
		goto out;
	for (size_t i = 0; i < json_array_size(steps); i++) {
		const char *op = json_string_value(json_object_get(json_array_get(steps, i), "op"));
		if ((st = sdb_run(c,
				 "INSERT INTO job_metrics(job_id, step_index, op, state, updated_at)"
				 " VALUES (?, ?, ?, 'pending', " NOW ")",
				 NULL, e, "sns", id, (int)i, op)))
			goto out;
	}
	if ((st = sdb_tx_commit(c, e)))
		goto out;
	memcpy(id_out, id, sizeof id);
out:
	sdb_done(q);
	sdb_conn_put(c);
	free(text);
	return st;
}

#define JOB_COLS                                                                          \
	"id, model_id, state, progress, error_code, error_message, spec, created_at,"     \
	" started_at, finished_at, seq, input_metrics"

/* o["metrics"] = {"input": the input model's evaluation, "output": the last
 * step's (the input's when there are no steps)}, or null when the job
 * evaluates nothing (yet). */
static enum nn_status job_metrics_view(sqlite3_stmt *q, const json_t *steps, json_t *o,
				       struct nn_err *e)
{
	bool bad = false;
	json_t *input = sdb_col_json(q, 11, &bad);
	if (bad)
		return err_set(e, NN_EIO, "db_error", NULL, "job %s: stored JSON is corrupt",
			       sqlite3_column_text(q, 0));
	if (json_is_null(input)) {
		json_decref(input);
		input = NULL;
	}
	json_t *output = NULL;
	size_t n = json_array_size(steps);
	if (n == 0)
		output = input;
	else
		output = json_object_get(json_object_get(json_array_get(steps, n - 1), "metrics"),
					 "eval");
	if (json_is_null(output))
		output = NULL;
	if (!input && !output)
		return NN_OK;
	json_t *m = json_pack("{s:O?, s:O?}", "input", input, "output", output);
	json_decref(input);
	if (!m || json_object_set_new(o, "metrics", m))
		return sdb_oom(e);
	return NN_OK;
}

/* Builds the API view of the job at the current row of q (JOB_COLS). */
static enum nn_status job_view(struct conn *c, sqlite3_stmt *q, bool with_spec, json_t **out,
			       struct nn_err *e)
{
	const char *id = sdb_col_text(q, 0);
	sqlite3_stmt *sub = NULL;
	bool bad = false;
	enum nn_status st = NN_OK;
	json_t *o = json_object(), *steps = json_array(), *arts = json_array(), *err;
	if (!o || !steps || !arts)
		goto nomem;
	if (sqlite3_column_type(q, 4) == SQLITE_NULL) {
		err = json_null();
	} else {
		err = json_object();
		if (err && (json_object_set_new(err, "code", sdb_col_json_str(q, 4)) ||
			    json_object_set_new(err, "message", sdb_col_json_str(q, 5)))) {
			json_decref(err);
			err = NULL;
		}
	}
	if (json_object_set_new(o, "id", sdb_col_json_str(q, 0)) ||
	    json_object_set_new(o, "model", sdb_col_json_str(q, 1)) ||
	    json_object_set_new(o, "state", sdb_col_json_str(q, 2)) ||
	    json_object_set_new(o, "progress", json_real(sqlite3_column_double(q, 3))) ||
	    json_object_set_new(o, "error", err) || json_object_set_new(o, "metrics", json_null()) ||
	    json_object_set(o, "steps", steps) ||
	    json_object_set(o, "artifacts", arts))
		goto nomem;
	if (with_spec) {
		json_t *spec = sdb_col_json(q, 6, &bad);
		if (bad)
			goto corrupt;
		if (json_object_set_new(o, "spec", spec))
			goto nomem;
	}
	if (json_object_set_new(o, "created_at", sdb_col_json_str(q, 7)) ||
	    json_object_set_new(o, "started_at", sdb_col_json_str(q, 8)) ||
	    json_object_set_new(o, "finished_at", sdb_col_json_str(q, 9)))
		goto nomem;

	if ((st = sdb_query(c,
		     "SELECT op, state, metrics FROM job_metrics WHERE job_id = ?"
		     " ORDER BY step_index",
		     &sub, e, "s", id)))
		goto fail;
	for (;;) {
		bool row;
		if ((st = sdb_row(c, sub, &row, e)))
			goto fail;
		if (!row)
			break;
		json_t *step = json_object();
		if (!step || json_array_append_new(steps, step) ||
		    json_object_set_new(step, "op", sdb_col_json_str(sub, 0)) ||
		    json_object_set_new(step, "state", sdb_col_json_str(sub, 1)))
			goto nomem;
		json_t *m = sdb_col_json(sub, 2, &bad);
		if (bad)
			goto corrupt;
		if (json_object_set_new(step, "metrics", m))
			goto nomem;
	}
	sdb_done(sub);
	sub = NULL;
	if ((st = job_metrics_view(q, steps, o, e)))
		goto fail;
	if ((st = sdb_query(c,
		     "SELECT id, sha256, size, format, zstd_sha256, zstd_size FROM artifacts"
		     " WHERE job_id = ?"
		     " ORDER BY created_at, id",
		     &sub, e, "s", id)))
		goto fail;
	for (;;) {
		bool row;
		if ((st = sdb_row(c, sub, &row, e)))
			goto fail;
		if (!row)
			break;
		json_t *a = json_object();
		if (!a || json_array_append_new(arts, a) ||
		    json_object_set_new(a, "id", sdb_col_json_str(sub, 0)) ||
		    json_object_set_new(a, "sha256", sdb_col_json_str(sub, 1)) ||
		    json_object_set_new(a, "size", json_integer(sqlite3_column_int64(sub, 2))) ||
		    json_object_set_new(a, "format", sdb_col_json_str(sub, 3)) ||
		    json_object_set_new(a, "zstd_sha256", sdb_col_json_str(sub, 4)) ||
		    json_object_set_new(a, "zstd_size",
					sqlite3_column_type(sub, 5) == SQLITE_NULL
						? json_null()
						: json_integer(sqlite3_column_int64(sub, 5))))
			goto nomem;
	}
	sdb_done(sub);
	json_decref(steps);
	json_decref(arts);
	*out = o;
	return NN_OK;
corrupt:
	st = err_set(e, NN_EIO, "db_error", NULL, "job %s: stored JSON is corrupt", id);
	goto fail;
nomem:
	st = sdb_oom(e);
fail:
	sdb_done(sub);
	json_decref(steps);
	json_decref(arts);
	json_decref(o);
	return st;
}

enum nn_status store_job_get(struct store *s, const char *tenant, const char *id, json_t **out,
			     struct nn_err *e)
{
	*out = NULL;
	if (!sdb_fits_id(id))
		return err_set(e, NN_ENOTFOUND, "not_found", NULL, "no job '%.64s'", id ? id : "");
	struct conn *c = NULL;
	sqlite3_stmt *q = NULL;
	bool row;
	enum nn_status st = sdb_conn_get(s, &c, e);
	if (st)
		return st;
	/* One read transaction: job row, steps and artifacts from one snapshot. */
	if ((st = sdb_tx_read(c, e)))
		goto out;
	if ((st = sdb_query(c, "SELECT " JOB_COLS " FROM jobs WHERE tenant_id = ? AND id = ?", &q, e,
		     "ss", tenant, id)))
		goto out;
	if ((st = sdb_row(c, q, &row, e)))
		goto out;
	if (!row) {
		st = err_set(e, NN_ENOTFOUND, "not_found", NULL, "no job '%s'", id);
		goto out;
	}
	st = job_view(c, q, true, out, e);
out:
	sdb_done(q);
	sdb_conn_put(c); /* ends the read transaction */
	return st;
}

enum nn_status store_job_list(struct store *s, const char *tenant, const char *state,
			      const char *after, int limit, json_t **out, struct nn_err *e)
{
	*out = NULL;
	int64_t cursor = 0;
	enum nn_status st = sdb_parse_cursor(after, &cursor, e);
	if (st || (st = sdb_check_limit(limit, e)))
		return st;
	if (state && !valid_state(state))
		return err_set(e, NN_EINVAL, "invalid", "state",
			       "must be one of queued, running, succeeded, failed, canceled");
	struct conn *c = NULL;
	sqlite3_stmt *q = NULL;
	json_t *res = json_object(), *arr = json_array();
	if (!res || !arr || json_object_set(res, "jobs", arr)) {
		st = sdb_oom(e);
		goto out;
	}
	if ((st = sdb_conn_get(s, &c, e)))
		goto out;
	if ((st = sdb_tx_read(c, e)))
		goto out;
	if (state)
		st = sdb_query(c,
			"SELECT " JOB_COLS " FROM jobs WHERE tenant_id = ? AND state = ? AND seq < ?"
			" ORDER BY seq DESC LIMIT ?",
			&q, e, "ssin", tenant, state, cursor, limit + 1);
	else
		st = sdb_query(c,
			"SELECT " JOB_COLS " FROM jobs WHERE tenant_id = ? AND seq < ?"
			" ORDER BY seq DESC LIMIT ?",
			&q, e, "sin", tenant, cursor, limit + 1);
	if (st)
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
		json_t *j = NULL;
		if ((st = job_view(c, q, false, &j, e)))
			goto out;
		if (json_array_append_new(arr, j)) {
			st = sdb_oom(e);
			goto out;
		}
		last_seq = sqlite3_column_int64(q, 10);
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

/* Reads a job's state inside the caller's transaction. NN_ENOTFOUND if absent. */
static enum nn_status job_state(struct conn *c, const char *tenant, const char *id,
				char state[16], bool *cancel_requested, char tenant_out[STORE_ID_CAP],
				struct nn_err *e)
{
	if (!sdb_fits_id(id))
		return err_set(e, NN_ENOTFOUND, "not_found", NULL, "no job '%.64s'", id ? id : "");
	sqlite3_stmt *q;
	bool row;
	enum nn_status st;
	if (tenant)
		st = sdb_query(c,
			"SELECT state, cancel_requested, tenant_id FROM jobs"
			" WHERE id = ? AND tenant_id = ?",
			&q, e, "ss", id, tenant);
	else
		st = sdb_query(c, "SELECT state, cancel_requested, tenant_id FROM jobs WHERE id = ?", &q, e,
			"s", id);
	if (st)
		return st;
	if ((st = sdb_row(c, q, &row, e)))
		return st;
	if (!row) {
		sdb_done(q);
		return err_set(e, NN_ENOTFOUND, "not_found", NULL, "no job '%s'", id);
	}
	bool ok = sdb_col_copy(q, 0, state, 16);
	if (cancel_requested)
		*cancel_requested = sqlite3_column_int(q, 1) != 0;
	if (tenant_out)
		ok = ok && sdb_col_copy(q, 2, tenant_out, STORE_ID_CAP);
	sdb_done(q);
	if (!ok)
		return err_set(e, NN_EIO, "db_error", NULL, "job %s: corrupt row", id);
	return NN_OK;
}

static bool is_finished(const char *state)
{
	return strcmp(state, "succeeded") == 0 || strcmp(state, "failed") == 0 ||
	       strcmp(state, "canceled") == 0;
}

/* Final transition inside the caller's write transaction: the job row and
 * every step that did not succeed. */
static enum nn_status job_end(struct conn *c, const char *id, const char *state,
			      const char *step_state, const char *code, const char *message,
			      struct nn_err *e)
{
	enum nn_status st = sdb_run(c,
				   "UPDATE jobs SET state = ?, error_code = ?, error_message = ?,"
				   " finished_at = " NOW " WHERE id = ?",
				   NULL, e, "ssss", state, code, message, id);
	if (st)
		return st;
	return sdb_run(c,
		      "UPDATE job_metrics SET state = ?, updated_at = " NOW
		      " WHERE job_id = ? AND state <> 'succeeded'",
		      NULL, e, "ss", step_state, id);
}

enum nn_status store_job_cancel(struct store *s, const char *tenant, const char *id,
				char now_state[16], struct nn_err *e)
{
	struct conn *c = NULL;
	char state[16];
	enum nn_status st = sdb_conn_get(s, &c, e);
	if (st)
		return st;
	if ((st = sdb_tx_write(c, e)))
		goto out;
	if ((st = job_state(c, tenant, id, state, NULL, NULL, e)))
		goto out;
	if (is_finished(state)) {
		st = err_set(e, NN_ECONFLICT, "conflict", NULL, "job is already %s", state);
		goto out;
	}
	if (strcmp(state, "queued") == 0) {
		if ((st = job_end(c, id, "canceled", "canceled", NULL, NULL, e)))
			goto out;
		snprintf(state, sizeof state, "canceled");
	} else {
		/* running: the worker sees the flag and calls store_job_mark_canceled. */
		if ((st = sdb_run(c, "UPDATE jobs SET cancel_requested = 1 WHERE id = ?", NULL, e,
				 "s", id)))
			goto out;
	}
	if ((st = sdb_tx_commit(c, e)))
		goto out;
	if (now_state)
		memcpy(now_state, state, sizeof state);
out:
	sdb_conn_put(c);
	return st;
}

enum nn_status store_job_claim_next(struct store *s, struct store_claim *out, bool *found,
				    struct nn_err *e)
{
	memset(out, 0, sizeof *out);
	*found = false;
	struct conn *c = NULL;
	sqlite3_stmt *q = NULL;
	bool row;
	enum nn_status st = sdb_conn_get(s, &c, e);
	if (st)
		return st;
	/* Idle workers poll: answer "empty" from a plain read, without taking
	 * the write lock. */
	if ((st = sdb_query(c, "SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 'queued')", &q, e, "")))
		goto out;
	if ((st = sdb_row(c, q, &row, e)))
		goto out;
	row = row && sqlite3_column_int(q, 0);
	sdb_done(q);
	q = NULL;
	if (!row)
		goto out;

	if ((st = sdb_tx_write(c, e)))
		goto out;
	for (;;) {
		if ((st = sdb_query(c,
			     "SELECT j.id, j.tenant_id, j.model_id, m.sha256, j.spec, j.rowid"
			     " FROM jobs j JOIN models m ON m.id = j.model_id"
			     " WHERE j.state = 'queued' ORDER BY j.seq LIMIT 1",
			     &q, e, "")))
			goto out;
		if ((st = sdb_row(c, q, &row, e)))
			goto out;
		if (!row)
			break;
		json_error_t je;
		json_t *spec = json_loads(sdb_col_text(q, 4) ? sdb_col_text(q, 4) : "", 0, &je);
		bool ok = spec && sdb_col_copy(q, 0, out->id, sizeof out->id) &&
			  sdb_col_copy(q, 1, out->tenant, sizeof out->tenant) &&
			  sdb_col_copy(q, 2, out->model_id, sizeof out->model_id) &&
			  sdb_col_copy(q, 3, out->model_sha256, sizeof out->model_sha256);
		int64_t rowid = sqlite3_column_int64(q, 5);
		sdb_done(q);
		q = NULL;
		if (!ok) {
			/* A row no worker could run (edited by hand?): fail it rather
			 * than block the queue behind it, and look at the next one. */
			json_decref(spec);
			if ((st = sdb_run(c,
					 "UPDATE jobs SET state = 'failed', error_code = 'internal',"
					 " error_message = 'the stored job could not be read',"
					 " finished_at = " NOW " WHERE rowid = ?",
					 NULL, e, "i", rowid)))
				goto out;
			memset(out, 0, sizeof *out);
			continue;
		}
		if ((st = sdb_run(c,
				 "UPDATE jobs SET state = 'running', started_at = " NOW ","
				 " attempts = attempts + 1, progress = 0 WHERE id = ?",
				 NULL, e, "s", out->id))) {
			json_decref(spec);
			goto out;
		}
		out->spec = spec;
		break;
	}
	if ((st = sdb_tx_commit(c, e))) {
		json_decref(out->spec);
		goto out;
	}
	*found = out->spec != NULL;
out:
	if (st || !*found)
		memset(out, 0, sizeof *out);
	sdb_done(q);
	sdb_conn_put(c);
	return st;
}

enum nn_status store_job_set_input_metrics(struct store *s, const char *job_id,
					   const json_t *metrics, struct nn_err *e)
{
	char *text = sdb_dump(metrics);
	if (!text)
		return sdb_oom(e);
	struct conn *c = NULL;
	int n = 0;
	enum nn_status st = sdb_conn_get(s, &c, e);
	if (st)
		goto out;
	if ((st = sdb_tx_write(c, e)))
		goto out;
	if ((st = sdb_run(c, "UPDATE jobs SET input_metrics = ? WHERE id = ?", &n, e, "ss", text,
			 job_id)))
		goto out;
	if (n == 0) {
		st = err_set(e, NN_ENOTFOUND, "not_found", NULL, "no job '%.64s'", job_id);
		goto out;
	}
	st = sdb_tx_commit(c, e);
out:
	sdb_conn_put(c);
	free(text);
	return st;
}

enum nn_status store_job_set_progress(struct store *s, const char *job_id, double progress,
				      struct nn_err *e)
{
	if (!(progress >= 0)) /* also NaN */
		progress = 0;
	if (progress > 1)
		progress = 1;
	struct conn *c = NULL;
	int n = 0;
	enum nn_status st = sdb_conn_get(s, &c, e);
	if (st)
		return st;
	if ((st = sdb_tx_write(c, e)))
		goto out;
	if ((st = sdb_run(c, "UPDATE jobs SET progress = ? WHERE id = ?", &n, e, "ds", progress,
			 job_id)))
		goto out;
	if (n == 0) {
		st = err_set(e, NN_ENOTFOUND, "not_found", NULL, "no job '%.64s'",
			     job_id ? job_id : "");
		goto out;
	}
	st = sdb_tx_commit(c, e);
out:
	sdb_conn_put(c);
	return st;
}

enum nn_status store_job_step_update(struct store *s, const char *job_id, int index,
				     const char *state, const json_t *metrics, struct nn_err *e)
{
	if (!valid_step_state(state))
		return err_set(e, NN_EINVAL, "invalid", "state", "unknown step state '%.32s'",
			       state ? state : "");
	char *m = sdb_dump(metrics);
	if (metrics && !m)
		return sdb_oom(e);
	struct conn *c = NULL;
	int n = 0;
	enum nn_status st = sdb_conn_get(s, &c, e);
	if (st)
		goto out;
	if ((st = sdb_tx_write(c, e)))
		goto out;
	/* NULL metrics keeps what an earlier update recorded. */
	if ((st = sdb_run(c,
			 "UPDATE job_metrics SET state = ?, metrics = COALESCE(?, metrics),"
			 " updated_at = " NOW " WHERE job_id = ? AND step_index = ?",
			 &n, e, "sssn", state, m, job_id, index)))
		goto out;
	if (n == 0) {
		st = err_set(e, NN_ENOTFOUND, "not_found", NULL, "job '%.64s' has no step %d",
			     job_id ? job_id : "", index);
		goto out;
	}
	st = sdb_tx_commit(c, e);
out:
	sdb_conn_put(c);
	free(m);
	return st;
}

enum nn_status store_job_event(struct store *s, const char *job_id, const char *type,
			       const json_t *data, struct nn_err *e)
{
	if (!type || !*type)
		return err_set(e, NN_EINVAL, "invalid", "type", "event type is empty");
	char *d = sdb_dump(data);
	if (data && !d)
		return sdb_oom(e);
	struct conn *c = NULL;
	enum nn_status st = sdb_conn_get(s, &c, e);
	if (st)
		goto out;
	if ((st = sdb_tx_write(c, e)))
		goto out;
	if ((st = sdb_run(c, "INSERT INTO job_events(job_id, ts, type, data) VALUES (?, " NOW ", ?, ?)",
			 NULL, e, "sss", job_id, type, d)))
		goto out;
	st = sdb_tx_commit(c, e);
out:
	sdb_conn_put(c);
	free(d);
	return st;
}

/* One job_events row (id, ts, type, data) as the API shows it. */
static enum nn_status event_view(sqlite3_stmt *q, json_t **out, struct nn_err *e)
{
	bool bad = false;
	json_t *data = sdb_col_json(q, 3, &bad);
	json_t *o = json_pack("{s:I, s:o, s:o, s:o}", "id", (json_int_t)sqlite3_column_int64(q, 0),
			      "ts", sdb_col_json_str(q, 1), "type", sdb_col_json_str(q, 2), "data",
			      data ? data : json_null());
	if (!o)
		return sdb_oom(e);
	if (bad) {
		json_decref(o);
		return err_set(e, NN_EINTERNAL, "internal", NULL, "an event's data is not JSON");
	}
	*out = o;
	return NN_OK;
}

enum nn_status store_job_events(struct store *s, const char *tenant, const char *id,
				const char *after, int limit, json_t **out, struct nn_err *e)
{
	*out = NULL;
	int64_t cursor = 0;
	enum nn_status st = after ? sdb_parse_cursor(after, &cursor, e) : NN_OK;
	if (st || (st = sdb_check_limit(limit, e)))
		return st;
	struct conn *c = NULL;
	sqlite3_stmt *q = NULL;
	char state[16], owner[STORE_ID_CAP];
	bool cancel;
	json_t *res = json_object(), *arr = json_array();
	if (!res || !arr || json_object_set(res, "events", arr)) {
		st = sdb_oom(e);
		goto out;
	}
	if ((st = sdb_conn_get(s, &c, e)) || (st = sdb_tx_read(c, e)) ||
	    (st = job_state(c, tenant, id, state, &cancel, owner, e)))
		goto out;
	if ((st = sdb_query(c,
			    "SELECT id, ts, type, data FROM job_events WHERE job_id = ? AND id > ?"
			    " ORDER BY id LIMIT ?",
			    &q, e, "sin", id, cursor, limit + 1)))
		goto out;
	int n = 0;
	int64_t last = 0;
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
		json_t *ev = NULL;
		if ((st = event_view(q, &ev, e)))
			goto out;
		if (json_array_append_new(arr, ev)) {
			st = sdb_oom(e);
			goto out;
		}
		last = sqlite3_column_int64(q, 0);
		n++;
	}
	st = sdb_page_finish(&res, more, last, out, e);
out:
	sdb_done(q);
	sdb_conn_put(c);
	json_decref(arr);
	json_decref(res);
	return st;
}

enum nn_status store_job_cancel_requested(struct store *s, const char *job_id, bool *requested,
					  struct nn_err *e)
{
	*requested = false;
	struct conn *c = NULL;
	char state[16];
	enum nn_status st = sdb_conn_get(s, &c, e);
	if (st)
		return st;
	st = job_state(c, NULL, job_id, state, requested, NULL, e);
	sdb_conn_put(c);
	return st;
}

enum nn_status store_job_succeed(struct store *s, const char *job_id, const char *artifact_sha256,
				 int64_t artifact_size, const char *format,
				 char artifact_id_out[STORE_ID_CAP], struct nn_err *e)
{
	return store_job_succeed_zstd(s, job_id, artifact_sha256, artifact_size, format, NULL, 0,
				      artifact_id_out, e);
}

enum nn_status store_job_succeed_zstd(struct store *s, const char *job_id,
				      const char *artifact_sha256, int64_t artifact_size,
				      const char *format, const char *zstd_sha256, int64_t zstd_size,
				      char artifact_id_out[STORE_ID_CAP], struct nn_err *e)
{
	if (!sdb_is_sha_hex(artifact_sha256))
		return err_set(e, NN_EINVAL, "invalid", "sha256", "not 64 lowercase hex digits");
	if (artifact_size < 0)
		return err_set(e, NN_EINVAL, "invalid", "size", "negative size");
	if (zstd_sha256 && !sdb_is_sha_hex(zstd_sha256))
		return err_set(e, NN_EINVAL, "invalid", "zstd_sha256", "not 64 lowercase hex digits");
	if (zstd_sha256 && zstd_size < 0)
		return err_set(e, NN_EINVAL, "invalid", "zstd_size", "negative size");
	if (!format || !*format || strlen(format) >= sizeof ((struct store_artifact *)0)->format)
		return err_set(e, NN_EINVAL, "invalid", "format", "format must be 1 to 15 chars");
	char art[STORE_ID_CAP], state[16], tenant[STORE_ID_CAP];
	store_new_id("art_", art);
	struct conn *c = NULL;
	enum nn_status st = sdb_conn_get(s, &c, e);
	if (st)
		return st;
	if ((st = sdb_tx_write(c, e)))
		goto out;
	if ((st = job_state(c, NULL, job_id, state, NULL, tenant, e)))
		goto out;
	if (strcmp(state, "running") != 0) {
		st = err_set(e, NN_ECONFLICT, "conflict", NULL, "job is %s, not running", state);
		goto out;
	}
	if ((st = sdb_run(c,
			 "INSERT INTO artifacts(id, tenant_id, job_id, sha256, size, format,"
			 " zstd_sha256, zstd_size, created_at)"
			 " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, CASE WHEN ?7 IS NULL THEN NULL ELSE ?8 END, "
			 NOW ")",
			 NULL, e, "ssssissi", art, tenant, job_id, artifact_sha256, artifact_size,
			 format, zstd_sha256, zstd_size)))
		goto out;
	if ((st = sdb_run(c,
			 "UPDATE jobs SET state = 'succeeded', progress = 1, error_code = NULL,"
			 " error_message = NULL, finished_at = " NOW " WHERE id = ?",
			 NULL, e, "s", job_id)))
		goto out;
	if ((st = sdb_tx_commit(c, e)))
		goto out;
	memcpy(artifact_id_out, art, sizeof art);
out:
	sdb_conn_put(c);
	return st;
}

/* failed or canceled, from queued or running. */
static enum nn_status job_finish(struct store *s, const char *job_id, const char *state_to,
				 const char *code, const char *message, struct nn_err *e)
{
	struct conn *c = NULL;
	char state[16];
	enum nn_status st = sdb_conn_get(s, &c, e);
	if (st)
		return st;
	if ((st = sdb_tx_write(c, e)))
		goto out;
	if ((st = job_state(c, NULL, job_id, state, NULL, NULL, e)))
		goto out;
	if (is_finished(state)) {
		st = err_set(e, NN_ECONFLICT, "conflict", NULL, "job is already %s", state);
		goto out;
	}
	if ((st = job_end(c, job_id, state_to, state_to, code, message, e)))
		goto out;
	st = sdb_tx_commit(c, e);
out:
	sdb_conn_put(c);
	return st;
}

enum nn_status store_job_fail(struct store *s, const char *job_id, const char *code,
			      const char *message, struct nn_err *e)
{
	return job_finish(s, job_id, "failed", code && *code ? code : "internal",
			  message ? message : "", e);
}

enum nn_status store_job_mark_canceled(struct store *s, const char *job_id, struct nn_err *e)
{
	return job_finish(s, job_id, "canceled", NULL, NULL, e);
}

enum nn_status store_jobs_requeue_running(struct store *s, int *count, struct nn_err *e)
{
	*count = 0;
	struct conn *c = NULL;
	int n = 0;
	enum nn_status st = sdb_conn_get(s, &c, e);
	if (st)
		return st;
	if ((st = sdb_tx_write(c, e)))
		goto out;
	/* A cancel asked for before the crash is honoured now. */
	if ((st = sdb_run(c,
			 "UPDATE job_metrics SET state = 'canceled', updated_at = " NOW
			 " WHERE state <> 'succeeded' AND job_id IN"
			 " (SELECT id FROM jobs WHERE state = 'running' AND cancel_requested = 1)",
			 NULL, e, "")) ||
	    (st = sdb_run(c,
			 "UPDATE jobs SET state = 'canceled', finished_at = " NOW
			 " WHERE state = 'running' AND cancel_requested = 1",
			 NULL, e, "")))
		goto out;
	/* A job that was running at STORE_MAX_ATTEMPTS crashes is the likely
	 * cause: fail it instead of crashing again. */
	if ((st = sdb_run(c,
			 "UPDATE job_metrics SET state = 'failed', updated_at = " NOW
			 " WHERE state <> 'succeeded' AND job_id IN"
			 " (SELECT id FROM jobs WHERE state = 'running' AND attempts >= ?)",
			 NULL, e, "n", STORE_MAX_ATTEMPTS)) ||
	    (st = sdb_run(c,
			 "UPDATE jobs SET state = 'failed', finished_at = " NOW ","
			 " error_code = 'crashed', error_message = 'the daemon stopped '"
			 " || attempts || ' times while running this job'"
			 " WHERE state = 'running' AND attempts >= ?",
			 NULL, e, "n", STORE_MAX_ATTEMPTS)))
		goto out;
	if ((st = sdb_run(c,
			 "INSERT INTO job_events(job_id, ts, type, data)"
			 " SELECT id, " NOW ", 'requeued', json_object('attempts', attempts)"
			 " FROM jobs WHERE state = 'running'",
			 NULL, e, "")) ||
	    (st = sdb_run(c,
			 "UPDATE job_metrics SET state = 'pending', metrics = NULL, updated_at = " NOW
			 " WHERE job_id IN (SELECT id FROM jobs WHERE state = 'running')",
			 NULL, e, "")) ||
	    (st = sdb_run(c,
			 "UPDATE jobs SET state = 'queued', progress = 0, started_at = NULL,"
			 " input_metrics = NULL WHERE state = 'running'",
			 &n, e, "")))
		goto out;
	if ((st = sdb_tx_commit(c, e)))
		goto out;
	*count = n;
out:
	sdb_conn_put(c);
	return st;
}

/* ---- artifacts ---- */

enum nn_status store_artifact_get(struct store *s, const char *tenant, const char *id,
				  struct store_artifact *out, struct nn_err *e)
{
	memset(out, 0, sizeof *out);
	if (!sdb_fits_id(id))
		return err_set(e, NN_ENOTFOUND, "not_found", NULL, "no artifact '%.64s'",
			       id ? id : "");
	struct conn *c = NULL;
	sqlite3_stmt *q = NULL;
	bool row;
	enum nn_status st = sdb_conn_get(s, &c, e);
	if (st)
		return st;
	if ((st = sdb_query(c,
		     "SELECT id, job_id, sha256, size, format, zstd_sha256, zstd_size"
		     " FROM artifacts WHERE tenant_id = ? AND id = ?",
		     &q, e, "ss", tenant, id)))
		goto out;
	if ((st = sdb_row(c, q, &row, e)))
		goto out;
	if (!row) {
		st = err_set(e, NN_ENOTFOUND, "not_found", NULL, "no artifact '%s'", id);
		goto out;
	}
	if (!sdb_col_copy(q, 0, out->id, sizeof out->id) ||
	    !sdb_col_copy(q, 1, out->job_id, sizeof out->job_id) ||
	    !sdb_col_copy(q, 2, out->sha256, sizeof out->sha256) ||
	    !sdb_col_copy(q, 4, out->format, sizeof out->format)) {
		memset(out, 0, sizeof *out);
		st = err_set(e, NN_EIO, "db_error", NULL, "artifact %s: corrupt row", id);
		goto out;
	}
	out->size = sqlite3_column_int64(q, 3);
	out->zstd_size = -1;
	if (sqlite3_column_type(q, 5) != SQLITE_NULL) {
		if (!sdb_col_copy(q, 5, out->zstd_sha256, sizeof out->zstd_sha256) ||
		    sqlite3_column_type(q, 6) == SQLITE_NULL) {
			memset(out, 0, sizeof *out);
			st = err_set(e, NN_EIO, "db_error", NULL, "artifact %s: corrupt row", id);
			goto out;
		}
		out->zstd_size = sqlite3_column_int64(q, 6);
	}
out:
	sdb_done(q);
	sdb_conn_put(c);
	return st;
}
