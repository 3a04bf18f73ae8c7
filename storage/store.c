/* store: nncd's SQLite state (see store.h for the contract and
 * docs/internals/store.md for schema, migrations and durability).
 *
 * Owns: the database file DATA_DIR/nncd.db, a pool of up to STORE_POOL
 * connections (opened lazily), each with its own cache of prepared
 * statements, and the schema migrations.
 *
 * Threading: every public function borrows one connection from the pool
 * (mutex + condvar), so a connection is only ever used by one thread at a
 * time; the connections are opened SQLITE_OPEN_NOMUTEX for that reason.
 * Writers of this process also serialize on write_mu before BEGIN IMMEDIATE:
 * in-process writers then queue on a mutex instead of sleeping in SQLite's
 * busy handler (which polls), and BEGIN IMMEDIATE still protects against other
 * processes (the sqlite3 shell, a second nncd) through busy_timeout. Lock
 * order is always pool -> write_mu: nothing that holds write_mu waits for a
 * connection. Readers never take write_mu (WAL lets them run alongside). */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STORE_POOL 8
/* A job that was running when the process died this many times is failed at
 * start-up instead of being queued again: one model that crashes the daemon
 * must not put it in a restart loop. */
#define STORE_MAX_ATTEMPTS 5
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

/* ---- migrations ----
 * Migration i (1-based) is migrations[i-1]; PRAGMA user_version holds the
 * number of the last one applied. Never edit an applied migration: append. */
static const char *const migrations[] = {
	/* 1: initial schema */
	"CREATE TABLE tenants ("
	"  id TEXT PRIMARY KEY,"
	"  name TEXT NOT NULL,"
	"  created_at TEXT NOT NULL);"
	"INSERT INTO tenants(id, name, created_at) VALUES ('default', 'default', " NOW ");"
	/* Models are soft-deleted (deleted_at): finished jobs keep pointing at
	 * a real row and the foreign key stays enforced. */
	"CREATE TABLE models ("
	"  id TEXT PRIMARY KEY,"
	"  tenant_id TEXT NOT NULL REFERENCES tenants(id),"
	"  name TEXT,"
	"  sha256 TEXT NOT NULL CHECK (length(sha256) = 64),"
	"  size INTEGER NOT NULL CHECK (size >= 0),"
	"  summary TEXT,"
	"  created_at TEXT NOT NULL,"
	"  deleted_at TEXT,"
	"  seq INTEGER NOT NULL UNIQUE);"
	"CREATE INDEX models_tenant_seq ON models(tenant_id, seq);"
	"CREATE INDEX models_sha256 ON models(sha256);"
	"CREATE TABLE jobs ("
	"  id TEXT PRIMARY KEY,"
	"  tenant_id TEXT NOT NULL REFERENCES tenants(id),"
	"  model_id TEXT NOT NULL REFERENCES models(id),"
	"  spec TEXT NOT NULL,"
	"  state TEXT NOT NULL CHECK (state IN"
	"    ('queued','running','succeeded','failed','canceled')),"
	"  progress REAL NOT NULL DEFAULT 0,"
	"  cancel_requested INTEGER NOT NULL DEFAULT 0,"
	"  error_code TEXT,"
	"  error_message TEXT,"
	"  attempts INTEGER NOT NULL DEFAULT 0,"
	"  created_at TEXT NOT NULL,"
	"  started_at TEXT,"
	"  finished_at TEXT,"
	"  seq INTEGER NOT NULL UNIQUE);"
	"CREATE INDEX jobs_state_seq ON jobs(state, seq);"
	"CREATE INDEX jobs_tenant_seq ON jobs(tenant_id, seq);"
	"CREATE INDEX jobs_tenant_state_seq ON jobs(tenant_id, state, seq);"
	"CREATE INDEX jobs_model_state ON jobs(model_id, state);"
	"CREATE TABLE job_metrics ("
	"  job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
	"  step_index INTEGER NOT NULL CHECK (step_index >= 0),"
	"  op TEXT NOT NULL,"
	"  state TEXT NOT NULL CHECK (state IN"
	"    ('pending','running','succeeded','failed','canceled','skipped')),"
	"  metrics TEXT,"
	"  updated_at TEXT NOT NULL,"
	"  PRIMARY KEY (job_id, step_index)) WITHOUT ROWID;"
	"CREATE TABLE artifacts ("
	"  id TEXT PRIMARY KEY,"
	"  tenant_id TEXT NOT NULL REFERENCES tenants(id),"
	"  job_id TEXT NOT NULL REFERENCES jobs(id),"
	"  sha256 TEXT NOT NULL CHECK (length(sha256) = 64),"
	"  size INTEGER NOT NULL CHECK (size >= 0),"
	"  format TEXT NOT NULL,"
	"  created_at TEXT NOT NULL);"
	"CREATE INDEX artifacts_sha256 ON artifacts(sha256);"
	"CREATE INDEX artifacts_job ON artifacts(job_id);"
	"CREATE TABLE job_events ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
	"  ts TEXT NOT NULL,"
	"  type TEXT NOT NULL,"
	"  data TEXT);"
	"CREATE INDEX job_events_job ON job_events(job_id, id);",
};
#define N_MIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))

/* ---- errors ---- */

/* Call before the statement is reset: sqlite3_errmsg describes the last call. */
static enum nn_status db_fail(struct nn_err *e, sqlite3 *db, int rc, const char *what)
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

static enum nn_status oom(struct nn_err *e)
{
	return err_set(e, NN_ENOMEM, "out_of_memory", NULL, "out of memory building a response");
}

/* ---- statements ---- */

/* Cached prepared statement for a string literal; caller must sq_done() it. */
static enum nn_status sq_prep(struct conn *c, const char *sql, sqlite3_stmt **out,
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
		return db_fail(e, c->db, rc, "preparing a statement");
	c->cache[c->ncache].sql = sql;
	c->cache[c->ncache].st = st;
	c->ncache++;
	*out = st;
	return NN_OK;
}

static void sq_done(sqlite3_stmt *st)
{
	if (st) {
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
	}
}

/* Binds by format: 's' text (NULL binds NULL), 'i' int64, 'n' int, 'd' double. */
static int sq_bindv(sqlite3_stmt *st, const char *fmt, va_list ap)
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

/* Prepares (cached) and binds; the caller steps and then sq_done()s. */
static enum nn_status sq(struct conn *c, const char *sql, sqlite3_stmt **out, struct nn_err *e,
			 const char *fmt, ...)
{
	sqlite3_stmt *st = NULL;
	enum nn_status s = sq_prep(c, sql, &st, e);
	if (s)
		return s;
	va_list ap;
	va_start(ap, fmt);
	int rc = sq_bindv(st, fmt, ap);
	va_end(ap);
	if (rc != SQLITE_OK) {
		s = db_fail(e, c->db, rc, "binding parameters");
		sq_done(st);
		return s;
	}
	*out = st;
	return NN_OK;
}

