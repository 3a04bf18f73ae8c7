/* store_db: the private layer under the store_* modules (store, store_models,
 * store_jobs). Only storage/store*.c include it; it is not an API for api/,
 * daemon/ or the tests (they include store.h).
 *
 * Owns:
 *  - the shared types: struct store (the pool's state), struct conn (one
 *    pooled connection with its cache of prepared statements);
 *  - the SQL helpers every query module uses: cached prepare + bind by format
 *    (sdb_query), run (sdb_run), step one row (sdb_row), reset (sdb_done);
 *  - transactions (sdb_tx_write, sdb_tx_read, sdb_tx_commit, sdb_tx_rollback);
 *  - column helpers (sdb_col_text, sdb_col_copy, sdb_col_json_str, sdb_col_json), JSON text
 *    (sdb_dump), argument checks shared by several modules (sdb_is_sha_hex, sdb_fits_id,
 *    sdb_parse_cursor, sdb_check_limit) and error mapping (sdb_fail, sdb_oom).
 * The pool itself (sdb_conn_get, sdb_conn_put) belongs to store.c; it is declared
 * here because every query module borrows its connection through it.
 *
 * Threading: a struct conn is used by one thread at a time (the one that
 * borrowed it with sdb_conn_get until sdb_conn_put); none of these helpers takes a
 * lock except sdb_tx_write, which takes s->write_mu before BEGIN IMMEDIATE (and
 * sdb_tx_commit / sdb_tx_rollback, which release it). Lock order is always pool ->
 * write_mu: nothing that holds write_mu waits for a connection. No globals. */
#ifndef NNCD_STORE_DB_H
#define NNCD_STORE_DB_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"
#include "store.h"

#define STORE_POOL 8
/* SQLite's own clock, in SQL: RFC 3339 UTC with milliseconds. */
#define NOW "strftime('%Y-%m-%dT%H:%M:%fZ','now')"

struct stmt_slot {
	const char *sql; /* string literal: looked up by address */
	sqlite3_stmt *st;
};

struct conn {
	sqlite3 *db;
	struct store *s;
	struct stmt_slot *cache;
	size_t ncache, capcache;
	bool writing; /* holds s->write_mu inside BEGIN IMMEDIATE */
	struct conn *next_free;
};

struct store {
	char *db_path;
	pthread_mutex_t mu; /* guards free_list, all, nopen */
	pthread_cond_t cv;
	struct conn *free_list;
	struct conn *all[STORE_POOL];
	int nopen; /* slots in use, including connections being opened */
	pthread_mutex_t write_mu;
};

/* ---- pool (defined in store.c) ---- */
/* Borrows a connection (opening one lazily, or waiting while all STORE_POOL
 * are in use); give it back with sdb_conn_put, which resets every statement and
 * rolls back a transaction an error path left open. sdb_conn_put(NULL) is a no-op. */
enum nn_status sdb_conn_get(struct store *s, struct conn **out, struct nn_err *e);
void sdb_conn_put(struct conn *c);

/* ---- errors ---- */
/* Call before the statement is reset: sqlite3_errmsg describes the last call.
 * SQLITE_FULL -> NN_ENOSPC, a foreign-key violation -> NN_ENOTFOUND, else NN_EIO. */
enum nn_status sdb_fail(struct nn_err *e, sqlite3 *db, int rc, const char *what);
enum nn_status sdb_oom(struct nn_err *e);

/* ---- statements ---- */
/* sql must be a string literal: the per-connection cache is keyed by its
 * address. fmt binds by letter: 's' text (NULL binds NULL), 'i' int64,
 * 'n' int, 'd' double. */

/* Cached prepared statement for a string literal; caller must sdb_done() it. */
enum nn_status sdb_prep(struct conn *c, const char *sql, sqlite3_stmt **out, struct nn_err *e);
void sdb_done(sqlite3_stmt *st);
/* Prepares (cached) and binds; the caller steps and then sdb_done()s. */
enum nn_status sdb_query(struct conn *c, const char *sql, sqlite3_stmt **out, struct nn_err *e,
		  const char *fmt, ...);
/* Runs a statement that returns no rows we need; *changes (may be NULL) gets
 * the number of rows it modified. */
enum nn_status sdb_run(struct conn *c, const char *sql, int *changes, struct nn_err *e,
		      const char *fmt, ...);
/* Steps a statement expected to give at most one row: *row tells whether it
 * did. On a row the caller reads columns, then sdb_done()s. On an error the
 * statement is already reset. */
enum nn_status sdb_row(struct conn *c, sqlite3_stmt *st, bool *row, struct nn_err *e);

/* ---- transactions ---- */
/* BEGIN IMMEDIATE after taking s->write_mu (released on failure). */
enum nn_status sdb_tx_write(struct conn *c, struct nn_err *e);
/* BEGIN: several reads from one snapshot; sdb_conn_put ends it. */
enum nn_status sdb_tx_read(struct conn *c, struct nn_err *e);
/* Ends any transaction (no-op outside one) and releases write_mu if held. */
void sdb_tx_rollback(struct conn *c);
/* COMMIT, then releases write_mu; a failed COMMIT is rolled back. */
enum nn_status sdb_tx_commit(struct conn *c, struct nn_err *e);

/* ---- small helpers ---- */
/* 64 lowercase hex digits and nothing more. */
bool sdb_is_sha_hex(const char *h);
/* Non-NULL and short enough to be one of our ids (longer ones match no row). */
bool sdb_fits_id(const char *id);
const char *sdb_col_text(sqlite3_stmt *st, int i);
/* Copies a column into a fixed buffer; false if it is NULL or does not fit. */
bool sdb_col_copy(sqlite3_stmt *st, int i, char *dst, size_t cap);
/* JSON string of a text column (json null for NULL); bad UTF-8 bytes become '?'. */
json_t *sdb_col_json_str(sqlite3_stmt *st, int i);
/* Parses a JSON text column; NULL column -> json null. *bad on parse error. */
json_t *sdb_col_json(sqlite3_stmt *st, int i, bool *bad);
/* Ends a list query: sets (*res)["next"] to the cursor after last_seq, or
 * null on the last page, and hands *res over to *out. */
enum nn_status sdb_page_finish(json_t **res, bool more, int64_t last_seq, json_t **out,
			       struct nn_err *e);

/* Returns a malloc'd compact dump of j, or NULL (for a NULL j too). */
char *sdb_dump(const json_t *j);
/* Cursor = decimal seq of the last row of the previous page (NULL: from the
 * newest); NN_EINVAL, field "after", otherwise. */
enum nn_status sdb_parse_cursor(const char *after, int64_t *seq, struct nn_err *e);
/* NN_EINVAL, field "limit", unless 1..1000. */
enum nn_status sdb_check_limit(int limit, struct nn_err *e);

#endif
