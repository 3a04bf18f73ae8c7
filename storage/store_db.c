/* store_db: the SQL helpers, transactions and column helpers shared by the
 * store_* modules (see store_db.h for what it owns and its threading rules). */
#include "store_db.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors ---- */

/* Call before the statement is reset: sqlite3_errmsg describes the last call. */
enum nn_status sdb_fail(struct nn_err *e, sqlite3 *db, int rc, const char *what)
{
	const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
	switch (rc & 0xff) {
	case SQLITE_FULL:
		return err_set(e, NN_ENOSPC, "disk_full", NULL, "%s: disk full (%s)", what, msg);
	case SQLITE_NOMEM:
		return err_set(e, NN_ENOMEM, "out_of_memory", NULL, "%s: %s", what, msg);
	default:
		break;
	}
	if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
		return err_set(e, NN_ENOTFOUND, "not_found", NULL, "%s: refers to a missing row (%s)",
			       what, msg);
	return err_set(e, NN_EIO, "db_error", NULL, "%s: %s", what, msg);
}

enum nn_status sdb_oom(struct nn_err *e)
{
	return err_set(e, NN_ENOMEM, "out_of_memory", NULL, "out of memory building a response");
}

/* ---- statements ---- */

/* Cached prepared statement for a string literal; caller must sdb_done() it. */
enum nn_status sdb_prep(struct conn *c, const char *sql, sqlite3_stmt **out,
			      struct nn_err *e)
{
	for (size_t i = 0; i < c->ncache; i++) {
		if (c->cache[i].sql == sql) {
			*out = c->cache[i].st;
			return NN_OK;
		}
	}
	if (c->ncache == c->capcache) {
		size_t cap = c->capcache ? c->capcache * 2 : 32;
		struct stmt_slot *n = realloc(c->cache, cap * sizeof *n);
		if (!n)
			return err_set(e, NN_ENOMEM, "out_of_memory", NULL, "statement cache");
		c->cache = n;
		c->capcache = cap;
	}
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
	if (rc != SQLITE_OK)
		return sdb_fail(e, c->db, rc, "preparing a statement");
	c->cache[c->ncache].sql = sql;
	c->cache[c->ncache].st = st;
	c->ncache++;
	*out = st;
	return NN_OK;
}

void sdb_done(sqlite3_stmt *st)
{
	if (st) {
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
	}
}

/* Binds by format: 's' text (NULL binds NULL), 'i' int64, 'n' int, 'd' double. */
static int sdb_bindv(sqlite3_stmt *st, const char *fmt, va_list ap)
{
	int rc = SQLITE_OK;
	for (int i = 0; fmt[i] && rc == SQLITE_OK; i++) {
		switch (fmt[i]) {
		case 's': {
			const char *v = va_arg(ap, const char *);
			rc = v ? sqlite3_bind_text(st, i + 1, v, -1, SQLITE_TRANSIENT)
			       : sqlite3_bind_null(st, i + 1);
			break;
		}
		case 'i':
			rc = sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
			break;
		case 'n':
			rc = sqlite3_bind_int(st, i + 1, va_arg(ap, int));
			break;
		case 'd':
			rc = sqlite3_bind_double(st, i + 1, va_arg(ap, double));
			break;
		default:
			rc = SQLITE_MISUSE;
			break;
		}
	}
	return rc;
}

/* Prepares (cached) and binds; the caller steps and then sdb_done()s. */
enum nn_status sdb_query(struct conn *c, const char *sql, sqlite3_stmt **out, struct nn_err *e,
			 const char *fmt, ...)
{
	sqlite3_stmt *st = NULL;
	enum nn_status s = sdb_prep(c, sql, &st, e);
	if (s)
		return s;
	va_list ap;
	va_start(ap, fmt);
	int rc = sdb_bindv(st, fmt, ap);
	va_end(ap);
	if (rc != SQLITE_OK) {
		s = sdb_fail(e, c->db, rc, "binding parameters");
		sdb_done(st);
		return s;
	}
	*out = st;
	return NN_OK;
}

/* Runs a statement that returns no rows we need; *changes (may be NULL) gets
 * the number of rows it modified. */
enum nn_status sdb_run(struct conn *c, const char *sql, int *changes, struct nn_err *e,
			     const char *fmt, ...)
{
	sqlite3_stmt *st = NULL;
	enum nn_status s = sdb_prep(c, sql, &st, e);
	if (s)
		return s;
	va_list ap;
	va_start(ap, fmt);
	int rc = sdb_bindv(st, fmt, ap);
	va_end(ap);
	if (rc == SQLITE_OK) {
		do
			rc = sqlite3_step(st);
		while (rc == SQLITE_ROW);
	}
	if (rc != SQLITE_DONE)
		s = sdb_fail(e, c->db, rc, "updating the database");
	else if (changes)
		*changes = sqlite3_changes(c->db);
	sdb_done(st);
	return s;
}

/* Steps a statement expected to give at most one row: *row tells whether it
 * did. On a row the caller reads columns, then sdb_done()s. */
enum nn_status sdb_row(struct conn *c, sqlite3_stmt *st, bool *row, struct nn_err *e)
{
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*row = true;
		return NN_OK;
	}
	*row = false;
	if (rc == SQLITE_DONE)
		return NN_OK;
	enum nn_status s = sdb_fail(e, c->db, rc, "reading the database");
	sdb_done(st);
	return s;
}

/* ---- transactions ---- */