/* Runs a statement that returns no rows we need; *changes (may be NULL) gets
 * the number of rows it modified. */
static enum nn_status sq_run(struct conn *c, const char *sql, int *changes, struct nn_err *e,
			     const char *fmt, ...)
{
	sqlite3_stmt *st = NULL;
	enum nn_status s = sq_prep(c, sql, &st, e);
	if (s)
		return s;
	va_list ap;
	va_start(ap, fmt);
	int rc = sq_bindv(st, fmt, ap);
	va_end(ap);
	if (rc == SQLITE_OK) {
		do
			rc = sqlite3_step(st);
		while (rc == SQLITE_ROW);
	}
	if (rc != SQLITE_DONE)
		s = db_fail(e, c->db, rc, "updating the database");
	else if (changes)
		*changes = sqlite3_changes(c->db);
	sq_done(st);
	return s;
}

/* Steps a statement expected to give at most one row: *row tells whether it
 * did. On a row the caller reads columns, then sq_done()s. */
static enum nn_status sq_row(struct conn *c, sqlite3_stmt *st, bool *row, struct nn_err *e)
{
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*row = true;
		return NN_OK;
	}
	*row = false;
	if (rc == SQLITE_DONE)
		return NN_OK;
	enum nn_status s = db_fail(e, c->db, rc, "reading the database");
	sq_done(st);
	return s;
}

/* ---- transactions ---- */

static enum nn_status tx_write(struct conn *c, struct nn_err *e)
{
	pthread_mutex_lock(&c->s->write_mu);
	c->writing = true;
	enum nn_status s = sq_run(c, "BEGIN IMMEDIATE", NULL, e, "");
	if (s) {
		c->writing = false;
		pthread_mutex_unlock(&c->s->write_mu);
	}
	return s;
}

static enum nn_status tx_read(struct conn *c, struct nn_err *e)
{
	return sq_run(c, "BEGIN", NULL, e, "");
}

/* Ends any transaction (no-op outside one) and releases write_mu if held. */
static void tx_rollback(struct conn *c)
{
	for (size_t i = 0; i < c->ncache; i++)
		sq_done(c->cache[i].st);
	if (!sqlite3_get_autocommit(c->db))
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
	if (c->writing) {
		c->writing = false;
		pthread_mutex_unlock(&c->s->write_mu);
	}
}

static enum nn_status tx_commit(struct conn *c, struct nn_err *e)
{
	enum nn_status s = sq_run(c, "COMMIT", NULL, e, "");
	if (s)
		err_prefix(e, "commit");
	tx_rollback(c); /* after a failed COMMIT; otherwise just drops write_mu */
	return s;
}

/* ---- pool ---- */

static void conn_free(struct conn *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->ncache; i++)
		sqlite3_finalize(c->cache[i].st);
	free(c->cache);
	sqlite3_close(c->db);
	free(c);
}

static enum nn_status conn_open(struct store *s, struct conn **out, struct nn_err *e)
{
	struct conn *c = calloc(1, sizeof *c);
	if (!c)
		return err_set(e, NN_ENOMEM, "out_of_memory", NULL, "database connection");
	c->s = s;
	enum nn_status st = NN_OK;
	int rc = sqlite3_open_v2(s->db_path, &c->db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
				 NULL);
	if (rc != SQLITE_OK) {
		st = db_fail(e, c->db, rc, "opening the database");
		err_prefix(e, "%s", s->db_path);
		goto fail;
	}
	sqlite3_extended_result_codes(c->db, 1);
	sqlite3_busy_timeout(c->db, 10000);

	sqlite3_stmt *q = NULL;
	bool row;
	if ((st = sq(c, "PRAGMA journal_mode=WAL", &q, e, "")))
		goto fail;
	if ((st = sq_row(c, q, &row, e)))
		goto fail;
	const char *mode = row ? (const char *)sqlite3_column_text(q, 0) : NULL;
	if (!mode || strcmp(mode, "wal") != 0) {
		st = err_set(e, NN_EIO, "db_error", NULL,
			     "%s: cannot switch to WAL mode (journal_mode is %s)", s->db_path,
			     mode ? mode : "unknown");
		sq_done(q);
		goto fail;
	}
	sq_done(q);
	/* FULL: the WAL is fsynced at every commit, so an acknowledged model,
	 * job or result survives power loss too (see docs/internals/store.md). */
	if ((st = sq_run(c, "PRAGMA synchronous=FULL", NULL, e, "")))
		goto fail;
	if ((st = sq_run(c, "PRAGMA foreign_keys=ON", NULL, e, "")))
		goto fail;
	*out = c;
	return NN_OK;
fail:
	conn_free(c);
	return st;
}

static enum nn_status conn_get(struct store *s, struct conn **out, struct nn_err *e)
{
	pthread_mutex_lock(&s->mu);
	for (;;) {
		if (s->free_list) {
			struct conn *c = s->free_list;
			s->free_list = c->next_free;
			c->next_free = NULL;
			pthread_mutex_unlock(&s->mu);
			*out = c;
			return NN_OK;
		}
		if (s->nopen < STORE_POOL) {
			s->nopen++; /* reserve the slot, open without holding the lock */
			pthread_mutex_unlock(&s->mu);
			struct conn *c = NULL;
			enum nn_status st = conn_open(s, &c, e);
			pthread_mutex_lock(&s->mu);
			if (st) {
				s->nopen--;
				pthread_cond_signal(&s->cv);
				pthread_mutex_unlock(&s->mu);
				return st;
			}
			for (int i = 0; i < STORE_POOL; i++) {
				if (!s->all[i]) {
					s->all[i] = c;
					break;
				}
			}
			pthread_mutex_unlock(&s->mu);
			*out = c;
			return NN_OK;
		}
		pthread_cond_wait(&s->cv, &s->mu);
	}
}

