/* api_artifacts: GET/HEAD /v1/artifacts/{id}: bytes, sha256/ETag, ranges,
 * conditional requests, and that the bytes are the compressed model the job
 * promised (int8 weights behind DequantizeLinear, ~80% zeros). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "onnx.pb-c.h"

static const int64_t mlp_dims[] = {784, 300, 100, 10};

/* The artifact decodes as ONNX, every Gemm weight became int8 feeding a
 * DequantizeLinear, and ~80% of those int8 values are zero. */
static void check_artifact_model(const uint8_t *bytes, size_t len)
{
	Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, bytes);
	size_t dq = 0, int8_tensors = 0, int8_values = 0, int8_zeros = 0;
	int64_t opset = 0;

	HT_ASSERTF(m && m->graph, NULL, "the artifact is not an ONNX model");
	for (size_t i = 0; i < m->n_opset_import; i++)
		if (!m->opset_import[i]->domain || !m->opset_import[i]->domain[0] ||
		    strcmp(m->opset_import[i]->domain, "ai.onnx") == 0)
			opset = m->opset_import[i]->version;
	HT_ASSERTF(opset >= 13, NULL, "per-channel DequantizeLinear needs opset >= 13, got %lld",
		   (long long)opset);
	for (size_t i = 0; i < m->graph->n_node; i++)
		if (strcmp(m->graph->node[i]->op_type, "DequantizeLinear") == 0)
			dq++;
	for (size_t i = 0; i < m->graph->n_initializer; i++) {
		const Onnx__TensorProto *t = m->graph->initializer[i];
		size_t n = 1;

		if (t->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__INT8)
			continue;
		for (size_t k = 0; k < t->n_dims; k++)
			n *= (size_t)t->dims[k];
		if (n < 1000) /* zero points, not weights */
			continue;
		int8_tensors++;
		if (t->has_raw_data) {
			HT_ASSERT(t->raw_data.len == n, NULL);
			for (size_t k = 0; k < n; k++)
				int8_zeros += t->raw_data.data[k] == 0;
		} else {
			HT_ASSERT(t->n_int32_data == n, NULL);
			for (size_t k = 0; k < n; k++)
				int8_zeros += t->int32_data[k] == 0;
		}
		int8_values += n;
	}
	ht_note("artifact: opset %lld, %zu DequantizeLinear, %zu int8 weights, %.2f%% zeros",
		(long long)opset, dq, int8_tensors, 100.0 * (double)int8_zeros / (double)int8_values);
	HT_ASSERTF(dq >= 3 && int8_tensors == 3, NULL,
		   "expected the 3 Gemm weights as int8 behind DequantizeLinear");
	HT_ASSERTF((double)int8_zeros / (double)int8_values > 0.79, NULL,
		   "prune 0.8 should leave >= 79%% zeros in the int8 weights");
	onnx__model_proto__free_unpacked(m, NULL);
}

static void get_with(const struct ht_daemon *d, const char *path, const char *header,
		     struct ht_resp *r)
{
	const char *headers[2] = {header, NULL};
	struct ht_req rq = {.method = "GET", .path = path, .headers = headers};

	ht_request(d, &rq, r);
}

static void expect_range(const struct ht_daemon *d, const char *path, const uint8_t *full,
			 size_t size, const char *range, size_t first, size_t last)
{
	char hdr[128], cr[128], want[128], cl[64];
	struct ht_resp r;

	ht_note("Range: %s -> 206 bytes %zu-%zu/%zu", range, first, last, size);
	snprintf(hdr, sizeof(hdr), "Range: %s", range);
	get_with(d, path, hdr, &r);
	HT_EXPECT_STATUS(&r, 206);
	snprintf(want, sizeof(want), "bytes %zu-%zu/%zu", first, last, size);
	HT_ASSERTF(ht_header(&r, "Content-Range", cr, sizeof(cr)) && strcmp(cr, want) == 0, &r,
		   "Content-Range must be \"%s\"", want);
	HT_ASSERTF(ht_header(&r, "Content-Length", cl, sizeof(cl)) &&
			   strtoull(cl, NULL, 10) == last - first + 1,
		   &r, "Content-Length must be %zu", last - first + 1);
	HT_ASSERTF(r.len == last - first + 1 && memcmp(r.body, full + first, r.len) == 0, NULL,
		   "206 body differs from bytes %zu-%zu of the artifact", first, last);
	ht_resp_free(&r);
}

