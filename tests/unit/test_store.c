/* Unit tests of storage/store.c against a real SQLite file in a temp dir.
 * One executable, one case per argument (meson runs each as its own test). */
#include <ftw.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"

static int failures;

#define CHECK(cond)                                                                       \
	do {                                                                              \
		if (!(cond)) {                                                            \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
			failures++;                                                       \
		}                                                                         \
	} while (0)
/* A status check that prints the error message when it does not hold. */
#define CHECK_ST(call, want)                                                              \
	do {                                                                              \
		err_clear(&e);                                                            \
		enum nn_status got_ = (call);                                             \
		if (got_ != (want)) {                                                     \
			fprintf(stderr, "%s:%d: %s -> %s (%s: %s), want %s\n", __FILE__,   \
				__LINE__, #call, err_status_name(got_), e.code, e.message,  \
				err_status_name(want));                                   \
			failures++;                                                       \
		}                                                                         \
	} while (0)
#define REQUIRE_OK(call)                                                                  \
	do {                                                                              \
		err_clear(&e);                                                            \
		if ((call) != NN_OK) {                                                    \
			fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call, \
				e.message);                                               \
			exit(1);                                                          \
		}                                                                         \
	} while (0)

static const char SHA_A[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
static const char SHA_B[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

static char tmpdir[256];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void make_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	snprintf(tmpdir, sizeof tmpdir, "%s/nncd-store-XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		exit(1);
	}
}

static void remove_tmpdir(void)
{
	nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static struct store *open_store(void)
{
	struct nn_err e = {0};
	struct store *s = NULL;
	REQUIRE_OK(store_open(tmpdir, &s, &e));
	return s;
}

/* Runs one SQL query on the database file directly, returning the first
 * column of the first row as text (for checks the API does not expose). */
static void raw_query(const char *sql, char *out, size_t cap)
{
	char path[512];
	snprintf(path, sizeof path, "%s/nncd.db", tmpdir);
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	out[0] = '\0';
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		fprintf(stderr, "raw_query %s: %s\n", sql, sqlite3_errmsg(db));
		failures++;
	} else if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0)) {
		snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
}

static bool is_timestamp(const json_t *j)
{
	const char *s = json_string_value(j);
	/* 2026-11-28T22:03:01.123Z */
	if (!s || strlen(s) != 24)
		return false;
	const char *shape = "dddd-dd-ddTdd:dd:dd.dddZ";
	for (int i = 0; i < 24; i++) {
		if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
			return false;
	}
	return true;
}

/* Exactly these keys, nothing more. */
static bool has_keys(const json_t *o, const char *const *keys)
{
	size_t n = 0;
	for (; keys[n]; n++)
		if (!json_object_get(o, keys[n]))
			return false;
	return json_object_size(o) == n;
}

static json_t *spec_of(const char *model, int nsteps)
{
	json_t *steps = json_array();
	for (int i = 0; i < nsteps; i++)
		json_array_append_new(steps, i % 2 ? json_pack("{s:s, s:s, s:s}", "op", "quantize",
							       "scheme", "int8", "granularity",
							       "per_channel")
						   : json_pack("{s:s, s:s, s:f, s:s}", "op", "prune",
							       "method", "magnitude", "sparsity",
							       0.8, "scope", "global"));
	return json_pack("{s:s, s:o}", "model", model, "steps", steps);
}

static void new_model(struct store *s, const char *sha, char id[STORE_ID_CAP])
{
	struct nn_err e = {0};
	json_t *sum = json_pack("{s:i, s:[s]}", "opset", 13, "inputs", "x");
	REQUIRE_OK(store_model_insert(s, STORE_DEFAULT_TENANT, "m", sha, 1234, sum, id, &e));
	json_decref(sum);
}

static void new_job(struct store *s, const char *model, int nsteps, char id[STORE_ID_CAP])
{
	struct nn_err e = {0};
	json_t *spec = spec_of(model, nsteps);
	REQUIRE_OK(store_job_insert(s, STORE_DEFAULT_TENANT, model, spec, id, &e));
	json_decref(spec);
}

static json_t *get_job(struct store *s, const char *id)
{
	struct nn_err e = {0};
	json_t *j = NULL;
	REQUIRE_OK(store_job_get(s, STORE_DEFAULT_TENANT, id, &j, &e));
	return j;
}

static const char *jstr(const json_t *o, const char *key)
{
	const char *v = json_string_value(json_object_get(o, key));
	return v ? v : "";
}

static const char *step_state(const json_t *job, size_t i)
{
	return jstr(json_array_get(json_object_get(job, "steps"), i), "state");
}

/* ---- cases ---- */

static void test_migrations(void)
{
	struct nn_err e = {0};
	char buf[64];
	struct store *s = open_store();
	store_close(s);
	raw_query("PRAGMA user_version", buf, sizeof buf);
	CHECK(strcmp(buf, "4") == 0);
	raw_query("SELECT id FROM tenants", buf, sizeof buf);
	CHECK(strcmp(buf, STORE_DEFAULT_TENANT) == 0);
	raw_query("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN"
		  " ('tenants','models','jobs','job_metrics','artifacts','job_events',"
		  "  'datasets','dataset_arrays')",
		  buf, sizeof buf);
	CHECK(strcmp(buf, "8") == 0);

	/* Re-open: nothing re-applied (a second tenants insert would fail). */
	s = open_store();
	char id[STORE_ID_CAP];
	new_model(s, SHA_A, id);
	store_close(s);
	s = open_store();
	store_close(s);
	raw_query("PRAGMA user_version", buf, sizeof buf);
	CHECK(strcmp(buf, "4") == 0);
	raw_query("SELECT count(*) FROM tenants", buf, sizeof buf);
	CHECK(strcmp(buf, "1") == 0);
	raw_query("SELECT count(*) FROM models", buf, sizeof buf);
	CHECK(strcmp(buf, "1") == 0);

	/* A database from a newer nncd is refused, not "migrated". */
	raw_query("PRAGMA user_version = 99", buf, sizeof buf);
	s = NULL;
	CHECK_ST(store_open(tmpdir, &s, &e), NN_EUNSUPPORTED);
	CHECK(s == NULL);
	CHECK(strstr(e.message, "99") != NULL);
}

static void test_wal_and_integrity(void)
{
	struct nn_err e = {0};
	char buf[64];
	struct store *s = open_store();
	raw_query("PRAGMA journal_mode", buf, sizeof buf);
	CHECK(strcmp(buf, "wal") == 0);
	bool ok = false;
	CHECK_ST(store_integrity_check(s, &ok, &e), NN_OK);
	CHECK(ok);
	CHECK_ST(store_ping(s, &e), NN_OK);
	store_close(s);
}

static void test_ids(void)
{
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
	enum { N = 2000 };
	static char ids[N][STORE_ID_CAP];
	for (int i = 0; i < N; i++) {
		store_new_id("job_", ids[i]);
		CHECK(strlen(ids[i]) == 30);
		CHECK(strncmp(ids[i], "job_", 4) == 0);
		for (int k = 4; k < 30; k++)
			CHECK(strchr(alphabet, ids[i][k]) != NULL);
	}
	for (int i = 0; i < N; i++)
		for (int k = i + 1; k < N; k++)
			CHECK(strcmp(ids[i], ids[k]) != 0);
	/* Every character of the alphabet shows up: the bits are all used. */
	for (int a = 0; a < 32; a++) {
		bool seen = false;
		for (int i = 0; i < N && !seen; i++)
			seen = strchr(ids[i] + 4, alphabet[a]) != NULL;
		CHECK(seen);
	}
}