static void conn_put(struct conn *c)
{
	if (!c)
		return;
	/* Resets every statement so no read snapshot outlives the call, and
	 * ends a transaction an error path may have left open. */
	tx_rollback(c);
	struct store *s = c->s;
	pthread_mutex_lock(&s->mu);
	c->next_free = s->free_list;
	s->free_list = c;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

/* ---- small helpers ---- */

static bool is_sha_hex(const char *h)
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

static bool fits_id(const char *id)
{
	return id && strlen(id) < STORE_ID_CAP;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(st, i);
}

/* Copies a column into a fixed buffer; false if it is NULL or does not fit. */
static bool col_copy(sqlite3_stmt *st, int i, char *dst, size_t cap)
{
	const char *v = col_text(st, i);
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
static json_t *col_json_str(sqlite3_stmt *st, int i)
{
	const char *v = col_text(st, i);
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
static json_t *col_json(sqlite3_stmt *st, int i, bool *bad)
{
	const char *v = col_text(st, i);
	if (!v)
		return json_null();
	json_error_t je;
	json_t *j = json_loads(v, JSON_DECODE_ANY, &je);
	if (!j)
		*bad = true;
	return j;
}

/* Returns a malloc'd compact dump of j, or NULL (for a NULL j too). */
static char *dump(const json_t *j)
{
	return j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
}

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

/* Cursor = decimal seq of the last row of the previous page. */
static enum nn_status parse_cursor(const char *after, int64_t *seq, struct nn_err *e)
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

static enum nn_status check_limit(int limit, struct nn_err *e)
{
	if (limit < 1 || limit > 1000)
		return err_set(e, NN_EINVAL, "invalid", "limit", "must be between 1 and 1000");
	return NN_OK;
}

/* ---- ids ---- */

static void fill_random(unsigned char *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = getrandom(buf + got, n - got, 0);
		if (r > 0)
			got += (size_t)r;
		else if (r < 0 && errno != EINTR)
			break;
	}
	if (got == n)
		return;
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	while (fd >= 0 && got < n) {
		ssize_t r = read(fd, buf + got, n - got);
		if (r > 0)
			got += (size_t)r;
		else if (r == 0 || errno != EINTR)
			break;
	}
	if (fd >= 0)
		close(fd);
	if (got == n)
		return;
	/* No kernel randomness at all (a seccomp sandbox denying both): ids
	 * stay unique (time + pid + stack address) though no longer secret. */
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t x = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	x ^= ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)&ts;
	for (size_t i = got; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[i] = (unsigned char)(x >> 24);
	}
}

void store_new_id(const char *prefix, char out[STORE_ID_CAP])
{
	/* RFC 4648 base32, lowercase: no 0, 1, 8 or 9, so nothing reads as
	 * o, l or b. */
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
	unsigned char rnd[17];
	fill_random(rnd, sizeof rnd);
	size_t p = prefix ? strlen(prefix) : 0;
	if (p > STORE_ID_CAP - 27)
		p = STORE_ID_CAP - 27;
	memcpy(out, prefix ? prefix : "", p);
	/* 26 groups of 5 bits = 130 bits taken from the 136 random ones. */
	for (int i = 0; i < 26; i++) {
		int bit = i * 5;
		unsigned v = ((unsigned)rnd[bit / 8] << 8 | rnd[bit / 8 + 1]) >> (11 - bit % 8);
		out[p + (size_t)i] = alphabet[v & 31];
	}
	out[p + 26] = '\0';
}

/* ---- open / close ---- */

static enum nn_status read_user_version(struct conn *c, int *v, struct nn_err *e)
{
	sqlite3_stmt *q;
	bool row;
	enum nn_status s = sq(c, "PRAGMA user_version", &q, e, "");
	if (s)
		return s;
	if ((s = sq_row(c, q, &row, e)))
		return s;
	*v = row ? sqlite3_column_int(q, 0) : 0;
	sq_done(q);
	return NN_OK;
}

static enum nn_status migrate(struct conn *c, struct nn_err *e)
{
	int v;
	enum nn_status s = read_user_version(c, &v, e);
	if (s)
		return s;
	if (v > N_MIGRATIONS)
		return err_set(e, NN_EUNSUPPORTED, "db_error", NULL,
			       "database schema version %d is newer than this nncd knows (%d)", v,
			       N_MIGRATIONS);
	while (v < N_MIGRATIONS) {
		if ((s = tx_write(c, e)))
			return s;
		/* Another process may have migrated between our read and BEGIN. */
		if ((s = read_user_version(c, &v, e)))
			goto fail;
		if (v >= N_MIGRATIONS) {
			tx_rollback(c);
			break;
		}
		char *msg = NULL;
		int rc = sqlite3_exec(c->db, migrations[v], NULL, NULL, &msg);
		if (rc != SQLITE_OK) {
			s = err_set(e, (rc & 0xff) == SQLITE_FULL ? NN_ENOSPC : NN_EIO, "db_error",
				    NULL, "migration %d: %s", v + 1, msg ? msg : sqlite3_errstr(rc));
			sqlite3_free(msg);
			goto fail;
		}
		char pragma[48];
		snprintf(pragma, sizeof pragma, "PRAGMA user_version=%d", v + 1);
		rc = sqlite3_exec(c->db, pragma, NULL, NULL, NULL);
		if (rc != SQLITE_OK) {
			s = db_fail(e, c->db, rc, "recording the schema version");
			goto fail;
		}
		if ((s = tx_commit(c, e)))
			return s;
		v++;
	}
	return NN_OK;
fail:
	tx_rollback(c);
	return s;
}

static enum nn_status mkdir_p(const char *dir, struct nn_err *e)
{
	char path[4096];
	if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
		return err_set(e, NN_EINVAL, "invalid", NULL, "data directory path is too long");
	for (char *p = path + 1;; p++) {
		if (*p == '/' || *p == '\0') {
			char saved = *p;
			*p = '\0';
			if (mkdir(path, 0755) == 0) {
				/* The new directory entry must survive power loss as
				 * well as the database inside it. */
				char *slash = strrchr(path, '/');
				char parent[4096];
				snprintf(parent, sizeof parent, "%.*s",
					 slash ? (slash == path ? 1 : (int)(slash - path)) : 1,
					 slash ? path : ".");
				int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
				if (fd >= 0) {
					fsync(fd);
					close(fd);
				}
			} else if (errno != EEXIST) {
				return err_set(e, errno == ENOSPC ? NN_ENOSPC : NN_EIO, "io_error",
					       NULL, "creating %s: %s", path, strerror(errno));
			}
			*p = saved;
			if (saved == '\0')
				break;
		}
	}
	return NN_OK;
}

enum nn_status store_open(const char *data_dir, struct store **out, struct nn_err *e)
{
	*out = NULL;
	if (!data_dir || !*data_dir)
		return err_set(e, NN_EINVAL, "invalid", NULL, "no data directory given");
	enum nn_status st = mkdir_p(data_dir, e);
	if (st)
		return st;
	struct store *s = calloc(1, sizeof *s);
	if (!s)
		return err_set(e, NN_ENOMEM, "out_of_memory", NULL, "store");
	size_t n = strlen(data_dir) + sizeof "/nncd.db";
	s->db_path = malloc(n);
	if (!s->db_path) {
		free(s);
		return err_set(e, NN_ENOMEM, "out_of_memory", NULL, "store");
	}
	snprintf(s->db_path, n, "%s/nncd.db", data_dir);
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	pthread_mutex_init(&s->write_mu, NULL);

	struct conn *c = NULL;
	if ((st = conn_get(s, &c, e)))
		goto fail;
	st = migrate(c, e);
	conn_put(c);
	if (st)
		goto fail;
	*out = s;
	return NN_OK;
fail:
	store_close(s);
	return st;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	for (int i = 0; i < STORE_POOL; i++) {
		if (s->all[i]) {
			/* Lets SQLite refresh planner statistics it found stale. */
			sqlite3_exec(s->all[i]->db, "PRAGMA optimize", NULL, NULL, NULL);
			conn_free(s->all[i]);
		}
	}
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->write_mu);
	free(s->db_path);
	free(s);
}

