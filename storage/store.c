/* store: nncd's SQLite state (see store.h for the contract and
 * docs/internals/store.md for schema, migrations and durability).
 *
 * Owns: the database file DATA_DIR/nncd.db, a pool of up to STORE_POOL
 * connections (opened lazily), each with its own cache of prepared
 * statements, and the schema migrations; also ids (store_new_id), the
 * blob-in-use query and the health checks. The queries of model rows, of
 * jobs and of datasets live in store_models.c, store_jobs.c and
 * store_datasets.c; the SQL helpers all of them
 * use (statements, transactions, columns, errors) in store_db.c.
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
#include "store_db.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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
	/* 2: evaluation of the job's input model (issue 3); the steps' own
	 * metrics stay in job_metrics. */
	"ALTER TABLE jobs ADD COLUMN input_metrics TEXT;",
	/* 3: datasets. Rows are hard-deleted (a job names a dataset only in its
	 * spec text, which keeps the id after the row is gone); each array is a
	 * blob of its own, a standalone .npy file. */
	"CREATE TABLE datasets ("
	"  id TEXT PRIMARY KEY,"
	"  tenant_id TEXT NOT NULL REFERENCES tenants(id),"
	"  seq INTEGER NOT NULL UNIQUE,"
	"  name TEXT,"
	"  format TEXT NOT NULL CHECK (format IN ('npy','npz')),"
	"  sha256 TEXT NOT NULL CHECK (length(sha256) = 64),"
	"  size INTEGER NOT NULL CHECK (size >= 0),"
	"  samples INTEGER NOT NULL CHECK (samples >= 1),"
	"  created_at TEXT NOT NULL);"
	"CREATE INDEX datasets_tenant_seq ON datasets(tenant_id, seq);"
	"CREATE TABLE dataset_arrays ("
	"  dataset_id TEXT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,"
	"  position INTEGER NOT NULL CHECK (position >= 0),"
	"  name TEXT NOT NULL,"
	"  dtype TEXT NOT NULL,"
	"  shape TEXT NOT NULL,"
	"  sha256 TEXT NOT NULL CHECK (length(sha256) = 64),"
	"  bytes INTEGER NOT NULL CHECK (bytes >= 0),"
	"  PRIMARY KEY (dataset_id, name)) WITHOUT ROWID;"
	"CREATE INDEX dataset_arrays_sha256 ON dataset_arrays(sha256);",
	/* 4: the zstd-compressed representation of an artifact, a blob of its
	 * own recorded in the artifact's row (issue 4). NULL for artifacts of
	 * jobs that succeeded before this migration: they are served identity
	 * only (docs/API.md, Artifacts). */
	"ALTER TABLE artifacts ADD COLUMN zstd_sha256 TEXT"
	"  CHECK (zstd_sha256 IS NULL OR length(zstd_sha256) = 64);"
	"ALTER TABLE artifacts ADD COLUMN zstd_size INTEGER"
	"  CHECK (zstd_size IS NULL OR zstd_size >= 0);"
	"CREATE INDEX artifacts_zstd_sha256 ON artifacts(zstd_sha256);",
};
#define N_MIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))

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
		st = sdb_fail(e, c->db, rc, "opening the database");
		err_prefix(e, "%s", s->db_path);
		goto fail;
	}
	sqlite3_extended_result_codes(c->db, 1);
	sqlite3_busy_timeout(c->db, 10000);

	sqlite3_stmt *q = NULL;
	bool row;
	if ((st = sdb_query(c, "PRAGMA journal_mode=WAL", &q, e, "")))
		goto fail;
	if ((st = sdb_row(c, q, &row, e)))
		goto fail;
	const char *mode = row ? (const char *)sqlite3_column_text(q, 0) : NULL;
	if (!mode || strcmp(mode, "wal") != 0) {
		st = err_set(e, NN_EIO, "db_error", NULL,
			     "%s: cannot switch to WAL mode (journal_mode is %s)", s->db_path,
			     mode ? mode : "unknown");
		sdb_done(q);
		goto fail;
	}
	sdb_done(q);
	/* FULL: the WAL is fsynced at every commit, so an acknowledged model,
	 * job or result survives power loss too (see docs/internals/store.md). */
	if ((st = sdb_run(c, "PRAGMA synchronous=FULL", NULL, e, "")))
		goto fail;
	if ((st = sdb_run(c, "PRAGMA foreign_keys=ON", NULL, e, "")))
		goto fail;
	*out = c;
	return NN_OK;