static void test_models(void)
{
	struct nn_err e = {0};
	struct store *s = open_store();
	char ids[5][STORE_ID_CAP];
	json_t *sum = json_pack("{s:i, s:i, s:s}", "opset", 13, "size", -1, "graph_name", "g");
	for (int i = 0; i < 5; i++) {
		char name[16];
		snprintf(name, sizeof name, "m%d", i);
		CHECK_ST(store_model_insert(s, STORE_DEFAULT_TENANT, name, i == 4 ? SHA_B : SHA_A,
					    100 + i, sum, ids[i], &e),
			 NN_OK);
		CHECK(strncmp(ids[i], "mdl_", 4) == 0 && strlen(ids[i]) == 30);
	}
	json_decref(sum);

	json_t *m = NULL;
	CHECK_ST(store_model_get(s, STORE_DEFAULT_TENANT, ids[2], &m, &e), NN_OK);
	CHECK(strcmp(jstr(m, "id"), ids[2]) == 0);
	CHECK(strcmp(jstr(m, "name"), "m2") == 0);
	CHECK(strcmp(jstr(m, "sha256"), SHA_A) == 0);
	CHECK(json_integer_value(json_object_get(m, "size")) == 102); /* not the summary's -1 */
	CHECK(json_integer_value(json_object_get(m, "opset")) == 13);
	CHECK(strcmp(jstr(m, "graph_name"), "g") == 0);
	CHECK(is_timestamp(json_object_get(m, "created_at")));
	json_decref(m);
	m = NULL;
	CHECK_ST(store_model_get(s, "other-tenant", ids[2], &m, &e), NN_ENOTFOUND);
	CHECK_ST(store_model_get(s, STORE_DEFAULT_TENANT, "mdl_nope", &m, &e), NN_ENOTFOUND);
	CHECK(m == NULL);
	CHECK_ST(store_model_insert(s, STORE_DEFAULT_TENANT, "x", "ABC", 1, NULL, ids[0], &e),
		 NN_EINVAL);
	CHECK(strcmp(e.field, "sha256") == 0);

	/* Pages of 2, newest first, then next = null. */
	const char *want[] = {ids[4], ids[3], ids[2], ids[1], ids[0]};
	char cursor[32] = "";
	int seen = 0;
	for (int page = 0; page < 3; page++) {
		json_t *l = NULL;
		CHECK_ST(store_model_list(s, STORE_DEFAULT_TENANT, page ? cursor : NULL, 2, &l, &e),
			 NN_OK);
		json_t *arr = json_object_get(l, "models");
		CHECK(json_array_size(arr) == (page < 2 ? 2u : 1u));
		for (size_t i = 0; i < json_array_size(arr); i++) {
			json_t *it = json_array_get(arr, i);
			static const char *const keys[] = {"id", "name", "sha256", "size",
							   "created_at", NULL};
			CHECK(has_keys(it, keys));
			CHECK(seen < 5 && strcmp(jstr(it, "id"), want[seen]) == 0);
			seen++;
		}
		json_t *next = json_object_get(l, "next");
		if (page < 2) {
			CHECK(json_is_string(next));
			snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
		} else {
			CHECK(json_is_null(next));
		}
		json_decref(l);
	}
	CHECK(seen == 5);
	json_t *l = NULL;
	CHECK_ST(store_model_list(s, STORE_DEFAULT_TENANT, "abc", 2, &l, &e), NN_EINVAL);
	CHECK(strcmp(e.field, "after") == 0);
	CHECK_ST(store_model_list(s, STORE_DEFAULT_TENANT, "-3", 2, &l, &e), NN_EINVAL);
	CHECK_ST(store_model_list(s, STORE_DEFAULT_TENANT, NULL, 0, &l, &e), NN_EINVAL);
	CHECK(strcmp(e.field, "limit") == 0);
	CHECK_ST(store_model_list(s, STORE_DEFAULT_TENANT, NULL, 1001, &l, &e), NN_EINVAL);
	CHECK(l == NULL);

	/* Delete: 409 while a queued job uses the model, then allowed. */
	char job[STORE_ID_CAP], sha[65] = "";
	new_job(s, ids[1], 1, job);
	CHECK_ST(store_model_delete(s, STORE_DEFAULT_TENANT, ids[1], sha, &e), NN_ECONFLICT);
	CHECK(strstr(e.message, job) != NULL);
	char now_state[16];
	CHECK_ST(store_job_cancel(s, STORE_DEFAULT_TENANT, job, now_state, &e), NN_OK);
	CHECK_ST(store_model_delete(s, STORE_DEFAULT_TENANT, ids[1], sha, &e), NN_OK);
	CHECK(strcmp(sha, SHA_A) == 0);
	m = NULL;
	CHECK_ST(store_model_get(s, STORE_DEFAULT_TENANT, ids[1], &m, &e), NN_ENOTFOUND);
	CHECK_ST(store_model_delete(s, STORE_DEFAULT_TENANT, ids[1], sha, &e), NN_ENOTFOUND);
	CHECK_ST(store_model_blob(s, STORE_DEFAULT_TENANT, ids[1], sha, NULL, &e), NN_ENOTFOUND);
	/* The finished job that used it is still there. */
	json_t *j = get_job(s, job);
	CHECK(json_is_null(json_object_get(j, "metrics"))); /* nothing evaluated yet */
	CHECK(strcmp(jstr(j, "model"), ids[1]) == 0);
	json_decref(j);
	/* New jobs cannot use a deleted model. */
	json_t *spec = spec_of(ids[1], 1);
	CHECK_ST(store_job_insert(s, STORE_DEFAULT_TENANT, ids[1], spec, job, &e), NN_ENOTFOUND);
	CHECK(strcmp(e.field, "model") == 0);
	json_decref(spec);
	l = NULL;
	CHECK_ST(store_model_list(s, STORE_DEFAULT_TENANT, NULL, 100, &l, &e), NN_OK);
	CHECK(json_array_size(json_object_get(l, "models")) == 4);
	json_decref(l);

	/* Blob references: SHA_A still used by ids[0,2,3]; SHA_B only by ids[4]. */
	bool used = false;
	CHECK_ST(store_blob_in_use(s, SHA_A, &used, &e), NN_OK);
	CHECK(used);
	CHECK_ST(store_model_delete(s, STORE_DEFAULT_TENANT, ids[4], sha, &e), NN_OK);
	CHECK_ST(store_blob_in_use(s, SHA_B, &used, &e), NN_OK);
	CHECK(!used);

	json_t *summary = NULL;
	CHECK_ST(store_model_blob(s, STORE_DEFAULT_TENANT, ids[0], sha, &summary, &e), NN_OK);
	CHECK(strcmp(sha, SHA_A) == 0);
	CHECK(json_integer_value(json_object_get(summary, "opset")) == 13);
	json_decref(summary);
	store_close(s);
}