/* ---- models ---- */

enum nn_status store_model_insert(struct store *s, const char *tenant, const char *name,
				  const char *sha256, int64_t size, const json_t *summary,
				  char id_out[STORE_ID_CAP], struct nn_err *e)
{
	if (!is_sha_hex(sha256))
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
	char *sum = dump(summary);
	if (summary && !sum)
		return oom(e);
	char id[STORE_ID_CAP];
	store_new_id("mdl_", id);
	struct conn *c = NULL;
	enum nn_status st = conn_get(s, &c, e);
	if (st)
		goto out;
	if ((st = tx_write(c, e)))
		goto out;
	st = sq_run(c,
		    "INSERT INTO models(id, tenant_id, name, sha256, size, summary, created_at, seq)"
		    " VALUES (?, ?, ?, ?, ?, ?, " NOW ","
		    " (SELECT COALESCE(MAX(seq), 0) + 1 FROM models))",
		    NULL, e, "ssssis", id, tenant, name, sha256, size, sum);
	if (st)
		goto out;
	if ((st = tx_commit(c, e)))
		goto out;
	memcpy(id_out, id, sizeof id);
out:
	conn_put(c);
	free(sum);
	return st;
}

enum nn_status store_model_get(struct store *s, const char *tenant, const char *id, json_t **out,
			       struct nn_err *e)
{
	*out = NULL;
	if (!fits_id(id))
		return err_set(e, NN_ENOTFOUND, "not_found", NULL, "no model '%.64s'", id ? id : "");
	struct conn *c = NULL;
	sqlite3_stmt *q = NULL;
	json_t *o = NULL;
	bool row, bad = false;
	enum nn_status st = conn_get(s, &c, e);
	if (st)
		return st;
	if ((st = sq(c,
		     "SELECT id, name, sha256, size, created_at, summary FROM models"
		     " WHERE tenant_id = ? AND id = ? AND deleted_at IS NULL",
		     &q, e, "ss", tenant, id)))
		goto out;
	if ((st = sq_row(c, q, &row, e)))
		goto out;
	if (!row) {
		st = err_set(e, NN_ENOTFOUND, "not_found", NULL, "no model '%s'", id);
		goto out;
	}
	json_t *sum = col_json(q, 5, &bad);
	if (bad) {
		st = err_set(e, NN_EIO, "db_error", NULL, "model %s: stored summary is corrupt", id);
		goto out;
	}
	/* Core fields first (they read first in a terminal) and they win over
	 * summary keys of the same name. */
	o = json_object();
	if (!o || json_object_set_new(o, "id", col_json_str(q, 0)) ||
	    json_object_set_new(o, "name", col_json_str(q, 1)) ||
	    json_object_set_new(o, "sha256", col_json_str(q, 2)) ||
	    json_object_set_new(o, "size", json_integer(sqlite3_column_int64(q, 3))) ||
	    json_object_set_new(o, "created_at", col_json_str(q, 4)) ||
	    (json_is_object(sum) && json_object_update_missing(o, sum))) {
		json_decref(sum);
		st = oom(e);
		goto out;
	}
	json_decref(sum);
	*out = o;
	o = NULL;
out:
	sq_done(q);
	conn_put(c);
	json_decref(o);
	return st;
}