enum nn_status sdb_tx_write(struct conn *c, struct nn_err *e)
{
	pthread_mutex_lock(&c->s->write_mu);
	c->writing = true;
	enum nn_status s = sdb_run(c, "BEGIN IMMEDIATE", NULL, e, "");
	if (s) {
		c->writing = false;
		pthread_mutex_unlock(&c->s->write_mu);
	}
	return s;
}

enum nn_status sdb_tx_read(struct conn *c, struct nn_err *e)
{
	return sdb_run(c, "BEGIN", NULL, e, "");
}

/* Ends any transaction (no-op outside one) and releases write_mu if held. */
void sdb_tx_rollback(struct conn *c)
{
	for (size_t i = 0; i < c->ncache; i++)
		sdb_done(c->cache[i].st);
	if (!sqlite3_get_autocommit(c->db))
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
	if (c->writing) {
		c->writing = false;
		pthread_mutex_unlock(&c->s->write_mu);
	}
}

enum nn_status sdb_tx_commit(struct conn *c, struct nn_err *e)
{
	enum nn_status s = sdb_run(c, "COMMIT", NULL, e, "");
	if (s)
		err_prefix(e, "commit");
	sdb_tx_rollback(c); /* after a failed COMMIT; otherwise just drops write_mu */
	return s;
}

/* ---- small helpers ---- */

bool sdb_is_sha_hex(const char *h)
{
	if (!h)
		return false;
	for (int i = 0; i < 64; i++) {
		char ch = h[i];
		if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
			return false;
	}
	return h[64] == '\0';
}

bool sdb_fits_id(const char *id)
{
	return id && strlen(id) < STORE_ID_CAP;
}

const char *sdb_col_text(sqlite3_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(st, i);
}

/* Copies a column into a fixed buffer; false if it is NULL or does not fit. */
bool sdb_col_copy(sqlite3_stmt *st, int i, char *dst, size_t cap)
{
	const char *v = sdb_col_text(st, i);
	if (!v || strlen(v) >= cap)
		return false;
	memcpy(dst, v, strlen(v) + 1);
	return true;
}

/* Length of the valid UTF-8 sequence at p, 0 if it is not one. */
static size_t utf8_seq(const unsigned char *p)
{
	size_t n;
	uint32_t cp;
	if (p[0] < 0x80)
		return 1;
	else if ((p[0] & 0xe0) == 0xc0)
		n = 2, cp = p[0] & 0x1f;
	else if ((p[0] & 0xf0) == 0xe0)
		n = 3, cp = p[0] & 0x0f;
	else if ((p[0] & 0xf8) == 0xf0)
		n = 4, cp = p[0] & 0x07;
	else
		return 0;
	for (size_t k = 1; k < n; k++) {
		if ((p[k] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[k] & 0x3f);
	}
	static const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
	if (cp < min_cp[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* JSON string of a text column, or null when the column is NULL. Text that
 * is not valid UTF-8 (an error message quoting raw bytes, a row edited by
 * hand) is shown with '?' for each bad byte instead of failing the read. */
json_t *sdb_col_json_str(sqlite3_stmt *st, int i)
{
	const char *v = sdb_col_text(st, i);
	if (!v)
		return json_null();
	json_t *j = json_string(v);
	if (j)
		return j;
	char *copy = strdup(v);
	if (!copy)
		return NULL;
	for (unsigned char *p = (unsigned char *)copy; *p;) {
		size_t n = utf8_seq(p);
		if (n == 0)
			*p++ = '?';
		else
			p += n;
	}
	j = json_string(copy);
	free(copy);
	return j;
}

/* Parses a JSON text column; NULL column -> json null. *bad on parse error. */
json_t *sdb_col_json(sqlite3_stmt *st, int i, bool *bad)
{
	const char *v = sdb_col_text(st, i);
	if (!v)
		return json_null();
	json_error_t je;
	json_t *j = json_loads(v, JSON_DECODE_ANY, &je);
	if (!j)
		*bad = true;
	return j;
}

/* Returns a malloc'd compact dump of j, or NULL (for a NULL j too). */
char *sdb_dump(const json_t *j)
{
	return j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
}

/* Cursor = decimal seq of the last row of the previous page. */
enum nn_status sdb_parse_cursor(const char *after, int64_t *seq, struct nn_err *e)
{
	if (!after) {
		*seq = INT64_MAX;
		return NN_OK;
	}
	size_t n = strlen(after);
	bool ok = n >= 1 && n <= 18;
	for (size_t i = 0; ok && i < n; i++)
		ok = after[i] >= '0' && after[i] <= '9';
	if (ok) {
		*seq = strtoll(after, NULL, 10);
		ok = *seq > 0;
	}
	if (!ok)
		return err_set(e, NN_EINVAL, "invalid", "after",
			       "not a cursor returned by a previous page");
	return NN_OK;
}

enum nn_status sdb_check_limit(int limit, struct nn_err *e)
{
	if (limit < 1 || limit > 1000)
		return err_set(e, NN_EINVAL, "invalid", "limit", "must be between 1 and 1000");
	return NN_OK;
}

enum nn_status sdb_page_finish(json_t **res, bool more, int64_t last_seq, json_t **out,
			       struct nn_err *e)
{
	char buf[24];
	snprintf(buf, sizeof buf, "%" PRId64, last_seq);
	if (json_object_set_new(*res, "next", more ? json_string(buf) : json_null()))
		return sdb_oom(e);
	*out = *res;
	*res = NULL;
	return NN_OK;
}