static void test_job_shape(void)
{
	struct nn_err e = {0};
	struct store *s = open_store();
	char model[STORE_ID_CAP], job[STORE_ID_CAP];
	new_model(s, SHA_A, model);
	json_t *spec = spec_of(model, 2);
	CHECK_ST(store_job_insert(s, STORE_DEFAULT_TENANT, model, spec, job, &e), NN_OK);
	CHECK(strncmp(job, "job_", 4) == 0 && strlen(job) == 30);

	json_t *j = get_job(s, job);
	static const char *const keys[] = {"id",	 "model",     "state",	    "progress",
					   "error",	 "metrics",   "steps",     "artifacts",  "spec",
					   "created_at", "started_at", "finished_at", NULL};
	CHECK(has_keys(j, keys));
	CHECK(strcmp(jstr(j, "id"), job) == 0);
	CHECK(strcmp(jstr(j, "model"), model) == 0);
	CHECK(strcmp(jstr(j, "state"), "queued") == 0);
	CHECK(json_is_real(json_object_get(j, "progress")) &&
	      json_real_value(json_object_get(j, "progress")) == 0.0);
	CHECK(json_is_null(json_object_get(j, "error")));
	CHECK(json_equal(json_object_get(j, "spec"), spec));
	CHECK(is_timestamp(json_object_get(j, "created_at")));
	CHECK(json_is_null(json_object_get(j, "started_at")));
	CHECK(json_is_null(json_object_get(j, "finished_at")));
	CHECK(json_array_size(json_object_get(j, "artifacts")) == 0);
	json_t *steps = json_object_get(j, "steps");
	CHECK(json_array_size(steps) == 2);
	static const char *const step_keys[] = {"op", "state", "metrics", NULL};
	for (size_t i = 0; i < json_array_size(steps); i++) {
		json_t *st = json_array_get(steps, i);
		CHECK(has_keys(st, step_keys));
		CHECK(strcmp(jstr(st, "state"), "pending") == 0);
		CHECK(json_is_null(json_object_get(st, "metrics")));
	}
	CHECK(strcmp(jstr(json_array_get(steps, 0), "op"), "prune") == 0);
	CHECK(strcmp(jstr(json_array_get(steps, 1), "op"), "quantize") == 0);
	json_decref(j);

	/* Bad inputs. */
	char other[STORE_ID_CAP];
	CHECK_ST(store_job_insert(s, STORE_DEFAULT_TENANT, "mdl_missing", spec, other, &e),
		 NN_ENOTFOUND);
	CHECK_ST(store_job_insert(s, "other-tenant", model, spec, other, &e), NN_ENOTFOUND);
	json_t *bad = json_pack("{s:[{s:i}]}", "steps", "op", 3);
	CHECK_ST(store_job_insert(s, STORE_DEFAULT_TENANT, model, bad, other, &e), NN_EINVAL);
	CHECK(strcmp(e.field, "steps[0].op") == 0);
	json_decref(bad);
	json_decref(spec);
	j = NULL;
	CHECK_ST(store_job_get(s, "other-tenant", job, &j, &e), NN_ENOTFOUND);
	CHECK_ST(store_job_get(s, STORE_DEFAULT_TENANT, "job_nope", &j, &e), NN_ENOTFOUND);

	/* List: newest first, no spec, state filter, pagination. */
	char job2[STORE_ID_CAP], job3[STORE_ID_CAP];
	new_job(s, model, 1, job2);
	new_job(s, model, 1, job3);
	char now_state[16];
	CHECK_ST(store_job_cancel(s, STORE_DEFAULT_TENANT, job2, now_state, &e), NN_OK);
	json_t *l = NULL;
	CHECK_ST(store_job_list(s, STORE_DEFAULT_TENANT, NULL, NULL, 2, &l, &e), NN_OK);
	json_t *arr = json_object_get(l, "jobs");
	CHECK(json_array_size(arr) == 2);
	CHECK(strcmp(jstr(json_array_get(arr, 0), "id"), job3) == 0);
	CHECK(strcmp(jstr(json_array_get(arr, 1), "id"), job2) == 0);
	static const char *const list_keys[] = {"id",	      "model",	    "state",
						"progress",   "error",	    "metrics",    "steps",
						"artifacts",  "created_at", "started_at",
						"finished_at", NULL};
	CHECK(has_keys(json_array_get(arr, 0), list_keys));
	char cursor[32];
	snprintf(cursor, sizeof cursor, "%s", jstr(l, "next"));
	json_decref(l);
	l = NULL;
	CHECK_ST(store_job_list(s, STORE_DEFAULT_TENANT, NULL, cursor, 2, &l, &e), NN_OK);
	arr = json_object_get(l, "jobs");
	CHECK(json_array_size(arr) == 1);
	CHECK(strcmp(jstr(json_array_get(arr, 0), "id"), job) == 0);
	CHECK(json_is_null(json_object_get(l, "next")));
	json_decref(l);
	l = NULL;
	CHECK_ST(store_job_list(s, STORE_DEFAULT_TENANT, "queued", NULL, 10, &l, &e), NN_OK);
	arr = json_object_get(l, "jobs");
	CHECK(json_array_size(arr) == 2);
	CHECK(strcmp(jstr(json_array_get(arr, 0), "id"), job3) == 0);
	CHECK(strcmp(jstr(json_array_get(arr, 1), "id"), job) == 0);
	json_decref(l);
	l = NULL;
	CHECK_ST(store_job_list(s, STORE_DEFAULT_TENANT, "canceled", NULL, 10, &l, &e), NN_OK);
	CHECK(json_array_size(json_object_get(l, "jobs")) == 1);
	json_decref(l);
	l = NULL;
	CHECK_ST(store_job_list(s, STORE_DEFAULT_TENANT, "bogus", NULL, 10, &l, &e), NN_EINVAL);
	CHECK(strcmp(e.field, "state") == 0);
	CHECK_ST(store_job_list(s, STORE_DEFAULT_TENANT, NULL, "12x", 10, &l, &e), NN_EINVAL);
	CHECK(strcmp(e.field, "after") == 0);
	CHECK(l == NULL);
	store_close(s);
}

struct claimer {
	struct store *s;
	char (*ids)[STORE_ID_CAP];
	int n;
	int cap;
	int errors;
};

static void *claim_loop(void *arg)
{
	struct claimer *c = arg;
	for (;;) {
		struct nn_err e = {0};
		struct store_claim cl;
		bool found = false;
		if (store_job_claim_next(c->s, &cl, &found, &e) != NN_OK) {
			fprintf(stderr, "claim: %s\n", e.message);
			c->errors++;
			break;
		}
		if (!found)
			break;
		if (c->n < c->cap)
			memcpy(c->ids[c->n], cl.id, STORE_ID_CAP);
		c->n++;
		if (!json_is_object(cl.spec))
			c->errors++;
		json_decref(cl.spec);
	}
	return NULL;
}