enum nn_status store_model_list(struct store *s, const char *tenant, const char *after, int limit,
				json_t **out, struct nn_err *e)
{
	*out = NULL;
	int64_t cursor = 0;
	enum nn_status st = parse_cursor(after, &cursor, e);
	if (st || (st = check_limit(limit, e)))
		return st;
	struct conn *c = NULL;
	sqlite3_stmt *q = NULL;
	json_t *res = json_object(), *arr = json_array();
	if (!res || !arr || json_object_set(res, "models", arr)) {
		st = oom(e);
		goto out;
	}
	if ((st = conn_get(s, &c, e)))
		goto out;
	/* One more row than asked tells whether there is a next page. */
	if ((st = sq(c,
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
		if ((st = sq_row(c, q, &row, e)))
			goto out;
		if (!row)
			break;
		if (n == limit) {
			more = true;
			break;
		}
		json_t *m = json_object();
		if (!m || json_array_append_new(arr, m) ||
		    json_object_set_new(m, "id", col_json_str(q, 0)) ||
		    json_object_set_new(m, "name", col_json_str(q, 1)) ||
		    json_object_set_new(m, "sha256", col_json_str(q, 2)) ||
		    json_object_set_new(m, "size", json_integer(sqlite3_column_int64(q, 3))) ||
		    json_object_set_new(m, "created_at", col_json_str(q, 4))) {
			st = oom(e);
			goto out;
		}
		last_seq = sqlite3_column_int64(q, 5);
		n++;
	}
	char buf[24];
	snprintf(buf, sizeof buf, "%" PRId64, last_seq);
	if (json_object_set_new(res, "next", more ? json_string(buf) : json_null())) {
		st = oom(e);
		goto out;
	}
	*out = res;
	res = NULL;
out:
	sq_done(q);
	conn_put(c);
	json_decref(arr);
	json_decref(res);
	return st;
}

enum nn_status store_model_delete(struct store *s, const char *tenant, const char *id,
				  char sha_out[65], struct nn_err *e)
{
	if (!fits_id(id))
		return err_set(e, NN_ENOTFOUND, "not_found", NULL, "no model '%.64s'", id ? id : "");
	struct conn *c = NULL;
	sqlite3_stmt *q = NULL;
	bool row;
	char sha[65];
	enum nn_status st = conn_get(s, &c, e);
	if (st)
		return st;
	if ((st = tx_write(c, e)))
		goto out;
	if ((st = sq(c,
		     "SELECT sha256 FROM models WHERE tenant_id = ? AND id = ? AND deleted_at IS NULL",
		     &q, e, "ss", tenant, id)))
		goto out;
	if ((st = sq_row(c, q, &row, e)))
		goto out;
	if (!row) {
		st = err_set(e, NN_ENOTFOUND, "not_found", NULL, "no model '%s'", id);
		goto out;
	}
	if (!col_copy(q, 0, sha, sizeof sha)) {
		st = err_set(e, NN_EIO, "db_error", NULL, "model %s: stored sha256 is corrupt", id);
		goto out;
	}
	sq_done(q);
	if ((st = sq(c,
		     "SELECT id FROM jobs WHERE model_id = ? AND state IN ('queued', 'running')"
		     " LIMIT 1",
		     &q, e, "s", id)))
		goto out;
	if ((st = sq_row(c, q, &row, e)))
		goto out;
	if (row) {
		st = err_set(e, NN_ECONFLICT, "conflict", NULL,
			     "model %s is used by job %s, which is not finished", id, col_text(q, 0));
		goto out;
	}
	sq_done(q);
	q = NULL;
	/* Soft delete: finished jobs keep a valid model_id; the row is hidden
	 * from every read from now on. */
	if ((st = sq_run(c, "UPDATE models SET deleted_at = " NOW " WHERE id = ?", NULL, e, "s",
			 id)))
		goto out;
	if ((st = tx_commit(c, e)))
		goto out;
	if (sha_out)
		memcpy(sha_out, sha, sizeof sha);
out:
	sq_done(q);
	conn_put(c);
	return st;
}

enum nn_status store_model_blob(struct store *s, const char *tenant, const char *id,
				char sha_out[65], json_t **summary_out, struct nn_err *e)
{
	if (summary_out)
		*summary_out = NULL;
	if (!fits_id(id))
		return err_set(e, NN_ENOTFOUND, "not_found", NULL, "no model '%.64s'", id ? id : "");
	struct conn *c = NULL;
	sqlite3_stmt *q = NULL;
	bool row, bad = false;
	enum nn_status st = conn_get(s, &c, e);
	if (st)
		return st;
	if ((st = sq(c,
		     "SELECT sha256, summary FROM models"
		     " WHERE tenant_id = ? AND id = ? AND deleted_at IS NULL",
		     &q, e, "ss", tenant, id)))
		goto out;
	if ((st = sq_row(c, q, &row, e)))
		goto out;
	if (!row) {
		st = err_set(e, NN_ENOTFOUND, "not_found", NULL, "no model '%s'", id);
		goto out;
	}
	if (!col_copy(q, 0, sha_out, 65)) {
		st = err_set(e, NN_EIO, "db_error", NULL, "model %s: stored sha256 is corrupt", id);
		goto out;
	}
	if (summary_out) {
		json_t *sum = col_json(q, 1, &bad);
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
			st = oom(e);
			goto out;
		}
		*summary_out = sum;
	}
out:
	sq_done(q);
	conn_put(c);
	return st;
}

enum nn_status store_blob_in_use(struct store *s, const char *sha256, bool *in_use,
				 struct nn_err *e)
{
	*in_use = false;
	struct conn *c = NULL;
	sqlite3_stmt *q = NULL;
	bool row;
	enum nn_status st = conn_get(s, &c, e);
	if (st)
		return st;
	if ((st = sq(c,
		     "SELECT EXISTS (SELECT 1 FROM models WHERE sha256 = ?1 AND deleted_at IS NULL)"
		     " OR EXISTS (SELECT 1 FROM artifacts WHERE sha256 = ?1)",
		     &q, e, "s", sha256)))
		goto out;
	if ((st = sq_row(c, q, &row, e)))
		goto out;
	*in_use = row && sqlite3_column_int(q, 0) != 0;
out:
	sq_done(q);
	conn_put(c);
	return st;
}

/* ---- jobs ---- */

enum nn_status store_job_insert(struct store *s, const char *tenant, const char *model_id,
				const json_t *spec, char id_out[STORE_ID_CAP], struct nn_err *e)
{
	if (!json_is_object(spec))
		return err_set(e, NN_EINVAL, "invalid_spec", NULL, "the spec must be a JSON object");
	const json_t *steps = json_object_get(spec, "steps");
	if (!json_is_array(steps))
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
	if (!fits_id(model_id))
		return err_set(e, NN_ENOTFOUND, "not_found", "model", "no model '%.64s'",
			       model_id ? model_id : "");
	char *text = dump(spec);
	if (!text)
		return oom(e);
	char id[STORE_ID_CAP];
	store_new_id("job_", id);
	struct conn *c = NULL;
	sqlite3_stmt *q = NULL;
	bool row;
	enum nn_status st = conn_get(s, &c, e);
	if (st)
		goto out;
	if ((st = tx_write(c, e)))
		goto out;
	/* Checked inside the write transaction so a concurrent delete of the
	 * model cannot slip between the check and the insert. */
	if ((st = sq(c,
		     "SELECT 1 FROM models WHERE tenant_id = ? AND id = ? AND deleted_at IS NULL",
		     &q, e, "ss", tenant, model_id)))
		goto out;
	if ((st = sq_row(c, q, &row, e)))
		goto out;
	sq_done(q);
	q = NULL;
	if (!row) {
		st = err_set(e, NN_ENOTFOUND, "not_found", "model", "no model '%s'", model_id);
		goto out;
	}
	if ((st = sq_run(c,
			 "INSERT INTO jobs(id, tenant_id, model_id, spec, state, created_at, seq)"
			 " VALUES (?, ?, ?, ?, 'queued', " NOW ","
			 " (SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs))",
			 NULL, e, "ssss", id, tenant, model_id, text)))
		goto out;
	for (size_t i = 0; i < json_array_size(steps); i++) {
		const char *op = json_string_value(json_object_get(json_array_get(steps, i), "op"));
		if ((st = sq_run(c,
				 "INSERT INTO job_metrics(job_id, step_index, op, state, updated_at)"
				 " VALUES (?, ?, ?, 'pending', " NOW ")",
				 NULL, e, "sns", id, (int)i, op)))
			goto out;
	}
	if ((st = tx_commit(c, e)))
		goto out;
	memcpy(id_out, id, sizeof id);
out:
	sq_done(q);
	conn_put(c);
	free(text);
	return st;
}

#define JOB_COLS                                                                          \
	"id, model_id, state, progress, error_code, error_message, spec, created_at,"     \
	" started_at, finished_at, seq"

/* Builds the API view of the job at the current row of q (JOB_COLS). */
static enum nn_status job_view(struct conn *c, sqlite3_stmt *q, bool with_spec, json_t **out,
			       struct nn_err *e)
{
	const char *id = col_text(q, 0);
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
		if (err && (json_object_set_new(err, "code", col_json_str(q, 4)) ||
			    json_object_set_new(err, "message", col_json_str(q, 5)))) {
			json_decref(err);
			err = NULL;
		}
	}
	if (json_object_set_new(o, "id", col_json_str(q, 0)) ||
	    json_object_set_new(o, "model", col_json_str(q, 1)) ||
	    json_object_set_new(o, "state", col_json_str(q, 2)) ||
	    json_object_set_new(o, "progress", json_real(sqlite3_column_double(q, 3))) ||
	    json_object_set_new(o, "error", err) || json_object_set(o, "steps", steps) ||
	    json_object_set(o, "artifacts", arts))
		goto nomem;
	if (with_spec) {
		json_t *spec = col_json(q, 6, &bad);
		if (bad)
			goto corrupt;
		if (json_object_set_new(o, "spec", spec))
			goto nomem;
	}
	if (json_object_set_new(o, "created_at", col_json_str(q, 7)) ||
	    json_object_set_new(o, "started_at", col_json_str(q, 8)) ||
	    json_object_set_new(o, "finished_at", col_json_str(q, 9)))
		goto nomem;

	if ((st = sq(c,
		     "SELECT op, state, metrics FROM job_metrics WHERE job_id = ?"
		     " ORDER BY step_index",
		     &sub, e, "s", id)))
		goto fail;
	for (;;) {
		bool row;
		if ((st = sq_row(c, sub, &row, e)))
			goto fail;
		if (!row)
			break;
		json_t *step = json_object();
		if (!step || json_array_append_new(steps, step) ||
		    json_object_set_new(step, "op", col_json_str(sub, 0)) ||
		    json_object_set_new(step, "state", col_json_str(sub, 1)))
			goto nomem;
		json_t *m = col_json(sub, 2, &bad);
		if (bad)
			goto corrupt;
		if (json_object_set_new(step, "metrics", m))
			goto nomem;
	}
	sq_done(sub);
	if ((st = sq(c,
		     "SELECT id, sha256, size, format FROM artifacts WHERE job_id = ?"
		     " ORDER BY created_at, id",
		     &sub, e, "s", id)))
		goto fail;
	for (;;) {
		bool row;
		if ((st = sq_row(c, sub, &row, e)))
			goto fail;
		if (!row)
			break;
		json_t *a = json_object();
		if (!a || json_array_append_new(arts, a) ||
		    json_object_set_new(a, "id", col_json_str(sub, 0)) ||
		    json_object_set_new(a, "sha256", col_json_str(sub, 1)) ||
		    json_object_set_new(a, "size", json_integer(sqlite3_column_int64(sub, 2))) ||
		    json_object_set_new(a, "format", col_json_str(sub, 3)))
			goto nomem;
	}
	sq_done(sub);
	json_decref(steps);
	json_decref(arts);
	*out = o;
	return NN_OK;
corrupt:
	st = err_set(e, NN_EIO, "db_error", NULL, "job %s: stored JSON is corrupt", id);
	goto fail;
nomem:
	st = oom(e);
fail:
	sq_done(sub);
	json_decref(steps);
	json_decref(arts);
	json_decref(o);
	return st;
}