fail:
	conn_free(c);
	return st;
}

enum nn_status sdb_conn_get(struct store *s, struct conn **out, struct nn_err *e)
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

void sdb_conn_put(struct conn *c)
{
	if (!c)
		return;
	/* Resets every statement so no read snapshot outlives the call, and
	 * ends a transaction an error path may have left open. */
	sdb_tx_rollback(c);
	struct store *s = c->s;
	pthread_mutex_lock(&s->mu);
	c->next_free = s->free_list;
	s->free_list = c;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
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
	enum nn_status s = sdb_query(c, "PRAGMA user_version", &q, e, "");
	if (s)
		return s;
	if ((s = sdb_row(c, q, &row, e)))
		return s;
	*v = row ? sqlite3_column_int(q, 0) : 0;
	sdb_done(q);
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
		if ((s = sdb_tx_write(c, e)))
			return s;
		/* Another process may have migrated between our read and BEGIN. */
		if ((s = read_user_version(c, &v, e)))
			goto fail;
		if (v >= N_MIGRATIONS) {
			sdb_tx_rollback(c);
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
			s = sdb_fail(e, c->db, rc, "recording the schema version");
			goto fail;
		}
		if ((s = sdb_tx_commit(c, e)))
			return s;
		v++;
	}
	return NN_OK;
fail:
	sdb_tx_rollback(c);
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
	if ((st = sdb_conn_get(s, &c, e)))
		goto fail;
	st = migrate(c, e);
	sdb_conn_put(c);
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

/* ---- blob references ---- */

enum nn_status store_blob_in_use(struct store *s, const char *sha256, bool *in_use,
				 struct nn_err *e)
{
	*in_use = false;
	struct conn *c = NULL;
	sqlite3_stmt *q = NULL;
	bool row;
	enum nn_status st = sdb_conn_get(s, &c, e);
	if (st)
		return st;
	if ((st = sdb_query(c,
		     "SELECT EXISTS (SELECT 1 FROM models WHERE sha256 = ?1 AND deleted_at IS NULL)"
		     " OR EXISTS (SELECT 1 FROM artifacts WHERE sha256 = ?1)"
		     " OR EXISTS (SELECT 1 FROM artifacts WHERE zstd_sha256 = ?1)"
		     " OR EXISTS (SELECT 1 FROM dataset_arrays WHERE sha256 = ?1)",
		     &q, e, "s", sha256)))
		goto out;
	if ((st = sdb_row(c, q, &row, e)))
		goto out;
	*in_use = row && sqlite3_column_int(q, 0) != 0;
out:
	sdb_done(q);
	sdb_conn_put(c);
	return st;
}

/* ---- health ---- */

enum nn_status store_ping(struct store *s, struct nn_err *e)
{
	struct conn *c = NULL;
	enum nn_status st = sdb_conn_get(s, &c, e);
	if (st)
		return st;
	st = sdb_run(c, "SELECT 1", NULL, e, "");
	sdb_conn_put(c);
	return st;
}

enum nn_status store_integrity_check(struct store *s, bool *ok, struct nn_err *e)
{
	*ok = false;
	struct conn *c = NULL;
	sqlite3_stmt *q = NULL;
	bool row;
	enum nn_status st = sdb_conn_get(s, &c, e);
	if (st)
		return st;
	if ((st = sdb_query(c, "PRAGMA integrity_check", &q, e, "")))
		goto out;
	if ((st = sdb_row(c, q, &row, e)))
		goto out;
	/* A healthy database answers exactly one row, "ok". */
	*ok = row && sdb_col_text(q, 0) && strcmp(sdb_col_text(q, 0), "ok") == 0;
	if (*ok) {
		if ((st = sdb_row(c, q, &row, e)))
			goto out;
		*ok = !row;
	}
out:
	sdb_done(q);
	sdb_conn_put(c);
	return st;
}
