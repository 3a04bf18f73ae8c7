/* crash_safety: SIGKILL the daemon (a) while a job runs and (b) in the middle
 * of an upload, restart it on the same data dir, and check that (a) the job
 * is re-queued and succeeds with a downloadable artifact that matches its
 * sha256, (b) no temp file, partial blob or half model is visible, and (c)
 * SQLite's PRAGMA integrity_check says "ok" after each kill and at the end.
 *
 * The job runs on a synthetic 4 x 4096x4096 MLP (67M parameters, 268 MB) so
 * that it is still running when the test sees state "running" and kills. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <sqlite3.h>

#include "harness.h"
#include "synth.h"

static void check_integrity(const struct ht_daemon *d, const char *when)
{
	char path[HT_PATH + 16];
	char result[256] = "";
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int rows = 0;

	snprintf(path, sizeof(path), "%s/nncd.db", d->data_dir);
	HT_ASSERTF(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK, NULL,
		   "%s: cannot open %s: %s", when, path, db ? sqlite3_errmsg(db) : "?");
	HT_ASSERTF(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK,
		   NULL, "%s: %s", when, sqlite3_errmsg(db));
	while (sqlite3_step(st) == SQLITE_ROW) {
		if (rows++ == 0)
			snprintf(result, sizeof(result), "%s", sqlite3_column_text(st, 0));
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	ht_note("%s: PRAGMA integrity_check = %s", when, result);
	HT_ASSERTF(rows == 1 && strcmp(result, "ok") == 0, NULL, "%s: integrity_check says %s",
		   when, result);
}

static long tmp_bytes(const struct ht_daemon *d)
{
	char path[HT_PATH + 8];

	snprintf(path, sizeof(path), "%s/tmp", d->data_dir);
	return (long)ht_dir_bytes(path);
}

/* ---- a slow upload that the test can stop half way ---- */

struct slow_upload {
	FILE *f;
	size_t sent, pause_at;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool paused, abort;
	const struct ht_daemon *d;
	struct ht_resp resp;
	int rc;
};

static size_t slow_read(char *buf, size_t size, size_t n, void *ud)
{
	struct slow_upload *u = ud;
	size_t got;

	if (u->sent >= u->pause_at) {
		pthread_mutex_lock(&u->lock);
		u->paused = true;
		pthread_cond_broadcast(&u->cond);
		while (!u->abort)
			pthread_cond_wait(&u->cond, &u->lock);
		pthread_mutex_unlock(&u->lock);
		return CURL_READFUNC_ABORT;
	}
	got = fread(buf, 1, size * n, u->f);
	u->sent += got;
	return got;
}

static void *slow_thread(void *arg)
{
	struct slow_upload *u = arg;
	struct ht_req rq = {.method = "POST",
			    .path = "/v1/models?name=half",
			    .content_type = "application/octet-stream",
			    .read_fn = slow_read,
			    .read_ud = u};

	fseek(u->f, 0, SEEK_END);
	rq.read_size = ftell(u->f);
	fseek(u->f, 0, SEEK_SET);
	u->rc = ht_request(u->d, &rq, &u->resp);
	return NULL;
}

static long count_models(const struct ht_daemon *d)
{
	struct ht_resp r;
	long n;

	ht_get(d, "/v1/models?limit=1000", &r);
	HT_EXPECT_STATUS(&r, 200);
	n = (long)json_array_size(json_object_get(r.json, "models"));
	ht_resp_free(&r);
	return n;
}