int main(int argc, char **argv)
{
	static const char *const args[] = {"--workers", "1", NULL};
	struct ht_env env;
	struct ht_daemon d;
	struct ht_resp r, full;
	uint8_t *bytes;
	size_t len, size;
	char model[64], job[64], art[64], sha[65], got_sha[65], path[256], hdr[256], etag[128],
		value[128];

	ht_init(argc, argv, &env);
	ht_daemon_init(&d, env.exe, args);
	HT_START(&d);

	ht_synth_bytes(mlp_dims, 4, 11, &bytes, &len);
	ht_upload(&d, "artifacts", bytes, len, &r);
	HT_EXPECT_STATUS(&r, 201);
	snprintf(model, sizeof(model), "%s", ht_jstr(r.json, "id"));
	ht_resp_free(&r);
	free(bytes);
	ht_submit_default_job(&d, model, &r);
	HT_EXPECT_STATUS(&r, 202);
	snprintf(job, sizeof(job), "%s", ht_jstr(r.json, "id"));
	ht_resp_free(&r);
	HT_ASSERTF(ht_wait_job(&d, job, NULL, 300, &r) == 0, &r, "job did not finish");
	HT_EXPECT_JSTR(r.json, "state", "succeeded", &r);
	{
		json_t *a = json_array_get(json_object_get(r.json, "artifacts"), 0);

		HT_ASSERT(ht_valid_id(ht_jstr(a, "id"), "art_") && ht_jstr(a, "sha256"), &r);
		snprintf(art, sizeof(art), "%s", ht_jstr(a, "id"));
		snprintf(sha, sizeof(sha), "%s", ht_jstr(a, "sha256"));
		size = (size_t)ht_jint(a, "size", 0);
		HT_ASSERT(size > 100, &r);
	}
	ht_resp_free(&r);
	snprintf(path, sizeof(path), "/v1/artifacts/%s", art);

	ht_note("GET -> 200, bytes hash to sha256, ETag, Content-Length, Accept-Ranges");
	ht_get(&d, path, &full);
	HT_EXPECT_STATUS(&full, 200);
	HT_ASSERTF(full.len == size, NULL, "downloaded %zu bytes, the job says %zu", full.len, size);
	ht_sha256(full.body, full.len, got_sha);
	HT_ASSERTF(strcmp(got_sha, sha) == 0, NULL, "download hashes to %s, job says %s", got_sha,
		   sha);
	snprintf(etag, sizeof(etag), "\"%s\"", sha);
	HT_ASSERTF(ht_header(&full, "ETag", value, sizeof(value)) && strcmp(value, etag) == 0, NULL,
		   "ETag must be %s", etag);
	HT_ASSERT(ht_header(&full, "Content-Length", value, sizeof(value)) &&
			  strtoull(value, NULL, 10) == size,
		  NULL);
	HT_ASSERT(ht_header(&full, "Content-Type", value, sizeof(value)) &&
			  strcmp(value, "application/octet-stream") == 0,
		  NULL);
	HT_ASSERT(ht_header(&full, "Accept-Ranges", value, sizeof(value)) &&
			  strcmp(value, "bytes") == 0,
		  NULL);
	check_artifact_model((const uint8_t *)full.body, full.len);

	ht_note("HEAD -> 200 with the same headers and no body");
	ht_head(&d, path, &r);
	HT_EXPECT_STATUS(&r, 200);
	HT_ASSERT(r.len == 0, &r);
	HT_ASSERT(ht_header(&r, "Content-Length", value, sizeof(value)) &&
			  strtoull(value, NULL, 10) == size,
		  &r);
	HT_ASSERT(ht_header(&r, "ETag", value, sizeof(value)) && strcmp(value, etag) == 0, &r);
	ht_resp_free(&r);

	expect_range(&d, path, (const uint8_t *)full.body, size, "bytes=0-0", 0, 0);
	expect_range(&d, path, (const uint8_t *)full.body, size, "bytes=10-99", 10, 99);
	snprintf(hdr, sizeof(hdr), "bytes=100-");
	expect_range(&d, path, (const uint8_t *)full.body, size, hdr, 100, size - 1);
	expect_range(&d, path, (const uint8_t *)full.body, size, "bytes=-100", size - 100, size - 1);
	snprintf(hdr, sizeof(hdr), "bytes=%zu-%zu", size - 10, size + 1000);
	expect_range(&d, path, (const uint8_t *)full.body, size, hdr, size - 10, size - 1);

	ht_note("unsatisfiable ranges -> 416");
	snprintf(hdr, sizeof(hdr), "Range: bytes=%zu-", size);
	get_with(&d, path, hdr, &r);
	HT_EXPECT_STATUS(&r, 416);
	ht_resp_free(&r);
	snprintf(hdr, sizeof(hdr), "Range: bytes=%zu-%zu", size + 5, size + 10);
	get_with(&d, path, hdr, &r);
	HT_EXPECT_STATUS(&r, 416);
	ht_resp_free(&r);

	ht_note("If-None-Match: matching ETag -> 304, another -> 200");
	snprintf(hdr, sizeof(hdr), "If-None-Match: %s", etag);
	get_with(&d, path, hdr, &r);
	HT_EXPECT_STATUS(&r, 304);
	HT_ASSERT(r.len == 0, &r);
	ht_resp_free(&r);
	get_with(&d, path, "If-None-Match: \"0000\"", &r);
	HT_EXPECT_STATUS(&r, 200);
	HT_ASSERT(r.len == size, &r);
	ht_resp_free(&r);

	ht_note("unknown artifact -> 404 not_found (GET and HEAD)");
	ht_get(&d, "/v1/artifacts/art_aaaaaaaaaaaaaaaaaaaaaaaaaa", &r);
	HT_EXPECT_ERROR(&r, 404, "not_found", NULL);
	ht_resp_free(&r);
	ht_get(&d, "/v1/artifacts/bogus", &r);
	HT_EXPECT_ERROR(&r, 404, "not_found", NULL);
	ht_resp_free(&r);
	ht_head(&d, "/v1/artifacts/art_aaaaaaaaaaaaaaaaaaaaaaaaaa", &r);
	HT_EXPECT_STATUS(&r, 404);
	ht_resp_free(&r);

	ht_note("the artifact survives deleting its source model");
	snprintf(hdr, sizeof(hdr), "/v1/models/%s", model);
	ht_delete(&d, hdr, &r);
	HT_EXPECT_STATUS(&r, 204);
	ht_resp_free(&r);
	ht_get(&d, path, &r);
	HT_EXPECT_STATUS(&r, 200);
	HT_ASSERT(r.len == size && memcmp(r.body, full.body, size) == 0, NULL);
	ht_resp_free(&r);

	ht_resp_free(&full);
	HT_ASSERTF(ht_daemon_stop(&d, 60) == 0, NULL, "nncd did not exit 0 on SIGTERM");
	ht_daemon_cleanup(&d);
	printf("PASS api_artifacts\n");
	return 0;
}
