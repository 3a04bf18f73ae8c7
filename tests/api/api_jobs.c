/* api_jobs: POST/GET /v1/jobs, the job view, listing, cancel, spec errors.
 *
 * Part one runs with --workers 1 (jobs run to completion). Part two restarts
 * the daemon on the same data dir with --workers 0, so a new job stays
 * queued deterministically while it is listed and canceled. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define SPEC_FMT                                                                           \
	"{\"model\":\"%s\",\"steps\":["                                                    \
	"{\"op\":\"prune\",\"method\":\"magnitude\",\"sparsity\":0.8,\"scope\":\"global\"}," \
	"{\"op\":\"quantize\",\"scheme\":\"int8\",\"granularity\":\"per_channel\"}]}"

static void check_prune_metrics(const json_t *m, const struct ht_resp *r)
{
	json_t *layers = json_object_get(m, "layers");
	long long params = ht_jint(m, "parameters", -1);
	long long nz = ht_jint(m, "nonzeros", -1);
	long long nz_before = ht_jint(m, "nonzeros_before", -1);
	long long layer_params = 0, layer_nz = 0;
	double sparsity = ht_jnum(m, "sparsity", -1);
	size_t i;
	json_t *l;

	HT_ASSERT(json_is_object(m), r);
	HT_EXPECT_JSTR(m, "method", "magnitude", r);
	HT_EXPECT_JSTR(m, "scope", "global", r);
	HT_ASSERT(fabs(ht_jnum(m, "sparsity_target", -1) - 0.8) < 1e-9, r);
	HT_ASSERT(ht_jnum(m, "threshold", -1) > 0, r);
	HT_ASSERT(params > 0 && nz_before > 0 && nz >= 0, r);
	HT_ASSERTF(nz_before <= params && nz < nz_before, r, "nonzeros must drop");
	HT_ASSERTF(fabs(sparsity - 0.8) < 0.01, r, "achieved sparsity %.4f, target 0.8", sparsity);
	HT_ASSERTF(fabs((double)(params - nz) / (double)params - sparsity) < 1e-3, r,
		   "sparsity does not match parameters and nonzeros");
	HT_ASSERT(ht_jint(m, "model_parameters", -1) >= params, r);
	HT_ASSERT(ht_jint(m, "model_nonzeros", -1) >= nz, r);
	HT_ASSERT(ht_jint(m, "bytes_before", -1) > 0 && ht_jint(m, "bytes_after", -1) > 0, r);
	HT_ASSERT(ht_jnum(m, "seconds", -1) >= 0, r);
	HT_ASSERT(json_array_size(layers) >= 3, r);
	json_array_foreach(layers, i, l) {
		HT_ASSERT(ht_jstr(l, "name") && ht_jstr(l, "op") && ht_jstr(l, "node"), r);
		HT_ASSERT(json_is_array(json_object_get(l, "shape")), r);
		HT_ASSERT(ht_jnum(l, "sparsity", -1) >= 0 && ht_jnum(l, "sparsity", 2) < 1, r);
		layer_params += ht_jint(l, "parameters", 0);
		layer_nz += ht_jint(l, "nonzeros", 0);
	}
	HT_ASSERTF(layer_params == params && layer_nz == nz, r,
		   "per-layer parameters/nonzeros (%lld/%lld) do not add up to %lld/%lld",
		   layer_params, layer_nz, params, nz);
}

static void check_quant_metrics(const json_t *m, const struct ht_resp *r)
{
	json_t *layers = json_object_get(m, "layers");
	size_t i;
	json_t *l;

	HT_ASSERT(json_is_object(m), r);
	HT_EXPECT_JSTR(m, "scheme", "int8", r);
	HT_EXPECT_JSTR(m, "granularity", "per_channel", r);
	HT_ASSERT(json_is_true(json_object_get(m, "symmetric")), r);
	HT_ASSERT(ht_jint(m, "parameters", -1) > 0, r);
	HT_ASSERTF(ht_jint(m, "bytes_after", -1) > 0 &&
			   ht_jint(m, "bytes_after", -1) < ht_jint(m, "bytes_before", -1),
		   r, "int8 must shrink the bytes");
	HT_ASSERT(ht_jint(m, "opset", -1) >= 13, r);
	HT_ASSERT(ht_jnum(m, "seconds", -1) >= 0, r);
	HT_ASSERT(json_array_size(layers) >= 3, r);
	json_array_foreach(layers, i, l) {
		HT_ASSERT(ht_jstr(l, "name") && ht_jstr(l, "op"), r);
		HT_ASSERT(json_is_array(json_object_get(l, "shape")), r);
		HT_EXPECT_JSTR(l, "granularity", "per_channel", r);
		HT_ASSERT(ht_jnum(l, "scale_min", -1) > 0, r);
		HT_ASSERT(ht_jnum(l, "scale_max", -1) >= ht_jnum(l, "scale_min", 0), r);
		HT_ASSERT(ht_jnum(l, "mse", -1) >= 0 && ht_jnum(l, "max_abs_error", -1) >= 0, r);
	}
}

static void expect_spec_error(const struct ht_daemon *d, const char *what, const char *body,
			      long status, const char *code, const char *field)
{
	struct ht_resp r;

	ht_note("%s -> %ld %s%s%s", what, status, code, field ? " field " : "", field ? field : "");
	ht_post_json(d, "/v1/jobs", body, &r);
	HT_EXPECT_ERROR(&r, status, code, field);
	ht_resp_free(&r);
}

static void submit(const struct ht_daemon *d, const char *model, bool strict_queued, char id[64],
		   json_t **spec_out)
{
	char spec[1024], loc[256];
	struct ht_resp r;
	json_t *steps;

	snprintf(spec, sizeof(spec), SPEC_FMT, model);
	ht_post_json(d, "/v1/jobs", spec, &r);
	HT_EXPECT_STATUS(&r, 202);
	HT_ASSERTF(ht_valid_id(ht_jstr(r.json, "id"), "job_"), &r, "id is not job_ + 26 chars");
	/* With a worker idle, the job can be claimed before the 202 is built;
	 * only a daemon without workers makes "queued" certain. */
	if (strict_queued) {
		HT_EXPECT_JSTR(r.json, "state", "queued", &r);
	} else {
		const char *st = ht_jstr(r.json, "state");

		HT_ASSERTF(st && (strcmp(st, "queued") == 0 || strcmp(st, "running") == 0 ||
				  strcmp(st, "succeeded") == 0),
			   &r, "a new job must be queued (or already running/succeeded)");
	}
	HT_EXPECT_JSTR(r.json, "model", model, &r);
	HT_ASSERT(ht_jstr(r.json, "created_at") != NULL, &r);
	HT_ASSERT(json_is_null(json_object_get(r.json, "error")), &r);
	steps = json_object_get(r.json, "steps");
	HT_ASSERT(json_array_size(steps) == 2, &r);
	HT_EXPECT_JSTR(json_array_get(steps, 0), "op", "prune", &r);
	HT_EXPECT_JSTR(json_array_get(steps, 1), "op", "quantize", &r);
	if (strict_queued)
		HT_ASSERT(json_array_size(json_object_get(r.json, "artifacts")) == 0, &r);
	HT_ASSERTF(ht_header(&r, "Location", loc, sizeof(loc)) && strstr(loc, "/v1/jobs/") &&
			   strstr(loc, ht_jstr(r.json, "id")),
		   &r, "202 needs Location: /v1/jobs/ID");
	snprintf(id, 64, "%s", ht_jstr(r.json, "id"));
	if (spec_out)
		*spec_out = json_loads(spec, 0, NULL);
	ht_resp_free(&r);
}

