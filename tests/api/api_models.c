/* api_models: POST/GET/DELETE /v1/models against a live nncd.
 *
 * The daemon runs with --workers 0 so that a submitted job stays queued for
 * as long as the test needs (DELETE of a model in use must answer 409)
 * without depending on how fast a worker would be. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "synth.h"

static const int64_t mlp_dims[] = {784, 300, 100, 10};
#define MLP_PARAMS (784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10)

/* Every field the contract lists for a model, with the values a synthetic
 * 784-300-100-10 MLP must give. */
static void check_synth_model(const json_t *m, const struct ht_resp *r, const char *name,
			      const char *sha, size_t size)
{
	json_t *opset = json_object_get(m, "opset");
	json_t *inputs = json_object_get(m, "inputs");
	json_t *outputs = json_object_get(m, "outputs");
	json_t *ops = json_object_get(m, "ops");
	json_t *prunable = json_object_get(m, "prunable");
	json_t *in0 = json_array_get(inputs, 0);
	json_t *shape = json_object_get(in0, "shape");
	long long prunable_params = 0;
	size_t i;
	json_t *p;

	HT_ASSERTF(ht_valid_id(ht_jstr(m, "id"), "mdl_"), r, "id is not mdl_ + 26 base32 chars");
	HT_EXPECT_JSTR(m, "name", name, r);
	HT_EXPECT_JSTR(m, "sha256", sha, r);
	HT_ASSERT(ht_jint(m, "size", -1) == (long long)size, r);
	HT_ASSERT(ht_jstr(m, "created_at") && strlen(ht_jstr(m, "created_at")) >= 20, r);
	HT_ASSERT(ht_jint(m, "ir_version", -1) == 8, r);
	HT_ASSERT(json_is_object(opset) && ht_jint(opset, "", -1) == 17, r);
	HT_ASSERT(json_is_object(json_object_get(m, "producer")), r);
	HT_EXPECT_JSTR(json_object_get(m, "producer"), "name", "nncd-tests-synth", r);
	HT_ASSERT(json_array_size(inputs) == 1 && json_array_size(outputs) == 1, r);
	HT_EXPECT_JSTR(in0, "name", "x", r);
	HT_ASSERT(ht_jstr(in0, "dtype") != NULL, r);
	HT_ASSERTF(json_array_size(shape) == 2 && json_is_null(json_array_get(shape, 0)) &&
			   json_integer_value(json_array_get(shape, 1)) == 784,
		   r, "inputs[0].shape must be [null, 784] (symbolic batch dim is null)");
	HT_EXPECT_JSTR(json_array_get(outputs, 0), "name", "y", r);
	HT_ASSERT(ht_jint(m, "nodes", -1) == 5, r);
	HT_ASSERT(ht_jint(ops, "Gemm", -1) == 3 && ht_jint(ops, "Relu", -1) == 2, r);
	HT_ASSERT(json_object_size(ops) == 2, r);
	HT_ASSERTF(ht_jint(m, "parameters", -1) == MLP_PARAMS, r, "parameters must be %d",
		   MLP_PARAMS);
	HT_ASSERT(ht_jint(m, "initializers", -1) == 6, r);
	HT_ASSERTF(json_array_size(prunable) == 3, r, "the three Gemm weights are prunable");
	json_array_foreach(prunable, i, p) {
		HT_ASSERT(ht_jstr(p, "name") && strstr(ht_jstr(p, "name"), ".weight"), r);
		HT_EXPECT_JSTR(p, "op", "Gemm", r);
		HT_ASSERT(json_array_size(json_object_get(p, "shape")) == 2, r);
		prunable_params += ht_jint(p, "parameters", 0);
	}
	HT_ASSERT(prunable_params == 784 * 300 + 300 * 100 + 100 * 10, r);
}

