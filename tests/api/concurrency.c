/* concurrency: 32 client threads for a bounded time (15 s or 40 rounds each,
 * whichever comes first) upload small models, submit jobs, poll them to
 * completion, list, and sometimes delete the model they just used, against a
 * daemon with --workers 2. Threads share model bytes in groups of four, so
 * uploads of identical bytes and deletes of a shared blob race each other.
 * Asserted at the end: no 5xx and no transport error, every submitted job is
 * listed and succeeded (no lost job), every listed model's blob exists, and
 * every blob hashes to its name. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define N_THREADS 32
#define MAX_ROUNDS 40
#define RUN_SECONDS 15.0

struct worker {
	int idx;
	const struct ht_daemon *d;
	const uint8_t *model;
	size_t model_len;
	double deadline;
	char jobs[MAX_ROUNDS][40];
	int n_jobs;
	int rounds;
	long requests, n5xx, transport, unexpected;
	char first_err[600];
};

static void note_err(struct worker *w, const char *what, const struct ht_resp *r)
{
	if (r->status >= 500)
		w->n5xx++;
	else if (r->status == 0)
		w->transport++;
	else
		w->unexpected++;
	if (!w->first_err[0])
		snprintf(w->first_err, sizeof(w->first_err), "thread %d: %s: HTTP %ld %s %.300s",
			 w->idx, what, r->status, r->curl_err, r->body ? r->body : "");
}

/* One request's bookkeeping: true if it got `want`. */
static bool expect(struct worker *w, const char *what, const struct ht_resp *r, long want)
{
	w->requests++;
	if (r->status == want)
		return true;
	note_err(w, what, r);
	return false;
}