static int cmp_id(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void test_claim_concurrent(void)
{
	enum { JOBS = 400, THREADS = 4 };
	struct nn_err e = {0};
	struct store *s = open_store();
	char model[STORE_ID_CAP];
	new_model(s, SHA_A, model);
	static char inserted[JOBS][STORE_ID_CAP];
	for (int i = 0; i < JOBS; i++)
		new_job(s, model, 1, inserted[i]);

	/* Single claim first: the oldest job, with everything a worker needs. */
	struct store_claim cl;
	bool found = false;
	CHECK_ST(store_job_claim_next(s, &cl, &found, &e), NN_OK);
	CHECK(found);
	CHECK(strcmp(cl.id, inserted[0]) == 0);
	CHECK(strcmp(cl.tenant, STORE_DEFAULT_TENANT) == 0);
	CHECK(strcmp(cl.model_id, model) == 0);
	CHECK(strcmp(cl.model_sha256, SHA_A) == 0);
	CHECK(json_array_size(json_object_get(cl.spec, "steps")) == 1);
	json_decref(cl.spec);
	json_t *j = get_job(s, inserted[0]);
	CHECK(strcmp(jstr(j, "state"), "running") == 0);
	CHECK(is_timestamp(json_object_get(j, "started_at")));
	json_decref(j);

	static char got[THREADS][JOBS][STORE_ID_CAP];
	struct claimer c[THREADS];
	pthread_t th[THREADS];
	for (int t = 0; t < THREADS; t++) {
		c[t] = (struct claimer){.s = s, .ids = got[t], .cap = JOBS};
		pthread_create(&th[t], NULL, claim_loop, &c[t]);
	}
	int total = 0;
	static char all[JOBS][STORE_ID_CAP];
	for (int t = 0; t < THREADS; t++) {
		pthread_join(th[t], NULL);
		CHECK(c[t].errors == 0);
		for (int i = 0; i < c[t].n && total < JOBS; i++)
			memcpy(all[total++], got[t][i], STORE_ID_CAP);
	}
	CHECK(total == JOBS - 1);
	qsort(all, (size_t)total, STORE_ID_CAP, cmp_id);
	for (int i = 1; i < total; i++)
		CHECK(strcmp(all[i - 1], all[i]) != 0); /* no job claimed twice */
	for (int i = 0; i < total; i++)
		CHECK(strcmp(all[i], inserted[0]) != 0);

	char buf[64];
	raw_query("SELECT count(*) FROM jobs WHERE state = 'running' AND attempts = 1", buf,
		  sizeof buf);
	CHECK(atoi(buf) == JOBS);
	CHECK_ST(store_job_claim_next(s, &cl, &found, &e), NN_OK);
	CHECK(!found && cl.spec == NULL);
	store_close(s);
}

static void test_cancel(void)
{
	struct nn_err e = {0};
	struct store *s = open_store();
	char model[STORE_ID_CAP], queued[STORE_ID_CAP], running[STORE_ID_CAP];
	char now_state[16];
	new_model(s, SHA_A, model);
	new_job(s, model, 2, running);
	new_job(s, model, 2, queued);
	struct store_claim cl;
	bool found;
	CHECK_ST(store_job_claim_next(s, &cl, &found, &e), NN_OK);
	CHECK(found && strcmp(cl.id, running) == 0);
	json_decref(cl.spec);

	/* queued -> canceled at once, every step canceled, finished_at set. */
	CHECK_ST(store_job_cancel(s, STORE_DEFAULT_TENANT, queued, now_state, &e), NN_OK);
	CHECK(strcmp(now_state, "canceled") == 0);
	json_t *j = get_job(s, queued);
	CHECK(strcmp(jstr(j, "state"), "canceled") == 0);
	CHECK(strcmp(step_state(j, 0), "canceled") == 0);
	CHECK(strcmp(step_state(j, 1), "canceled") == 0);
	CHECK(is_timestamp(json_object_get(j, "finished_at")));
	json_decref(j);
	CHECK_ST(store_job_cancel(s, STORE_DEFAULT_TENANT, queued, now_state, &e), NN_ECONFLICT);
	CHECK(strcmp(e.message, "job is already canceled") == 0);

	/* running -> stays running with the flag until the worker stops. */
	bool req = true;
	CHECK_ST(store_job_cancel_requested(s, running, &req, &e), NN_OK);
	CHECK(!req);
	CHECK_ST(store_job_step_update(s, running, 0, "succeeded", NULL, &e), NN_OK);
	CHECK_ST(store_job_step_update(s, running, 1, "running", NULL, &e), NN_OK);
	CHECK_ST(store_job_cancel(s, STORE_DEFAULT_TENANT, running, now_state, &e), NN_OK);
	CHECK(strcmp(now_state, "running") == 0);
	CHECK_ST(store_job_cancel(s, STORE_DEFAULT_TENANT, running, now_state, &e), NN_OK);
	CHECK(strcmp(now_state, "running") == 0);
	CHECK_ST(store_job_cancel_requested(s, running, &req, &e), NN_OK);
	CHECK(req);
	j = get_job(s, running);
	CHECK(strcmp(jstr(j, "state"), "running") == 0);
	CHECK(json_is_null(json_object_get(j, "finished_at")));
	json_decref(j);
	CHECK_ST(store_job_mark_canceled(s, running, &e), NN_OK);
	j = get_job(s, running);
	CHECK(strcmp(jstr(j, "state"), "canceled") == 0);
	CHECK(strcmp(step_state(j, 0), "succeeded") == 0); /* finished work stays finished */
	CHECK(strcmp(step_state(j, 1), "canceled") == 0);
	CHECK(is_timestamp(json_object_get(j, "finished_at")));
	json_decref(j);
	CHECK_ST(store_job_mark_canceled(s, running, &e), NN_ECONFLICT);

	/* finished (succeeded) -> 409 naming the state. */
	char done[STORE_ID_CAP], art[STORE_ID_CAP];
	new_job(s, model, 1, done);
	CHECK_ST(store_job_claim_next(s, &cl, &found, &e), NN_OK);
	CHECK(found && strcmp(cl.id, done) == 0);
	json_decref(cl.spec);
	CHECK_ST(store_job_succeed(s, done, SHA_B, 10, "onnx", art, &e), NN_OK);
	CHECK_ST(store_job_cancel(s, STORE_DEFAULT_TENANT, done, now_state, &e), NN_ECONFLICT);
	CHECK(strcmp(e.message, "job is already succeeded") == 0);
	CHECK_ST(store_job_cancel(s, STORE_DEFAULT_TENANT, "job_nope", now_state, &e),
		 NN_ENOTFOUND);
	CHECK_ST(store_job_cancel(s, "other-tenant", done, now_state, &e), NN_ENOTFOUND);
	store_close(s);
}

static void test_requeue_after_crash(void)
{
	struct nn_err e = {0};
	char model[STORE_ID_CAP], a[STORE_ID_CAP], b[STORE_ID_CAP], c[STORE_ID_CAP];
	struct store_claim cl;
	bool found;
	/* "Process" 1: claims two jobs, makes progress, then dies (close
	 * without finishing anything). */
	struct store *s = open_store();
	new_model(s, SHA_A, model);
	new_job(s, model, 2, a);
	new_job(s, model, 2, b);
	new_job(s, model, 1, c);
	for (int i = 0; i < 2; i++) {
		CHECK_ST(store_job_claim_next(s, &cl, &found, &e), NN_OK);
		CHECK(found);
		json_decref(cl.spec);
	}
	json_t *metrics = json_pack("{s:i}", "nonzeros", 42);
	CHECK_ST(store_job_step_update(s, a, 0, "succeeded", metrics, &e), NN_OK);
	json_decref(metrics);
	CHECK_ST(store_job_set_progress(s, a, 0.5, &e), NN_OK);
	char now_state[16];
	CHECK_ST(store_job_cancel(s, STORE_DEFAULT_TENANT, b, now_state, &e), NN_OK);
	store_close(s);

	/* "Process" 2. */
	s = open_store();
	int n = -1;
	CHECK_ST(store_jobs_requeue_running(s, &n, &e), NN_OK);
	CHECK(n == 1);
	json_t *j = get_job(s, a);
	CHECK(strcmp(jstr(j, "state"), "queued") == 0);
	CHECK(json_real_value(json_object_get(j, "progress")) == 0.0);
	CHECK(json_is_null(json_object_get(j, "started_at")));
	CHECK(strcmp(step_state(j, 0), "pending") == 0);
	CHECK(json_is_null(json_object_get(json_array_get(json_object_get(j, "steps"), 0),
					   "metrics")));
	json_decref(j);
	j = get_job(s, b); /* cancel was asked before the crash */
	CHECK(strcmp(jstr(j, "state"), "canceled") == 0);
	CHECK(strcmp(step_state(j, 0), "canceled") == 0);
	json_decref(j);
	j = get_job(s, c);
	CHECK(strcmp(jstr(j, "state"), "queued") == 0);
	json_decref(j);
	char buf[64];
	raw_query("SELECT count(*) FROM job_events WHERE type = 'requeued'", buf, sizeof buf);
	CHECK(strcmp(buf, "1") == 0);

	/* The re-queued job keeps its place: claimed before c, second attempt. */
	CHECK_ST(store_job_claim_next(s, &cl, &found, &e), NN_OK);
	CHECK(found && strcmp(cl.id, a) == 0);
	json_decref(cl.spec);
	raw_query("SELECT attempts FROM jobs WHERE state = 'running'", buf, sizeof buf);
	CHECK(strcmp(buf, "2") == 0);
	CHECK_ST(store_jobs_requeue_running(s, &n, &e), NN_OK);
	CHECK(n == 1);

	/* A job that keeps crashing the daemon ends failed, not in a loop. */
	for (int i = 0; i < 10; i++) {
		CHECK_ST(store_job_claim_next(s, &cl, &found, &e), NN_OK);
		CHECK(found && strcmp(cl.id, a) == 0);
		json_decref(cl.spec);
		CHECK_ST(store_jobs_requeue_running(s, &n, &e), NN_OK);
		j = get_job(s, a);
		bool failed = strcmp(jstr(j, "state"), "failed") == 0;
		if (failed)
			CHECK(strcmp(jstr(json_object_get(j, "error"), "code"), "crashed") == 0);
		json_decref(j);
		if (failed) {
			CHECK(n == 0);
			CHECK(i == 2); /* attempts 3, 4, 5 */
			break;
		}
	}
	bool ok = false;
	CHECK_ST(store_integrity_check(s, &ok, &e), NN_OK);
	CHECK(ok);
	store_close(s);
}

/* Claims the only queued job (which must be `job`). */
static void claim_only(struct store *s, const char *job)
{
	struct nn_err e = {0};
	struct store_claim cl;
	bool found = false;
	CHECK_ST(store_job_claim_next(s, &cl, &found, &e), NN_OK);
	CHECK(found && strcmp(cl.id, job) == 0);
	if (found)
		json_decref(cl.spec);
}

static void test_artifact_zstd(void)
{
	static const char SHA_Z[] =
		"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
	struct nn_err e = {0};
	struct store *s = open_store();
	char model[STORE_ID_CAP], job[STORE_ID_CAP], art[STORE_ID_CAP];
	new_model(s, SHA_A, model);
	new_job(s, model, 1, job);
	claim_only(s, job);
	/* Bad zstd arguments are refused before anything is written. */
	CHECK_ST(store_job_succeed_zstd(s, job, SHA_B, 100, "onnx", "nothex", 10, art, &e),
		 NN_EINVAL);
	CHECK(strcmp(e.field, "zstd_sha256") == 0);
	CHECK_ST(store_job_succeed_zstd(s, job, SHA_B, 100, "onnx", SHA_Z, -1, art, &e), NN_EINVAL);
	json_t *j = get_job(s, job);
	CHECK(strcmp(jstr(j, "state"), "running") == 0);
	json_decref(j);

	bool used = true;
	CHECK_ST(store_blob_in_use(s, SHA_Z, &used, &e), NN_OK);
	CHECK(!used);
	CHECK_ST(store_job_succeed_zstd(s, job, SHA_B, 100, "onnx", SHA_Z, 37, art, &e), NN_OK);
	struct store_artifact a;
	CHECK_ST(store_artifact_get(s, STORE_DEFAULT_TENANT, art, &a, &e), NN_OK);
	CHECK(strcmp(a.sha256, SHA_B) == 0 && a.size == 100);
	CHECK(strcmp(a.zstd_sha256, SHA_Z) == 0 && a.zstd_size == 37);
	j = get_job(s, job);
	CHECK(strcmp(jstr(j, "state"), "succeeded") == 0);
	json_t *a0 = json_array_get(json_object_get(j, "artifacts"), 0);
	CHECK(jstr(a0, "zstd_sha256") && strcmp(jstr(a0, "zstd_sha256"), SHA_Z) == 0);
	CHECK(json_integer_value(json_object_get(a0, "zstd_size")) == 37);
	json_decref(j);
	/* Blob GC must keep the zstd copy while the artifact row exists. */
	CHECK_ST(store_blob_in_use(s, SHA_Z, &used, &e), NN_OK);
	CHECK(used);

	/* An artifact row from before migration 4: take the columns away, go
	 * back to version 3 and reopen; the row reads as "no zstd copy". */
	char job2[STORE_ID_CAP], art2[STORE_ID_CAP];
	new_job(s, model, 1, job2);
	claim_only(s, job2);
	CHECK_ST(store_job_succeed(s, job2, SHA_A, 55, "onnx", art2, &e), NN_OK);
	store_close(s);
	char buf[64];
	raw_query("DROP INDEX artifacts_zstd_sha256", buf, sizeof buf);
	raw_query("ALTER TABLE artifacts DROP COLUMN zstd_sha256", buf, sizeof buf);
	raw_query("ALTER TABLE artifacts DROP COLUMN zstd_size", buf, sizeof buf);
	raw_query("PRAGMA user_version = 3", buf, sizeof buf);
	raw_query("SELECT count(*) FROM pragma_table_info('artifacts') WHERE name LIKE 'zstd%'", buf,
		  sizeof buf);
	CHECK(strcmp(buf, "0") == 0);
	s = open_store();
	raw_query("PRAGMA user_version", buf, sizeof buf);
	CHECK(strcmp(buf, "4") == 0);
	CHECK_ST(store_artifact_get(s, STORE_DEFAULT_TENANT, art2, &a, &e), NN_OK);
	CHECK(a.size == 55 && a.zstd_sha256[0] == '\0' && a.zstd_size == -1);
	CHECK_ST(store_artifact_get(s, STORE_DEFAULT_TENANT, art, &a, &e), NN_OK);
	CHECK(a.size == 100 && a.zstd_sha256[0] == '\0' && a.zstd_size == -1);
	store_close(s);
}

static void test_succeed_and_fail(void)
{
	struct nn_err e = {0};
	struct store *s = open_store();
	char model[STORE_ID_CAP], job[STORE_ID_CAP], art[STORE_ID_CAP];
	struct store_claim cl;
	bool found;
	new_model(s, SHA_A, model);
	new_job(s, model, 2, job);
	CHECK_ST(store_job_succeed(s, job, SHA_B, 10, "onnx", art, &e), NN_ECONFLICT);
	CHECK_ST(store_job_claim_next(s, &cl, &found, &e), NN_OK);
	json_decref(cl.spec);
	json_t *m0 = json_pack("{s:i, s:f}", "parameters", 1000, "sparsity", 0.8);
	CHECK_ST(store_job_step_update(s, job, 0, "running", NULL, &e), NN_OK);
	CHECK_ST(store_job_step_update(s, job, 0, "succeeded", m0, &e), NN_OK);
	CHECK_ST(store_job_step_update(s, job, 1, "succeeded", NULL, &e), NN_OK);
	CHECK_ST(store_job_step_update(s, job, 2, "succeeded", NULL, &e), NN_ENOTFOUND);
	CHECK_ST(store_job_step_update(s, job, 0, "exploded", NULL, &e), NN_EINVAL);
	CHECK_ST(store_job_set_progress(s, job, 0.5, &e), NN_OK);
	CHECK_ST(store_job_set_progress(s, "job_nope", 0.5, &e), NN_ENOTFOUND);
	json_t *ev = json_pack("{s:i}", "step", 0);
	CHECK_ST(store_job_event(s, job, "step_finished", ev, &e), NN_OK);
	CHECK_ST(store_job_event(s, job, "started", NULL, &e), NN_OK);
	CHECK_ST(store_job_event(s, "job_nope", "started", NULL, &e), NN_ENOTFOUND);
	json_decref(ev);
	json_t *j = get_job(s, job);
	CHECK(json_real_value(json_object_get(j, "progress")) == 0.5);
	CHECK(json_equal(json_object_get(json_array_get(json_object_get(j, "steps"), 0), "metrics"),
			 m0));
	json_decref(j);

	CHECK_ST(store_job_succeed(s, job, SHA_B, 4321, "onnx", art, &e), NN_OK);
	CHECK(strncmp(art, "art_", 4) == 0 && strlen(art) == 30);
	struct store_artifact a;
	CHECK_ST(store_artifact_get(s, STORE_DEFAULT_TENANT, art, &a, &e), NN_OK);
	CHECK(strcmp(a.id, art) == 0);
	CHECK(strcmp(a.job_id, job) == 0);
	CHECK(strcmp(a.sha256, SHA_B) == 0);
	CHECK(a.size == 4321);
	CHECK(strcmp(a.format, "onnx") == 0);
	CHECK(a.zstd_sha256[0] == '\0' && a.zstd_size == -1);
	CHECK_ST(store_artifact_get(s, "other-tenant", art, &a, &e), NN_ENOTFOUND);
	CHECK_ST(store_artifact_get(s, STORE_DEFAULT_TENANT, "art_nope", &a, &e), NN_ENOTFOUND);
	bool used = false;
	CHECK_ST(store_blob_in_use(s, SHA_B, &used, &e), NN_OK);
	CHECK(used);

	j = get_job(s, job);
	CHECK(strcmp(jstr(j, "state"), "succeeded") == 0);
	CHECK(json_real_value(json_object_get(j, "progress")) == 1.0);
	CHECK(is_timestamp(json_object_get(j, "finished_at")));
	json_t *arts = json_object_get(j, "artifacts");
	CHECK(json_array_size(arts) == 1);
	json_t *a0 = json_array_get(arts, 0);
	static const char *const art_keys[] = {"id", "sha256", "size", "format", "zstd_sha256",
					       "zstd_size", NULL};
	CHECK(has_keys(a0, art_keys));
	CHECK(strcmp(jstr(a0, "id"), art) == 0);
	CHECK(json_integer_value(json_object_get(a0, "size")) == 4321);
	/* store_job_succeed records no zstd copy. */
	CHECK(json_is_null(json_object_get(a0, "zstd_sha256")));
	CHECK(json_is_null(json_object_get(a0, "zstd_size")));
	json_decref(j);
	CHECK_ST(store_job_succeed(s, job, SHA_B, 10, "onnx", art, &e), NN_ECONFLICT);
	CHECK_ST(store_job_fail(s, job, "x", "y", &e), NN_ECONFLICT);

	/* fail: error object, unfinished steps failed, finished ones kept. */
	char job2[STORE_ID_CAP];
	new_job(s, model, 2, job2);
	CHECK_ST(store_job_claim_next(s, &cl, &found, &e), NN_OK);
	CHECK(found && strcmp(cl.id, job2) == 0);
	json_decref(cl.spec);
	CHECK_ST(store_job_step_update(s, job2, 0, "succeeded", m0, &e), NN_OK);
	CHECK_ST(store_job_fail(s, job2, "invalid_model", "no prunable weights", &e), NN_OK);
	j = get_job(s, job2);
	CHECK(strcmp(jstr(j, "state"), "failed") == 0);
	json_t *err = json_object_get(j, "error");
	CHECK(strcmp(jstr(err, "code"), "invalid_model") == 0);
	CHECK(strcmp(jstr(err, "message"), "no prunable weights") == 0);
	CHECK(json_object_size(err) == 2);
	CHECK(strcmp(step_state(j, 0), "succeeded") == 0);
	CHECK(strcmp(step_state(j, 1), "failed") == 0);
	CHECK(json_array_size(json_object_get(j, "artifacts")) == 0);
	CHECK(is_timestamp(json_object_get(j, "finished_at")));
	json_decref(j);
	json_decref(m0);

	/* A failure message with bytes that are not UTF-8 still reads back. */
	char job3[STORE_ID_CAP];
	new_job(s, model, 1, job3);
	CHECK_ST(store_job_claim_next(s, &cl, &found, &e), NN_OK);
	CHECK(found && strcmp(cl.id, job3) == 0);
	json_decref(cl.spec);
	CHECK_ST(store_job_fail(s, job3, "io_error", "cannot open \xff\xfe.onnx: caf\xc3\xa9", &e),
		 NN_OK);
	j = get_job(s, job3);
	CHECK(strcmp(jstr(json_object_get(j, "error"), "message"),
		     "cannot open ??.onnx: caf\xc3\xa9") == 0);
	json_decref(j);

	bool ok = false;
	CHECK_ST(store_integrity_check(s, &ok, &e), NN_OK);
	CHECK(ok);
	store_close(s);
}

/* ---- datasets ---- */

/* {"x": float32 [n, 784], "y": int64 [n]} with the given blob hashes. */
static json_t *arrays_of(int64_t n, const char *sha_x, const char *sha_y)
{
	json_t *a = json_pack("{s:{s:s, s:[I, i], s:s, s:I}}", "x", "dtype", "float32", "shape",
			      (json_int_t)n, 784, "sha256", sha_x, "bytes",
			      (json_int_t)(n * 784 * 4 + 128));
	if (sha_y)
		json_object_set_new(a, "y",
				    json_pack("{s:s, s:[I], s:s, s:I}", "dtype", "int64", "shape",
					      (json_int_t)n, "sha256", sha_y, "bytes",
					      (json_int_t)(n * 8 + 128)));
	return a;
}

static void test_datasets(void)
{
	struct nn_err e = {0};
	struct store *s = open_store();
	char buf[64], id1[STORE_ID_CAP], id2[STORE_ID_CAP], id3[STORE_ID_CAP];
	json_t *arrays = arrays_of(100, SHA_A, SHA_B), *j = NULL;
	bool in_use = true;

	/* Nothing refers to either blob yet. */
	CHECK_ST(store_blob_in_use(s, SHA_B, &in_use, &e), NN_OK);
	CHECK(!in_use);
	CHECK_ST(store_dataset_insert(s, STORE_DEFAULT_TENANT, "digits", "npz", SHA_A, 4242, 100,
				      arrays, id1, &e),
		 NN_OK);
	CHECK(strncmp(id1, "ds_", 3) == 0 && strlen(id1) == 29);
	/* The upload hash is SHA_A (shared with x), y's blob is only an array. */
	CHECK_ST(store_blob_in_use(s, SHA_B, &in_use, &e), NN_OK);
	CHECK(in_use);

	CHECK_ST(store_dataset_get(s, STORE_DEFAULT_TENANT, id1, &j, &e), NN_OK);
	static const char *const view_keys[] = {"id",	   "name",   "format", "sha256",
						"size",	   "samples", "arrays", "created_at",
						NULL};
	CHECK(has_keys(j, view_keys));
	CHECK(strcmp(jstr(j, "id"), id1) == 0);
	CHECK(strcmp(jstr(j, "name"), "digits") == 0);
	CHECK(strcmp(jstr(j, "format"), "npz") == 0);
	CHECK(strcmp(jstr(j, "sha256"), SHA_A) == 0);
	CHECK(json_integer_value(json_object_get(j, "size")) == 4242);
	CHECK(json_integer_value(json_object_get(j, "samples")) == 100);
	CHECK(is_timestamp(json_object_get(j, "created_at")));
	{
		/* The API view: dtype and shape only, in upload order. */
		json_t *arr = json_object_get(j, "arrays");
		void *it = json_object_iter(arr);
		CHECK(json_object_size(arr) == 2);
		CHECK(it && strcmp(json_object_iter_key(it), "x") == 0);
		it = json_object_iter_next(arr, it);
		CHECK(it && strcmp(json_object_iter_key(it), "y") == 0);
		json_t *x = json_object_get(arr, "x");
		static const char *const arr_keys[] = {"dtype", "shape", NULL};
		CHECK(has_keys(x, arr_keys));
		CHECK(strcmp(jstr(x, "dtype"), "float32") == 0);
		json_t *want = json_pack("[i, i]", 100, 784);
		CHECK(json_equal(json_object_get(x, "shape"), want));
		json_decref(want);
	}
	json_decref(j);

	/* What a worker reads: blob hashes and sizes too. */
	CHECK_ST(store_dataset_arrays(s, STORE_DEFAULT_TENANT, id1, &j, &e), NN_OK);
	CHECK(strcmp(jstr(json_object_get(j, "x"), "sha256"), SHA_A) == 0);
	CHECK(strcmp(jstr(json_object_get(j, "y"), "sha256"), SHA_B) == 0);
	CHECK(json_integer_value(json_object_get(json_object_get(j, "y"), "bytes")) == 100 * 8 + 128);
	CHECK(strcmp(jstr(json_object_get(j, "y"), "dtype"), "int64") == 0);
	json_decref(j);
	CHECK_ST(store_dataset_arrays(s, STORE_DEFAULT_TENANT, "ds_aaaaaaaaaaaaaaaaaaaaaaaaaa", &j,
				      &e),
		 NN_ENOTFOUND);
	CHECK(strstr(e.message, "ds_aaaaaaaaaaaaaaaaaaaaaaaaaa") != NULL);
	CHECK_ST(store_dataset_get(s, "other-tenant", id1, &j, &e), NN_ENOTFOUND);

	/* Malformed input is refused and stores nothing. */
	json_t *bad = arrays_of(99, SHA_A, SHA_B);
	CHECK_ST(store_dataset_insert(s, STORE_DEFAULT_TENANT, "n", "npz", SHA_A, 1, 100, bad, id3,
				      &e),
		 NN_EINVAL); /* x has 99 samples, the dataset 100 */
	json_decref(bad);
	bad = json_pack("{s:{s:s, s:[i], s:s}}", "a/b", "dtype", "int64", "shape", 3, "sha256",
			SHA_A);
	CHECK_ST(store_dataset_insert(s, STORE_DEFAULT_TENANT, "n", "npz", SHA_A, 1, 3, bad, id3,
				      &e),
		 NN_EINVAL);
	json_decref(bad);
	bad = json_pack("{s:{s:s, s:[i], s:s}}", "x", "dtype", "int64", "shape", 3, "sha256",
			"nothex");
	CHECK_ST(store_dataset_insert(s, STORE_DEFAULT_TENANT, "n", "npz", SHA_A, 1, 3, bad, id3,
				      &e),
		 NN_EINVAL);
	json_decref(bad);
	bad = json_object();
	CHECK_ST(store_dataset_insert(s, STORE_DEFAULT_TENANT, "n", "npz", SHA_A, 1, 3, bad, id3,
				      &e),
		 NN_EINVAL);
	json_decref(bad);
	CHECK_ST(store_dataset_insert(s, STORE_DEFAULT_TENANT, "n", "csv", SHA_A, 1, 100, arrays,
				      id3, &e),
		 NN_EINVAL);
	CHECK_ST(store_dataset_insert(s, STORE_DEFAULT_TENANT, "n", "npz", SHA_A, 1, 0, arrays,
				      id3, &e),
		 NN_EINVAL);
	raw_query("SELECT count(*) FROM datasets", buf, sizeof buf);
	CHECK(strcmp(buf, "1") == 0);
	raw_query("SELECT count(*) FROM dataset_arrays", buf, sizeof buf);
	CHECK(strcmp(buf, "2") == 0);

	/* Identical content again: a second id over the same blobs. */
	CHECK_ST(store_dataset_insert(s, STORE_DEFAULT_TENANT, "digits", "npz", SHA_A, 4242, 100,
				      arrays, id2, &e),
		 NN_OK);
	CHECK(strcmp(id1, id2) != 0);
	json_t *only_x = arrays_of(5, SHA_A, NULL);
	CHECK_ST(store_dataset_insert(s, STORE_DEFAULT_TENANT, NULL, "npy", SHA_A, 5 * 784 * 4 + 128,
				      5, only_x, id3, &e),
		 NN_OK);
	json_decref(only_x);

	/* Newest first, paged. */
	CHECK_ST(store_dataset_list(s, STORE_DEFAULT_TENANT, NULL, 2, &j, &e), NN_OK);
	json_t *page = json_object_get(j, "datasets");
	CHECK(json_array_size(page) == 2);
	CHECK(strcmp(jstr(json_array_get(page, 0), "id"), id3) == 0);
	CHECK(strcmp(jstr(json_array_get(page, 1), "id"), id2) == 0);
	CHECK(json_is_null(json_object_get(json_array_get(page, 0), "name")));
	CHECK(json_object_size(json_object_get(json_array_get(page, 0), "arrays")) == 1);
	CHECK(json_is_string(json_object_get(j, "next")));
	char cursor[32];
	snprintf(cursor, sizeof cursor, "%s", jstr(j, "next"));
	json_decref(j);
	CHECK_ST(store_dataset_list(s, STORE_DEFAULT_TENANT, cursor, 2, &j, &e), NN_OK);
	page = json_object_get(j, "datasets");
	CHECK(json_array_size(page) == 1);
	CHECK(strcmp(jstr(json_array_get(page, 0), "id"), id1) == 0);
	CHECK(json_object_size(json_object_get(json_array_get(page, 0), "arrays")) == 2);
	CHECK(json_is_null(json_object_get(j, "next")));
	json_decref(j);
	CHECK_ST(store_dataset_list(s, STORE_DEFAULT_TENANT, NULL, 0, &j, &e), NN_EINVAL);
	CHECK_ST(store_dataset_list(s, STORE_DEFAULT_TENANT, "x", 10, &j, &e), NN_EINVAL);

	/* Hard delete of both kinds of row; the blob hashes come back once each. */
	json_t *shas = NULL;
	CHECK_ST(store_dataset_delete(s, STORE_DEFAULT_TENANT, id1, &shas, &e), NN_OK);
	CHECK(json_array_size(shas) == 2);
	json_decref(shas);
	CHECK_ST(store_dataset_get(s, STORE_DEFAULT_TENANT, id1, &j, &e), NN_ENOTFOUND);
	CHECK_ST(store_dataset_delete(s, STORE_DEFAULT_TENANT, id1, &shas, &e), NN_ENOTFOUND);
	CHECK(shas == NULL);
	{
		char sql[128], out[16];
		snprintf(sql, sizeof sql, "SELECT count(*) FROM dataset_arrays WHERE dataset_id = '%s'",
			 id1);
		raw_query(sql, out, sizeof out);
		CHECK(strcmp(out, "0") == 0);
	}
	/* id2 still refers to SHA_B... */
	CHECK_ST(store_blob_in_use(s, SHA_B, &in_use, &e), NN_OK);
	CHECK(in_use);
	CHECK_ST(store_dataset_delete(s, STORE_DEFAULT_TENANT, id2, &shas, &e), NN_OK);
	json_decref(shas);
	/* ...and once it is gone nothing does, while id3 keeps SHA_A in use. */
	CHECK_ST(store_blob_in_use(s, SHA_B, &in_use, &e), NN_OK);
	CHECK(!in_use);
	CHECK_ST(store_blob_in_use(s, SHA_A, &in_use, &e), NN_OK);
	CHECK(in_use);
	CHECK_ST(store_dataset_delete(s, STORE_DEFAULT_TENANT, id3, NULL, &e), NN_OK);
	CHECK_ST(store_blob_in_use(s, SHA_A, &in_use, &e), NN_OK);
	CHECK(!in_use);
	raw_query("SELECT count(*) FROM datasets", buf, sizeof buf);
	CHECK(strcmp(buf, "0") == 0);

	json_decref(arrays);
	bool ok = false;
	CHECK_ST(store_integrity_check(s, &ok, &e), NN_OK);
	CHECK(ok);
	store_close(s);
}

static void test_dataset_delete_conflict(void)
{
	struct nn_err e = {0};
	struct store *s = open_store();
	char model[STORE_ID_CAP], ds[STORE_ID_CAP], other[STORE_ID_CAP], job[STORE_ID_CAP];
	json_t *arrays = arrays_of(10, SHA_A, SHA_B), *shas = NULL;
	new_model(s, SHA_A, model);
	CHECK_ST(store_dataset_insert(s, STORE_DEFAULT_TENANT, "d", "npz", SHA_A, 1, 10, arrays, ds,
				      &e),
		 NN_OK);
	CHECK_ST(store_dataset_insert(s, STORE_DEFAULT_TENANT, "o", "npz", SHA_A, 1, 10, arrays,
				      other, &e),
		 NN_OK);
	/* A queued job naming the dataset inside eval blocks its delete. */
	json_t *spec = spec_of(model, 1);
	json_object_set_new(spec, "eval", json_pack("{s:s}", "dataset", ds));
	CHECK_ST(store_job_insert(s, STORE_DEFAULT_TENANT, model, spec, job, &e), NN_OK);
	json_decref(spec);
	CHECK_ST(store_dataset_delete(s, STORE_DEFAULT_TENANT, ds, &shas, &e), NN_ECONFLICT);
	CHECK(strstr(e.message, job) != NULL && strstr(e.message, ds) != NULL);
	CHECK(shas == NULL);
	json_t *j = NULL;
	CHECK_ST(store_dataset_get(s, STORE_DEFAULT_TENANT, ds, &j, &e), NN_OK);
	json_decref(j);

	/* Running, and running with a cancel request: still in use. */
	struct store_claim cl;
	bool found = false;
	CHECK_ST(store_job_claim_next(s, &cl, &found, &e), NN_OK);
	CHECK(found && strcmp(cl.id, job) == 0);
	json_decref(cl.spec);
	CHECK_ST(store_dataset_delete(s, STORE_DEFAULT_TENANT, ds, &shas, &e), NN_ECONFLICT);
	char now_state[16];
	CHECK_ST(store_job_cancel(s, STORE_DEFAULT_TENANT, job, now_state, &e), NN_OK);
	CHECK(strcmp(now_state, "running") == 0);
	CHECK_ST(store_dataset_delete(s, STORE_DEFAULT_TENANT, ds, &shas, &e), NN_ECONFLICT);

	/* A dataset the job does not name is free to go. */
	CHECK_ST(store_dataset_delete(s, STORE_DEFAULT_TENANT, other, &shas, &e), NN_OK);
	json_decref(shas);
	shas = NULL;

	/* Once the job has finished, the delete goes through. */
	CHECK_ST(store_job_mark_canceled(s, job, &e), NN_OK);
	CHECK_ST(store_dataset_delete(s, STORE_DEFAULT_TENANT, ds, &shas, &e), NN_OK);
	CHECK(json_array_size(shas) == 2);
	json_decref(shas);
	json_decref(arrays);
	store_close(s);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*fn)(void);
	} cases[] = {
		{"migrations", test_migrations},
		{"wal_integrity", test_wal_and_integrity},
		{"ids", test_ids},
		{"models", test_models},
		{"job_shape", test_job_shape},
		{"claim_concurrent", test_claim_concurrent},
		{"cancel", test_cancel},
		{"requeue", test_requeue_after_crash},
		{"succeed_fail", test_succeed_and_fail},
		{"artifact_zstd", test_artifact_zstd},
		{"datasets", test_datasets},
		{"dataset_conflict", test_dataset_delete_conflict},
	};
	int ran = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (argc > 1 && strcmp(argv[1], cases[i].name) != 0)
			continue;
		make_tmpdir();
		cases[i].fn();
		remove_tmpdir();
		ran++;
	}
	if (!ran) {
		fprintf(stderr, "unknown case %s\n", argv[1]);
		return 2;
	}
	if (failures)
		fprintf(stderr, "%d check(s) failed\n", failures);
	return failures ? 1 : 0;
}
