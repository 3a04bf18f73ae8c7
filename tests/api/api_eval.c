/* api_eval: job evaluation through the API against a live nncd — the
 * submit-time 400s of issue 3 (an operator the executor cannot run, named
 * with its node, only when the job runs the model; data that does not fit the
 * model; accuracy without labels; unknown datasets; issue 6's training
 * steps without labelled data or naming an unknown model) and a job's metrics and
 * report on cases whose figures are known (tests/unit/data/make_eval_cases.py:
 * the identity model gets 7 of 10 right). */
#include <stdio.h>
#include <string.h>

#include "harness.h"

static char data_dir[HT_PATH];

static void data_file(const char *name, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s/%s", data_dir, name);
}

/* POST a file to path (a model or dataset upload); returns the new id. */
static void upload(const struct ht_daemon *d, const char *path, const char *file, char *id,
		   size_t cap)
{
	char full[HT_PATH];
	data_file(file, full, sizeof full);
	struct ht_req rq = {.method = "POST", .path = path,
			    .content_type = "application/octet-stream", .file = full};
	struct ht_resp r;
	ht_request(d, &rq, &r);
	HT_EXPECT_STATUS(&r, 201);
	snprintf(id, cap, "%s", ht_jstr(r.json, "id"));
	ht_resp_free(&r);
}

static void expect_refused(const struct ht_daemon *d, const char *spec, const char *code,
			   const char *field, const char *words)
{
	struct ht_resp r;
	ht_post_json(d, "/v1/jobs", spec, &r);
	HT_EXPECT_ERROR(&r, 400, code, field);
	const char *msg = ht_jstr(json_object_get(r.json, "error"), "message");
	HT_ASSERTF(msg && strstr(msg, words), &r, "message should say '%s'", words);
	ht_resp_free(&r);
}