static void upload_ok(const struct ht_daemon *d, const char *name, const uint8_t *bytes,
		      size_t len, const char *content_type, struct ht_resp *r)
{
	char path[256], loc[256], want[128];
	struct ht_req rq = {.method = "POST",
			    .path = path,
			    .content_type = content_type,
			    .body = bytes,
			    .len = len,
			    .has_body = true};

	snprintf(path, sizeof(path), "/v1/models?name=%s", name);
	ht_request(d, &rq, r);
	HT_EXPECT_STATUS(r, 201);
	HT_ASSERTF(ht_header(r, "Location", loc, sizeof(loc)), r, "201 without Location");
	snprintf(want, sizeof(want), "/v1/models/%s", ht_jstr(r->json, "id"));
	HT_ASSERTF(strlen(loc) >= strlen(want) && strcmp(loc + strlen(loc) - strlen(want), want) == 0,
		   r, "Location %s does not end with %s", loc, want);
}

static void expect_invalid_upload(const struct ht_daemon *d, const char *what, const void *bytes,
				  size_t len, const char *code)
{
	struct ht_resp r;

	ht_note("upload of %s (%zu bytes) -> 400 %s", what, len, code);
	ht_upload(d, what, bytes, len, &r);
	HT_EXPECT_ERROR(&r, 400, code, NULL);
	ht_resp_free(&r);
}

/* All models through the cursor pages of `limit`, newest first. */
static json_t *list_all(const struct ht_daemon *d, int limit, int *pages)
{
	json_t *all = json_array();
	char *cursor = NULL;

	*pages = 0;
	for (;;) {
		char path[512];
		struct ht_resp r;
		json_t *next;

		if (cursor) {
			char esc[256];

			ht_query_escape(cursor, esc, sizeof(esc));
			snprintf(path, sizeof(path), "/v1/models?limit=%d&after=%s", limit, esc);
		} else {
			snprintf(path, sizeof(path), "/v1/models?limit=%d", limit);
		}
		ht_get(d, path, &r);
		HT_EXPECT_STATUS(&r, 200);
		HT_ASSERT(json_is_array(json_object_get(r.json, "models")), &r);
		HT_ASSERTF(json_array_size(json_object_get(r.json, "models")) <= (size_t)limit, &r,
			   "page longer than limit=%d", limit);
		json_array_extend(all, json_object_get(r.json, "models"));
		(*pages)++;
		next = json_object_get(r.json, "next");
		HT_ASSERTF(json_is_null(next) || json_is_string(next), &r,
			   "next must be a cursor string or null");
		free(cursor);
		cursor = json_is_string(next) ? strdup(json_string_value(next)) : NULL;
		ht_resp_free(&r);
		if (!cursor)
			break;
		HT_ASSERTF(*pages < 1000, NULL, "pagination does not end");
	}
	return all;
}