static void *run_worker(void *arg)
{
	struct worker *w = arg;
	struct ht_resp r;
	char name[64], model[64], path[128];

	for (w->rounds = 0; w->rounds < MAX_ROUNDS && ht_now() < w->deadline; w->rounds++) {
		snprintf(name, sizeof(name), "t%d-r%d", w->idx, w->rounds);
		ht_upload(w->d, name, w->model, w->model_len, &r);
		if (!expect(w, "upload", &r, 201)) {
			ht_resp_free(&r);
			continue;
		}
		snprintf(model, sizeof(model), "%s", ht_jstr(r.json, "id"));
		ht_resp_free(&r);

		ht_submit_default_job(w->d, model, &r);
		if (!expect(w, "submit", &r, 202)) {
			ht_resp_free(&r);
			continue;
		}
		snprintf(w->jobs[w->n_jobs++], sizeof(w->jobs[0]), "%s", ht_jstr(r.json, "id"));
		ht_resp_free(&r);

		if (ht_wait_job(w->d, w->jobs[w->n_jobs - 1], NULL, 240, &r) != 0) {
			w->requests++;
			note_err(w, "poll", &r);
		} else {
			w->requests++;
			if (strcmp(ht_jstr(r.json, "state"), "succeeded") != 0) {
				w->unexpected++;
				if (!w->first_err[0])
					snprintf(w->first_err, sizeof(w->first_err),
						 "thread %d: job %s ended %.300s", w->idx,
						 w->jobs[w->n_jobs - 1], r.body);
			}
		}
		ht_resp_free(&r);

		ht_get(w->d, "/v1/models?limit=5", &r);
		expect(w, "list models", &r, 200);
		ht_resp_free(&r);
		ht_get(w->d, "/v1/jobs?limit=5&state=succeeded", &r);
		expect(w, "list jobs", &r, 200);
		ht_resp_free(&r);

		if (w->rounds % 3 == 2) {
			snprintf(path, sizeof(path), "/v1/models/%s", model);
			ht_delete(w->d, path, &r);
			expect(w, "delete model", &r, 204);
			ht_resp_free(&r);
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	static const char *const args[] = {"--workers", "2", NULL};
	static const int64_t dims[] = {256, 128, 64, 10};
	struct ht_env env;
	struct ht_daemon d;
	struct worker *w;
	pthread_t th[N_THREADS];
	uint8_t *models[N_THREADS / 4];
	size_t model_len[N_THREADS / 4];
	long n5xx = 0, transport = 0, unexpected = 0, requests = 0, submitted = 0, blobs, bad;
	double t0;
	json_t *listed;

	ht_init(argc, argv, &env);
	ht_daemon_init(&d, env.exe, args);
	HT_START(&d);
	for (int i = 0; i < N_THREADS / 4; i++)
		ht_synth_bytes(dims, 4, 100 + (uint32_t)i, &models[i], &model_len[i]);
	w = calloc(N_THREADS, sizeof(*w));
	HT_ASSERT(w != NULL, NULL);

	t0 = ht_now();
	for (int i = 0; i < N_THREADS; i++) {
		w[i].idx = i;
		w[i].d = &d;
		w[i].model = models[i / 4];
		w[i].model_len = model_len[i / 4];
		w[i].deadline = t0 + RUN_SECONDS;
		HT_ASSERT(pthread_create(&th[i], NULL, run_worker, &w[i]) == 0, NULL);
	}
	for (int i = 0; i < N_THREADS; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < N_THREADS; i++) {
		requests += w[i].requests;
		n5xx += w[i].n5xx;
		transport += w[i].transport;
		unexpected += w[i].unexpected;
		submitted += w[i].n_jobs;
		if (w[i].first_err[0])
			printf("# %s\n", w[i].first_err);
	}
	ht_note("%d threads, %.1f s: %ld requests (besides polls), %ld jobs, %ld 5xx, %ld transport "
		"errors, %ld unexpected answers",
		N_THREADS, ht_now() - t0, requests, submitted, n5xx, transport, unexpected);
	HT_ASSERTF(n5xx == 0, NULL, "%ld responses were 5xx", n5xx);
	HT_ASSERTF(transport == 0 && unexpected == 0, NULL,
		   "%ld transport errors, %ld unexpected answers", transport, unexpected);
	HT_ASSERTF(submitted >= N_THREADS, NULL, "only %ld jobs were submitted", submitted);

	ht_note("no lost job: every submitted job is listed and succeeded");
	listed = json_object();
	{
		char cursor[256] = "", path[512];

		for (int pages = 0; pages < 10000; pages++) {
			struct ht_resp r;
			json_t *jobs, *next;
			size_t i;
			json_t *j;

			snprintf(path, sizeof(path), "/v1/jobs?limit=100%s%s", cursor[0] ? "&after=" : "",
				 cursor);
			ht_get(&d, path, &r);
			HT_EXPECT_STATUS(&r, 200);
			jobs = json_object_get(r.json, "jobs");
			json_array_foreach(jobs, i, j)
				json_object_set_new(listed, ht_jstr(j, "id"),
						    json_string(ht_jstr(j, "state")));
			next = json_object_get(r.json, "next");
			if (json_is_string(next))
				ht_query_escape(json_string_value(next), cursor, sizeof(cursor));
			else
				cursor[0] = 0;
			ht_resp_free(&r);
			if (!cursor[0])
				break;
		}
	}
	HT_ASSERTF((long)json_object_size(listed) == submitted, NULL,
		   "%zu jobs listed, %ld submitted", json_object_size(listed), submitted);
	for (int i = 0; i < N_THREADS; i++) {
		for (int k = 0; k < w[i].n_jobs; k++) {
			const char *state = json_string_value(json_object_get(listed, w[i].jobs[k]));
			struct ht_resp r;

			HT_ASSERTF(state != NULL, NULL, "job %s is not listed", w[i].jobs[k]);
			if (strcmp(state, "succeeded") == 0)
				continue;
			HT_ASSERTF(ht_wait_job(&d, w[i].jobs[k], NULL, 300, &r) == 0, &r,
				   "job %s did not finish", w[i].jobs[k]);
			HT_EXPECT_JSTR(r.json, "state", "succeeded", &r);
			ht_resp_free(&r);
		}
	}
	json_decref(listed);

	ht_note("every listed model still has its blob; every blob hashes to its name");
	{
		struct ht_resp r;
		size_t i;
		json_t *m;
		char cursor[256] = "", path[512];

		for (int pages = 0; pages < 10000; pages++) {
			json_t *next;

			snprintf(path, sizeof(path), "/v1/models?limit=100%s%s",
				 cursor[0] ? "&after=" : "", cursor);
			ht_get(&d, path, &r);
			HT_EXPECT_STATUS(&r, 200);
			json_array_foreach(json_object_get(r.json, "models"), i, m)
				HT_ASSERTF(ht_blob_exists(&d, ht_jstr(m, "sha256")), &r,
					   "model %s lost its blob %s", ht_jstr(m, "id"),
					   ht_jstr(m, "sha256"));
			next = json_object_get(r.json, "next");
			if (json_is_string(next))
				ht_query_escape(json_string_value(next), cursor, sizeof(cursor));
			else
				cursor[0] = 0;
			ht_resp_free(&r);
			if (!cursor[0])
				break;
		}
	}
	bad = ht_verify_blobs(&d, &blobs);
	HT_ASSERTF(bad == 0, NULL, "%ld bad blobs", bad);

	HT_ASSERTF(ht_daemon_stop(&d, 120) == 0, NULL, "nncd did not exit 0 on SIGTERM");
	ht_daemon_cleanup(&d);
	for (int i = 0; i < N_THREADS / 4; i++)
		free(models[i]);
	free(w);
	printf("PASS concurrency\n");
	return 0;
}