static void upload_model(const struct ht_daemon *d, const uint8_t *bytes, size_t len,
			 char id[64])
{
	struct ht_resp r;

	ht_upload(d, "jobs-test", bytes, len, &r);
	HT_EXPECT_STATUS(&r, 201);
	snprintf(id, 64, "%s", ht_jstr(r.json, "id"));
	ht_resp_free(&r);
}

/* Ids of every job listed with `query` ("state=queued&" or ""), following cursors. */
static json_t *list_ids(const struct ht_daemon *d, const char *query, int limit)
{
	json_t *ids = json_array();
	char cursor[256] = "";

	for (int pages = 0;; pages++) {
		char path[512];
		struct ht_resp r;
		json_t *jobs, *next;
		size_t i;
		json_t *j;

		snprintf(path, sizeof(path), "/v1/jobs?%slimit=%d%s%s", query, limit,
			 cursor[0] ? "&after=" : "", cursor);
		ht_get(d, path, &r);
		HT_EXPECT_STATUS(&r, 200);
		jobs = json_object_get(r.json, "jobs");
		HT_ASSERT(json_is_array(jobs) && json_array_size(jobs) <= (size_t)limit, &r);
		json_array_foreach(jobs, i, j) {
			HT_ASSERT(ht_valid_id(ht_jstr(j, "id"), "job_") && ht_jstr(j, "state"), &r);
			json_array_append_new(ids, json_string(ht_jstr(j, "id")));
		}
		next = json_object_get(r.json, "next");
		HT_ASSERT(json_is_null(next) || json_is_string(next), &r);
		HT_ASSERTF(json_is_null(next) || strlen(json_string_value(next)) < (sizeof(cursor) - 1) / 3,
			   &r, "cursor too long for this test");
		if (json_is_string(next))
			ht_query_escape(json_string_value(next), cursor, sizeof(cursor));
		else
			cursor[0] = 0;
		ht_resp_free(&r);
		if (!cursor[0])
			break;
		HT_ASSERTF(pages < 1000, NULL, "pagination does not end");
	}
	return ids;
}

