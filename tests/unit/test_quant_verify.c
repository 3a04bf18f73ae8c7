/* Unit tests for engine/quant_verify and its hook in pipeline_run: every
 * job's artifact is run by nncd's executor before the job succeeds (on a few
 * samples of the job's data, or zeros), its IR version, opsets and contrib
 * operators land in the last step's metrics as "artifact", and an artifact the
 * executor cannot run fails the job naming the node.
 * Usage: test_quant_verify CASE DATA_DIR FIXTURES_DIR */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "eval.h"
#include "onnx_io.h"
#include "pipeline.h"
#include "quant_verify.h"
#include "tensor.h"

static const char *data_dir = ".", *fixtures_dir = ".";

struct record {
	char last[96];
	json_t *metrics; /* of the last step that succeeded */
};

static void rec_step(void *ud, size_t index, const char *op, const char *state,
		     const json_t *metrics)
{
	struct record *r = ud;
	snprintf(r->last, sizeof r->last, "%zu:%s:%s", index, op, state);
	if (metrics) {
		json_decref(r->metrics);
		r->metrics = json_deep_copy(metrics);
	}
}

static struct onnx_model *load(const char *dir, const char *name)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	struct onnx_model *m = NULL;
	struct nn_err e = {0};
	if (onnx_load_file(path, &m, &e) != NN_OK)
		fprintf(stderr, "%s: %s\n", path, e.message);
	return m;
}

static enum nn_status run_spec(struct onnx_model *m, const char *spec_text,
			       const struct pipeline_data *data, struct record *r,
			       struct nn_err *e)
{
	json_t *spec = json_loads(spec_text, 0, NULL);
	struct pipeline_hooks h = {.ud = r, .on_step = rec_step, .data = data};
	enum nn_status st = pipeline_run(m, spec, &h, e);
	json_decref(spec);
	return st;
}

static int test_zeros_without_data(void)
{
	struct onnx_model *m = load(fixtures_dir, "lenet300.onnx");
	CHECK(m, "fixture");
	struct record r = {0};
	struct nn_err e = {0};
	enum nn_status st =
		run_spec(m, "{\"steps\":[{\"op\":\"quantize\",\"scheme\":\"int8\"}]}", NULL, &r, &e);
	CHECK(st == NN_OK, "%s", e.message);
	const json_t *a = json_object_get(r.metrics, "artifact");
	CHECK(a, "no artifact in the last step's metrics");
	CHECK(json_integer_value(json_object_get(a, "opset")) == 13, "opset");
	CHECK(json_integer_value(json_object_get(a, "ir_version")) == 7, "ir_version");
	CHECK(json_array_size(json_object_get(a, "contrib_ops")) == 0, "no contrib ops");
	CHECK(json_array_size(json_object_get(a, "opsets")) == 1, "one opset import");
	const json_t *v = json_object_get(a, "verified");
	CHECK(!strcmp(json_string_value(json_object_get(v, "runtime")), "nncd"), "runtime");
	CHECK(!strcmp(json_string_value(json_object_get(v, "inputs")), "zeros"), "zeros");
	CHECK(json_integer_value(json_object_get(v, "samples")) == 1, "one sample");
	CHECK(json_is_true(json_object_get(v, "outputs_finite")), "finite outputs");
	json_decref(r.metrics);
	onnx_free(m);
	return 0;
}

static int test_samples_of_eval_data(void)
{
	struct onnx_model *m = load(fixtures_dir, "lenet300.onnx");
	CHECK(m, "fixture");
	struct tensor x = {0};
	struct nn_err e = {0};
	int64_t shape[2] = {10, 784};
	CHECK(tensor_alloc(&x, DT_FLOAT, 2, shape, &e) == NN_OK, "alloc");
	for (int64_t i = 0; i < 10 * 784; i++)
		((float *)x.data)[i] = (float)((i * 37) % 101) / 101.0f;
	struct eval_data ev = {.inputs = &x, .labels = NULL};
	struct pipeline_data pd = {.eval = &ev};
	struct record r = {0};
	enum nn_status st = run_spec(
		m, "{\"steps\":[{\"op\":\"prune\",\"sparsity\":0.5},{\"op\":\"quantize\",\"scheme\":"
		   "\"int8\",\"symmetric\":false}]}",
		&pd, &r, &e);
	CHECK(st == NN_OK, "%s", e.message);
	CHECK(!strcmp(r.last, "1:quantize:succeeded"), "%s", r.last);
	const json_t *v = json_object_get(json_object_get(r.metrics, "artifact"), "verified");
	CHECK(!strcmp(json_string_value(json_object_get(v, "inputs")), "eval data"), "eval data");
	CHECK(json_integer_value(json_object_get(v, "samples")) == QUANT_VERIFY_SAMPLES, "samples");
	json_decref(r.metrics);
	tensor_free(&x);
	onnx_free(m);
	return 0;
}

static int test_contrib_ops_listed(void)
{
	struct onnx_model *m = load(fixtures_dir, "lenet300.onnx");
	CHECK(m, "fixture");
	/* Relabel one node as a contrib operator: the description lists it once
	 * under its domain (the run is not attempted by describe). */
	Onnx__NodeProto *n = m->proto->graph->node[1];
	free(n->domain);
	n->domain = strdup("com.microsoft");
	json_t *a = NULL;
	struct nn_err e = {0};
	CHECK(quant_verify_describe(m, &a, &e) == NN_OK, "%s", e.message);
	const json_t *c = json_object_get(a, "contrib_ops");
	CHECK(json_array_size(c) == 1, "one contrib op");
	CHECK(!strcmp(json_string_value(json_array_get(c, 0)), "com.microsoft.Relu"), "name");
	json_decref(a);
	/* ... and the executor refuses to run it, naming the node. */
	CHECK(quant_verify_run(m, NULL, NULL, &a, &e) != NN_OK, "ran an unknown contrib op");
	CHECK(strstr(e.message, "/Relu") && strstr(e.message, "does not run"), "%s", e.message);
	onnx_free(m);
	return 0;
}

static int test_unrunnable_artifact_fails_job(void)
{
	/* MatMul (quantizable) followed by Hardmax, which the executor lacks. */
	struct onnx_model *m = load(data_dir, "eval_unsupported.onnx");
	CHECK(m, "model");
	struct record r = {0};
	struct nn_err e = {0};
	enum nn_status st =
		run_spec(m, "{\"steps\":[{\"op\":\"quantize\",\"scheme\":\"int8\"}]}", NULL, &r, &e);
	CHECK(st != NN_OK, "job succeeded with an artifact that cannot run");
	CHECK(!strcmp(r.last, "0:quantize:failed"), "%s", r.last);
	CHECK(strstr(e.message, "pick_max") && strstr(e.message, "Hardmax"), "%s", e.message);
	CHECK(strstr(e.message, "the artifact does not run in nncd's executor"), "%s", e.message);
	json_decref(r.metrics);
	onnx_free(m);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: test_quant_verify CASE DATA_DIR FIXTURES_DIR\n");
		return 2;
	}
	data_dir = argv[2];
	fixtures_dir = argv[3];
	struct {
		const char *name;
		int (*fn)(void);
	} cases[] = {
		{"zeros_without_data", test_zeros_without_data},
		{"samples_of_eval_data", test_samples_of_eval_data},
		{"contrib_ops_listed", test_contrib_ops_listed},
		{"unrunnable_artifact_fails_job", test_unrunnable_artifact_fails_job},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (!strcmp(argv[1], cases[i].name))
			return cases[i].fn();
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}
