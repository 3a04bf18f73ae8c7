/* store_db: the private layer under the store_* modules (store, store_models,
 * store_jobs). Only storage/store*.c include it; it is not an API for api/,
 * daemon/ or the tests (they include store.h).
 *
 * Owns:
 *  - the shared types: struct store (the pool's state), struct conn (one
 *    pooled connection with its cache of prepared statements);
 *  - the SQL helpers every query module uses: cached prepare + bind by format
 *    (sq), run (sq_run), step one row (sq_row), reset (sq_done);
 *  - transactions (tx_write, tx_read, tx_commit, tx_rollback);
 *  - column helpers (col_text, col_copy, col_json_str, col_json), JSON text
 *    (dump), argument checks shared by several modules (is_sha_hex, fits_id,
 *    parse_cursor, check_limit) and error mapping (db_fail, oom).
 * The pool itself (conn_get, conn_put) belongs to store.c; it is declared
 * here because every query module borrows its connection through it.
 *
 * Threading: a struct conn is used by one thread at a time (the one that
 * borrowed it with conn_get until conn_put); none of these helpers takes a
 * lock except tx_write, which takes s->write_mu before BEGIN IMMEDIATE (and
 * tx_commit / tx_rollback, which release it). Lock order is always pool ->
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
 * are in use); give it back with conn_put, which resets every statement and
 * rolls back a transaction an error path left open. conn_put(NULL) is a no-op. */
enum nn_status conn_get(struct store *s, struct conn **out, struct nn_err *e);
void conn_put(struct conn *c);

/* ---- errors ---- */
/* Call before the statement is reset: sqlite3_errmsg describes the last call.
 * SQLITE_FULL -> NN_ENOSPC, a foreign-key violation -> NN_ENOTFOUND, else NN_EIO. */
enum nn_status db_fail(struct nn_err *e, sqlite3 *db, int rc, const char *what);
enum nn_status oom(struct nn_err *e);

/* ---- statements ---- */
/* sql must be a string literal: the per-connection cache is keyed by its
 * address. fmt binds by letter: 's' text (NULL binds NULL), 'i' int64,
 * 'n' int, 'd' double. */

/* Cached prepared statement for a string literal; caller must sq_done() it. */
enum nn_status sq_prep(struct conn *c, const char *sql, sqlite3_stmt **out, struct nn_err *e);
void sq_done(sqlite3_stmt *st);
/* Prepares (cached) and binds; the caller steps and then sq_done()s. */
enum nn_status sq(struct conn *c, const char *sql, sqlite3_stmt **out, struct nn_err *e,
		  const char *fmt, ...);
/* Runs a statement that returns no rows we need; *changes (may be NULL) gets
 * the number of rows it modified. */
enum nn_status sq_run(struct conn *c, const char *sql, int *changes, struct nn_err *e,
		      const char *fmt, ...);
/* Steps a statement expected to give at most one row: *row tells whether it
 * did. On a row the caller reads columns, then sq_done()s. On an error the
 * statement is already reset. */
enum nn_status sq_row(struct conn *c, sqlite3_stmt *st, bool *row, struct nn_err *e);

/* ---- transactions ---- */
/* BEGIN IMMEDIATE after taking s->write_mu (released on failure). */
enum nn_status tx_write(struct conn *c, struct nn_err *e);
/* BEGIN: several reads from one snapshot; conn_put ends it. */
enum nn_status tx_read(struct conn *c, struct nn_err *e);
/* Ends any transaction (no-op outside one) and releases write_mu if held. */
void tx_rollback(struct conn *c);
/* COMMIT, then releases write_mu; a failed COMMIT is rolled back. */
enum nn_status tx_commit(struct conn *c, struct nn_err *e);

/* ---- small helpers ---- */
/* 64 lowercase hex digits and nothing more. */
bool is_sha_hex(const char *h);
/* Non-NULL and short enough to be one of our ids (longer ones match no row). */
bool fits_id(const char *id);
const char *col_text(sqlite3_stmt *st, int i);
/* Copies a column into a fixed buffer; false if it is NULL or does not fit. */
bool col_copy(sqlite3_stmt *st, int i, char *dst, size_t cap);
/* JSON string of a text column (json null for NULL); bad UTF-8 bytes become '?'. */
json_t *col_json_str(sqlite3_stmt *st, int i);
/* Parses a JSON text column; NULL column -> json null. *bad on parse error. */
json_t *col_json(sqlite3_stmt *st, int i, bool *bad);
/* Returns a malloc'd compact dump of j, or NULL (for a NULL j too). */
char *dump(const json_t *j);
/* Cursor = decimal seq of the last row of the previous page (NULL: from the
 * newest); NN_EINVAL, field "after", otherwise. */
enum nn_status parse_cursor(const char *after, int64_t *seq, struct nn_err *e);
/* NN_EINVAL, field "limit", unless 1..1000. */
enum nn_status check_limit(int limit, struct nn_err *e);

#endif