enum nn_status store_job_get(struct store *s, const char *tenant, const char *id, json_t **out,
			     struct nn_err *e)
{
	*out = NULL;
	if (!fits_id(id))
		return err_set(e, NN_ENOTFOUND, "not_found", NULL, "no job '%.64s'", id ? id : "");
	struct conn *c = NULL;
	sqlite3_stmt *q = NULL;
	bool row;
	enum nn_status st = conn_get(s, &c, e);
	if (st)
		return st;
	/* One read transaction: job row, steps and artifacts from one snapshot. */
	if ((st = tx_read(c, e)))
		goto out;
	if ((st = sq(c, "SELECT " JOB_COLS " FROM jobs WHERE tenant_id = ? AND id = ?", &q, e,
		     "ss", tenant, id)))
		goto out;
	if ((st = sq_row(c, q, &row, e)))
		goto out;
	if (!row) {
		st = err_set(e, NN_ENOTFOUND, "not_found", NULL, "no job '%s'", id);
		goto out;
	}
	st = job_view(c, q, true, out, e);
out:
	sq_done(q);
	conn_put(c); /* ends the read transaction */
	return st;
}

enum nn_status store_job_list(struct store *s, const char *tenant, const char *state,
			      const char *after, int limit, json_t **out, struct nn_err *e)
{
	*out = NULL;
	int64_t cursor = 0;
	enum nn_status st = parse_cursor(after, &cursor, e);
	if (st || (st = check_limit(limit, e)))
		return st;
	if (state && !valid_state(state))
		return err_set(e, NN_EINVAL, "invalid", "state",
			       "must be one of queued, running, succeeded, failed, canceled");
	struct conn *c = NULL;
	sqlite3_stmt *q = NULL;
	json_t *res = json_object(), *arr = json_array();
	if (!res || !arr || json_object_set(res, "jobs", arr)) {
		st = oom(e);
		goto out;
	}
	if ((st = conn_get(s, &c, e)))
		goto out;
	if ((st = tx_read(c, e)))
		goto out;
	if (state)
		st = sq(c,
			"SELECT " JOB_COLS " FROM jobs WHERE tenant_id = ? AND state = ? AND seq < ?"
			" ORDER BY seq DESC LIMIT ?",
			&q, e, "ssin", tenant, state, cursor, limit + 1);
	else
		st = sq(c,
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
		if ((st = sq_row(c, q, &row, e)))
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
			st = oom(e);
			goto out;
		}
		last_seq = sqlite3_column_int64(q, 10);
		n++;
	}
	char buf[24];
	snprintf(buf, sizeof buf, "%" PRId64, last_seq);
	if (json_object_set_new(res, "next", more ? json_string(buf) : json_null())) {
		st = oom(e);
		goto out;
	}
	*out = res;
	res = NULL;
out:
	sq_done(q);
	conn_put(c);
	json_decref(arr);
	json_decref(res);
	return st;
}

/* Reads a job's state inside the caller's transaction. NN_ENOTFOUND if absent. */
static enum nn_status job_state(struct conn *c, const char *tenant, const char *id,
				char state[16], bool *cancel_requested, char tenant_out[STORE_ID_CAP],
				struct nn_err *e)
{
	if (!fits_id(id))
		return err_set(e, NN_ENOTFOUND, "not_found", NULL, "no job '%.64s'", id ? id : "");
	sqlite3_stmt *q;
	bool row;
	enum nn_status st;
	if (tenant)
		st = sq(c,
			"SELECT state, cancel_requested, tenant_id FROM jobs"
			" WHERE id = ? AND tenant_id = ?",
			&q, e, "ss", id, tenant);
	else
		st = sq(c, "SELECT state, cancel_requested, tenant_id FROM jobs WHERE id = ?", &q, e,
			"s", id);
	if (st)
		return st;
	if ((st = sq_row(c, q, &row, e)))
		return st;
	if (!row) {
		sq_done(q);
		return err_set(e, NN_ENOTFOUND, "not_found", NULL, "no job '%s'", id);
	}
	bool ok = col_copy(q, 0, state, 16);
	if (cancel_requested)
		*cancel_requested = sqlite3_column_int(q, 1) != 0;
	if (tenant_out)
		ok = ok && col_copy(q, 2, tenant_out, STORE_ID_CAP);
	sq_done(q);
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
	enum nn_status st = sq_run(c,
				   "UPDATE jobs SET state = ?, error_code = ?, error_message = ?,"
				   " finished_at = " NOW " WHERE id = ?",
				   NULL, e, "ssss", state, code, message, id);
	if (st)
		return st;
	return sq_run(c,
		      "UPDATE job_metrics SET state = ?, updated_at = " NOW
		      " WHERE job_id = ? AND state <> 'succeeded'",
		      NULL, e, "ss", step_state, id);
}

enum nn_status store_job_cancel(struct store *s, const char *tenant, const char *id,
				char now_state[16], struct nn_err *e)
{
	struct conn *c = NULL;
	char state[16];
	enum nn_status st = conn_get(s, &c, e);
	if (st)
		return st;
	if ((st = tx_write(c, e)))
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
		if ((st = sq_run(c, "UPDATE jobs SET cancel_requested = 1 WHERE id = ?", NULL, e,
				 "s", id)))
			goto out;
	}
	if ((st = tx_commit(c, e)))
		goto out;
	if (now_state)
		memcpy(now_state, state, sizeof state);