int main(int argc, char **argv)
{
	struct ht_env env;
	ht_init(argc, argv, &env);
	snprintf(data_dir, sizeof data_dir, "%s/tests/unit/data", env.srcdir);
	struct ht_daemon d;
	ht_daemon_init(&d, env.exe, NULL);
	HT_START(&d);

	char ident[64], unsup[64], x[64], y[64], xy_missing[64];
	upload(&d, "/v1/models?name=identity", "eval_identity.onnx", ident, sizeof ident);
	upload(&d, "/v1/models?name=hardmax", "eval_unsupported.onnx", unsup, sizeof unsup);
	upload(&d, "/v1/datasets?name=x&array=x", "eval_x.npy", x, sizeof x);
	upload(&d, "/v1/datasets?name=y&array=y", "eval_y.npy", y, sizeof y);
	upload(&d, "/v1/datasets?name=odd&array=x", "npy_f32_2x3x4.npy", xy_missing,
	       sizeof xy_missing);
	char spec[1024];
	struct ht_resp r;

	ht_note("an unsupported operator: accepted without execution, 400 naming it with eval");
	snprintf(spec, sizeof spec,
		 "{\"model\":\"%s\",\"steps\":[{\"op\":\"prune\",\"sparsity\":0.5}],"
		 "\"eval\":{\"metrics\":[\"size\"]}}",
		 unsup);
	ht_post_json(&d, "/v1/jobs", spec, &r);
	HT_EXPECT_STATUS(&r, 202);
	ht_resp_free(&r);
	snprintf(spec, sizeof spec,
		 "{\"model\":\"%s\",\"steps\":[{\"op\":\"prune\",\"sparsity\":0.5}],"
		 "\"eval\":{\"dataset\":\"%s\"}}",
		 unsup, x);
	expect_refused(&d, spec, "unsupported_operator", "eval", "node 'pick_max' (Hardmax)");

	ht_note("data that does not fit, no labels, unknown ids");
	snprintf(spec, sizeof spec, "{\"model\":\"%s\",\"eval\":{\"dataset\":\"%s\"}}", ident,
		 xy_missing);
	expect_refused(&d, spec, "invalid_dataset", "eval.dataset", "per-sample size 12");
	snprintf(spec, sizeof spec,
		 "{\"model\":\"%s\",\"eval\":{\"dataset\":\"%s\",\"metrics\":[\"accuracy\"]}}",
		 ident, x);
	expect_refused(&d, spec, "invalid_spec", "eval.dataset", "accuracy needs labels");
	snprintf(spec, sizeof spec,
		 "{\"model\":\"%s\",\"eval\":{\"dataset\":{\"id\":\"%s\",\"labels\":"
		 "\"ds_aaaaaaaaaaaaaaaaaaaaaaaaaa\"}}}",
		 ident, x);
	expect_refused(&d, spec, "unknown_dataset", "eval.dataset.labels", "no dataset");
	snprintf(spec, sizeof spec, "{\"model\":\"%s\",\"dataset\":\"ds_nope\"}", ident);
	expect_refused(&d, spec, "unknown_dataset", "dataset", "no dataset");

	ht_note("training steps: hard labels need labelled data, named models must exist");
	snprintf(spec, sizeof spec,
		 "{\"model\":\"%s\",\"dataset\":\"%s\",\"steps\":[{\"op\":\"finetune\"}]}", ident,
		 x);
	expect_refused(&d, spec, "invalid_spec", "steps[0].dataset", "needs a labelled dataset");
	snprintf(spec, sizeof spec,
		 "{\"model\":\"%s\",\"steps\":[{\"op\":\"distill\",\"dataset\":{\"id\":\"%s\","
		 "\"labels\":\"%s\"},\"teacher\":{\"model\":\"mdl_aaaaaaaaaaaaaaaaaaaaaaaaaa\"}}]}",
		 ident, x, y);
	expect_refused(&d, spec, "unknown_model", "steps[0].teacher.model", "no model");

	ht_note("an evaluated job: known accuracy, metrics in the job, the report");
	snprintf(spec, sizeof spec,
		 "{\"model\":\"%s\",\"steps\":[{\"op\":\"prune\",\"sparsity\":0.5}],"
		 "\"eval\":{\"dataset\":{\"id\":\"%s\",\"labels\":\"%s\"}}}",
		 ident, x, y);
	ht_post_json(&d, "/v1/jobs", spec, &r);
	HT_EXPECT_STATUS(&r, 202);
	char job[64];
	snprintf(job, sizeof job, "%s", ht_jstr(r.json, "id"));
	ht_resp_free(&r);
	HT_ASSERT(ht_wait_job(&d, job, NULL, 120, &r) == 0, &r);
	HT_EXPECT_JSTR(r.json, "state", "succeeded", &r);
	json_t *metrics = json_object_get(r.json, "metrics");
	json_t *in = json_object_get(metrics, "input"), *out = json_object_get(metrics, "output");
	HT_ASSERT(ht_jint(in, "correct", -1) == 7 && ht_jint(in, "samples", -1) == 10, &r);
	HT_ASSERT(ht_jnum(in, "accuracy", -1) == 0.7, &r);
	/* Pruning half of I4's zeros changes nothing: still the identity. */
	HT_ASSERT(ht_jnum(out, "agreement", -1) == 1 && ht_jnum(out, "max_abs_error", -1) == 0, &r);
	json_t *step = json_array_get(json_object_get(r.json, "steps"), 0);
	HT_ASSERT(json_equal(json_object_get(json_object_get(step, "metrics"), "eval"), out), &r);
	ht_resp_free(&r);

	char path[128];
	snprintf(path, sizeof path, "/v1/jobs/%s/report", job);
	ht_get(&d, path, &r);
	HT_EXPECT_STATUS(&r, 200);
	HT_EXPECT_JSTR(r.json, "job", job, &r);
	json_t *cmp = json_object_get(json_object_get(r.json, "metrics"), "comparison");
	HT_ASSERT(ht_jnum(cmp, "accuracy_drop", -1) == 0, &r);
	HT_ASSERT(json_is_object(json_object_get(r.json, "artifact")), &r);
	HT_EXPECT_JSTR(json_object_get(json_array_get(json_object_get(r.json, "steps"), 0), "params"),
		       "op", "prune", &r);
	ht_resp_free(&r);
	ht_note("the job's events, oldest first, paged by id");
	snprintf(path, sizeof path, "/v1/jobs/%s/events", job);
	ht_get(&d, path, &r);
	HT_EXPECT_STATUS(&r, 200);
	json_t *evs = json_object_get(r.json, "events");
	size_t nev = json_array_size(evs);
	HT_ASSERT(nev >= 4 && json_is_null(json_object_get(r.json, "next")), &r);
	HT_EXPECT_JSTR(json_array_get(evs, 0), "type", "started", &r);
	/* (the job's own "succeeded" event may land just after its state) */
	bool step_done = false;
	for (size_t i = 0; i < nev; i++)
		step_done |= !strcmp(ht_jstr(json_array_get(evs, i), "type"), "step_succeeded");
	HT_ASSERT(step_done, &r);
	json_int_t second = ht_jint(json_array_get(evs, 1), "id", -1);
	ht_resp_free(&r);
	snprintf(path, sizeof path, "/v1/jobs/%s/events?limit=1", job);
	ht_get(&d, path, &r);
	HT_EXPECT_STATUS(&r, 200);
	HT_ASSERT(json_array_size(json_object_get(r.json, "events")) == 1, &r);
	char next[32];
	snprintf(next, sizeof next, "%s", ht_jstr(r.json, "next") ? ht_jstr(r.json, "next") : "");
	HT_ASSERT(next[0], &r);
	ht_resp_free(&r);
	snprintf(path, sizeof path, "/v1/jobs/%s/events?limit=1&after=%s", job, next);
	ht_get(&d, path, &r);
	HT_EXPECT_STATUS(&r, 200);
	HT_ASSERT(ht_jint(json_array_get(json_object_get(r.json, "events"), 0), "id", -2) == second,
		  &r);
	ht_resp_free(&r);
	snprintf(path, sizeof path, "/v1/jobs/%s/events?limit=0", job);
	ht_get(&d, path, &r);
	HT_EXPECT_ERROR(&r, 400, "invalid_query", "limit");
	ht_resp_free(&r);
	ht_get(&d, "/v1/jobs/job_aaaaaaaaaaaaaaaaaaaaaaaaaa/events", &r);
	HT_EXPECT_ERROR(&r, 404, "not_found", NULL);
	ht_resp_free(&r);
	ht_get(&d, "/v1/jobs/job_aaaaaaaaaaaaaaaaaaaaaaaaaa/report", &r);
	HT_EXPECT_ERROR(&r, 404, "not_found", NULL);
	ht_resp_free(&r);
	ht_post_json(&d, path, "{}", &r);
	HT_EXPECT_STATUS(&r, 405);
	ht_resp_free(&r);

	HT_ASSERT(ht_daemon_stop(&d, 30) == 0, NULL);
	ht_daemon_cleanup(&d);
	printf("PASS api_eval\n");
	return 0;
}