static bool has_id(const json_t *ids, const char *id)
{
	for (size_t i = 0; i < json_array_size(ids); i++)
		if (strcmp(json_string_value(json_array_get(ids, i)), id) == 0)
			return true;
	return false;
}

int main(int argc, char **argv)
{
	static const char *const one_worker[] = {"--workers", "1", NULL};
	struct ht_env env;
	struct ht_daemon d;
	struct ht_resp r;
	uint8_t *bytes;
	size_t len;
	char model[64], job1[64], job2[64], job3[64], path[256], body[2048];
	json_t *spec1 = NULL, *ids, *steps;

	ht_init(argc, argv, &env);
	ht_daemon_init(&d, env.exe, one_worker);
	HT_START(&d);
	ht_model_bytes(&env, NULL, 7, &bytes, &len);
	upload_model(&d, bytes, len, model);
	free(bytes);

	ht_note("submit -> 202 queued, then the worker runs it to succeeded");
	submit(&d, model, false, job1, &spec1);
	HT_ASSERTF(ht_wait_job(&d, job1, NULL, 300, &r) == 0, &r, "job did not finish");
	HT_EXPECT_JSTR(r.json, "state", "succeeded", &r);
	HT_EXPECT_JSTR(r.json, "id", job1, &r);
	HT_EXPECT_JSTR(r.json, "model", model, &r);
	HT_ASSERT(fabs(ht_jnum(r.json, "progress", -1) - 1.0) < 1e-9, &r);
	HT_ASSERT(json_is_null(json_object_get(r.json, "error")), &r);
	HT_ASSERT(ht_jstr(r.json, "created_at") && ht_jstr(r.json, "started_at") &&
			  ht_jstr(r.json, "finished_at"),
		  &r);
	HT_ASSERTF(strcmp(ht_jstr(r.json, "started_at"), ht_jstr(r.json, "created_at")) >= 0 &&
			   strcmp(ht_jstr(r.json, "finished_at"), ht_jstr(r.json, "started_at")) >= 0,
		   &r, "created_at <= started_at <= finished_at");
	HT_ASSERTF(json_equal(json_object_get(r.json, "spec"), spec1), &r,
		   "the job view must echo the submitted spec");
	steps = json_object_get(r.json, "steps");
	HT_ASSERT(json_array_size(steps) == 2, &r);
	HT_EXPECT_JSTR(json_array_get(steps, 0), "op", "prune", &r);
	HT_EXPECT_JSTR(json_array_get(steps, 0), "state", "succeeded", &r);
	HT_EXPECT_JSTR(json_array_get(steps, 1), "op", "quantize", &r);
	HT_EXPECT_JSTR(json_array_get(steps, 1), "state", "succeeded", &r);
	check_prune_metrics(json_object_get(json_array_get(steps, 0), "metrics"), &r);
	check_quant_metrics(json_object_get(json_array_get(steps, 1), "metrics"), &r);
	{
		json_t *arts = json_object_get(r.json, "artifacts");
		json_t *a = json_array_get(arts, 0);
		const char *sha = ht_jstr(a, "sha256");

		HT_ASSERTF(json_array_size(arts) == 1, &r, "one artifact per job");
		HT_ASSERT(ht_valid_id(ht_jstr(a, "id"), "art_"), &r);
		HT_ASSERT(sha && strlen(sha) == 64, &r);
		HT_ASSERT(ht_jint(a, "size", -1) > 0, &r);
		HT_EXPECT_JSTR(a, "format", "onnx", &r);
		HT_ASSERTF(ht_blob_exists(&d, sha), &r, "artifact blob missing from the store");
	}
	ht_resp_free(&r);
	json_decref(spec1);

	ht_note("finished job: cancel -> 409 conflict");
	snprintf(path, sizeof(path), "/v1/jobs/%s/cancel", job1);
	ht_post_json(&d, path, "", &r);
	HT_EXPECT_ERROR(&r, 409, "conflict", NULL);
	ht_resp_free(&r);

	ht_note("list: newest first, state filter, pagination");
	submit(&d, model, false, job2, NULL);
	submit(&d, model, false, job3, NULL);
	HT_ASSERT(ht_wait_job(&d, job2, NULL, 300, &r) == 0, &r);
	HT_EXPECT_JSTR(r.json, "state", "succeeded", &r);
	ht_resp_free(&r);
	HT_ASSERT(ht_wait_job(&d, job3, NULL, 300, &r) == 0, &r);
	HT_EXPECT_JSTR(r.json, "state", "succeeded", &r);
	ht_resp_free(&r);
	ht_get(&d, "/v1/jobs", &r);
	HT_EXPECT_STATUS(&r, 200);
	{
		json_t *jobs = json_object_get(r.json, "jobs");

		HT_ASSERT(json_array_size(jobs) == 3, &r);
		HT_EXPECT_JSTR(json_array_get(jobs, 0), "id", job3, &r);
		HT_EXPECT_JSTR(json_array_get(jobs, 1), "id", job2, &r);
		HT_EXPECT_JSTR(json_array_get(jobs, 2), "id", job1, &r);
		HT_ASSERT(json_is_null(json_object_get(r.json, "next")), &r);
	}
	ht_resp_free(&r);
	ids = list_ids(&d, "", 1);
	HT_ASSERTF(json_array_size(ids) == 3 &&
			   strcmp(json_string_value(json_array_get(ids, 0)), job3) == 0 &&
			   strcmp(json_string_value(json_array_get(ids, 2)), job1) == 0,
		   NULL, "limit=1 pages must give job3, job2, job1");
	json_decref(ids);
	ids = list_ids(&d, "state=succeeded&", 2);
	HT_ASSERT(json_array_size(ids) == 3, NULL);
	json_decref(ids);
	ids = list_ids(&d, "state=queued&", 10);
	HT_ASSERT(json_array_size(ids) == 0, NULL);
	json_decref(ids);
	ids = list_ids(&d, "state=failed&", 10);
	HT_ASSERT(json_array_size(ids) == 0, NULL);
	json_decref(ids);
	ht_get(&d, "/v1/jobs?state=bogus", &r);
	HT_EXPECT_ERROR(&r, 400, "invalid_query", "state");
	ht_resp_free(&r);

	ht_note("spec errors are 400s naming the field, never failed jobs");
	expect_spec_error(&d, "non-JSON body", "{\"model\": not json", 400, "invalid_json", NULL);
	expect_spec_error(&d, "JSON array body", "[1,2,3]", 400, "invalid_json", NULL);
	expect_spec_error(&d, "JSON string body", "\"hello\"", 400, "invalid_json", NULL);
	expect_spec_error(&d, "empty body", "", 400, "invalid_json", NULL);
	snprintf(body, sizeof(body), "{\"model\":\"%s\",\"steps\":[{\"op\":\"explode\"}]}", model);
	expect_spec_error(&d, "unknown op", body, 400, "invalid_spec", "steps[0].op");
	snprintf(body, sizeof(body),
		 "{\"model\":\"%s\",\"steps\":[{\"op\":\"prune\",\"method\":\"magnitude\","
		 "\"sparsity\":1.5,\"scope\":\"global\"}]}",
		 model);
	expect_spec_error(&d, "sparsity 1.5", body, 400, "invalid_spec", "steps[0].sparsity");
	snprintf(body, sizeof(body),
		 "{\"model\":\"%s\",\"steps\":[{\"op\":\"prune\",\"method\":\"magnitude\","
		 "\"sparsity\":-0.1,\"scope\":\"global\"}]}",
		 model);
	expect_spec_error(&d, "sparsity -0.1", body, 400, "invalid_spec", "steps[0].sparsity");
	snprintf(body, sizeof(body),
		 "{\"model\":\"%s\",\"steps\":[{\"op\":\"prune\",\"method\":\"magnitude\","
		 "\"sparsity\":\"high\",\"scope\":\"global\"}]}",
		 model);
	expect_spec_error(&d, "sparsity as a string", body, 400, "invalid_spec",
			  "steps[0].sparsity");
	snprintf(body, sizeof(body),
		 "{\"model\":\"%s\",\"steps\":[{\"op\":\"prune\",\"method\":\"magnitude\","
		 "\"sparsity\":0.5,\"scope\":\"global\"},{\"op\":\"quantize\",\"scheme\":\"int8\","
		 "\"granularity\":\"per_galaxy\"}]}",
		 model);
	expect_spec_error(&d, "unknown granularity in step 1", body, 400, "invalid_spec",
			  "steps[1].granularity");
	snprintf(body, sizeof(body),
		 "{\"model\":\"%s\",\"steps\":[{\"op\":\"prune\",\"method\":\"magnitude\","
		 "\"sparsity\":0.5,\"scope\":\"global\"},{\"op\":\"quantize\",\"scheme\":\"int8\","
		 "\"granularty\":\"per_channel\"}]}",
		 model);
	expect_spec_error(&d, "misspelt key in step 1", body, 400, "invalid_spec",
			  "steps[1].granularty");
	expect_spec_error(&d, "missing model",
			  "{\"steps\":[{\"op\":\"quantize\",\"scheme\":\"int8\","
			  "\"granularity\":\"per_channel\"}]}",
			  400, "invalid_spec", "model");
	expect_spec_error(&d, "unknown model id",
			  "{\"model\":\"mdl_aaaaaaaaaaaaaaaaaaaaaaaaaa\",\"steps\":[{\"op\":\"quantize\","
			  "\"scheme\":\"int8\",\"granularity\":\"per_channel\"}]}",
			  400, "unknown_model", "model");
	ids = list_ids(&d, "", 100);
	HT_ASSERTF(json_array_size(ids) == 3, NULL, "a refused spec created a job");
	json_decref(ids);

	ht_note("unknown job id -> 404 (GET and cancel)");
	ht_get(&d, "/v1/jobs/job_aaaaaaaaaaaaaaaaaaaaaaaaaa", &r);
	HT_EXPECT_ERROR(&r, 404, "not_found", NULL);
	ht_resp_free(&r);
	ht_get(&d, "/v1/jobs/nope", &r);
	HT_EXPECT_ERROR(&r, 404, "not_found", NULL);
	ht_resp_free(&r);
	ht_post_json(&d, "/v1/jobs/job_aaaaaaaaaaaaaaaaaaaaaaaaaa/cancel", "", &r);
	HT_EXPECT_ERROR(&r, 404, "not_found", NULL);
	ht_resp_free(&r);

	ht_note("restart with --workers 0: a new job stays queued and cancel makes it canceled");
	HT_ASSERTF(ht_daemon_stop(&d, 60) == 0, NULL, "nncd did not exit 0 on SIGTERM");
	d.args[1] = "0";
	HT_START(&d);
	{
		char queued[64];

		submit(&d, model, true, queued, NULL);
		ids = list_ids(&d, "state=queued&", 10);
		HT_ASSERTF(json_array_size(ids) == 1 && has_id(ids, queued), NULL,
			   "state=queued must list exactly the new job");
		json_decref(ids);
		snprintf(path, sizeof(path), "/v1/jobs/%s/cancel", queued);
		ht_post_json(&d, path, "", &r);
		HT_EXPECT_STATUS(&r, 200);
		HT_EXPECT_JSTR(r.json, "id", queued, &r);
		HT_EXPECT_JSTR(r.json, "state", "canceled", &r);
		ht_resp_free(&r);
		snprintf(path, sizeof(path), "/v1/jobs/%s", queued);
		ht_get(&d, path, &r);
		HT_EXPECT_STATUS(&r, 200);
		HT_EXPECT_JSTR(r.json, "state", "canceled", &r);
		HT_ASSERT(json_array_size(json_object_get(r.json, "artifacts")) == 0, &r);
		ht_resp_free(&r);
		snprintf(path, sizeof(path), "/v1/jobs/%s/cancel", queued);
		ht_post_json(&d, path, "", &r);
		HT_EXPECT_ERROR(&r, 409, "conflict", NULL);
		ht_resp_free(&r);
		ids = list_ids(&d, "state=canceled&", 10);
		HT_ASSERT(json_array_size(ids) == 1 && has_id(ids, queued), NULL);
		json_decref(ids);

		ht_note("restart with a worker: the canceled job stays canceled");
		HT_ASSERTF(ht_daemon_stop(&d, 60) == 0, NULL, "nncd did not exit 0 on SIGTERM");
		d.args[1] = "1";
		HT_START(&d);
		submit(&d, model, false, job1, NULL);
		HT_ASSERT(ht_wait_job(&d, job1, NULL, 300, &r) == 0, &r);
		HT_EXPECT_JSTR(r.json, "state", "succeeded", &r);
		ht_resp_free(&r);
		snprintf(path, sizeof(path), "/v1/jobs/%s", queued);
		ht_get(&d, path, &r);
		HT_EXPECT_JSTR(r.json, "state", "canceled", &r);
		ht_resp_free(&r);
	}

	ht_note("the trained fixtures (when present) compress with the same spec");
	{
		static const char *const fixtures[] = {"lenet300.onnx", "cnn.onnx"};
		char fpath[HT_PATH];

		for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
			json_t *st;

			if (!ht_fixture(&env, fixtures[i], fpath, sizeof(fpath)))
				continue;
			ht_note("fixture %s", fixtures[i]);
			HT_ASSERT(ht_read_file(fpath, &bytes, &len) == 0, NULL);
			upload_model(&d, bytes, len, model);
			free(bytes);
			submit(&d, model, false, job1, NULL);
			HT_ASSERT(ht_wait_job(&d, job1, NULL, 300, &r) == 0, &r);
			HT_EXPECT_JSTR(r.json, "state", "succeeded", &r);
			st = json_object_get(r.json, "steps");
			check_prune_metrics(json_object_get(json_array_get(st, 0), "metrics"), &r);
			check_quant_metrics(json_object_get(json_array_get(st, 1), "metrics"), &r);
			HT_ASSERT(json_array_size(json_object_get(r.json, "artifacts")) == 1, &r);
			ht_resp_free(&r);
		}
	}

	ht_note("quantize on a model that cannot be raised to opset 13 -> 400 steps[0]; "
		"prune only -> 202");
	{
		char mpath[HT_PATH];
		const json_t *v;
		const char *msg;

		snprintf(mpath, sizeof(mpath),
			 "%s/tests/unit/data/opset_quant_reject_softmax4d_11.onnx", env.srcdir);
		HT_ASSERTF(ht_read_file(mpath, &bytes, &len) == 0, NULL, "cannot read %s", mpath);
		ht_upload(&d, "opset11-softmax", bytes, len, &r);
		free(bytes);
		HT_EXPECT_STATUS(&r, 201);
		v = json_object_get(json_object_get(r.json, "opset_upgrade"), "13");
		HT_ASSERTF(json_is_object(v), &r, "the upload shows opset_upgrade[\"13\"] refused");
		HT_EXPECT_JSTR(v, "node", "sm_channels", &r);
		HT_EXPECT_JSTR(v, "op", "Softmax", &r);
		snprintf(model, sizeof(model), "%s", ht_jstr(r.json, "id"));
		ht_resp_free(&r);
		snprintf(body, sizeof(body),
			 "{\"model\":\"%s\",\"steps\":[{\"op\":\"quantize\",\"scheme\":"
			 "\"int8\"}]}",
			 model);
		expect_spec_error(&d, "quantize, opset-11 Softmax over axis 1 of a 4-D tensor", body,
				  400, "invalid_spec", "steps[0]");
		ht_post_json(&d, "/v1/jobs", body, &r);
		msg = ht_jstr(json_object_get(r.json, "error"), "message");
		HT_ASSERTF(msg && strstr(msg, "'sm_channels'") && strstr(msg, "opset >= 13"), &r,
			   "the message names the node and the way out");
		ht_resp_free(&r);
		snprintf(body, sizeof(body),
			 "{\"model\":\"%s\",\"steps\":[{\"op\":\"prune\",\"sparsity\":0.5}]}",
			 model);
		ht_post_json(&d, "/v1/jobs", body, &r);
		HT_EXPECT_STATUS(&r, 202);
		snprintf(job1, sizeof(job1), "%s", ht_jstr(r.json, "id"));
		ht_resp_free(&r);
		HT_ASSERT(ht_wait_job(&d, job1, NULL, 300, &r) == 0, &r);
		HT_EXPECT_JSTR(r.json, "state", "succeeded", &r);
		ht_resp_free(&r);
	}

	HT_ASSERTF(ht_daemon_stop(&d, 60) == 0, NULL, "nncd did not exit 0 on SIGTERM");
	ht_daemon_cleanup(&d);
	printf("PASS api_jobs\n");
	return 0;
}