out:
	conn_put(c);
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
	enum nn_status st = conn_get(s, &c, e);
	if (st)
		return st;
	/* Idle workers poll: answer "empty" from a plain read, without taking
	 * the write lock. */
	if ((st = sq(c, "SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 'queued')", &q, e, "")))
		goto out;
	if ((st = sq_row(c, q, &row, e)))
		goto out;
	row = row && sqlite3_column_int(q, 0);
	sq_done(q);
	q = NULL;
	if (!row)
		goto out;

	if ((st = tx_write(c, e)))
		goto out;
	for (;;) {
		if ((st = sq(c,
			     "SELECT j.id, j.tenant_id, j.model_id, m.sha256, j.spec, j.rowid"
			     " FROM jobs j JOIN models m ON m.id = j.model_id"
			     " WHERE j.state = 'queued' ORDER BY j.seq LIMIT 1",
			     &q, e, "")))
			goto out;
		if ((st = sq_row(c, q, &row, e)))
			goto out;
		if (!row)
			break;
		json_error_t je;
		json_t *spec = json_loads(col_text(q, 4) ? col_text(q, 4) : "", 0, &je);
		bool ok = spec && col_copy(q, 0, out->id, sizeof out->id) &&
			  col_copy(q, 1, out->tenant, sizeof out->tenant) &&
			  col_copy(q, 2, out->model_id, sizeof out->model_id) &&
			  col_copy(q, 3, out->model_sha256, sizeof out->model_sha256);
		int64_t rowid = sqlite3_column_int64(q, 5);
		sq_done(q);
		q = NULL;
		if (!ok) {
			/* A row no worker could run (edited by hand?): fail it rather
			 * than block the queue behind it, and look at the next one. */
			json_decref(spec);
			if ((st = sq_run(c,
					 "UPDATE jobs SET state = 'failed', error_code = 'internal',"
					 " error_message = 'the stored job could not be read',"
					 " finished_at = " NOW " WHERE rowid = ?",
					 NULL, e, "i", rowid)))
				goto out;
			memset(out, 0, sizeof *out);
			continue;
		}
		if ((st = sq_run(c,
				 "UPDATE jobs SET state = 'running', started_at = " NOW ","
				 " attempts = attempts + 1, progress = 0 WHERE id = ?",
				 NULL, e, "s", out->id))) {
			json_decref(spec);
			goto out;
		}
		out->spec = spec;
		break;
	}
	if ((st = tx_commit(c, e))) {
		json_decref(out->spec);
		goto out;
	}
	*found = out->spec != NULL;
out:
	if (st || !*found)
		memset(out, 0, sizeof *out);
	sq_done(q);
	conn_put(c);
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
	enum nn_status st = conn_get(s, &c, e);
	if (st)
		return st;
	if ((st = tx_write(c, e)))
		goto out;
	if ((st = sq_run(c, "UPDATE jobs SET progress = ? WHERE id = ?", &n, e, "ds", progress,
			 job_id)))
		goto out;
	if (n == 0) {
		st = err_set(e, NN_ENOTFOUND, "not_found", NULL, "no job '%.64s'",
			     job_id ? job_id : "");
		goto out;
	}
	st = tx_commit(c, e);
out:
	conn_put(c);
	return st;
}

enum nn_status store_job_step_update(struct store *s, const char *job_id, int index,
				     const char *state, const json_t *metrics, struct nn_err *e)
{
	if (!valid_step_state(state))
		return err_set(e, NN_EINVAL, "invalid", "state", "unknown step state '%.32s'",
			       state ? state : "");
	char *m = dump(metrics);
	if (metrics && !m)
		return oom(e);
	struct conn *c = NULL;
	int n = 0;
	enum nn_status st = conn_get(s, &c, e);
	if (st)
		goto out;
	if ((st = tx_write(c, e)))
		goto out;
	/* NULL metrics keeps what an earlier update recorded. */
	if ((st = sq_run(c,
			 "UPDATE job_metrics SET state = ?, metrics = COALESCE(?, metrics),"
			 " updated_at = " NOW " WHERE job_id = ? AND step_index = ?",
			 &n, e, "sssn", state, m, job_id, index)))
		goto out;
	if (n == 0) {
		st = err_set(e, NN_ENOTFOUND, "not_found", NULL, "job '%.64s' has no step %d",
			     job_id ? job_id : "", index);
		goto out;
	}
	st = tx_commit(c, e);
out:
	conn_put(c);
	free(m);
	return st;
}

enum nn_status store_job_event(struct store *s, const char *job_id, const char *type,
			       const json_t *data, struct nn_err *e)
{
	if (!type || !*type)
		return err_set(e, NN_EINVAL, "invalid", "type", "event type is empty");
	char *d = dump(data);
	if (data && !d)
		return oom(e);
	struct conn *c = NULL;
	enum nn_status st = conn_get(s, &c, e);
	if (st)
		goto out;
	if ((st = tx_write(c, e)))
		goto out;
	if ((st = sq_run(c, "INSERT INTO job_events(job_id, ts, type, data) VALUES (?, " NOW ", ?, ?)",
			 NULL, e, "sss", job_id, type, d)))
		goto out;
	st = tx_commit(c, e);
out:
	conn_put(c);
	free(d);
	return st;
}

enum nn_status store_job_cancel_requested(struct store *s, const char *job_id, bool *requested,
					  struct nn_err *e)
{
	*requested = false;
	struct conn *c = NULL;
	char state[16];
	enum nn_status st = conn_get(s, &c, e);
	if (st)
		return st;
	st = job_state(c, NULL, job_id, state, requested, NULL, e);
	conn_put(c);
	return st;
}

enum nn_status store_job_succeed(struct store *s, const char *job_id, const char *artifact_sha256,
				 int64_t artifact_size, const char *format,
				 char artifact_id_out[STORE_ID_CAP], struct nn_err *e)
{
	if (!is_sha_hex(artifact_sha256))
		return err_set(e, NN_EINVAL, "invalid", "sha256", "not 64 lowercase hex digits");
	if (artifact_size < 0)
		return err_set(e, NN_EINVAL, "invalid", "size", "negative size");
	if (!format || !*format || strlen(format) >= sizeof ((struct store_artifact *)0)->format)
		return err_set(e, NN_EINVAL, "invalid", "format", "format must be 1 to 15 chars");
	char art[STORE_ID_CAP], state[16], tenant[STORE_ID_CAP];
	store_new_id("art_", art);
	struct conn *c = NULL;
	enum nn_status st = conn_get(s, &c, e);
	if (st)
		return st;
	if ((st = tx_write(c, e)))
		goto out;
	if ((st = job_state(c, NULL, job_id, state, NULL, tenant, e)))
		goto out;
	if (strcmp(state, "running") != 0) {
		st = err_set(e, NN_ECONFLICT, "conflict", NULL, "job is %s, not running", state);
		goto out;
	}
	if ((st = sq_run(c,
			 "INSERT INTO artifacts(id, tenant_id, job_id, sha256, size, format,"
			 " created_at) VALUES (?, ?, ?, ?, ?, ?, " NOW ")",
			 NULL, e, "ssssis", art, tenant, job_id, artifact_sha256, artifact_size,
			 format)))
		goto out;
	if ((st = sq_run(c,
			 "UPDATE jobs SET state = 'succeeded', progress = 1, error_code = NULL,"
			 " error_message = NULL, finished_at = " NOW " WHERE id = ?",
			 NULL, e, "s", job_id)))
		goto out;
	if ((st = tx_commit(c, e)))
		goto out;
	memcpy(artifact_id_out, art, sizeof art);
out:
	conn_put(c);
	return st;
}