int main(int argc, char **argv)
{
	static const char *const args[] = {"--workers", "0", NULL};
	struct ht_env env;
	struct ht_daemon d;
	struct ht_resp r;
	uint8_t *mlp, *other, *fixture;
	size_t mlp_len, other_len, fixture_len;
	char sha[65], id1[64], id2[64], id3[64], path[256], fixture_path[HT_PATH];
	json_t *all;
	long blobs, bad;
	int pages;

	ht_init(argc, argv, &env);
	ht_daemon_init(&d, env.exe, args);
	HT_START(&d);

	ht_synth_bytes(mlp_dims, 4, 1, &mlp, &mlp_len);
	ht_synth_bytes(mlp_dims, 4, 2, &other, &other_len);
	ht_sha256(mlp, mlp_len, sha);

	ht_note("empty store lists no models");
	ht_get(&d, "/v1/models", &r);
	HT_EXPECT_STATUS(&r, 200);
	HT_ASSERT(json_array_size(json_object_get(r.json, "models")) == 0, &r);
	HT_ASSERT(json_is_null(json_object_get(r.json, "next")), &r);
	ht_resp_free(&r);

	ht_note("upload -> 201 with the summary, Location, and GET returns the same model");
	upload_ok(&d, "mlp", mlp, mlp_len, "application/octet-stream", &r);
	check_synth_model(r.json, &r, "mlp", sha, mlp_len);
	snprintf(id1, sizeof(id1), "%s", ht_jstr(r.json, "id"));
	ht_resp_free(&r);
	snprintf(path, sizeof(path), "/v1/models/%s", id1);
	ht_get(&d, path, &r);
	HT_EXPECT_STATUS(&r, 200);
	check_synth_model(r.json, &r, "mlp", sha, mlp_len);
	HT_EXPECT_JSTR(r.json, "id", id1, &r);
	ht_resp_free(&r);
	HT_ASSERTF(ht_blob_exists(&d, sha), NULL, "no blob at blobs/sha256/%.2s/%s", sha, sha);

	ht_note("identical bytes again -> a second id, same sha256, still one blob");
	upload_ok(&d, "mlp-again", mlp, mlp_len, "application/octet-stream", &r);
	snprintf(id2, sizeof(id2), "%s", ht_jstr(r.json, "id"));
	HT_ASSERTF(strcmp(id1, id2) != 0, &r, "dedupe must not reuse the model id");
	HT_EXPECT_JSTR(r.json, "sha256", sha, &r);
	ht_resp_free(&r);
	bad = ht_verify_blobs(&d, &blobs);
	HT_ASSERTF(bad == 0 && blobs == 1, NULL, "expected 1 good blob, found %ld (%ld bad)", blobs,
		   bad);

	ht_note("accepted content types: application/x-onnx, application/onnx, none");
	upload_ok(&d, "x-onnx", other, other_len, "application/x-onnx", &r);
	snprintf(id3, sizeof(id3), "%s", ht_jstr(r.json, "id"));
	ht_resp_free(&r);
	upload_ok(&d, "onnx", other, other_len, "application/onnx", &r);
	ht_resp_free(&r);
	upload_ok(&d, "no-type", other, other_len, NULL, &r);
	ht_resp_free(&r);

	if (ht_fixture(&env, "lenet300.onnx", fixture_path, sizeof(fixture_path))) {
		ht_note("fixture lenet300.onnx: Gemm/MatMul weights are prunable");
		HT_ASSERT(ht_read_file(fixture_path, &fixture, &fixture_len) == 0, NULL);
		upload_ok(&d, "lenet300", fixture, fixture_len, "application/octet-stream", &r);
		HT_ASSERT(ht_jint(r.json, "parameters", 0) > 200000, &r);
		HT_ASSERT(json_array_size(json_object_get(r.json, "prunable")) >= 3, &r);
		ht_resp_free(&r);
		free(fixture);
	}
	if (ht_fixture(&env, "cnn.onnx", fixture_path, sizeof(fixture_path))) {
		ht_note("fixture cnn.onnx: Conv weights are prunable");
		HT_ASSERT(ht_read_file(fixture_path, &fixture, &fixture_len) == 0, NULL);
		upload_ok(&d, "cnn", fixture, fixture_len, "application/octet-stream", &r);
		HT_ASSERT(ht_jint(json_object_get(r.json, "ops"), "Conv", 0) >= 1, &r);
		HT_ASSERT(json_array_size(json_object_get(r.json, "prunable")) >= 2, &r);
		ht_resp_free(&r);
		free(fixture);
	}

	ht_note("list: newest first, and limit=1 pages give the same order");
	ht_get(&d, "/v1/models", &r);
	HT_EXPECT_STATUS(&r, 200);
	{
		json_t *models = json_object_get(r.json, "models");
		size_t n = json_array_size(models);

		HT_ASSERT(n >= 5, &r);
		HT_EXPECT_JSTR(json_array_get(models, n - 1), "id", id1, &r);
		HT_EXPECT_JSTR(json_array_get(models, n - 2), "id", id2, &r);
		HT_EXPECT_JSTR(json_array_get(models, n - 3), "id", id3, &r);
		HT_ASSERT(json_is_null(json_object_get(r.json, "next")), &r);
		for (size_t i = 0; i < n; i++) {
			json_t *m = json_array_get(models, i);

			HT_ASSERT(ht_valid_id(ht_jstr(m, "id"), "mdl_"), &r);
			HT_ASSERT(ht_jstr(m, "sha256") && ht_jstr(m, "created_at"), &r);
			HT_ASSERT(ht_jint(m, "size", -1) > 0, &r);
		}
		all = list_all(&d, 1, &pages);
		HT_ASSERTF(json_array_size(all) == n, &r, "paging with limit=1 gave %zu models, not %zu",
			   json_array_size(all), n);
		HT_ASSERTF(pages >= (int)n, &r, "%d pages for %zu models", pages, n);
		for (size_t i = 0; i < n; i++)
			HT_ASSERTF(strcmp(ht_jstr(json_array_get(all, i), "id"),
					  ht_jstr(json_array_get(models, i), "id")) == 0,
				   &r, "page order differs at %zu", i);
		json_decref(all);
		all = list_all(&d, 2, &pages);
		HT_ASSERT(json_array_size(all) == n, &r);
		json_decref(all);
	}
	ht_resp_free(&r);
	ht_get(&d, "/v1/models?limit=abc", &r);
	HT_EXPECT_ERROR(&r, 400, "invalid_query", "limit");
	ht_resp_free(&r);
	ht_get(&d, "/v1/models?limit=0", &r);
	HT_EXPECT_ERROR(&r, 400, "invalid_query", "limit");
	ht_resp_free(&r);

	ht_note("415 for JSON and multipart bodies");
	{
		static const char *const types[] = {"application/json", "multipart/form-data; boundary=x",
						    "text/plain"};
		for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
			struct ht_req rq = {.method = "POST",
					    .path = "/v1/models?name=bad-type",
					    .content_type = types[i],
					    .body = mlp,
					    .len = mlp_len,
					    .has_body = true};

			ht_request(&d, &rq, &r);
			ht_note("Content-Type %s -> 415", types[i]);
			HT_EXPECT_ERROR(&r, 415, "unsupported_media_type", NULL);
			ht_resp_free(&r);
		}
	}

	ht_note("malformed models -> 400 invalid_model; external data -> 400");
	{
		static const uint8_t no_graph[] = {0x08, 0x08}; /* ModelProto{ir_version: 8} */
		struct synth_spec ext = {.dims = {16, 8, 4}, .n_layers = 2, .seed = 3,
					 .external_data = true};
		uint8_t random_bytes[4096], *tensor, *ext_bytes;
		size_t tensor_len, ext_len;
		uint32_t x = 12345;
		char err[256];
		long models_before, blobs_before;

		ht_get(&d, "/v1/models?limit=1000", &r);
		models_before = (long)json_array_size(json_object_get(r.json, "models"));
		ht_resp_free(&r);
		ht_verify_blobs(&d, &blobs_before);

		for (size_t i = 0; i < sizeof(random_bytes); i++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			random_bytes[i] = (uint8_t)x;
		}
		expect_invalid_upload(&d, "truncated", mlp, mlp_len / 2, "invalid_model");
		expect_invalid_upload(&d, "truncated-header", mlp, 7, "invalid_model");
		expect_invalid_upload(&d, "random", random_bytes, sizeof(random_bytes),
				      "invalid_model");
		HT_ASSERTF(synth_tensor_proto(&tensor, &tensor_len, err, sizeof(err)) == 0, NULL,
			   "%s", err);
		expect_invalid_upload(&d, "tensor-proto", tensor, tensor_len, "invalid_model");
		free(tensor);
		expect_invalid_upload(&d, "no-graph", no_graph, sizeof(no_graph), "invalid_model");
		expect_invalid_upload(&d, "empty", "", 0, "invalid_model");
		HT_ASSERTF(synth_build(&ext, &ext_bytes, &ext_len, err, sizeof(err)) == 0, NULL, "%s",
			   err);
		expect_invalid_upload(&d, "external-data", ext_bytes, ext_len,
				      "unsupported_external_data");
		free(ext_bytes);

		ht_get(&d, "/v1/models?limit=1000", &r);
		HT_ASSERTF((long)json_array_size(json_object_get(r.json, "models")) == models_before, &r,
			   "a refused upload created a model");
		ht_resp_free(&r);
		bad = ht_verify_blobs(&d, &blobs);
		HT_ASSERTF(bad == 0 && blobs == blobs_before, NULL,
			   "refused uploads left blobs behind: %ld before, %ld after (%ld bad)",
			   blobs_before, blobs, bad);
		snprintf(path, sizeof(path), "%s/tmp", d.data_dir);
		HT_ASSERTF(ht_count_files(path) == 0, NULL, "refused uploads left %ld files in tmp/",
			   ht_count_files(path));
	}

	ht_note("GET/DELETE of unknown ids -> 404 not_found");
	ht_get(&d, "/v1/models/mdl_aaaaaaaaaaaaaaaaaaaaaaaaaa", &r);
	HT_EXPECT_ERROR(&r, 404, "not_found", NULL);
	ht_resp_free(&r);
	ht_get(&d, "/v1/models/not-an-id", &r);
	HT_EXPECT_ERROR(&r, 404, "not_found", NULL);
	ht_resp_free(&r);
	ht_delete(&d, "/v1/models/mdl_aaaaaaaaaaaaaaaaaaaaaaaaaa", &r);
	HT_EXPECT_ERROR(&r, 404, "not_found", NULL);
	ht_resp_free(&r);

	ht_note("DELETE while a queued job uses the model -> 409; after cancel -> 204, then 404");
	{
		char job[64], cancel[128];

		ht_submit_default_job(&d, id1, &r);
		HT_EXPECT_STATUS(&r, 202);
		HT_EXPECT_JSTR(r.json, "state", "queued", &r);
		snprintf(job, sizeof(job), "%s", ht_jstr(r.json, "id"));
		ht_resp_free(&r);
		snprintf(path, sizeof(path), "/v1/models/%s", id1);
		ht_delete(&d, path, &r);
		HT_EXPECT_ERROR(&r, 409, "conflict", NULL);
		ht_resp_free(&r);
		ht_get(&d, path, &r);
		HT_EXPECT_STATUS(&r, 200);
		ht_resp_free(&r);

		snprintf(cancel, sizeof(cancel), "/v1/jobs/%s/cancel", job);
		ht_post_json(&d, cancel, "", &r);
		HT_EXPECT_STATUS(&r, 200);
		HT_EXPECT_JSTR(r.json, "state", "canceled", &r);
		ht_resp_free(&r);

		ht_delete(&d, path, &r);
		HT_EXPECT_STATUS(&r, 204);
		HT_ASSERTF(r.len == 0, &r, "204 must have no body");
		ht_resp_free(&r);
		ht_get(&d, path, &r);
		HT_EXPECT_ERROR(&r, 404, "not_found", NULL);
		ht_resp_free(&r);
		ht_delete(&d, path, &r);
		HT_EXPECT_ERROR(&r, 404, "not_found", NULL);
		ht_resp_free(&r);
		HT_ASSERTF(ht_blob_exists(&d, sha), NULL,
			   "deleting %s removed the blob that %s still uses", id1, id2);
		snprintf(path, sizeof(path), "/v1/models/%s", id2);
		ht_get(&d, path, &r);
		HT_EXPECT_STATUS(&r, 200);
		ht_resp_free(&r);
		ht_delete(&d, path, &r);
		HT_EXPECT_STATUS(&r, 204);
		ht_resp_free(&r);
	}

	ht_note("the listing no longer shows deleted models");
	all = list_all(&d, 1000, &pages);
	for (size_t i = 0; i < json_array_size(all); i++) {
		const char *id = ht_jstr(json_array_get(all, i), "id");

		HT_ASSERTF(strcmp(id, id1) != 0 && strcmp(id, id2) != 0, NULL,
			   "deleted model %s still listed", id);
	}
	json_decref(all);

	ht_note("SIGTERM -> exit 0");
	HT_ASSERTF(ht_daemon_stop(&d, 60) == 0, NULL, "nncd did not exit 0 on SIGTERM");
	ht_daemon_cleanup(&d);
	free(mlp);
	free(other);
	printf("PASS api_models\n");
	return 0;
}