int main(int argc, char **argv)
{
	static const char *const args[] = {"--workers", "1", NULL};
	struct synth_spec spec = {.dims = {4096, 4096, 4096, 4096, 4096}, .n_layers = 4, .seed = 9};
	struct ht_env env;
	struct ht_daemon d;
	struct ht_resp r;
	char model_path[HT_PATH + 16], tmp_dir[HT_PATH + 8], err[256], model[64], job[64],
		path[256], sha[65], got[65];
	size_t model_len;
	long blobs, bad, models_before, blobs_before;
	double t0;

	ht_init(argc, argv, &env);
	ht_daemon_init(&d, env.exe, args);
	snprintf(model_path, sizeof(model_path), "%s/big.onnx", d.root);
	snprintf(tmp_dir, sizeof(tmp_dir), "%s/tmp", d.data_dir);
	HT_ASSERTF(synth_write_file(&spec, model_path, &model_len, err, sizeof(err)) == 0, NULL,
		   "%s", err);
	ht_note("synthetic model: %lld parameters, %zu bytes",
		(long long)synth_param_count(&spec), model_len);
	HT_START(&d);

	/* ---- (a) SIGKILL while a job runs ---- */
	t0 = ht_now();
	ht_upload_file(&d, "big", model_path, &r);
	HT_EXPECT_STATUS(&r, 201);
	snprintf(model, sizeof(model), "%s", ht_jstr(r.json, "id"));
	ht_resp_free(&r);
	ht_note("(a) upload took %.2f s", ht_now() - t0);
	ht_submit_default_job(&d, model, &r);
	HT_EXPECT_STATUS(&r, 202);
	snprintf(job, sizeof(job), "%s", ht_jstr(r.json, "id"));
	ht_resp_free(&r);
	t0 = ht_now();
	HT_ASSERTF(ht_wait_job(&d, job, "running", 300, &r) == 0, &r, "job never ran");
	HT_ASSERTF(strcmp(ht_jstr(r.json, "state"), "running") == 0, &r,
		   "the job finished before it was seen running: the model is too small for "
		   "this machine");
	ht_resp_free(&r);
	ht_note("(a) running after %.2f s: SIGKILL", ht_now() - t0);
	ht_daemon_kill(&d, SIGKILL);
	check_integrity(&d, "(a) after SIGKILL during a job");
	bad = ht_verify_blobs(&d, &blobs);
	HT_ASSERTF(bad == 0, NULL, "(a) %ld partial blobs visible after the kill", bad);

	HT_START(&d);
	HT_ASSERTF(ht_count_files(tmp_dir) == 0, NULL, "(a) restart left %ld files in tmp/",
		   ht_count_files(tmp_dir));
	t0 = ht_now();
	HT_ASSERTF(ht_wait_job(&d, job, NULL, 600, &r) == 0, &r, "re-queued job did not finish");
	HT_EXPECT_JSTR(r.json, "state", "succeeded", &r);
	ht_note("(a) re-queued job succeeded %.2f s after restart", ht_now() - t0);
	{
		json_t *arts = json_object_get(r.json, "artifacts");
		json_t *a = json_array_get(arts, 0);

		HT_ASSERTF(json_array_size(arts) == 1, &r, "exactly one artifact after the re-run");
		snprintf(sha, sizeof(sha), "%s", ht_jstr(a, "sha256"));
		snprintf(path, sizeof(path), "/v1/artifacts/%s", ht_jstr(a, "id"));
	}
	ht_resp_free(&r);
	ht_get(&d, path, &r);
	HT_EXPECT_STATUS(&r, 200);
	ht_sha256(r.body, r.len, got);
	HT_ASSERTF(strcmp(got, sha) == 0, NULL, "(a) artifact hashes to %s, job says %s", got, sha);
	ht_note("(a) artifact %zu bytes, sha256 matches", r.len);
	ht_resp_free(&r);
	bad = ht_verify_blobs(&d, &blobs);
	/* model, artifact and the artifact's zstd copy */
	HT_ASSERTF(bad == 0 && blobs == 3, NULL,
		   "(a) expected model + artifact + zstd copy blobs, got %ld (%ld bad)", blobs, bad);

	/* ---- (b) SIGKILL in the middle of an upload ---- */
	{
		struct slow_upload u = {.pause_at = model_len / 4, .d = &d};
		pthread_t th;
		double deadline;

		models_before = count_models(&d);
		ht_verify_blobs(&d, &blobs_before);
		u.f = fopen(model_path, "rb");
		HT_ASSERT(u.f != NULL, NULL);
		pthread_mutex_init(&u.lock, NULL);
		pthread_cond_init(&u.cond, NULL);
		HT_ASSERT(pthread_create(&th, NULL, slow_thread, &u) == 0, NULL);
		pthread_mutex_lock(&u.lock);
		while (!u.paused)
			pthread_cond_wait(&u.cond, &u.lock);
		pthread_mutex_unlock(&u.lock);
		/* Wait until the daemon has written a good part of what was sent. */
		deadline = ht_now() + 60;
		while (tmp_bytes(&d) < (long)(model_len / 8) && ht_now() < deadline)
			ht_sleep_ms(10);
		ht_note("(b) %zu bytes sent, %ld bytes in tmp/: SIGKILL", u.sent, tmp_bytes(&d));
		HT_ASSERTF(tmp_bytes(&d) >= (long)(model_len / 8), NULL,
			   "(b) the daemon did not stream the upload into tmp/");
		ht_daemon_kill(&d, SIGKILL);
		pthread_mutex_lock(&u.lock);
		u.abort = true;
		pthread_cond_broadcast(&u.cond);
		pthread_mutex_unlock(&u.lock);
		pthread_join(th, NULL);
		HT_ASSERTF(u.rc != 0, &u.resp, "(b) the interrupted upload must not succeed");
		ht_resp_free(&u.resp);
		fclose(u.f);
		pthread_mutex_destroy(&u.lock);
		pthread_cond_destroy(&u.cond);

		check_integrity(&d, "(b) after SIGKILL during an upload");
		bad = ht_verify_blobs(&d, &blobs);
		HT_ASSERTF(bad == 0 && blobs == blobs_before, NULL,
			   "(b) blobs: %ld before, %ld after the kill (%ld bad)", blobs_before, blobs,
			   bad);
		HT_START(&d);
		HT_ASSERTF(ht_count_files(tmp_dir) == 0, NULL,
			   "(b) restart left %ld files in tmp/", ht_count_files(tmp_dir));
		bad = ht_verify_blobs(&d, &blobs);
		HT_ASSERTF(bad == 0 && blobs == blobs_before, NULL,
			   "(b) blobs: %ld before, %ld after restart (%ld bad)", blobs_before, blobs,
			   bad);
		HT_ASSERTF(count_models(&d) == models_before, NULL,
			   "(b) a half-uploaded model is listed");
	}

	ht_note("the restarted daemon still takes uploads and runs jobs");
	{
		static const int64_t dims[] = {128, 64, 10};
		uint8_t *bytes;
		size_t len;

		ht_synth_bytes(dims, 3, 4, &bytes, &len);
		ht_upload(&d, "after-crash", bytes, len, &r);
		HT_EXPECT_STATUS(&r, 201);
		snprintf(model, sizeof(model), "%s", ht_jstr(r.json, "id"));
		ht_resp_free(&r);
		free(bytes);
		ht_submit_default_job(&d, model, &r);
		HT_EXPECT_STATUS(&r, 202);
		snprintf(job, sizeof(job), "%s", ht_jstr(r.json, "id"));
		ht_resp_free(&r);
		HT_ASSERT(ht_wait_job(&d, job, NULL, 300, &r) == 0, &r);
		HT_EXPECT_JSTR(r.json, "state", "succeeded", &r);
		ht_resp_free(&r);
	}

	HT_ASSERTF(ht_daemon_stop(&d, 120) == 0, NULL, "nncd did not exit 0 on SIGTERM");
	check_integrity(&d, "(c) after a clean stop");
	ht_daemon_cleanup(&d);
	printf("PASS crash_safety\n");
	return 0;
}