/* failed or canceled, from queued or running. */
static enum nn_status job_finish(struct store *s, const char *job_id, const char *state_to,
				 const char *code, const char *message, struct nn_err *e)
{
	struct conn *c = NULL;
	char state[16];
	enum nn_status st = conn_get(s, &c, e);
	if (st)
		return st;
	if ((st = tx_write(c, e)))
		goto out;
	if ((st = job_state(c, NULL, job_id, state, NULL, NULL, e)))
		goto out;
	if (is_finished(state)) {
		st = err_set(e, NN_ECONFLICT, "conflict", NULL, "job is already %s", state);
		goto out;
	}
	if ((st = job_end(c, job_id, state_to, state_to, code, message, e)))
		goto out;
	st = tx_commit(c, e);
out:
	conn_put(c);
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
	enum nn_status st = conn_get(s, &c, e);
	if (st)
		return st;
	if ((st = tx_write(c, e)))
		goto out;
	/* A cancel asked for before the crash is honoured now. */
	if ((st = sq_run(c,
			 "UPDATE job_metrics SET state = 'canceled', updated_at = " NOW
			 " WHERE state <> 'succeeded' AND job_id IN"
			 " (SELECT id FROM jobs WHERE state = 'running' AND cancel_requested = 1)",
			 NULL, e, "")) ||
	    (st = sq_run(c,
			 "UPDATE jobs SET state = 'canceled', finished_at = " NOW
			 " WHERE state = 'running' AND cancel_requested = 1",
			 NULL, e, "")))
		goto out;
	/* A job that was running at STORE_MAX_ATTEMPTS crashes is the likely
	 * cause: fail it instead of crashing again. */
	if ((st = sq_run(c,
			 "UPDATE job_metrics SET state = 'failed', updated_at = " NOW
			 " WHERE state <> 'succeeded' AND job_id IN"
			 " (SELECT id FROM jobs WHERE state = 'running' AND attempts >= ?)",
			 NULL, e, "n", STORE_MAX_ATTEMPTS)) ||
	    (st = sq_run(c,
			 "UPDATE jobs SET state = 'failed', finished_at = " NOW ","
			 " error_code = 'crashed', error_message = 'the daemon stopped '"
			 " || attempts || ' times while running this job'"
			 " WHERE state = 'running' AND attempts >= ?",
			 NULL, e, "n", STORE_MAX_ATTEMPTS)))
		goto out;
	if ((st = sq_run(c,
			 "INSERT INTO job_events(job_id, ts, type, data)"
			 " SELECT id, " NOW ", 'requeued', json_object('attempts', attempts)"
			 " FROM jobs WHERE state = 'running'",
			 NULL, e, "")) ||
	    (st = sq_run(c,
			 "UPDATE job_metrics SET state = 'pending', metrics = NULL, updated_at = " NOW
			 " WHERE job_id IN (SELECT id FROM jobs WHERE state = 'running')",
			 NULL, e, "")) ||
	    (st = sq_run(c,
			 "UPDATE jobs SET state = 'queued', progress = 0, started_at = NULL"
			 " WHERE state = 'running'",
			 &n, e, "")))
		goto out;
	if ((st = tx_commit(c, e)))
		goto out;
	*count = n;
out:
	conn_put(c);
	return st;
}

/* ---- artifacts ---- */

enum nn_status store_artifact_get(struct store *s, const char *tenant, const char *id,
				  struct store_artifact *out, struct nn_err *e)
{
	memset(out, 0, sizeof *out);
	if (!fits_id(id))
		return err_set(e, NN_ENOTFOUND, "not_found", NULL, "no artifact '%.64s'",
			       id ? id : "");
	struct conn *c = NULL;
	sqlite3_stmt *q = NULL;
	bool row;
	enum nn_status st = conn_get(s, &c, e);
	if (st)
		return st;
	if ((st = sq(c,
		     "SELECT id, job_id, sha256, size, format FROM artifacts"
		     " WHERE tenant_id = ? AND id = ?",
		     &q, e, "ss", tenant, id)))
		goto out;
	if ((st = sq_row(c, q, &row, e)))
		goto out;
	if (!row) {
		st = err_set(e, NN_ENOTFOUND, "not_found", NULL, "no artifact '%s'", id);
		goto out;
	}
	if (!col_copy(q, 0, out->id, sizeof out->id) ||
	    !col_copy(q, 1, out->job_id, sizeof out->job_id) ||
	    !col_copy(q, 2, out->sha256, sizeof out->sha256) ||
	    !col_copy(q, 4, out->format, sizeof out->format)) {
		memset(out, 0, sizeof *out);
		st = err_set(e, NN_EIO, "db_error", NULL, "artifact %s: corrupt row", id);
		goto out;
	}
	out->size = sqlite3_column_int64(q, 3);
out:
	sq_done(q);
	conn_put(c);
	return st;
}

/* ---- health ---- */

enum nn_status store_ping(struct store *s, struct nn_err *e)
{
	struct conn *c = NULL;
	enum nn_status st = conn_get(s, &c, e);
	if (st)
		return st;
	st = sq_run(c, "SELECT 1", NULL, e, "");
	conn_put(c);
	return st;
}

enum nn_status store_integrity_check(struct store *s, bool *ok, struct nn_err *e)
{
	*ok = false;
	struct conn *c = NULL;
	sqlite3_stmt *q = NULL;
	bool row;
	enum nn_status st = conn_get(s, &c, e);
	if (st)
		return st;
	if ((st = sq(c, "PRAGMA integrity_check", &q, e, "")))
		goto out;
	if ((st = sq_row(c, q, &row, e)))
		goto out;
	/* A healthy database answers exactly one row, "ok". */
	*ok = row && col_text(q, 0) && strcmp(col_text(q, 0), "ok") == 0;
	if (*ok) {
		if ((st = sq_row(c, q, &row, e)))
			goto out;
		*ok = !row;
	}
out:
	sq_done(q);
	conn_put(c);
	return st;
}
