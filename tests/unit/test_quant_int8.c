/* Unit tests for the int8 scheme's options (engine/quant.c: ops, exclude,
 * Gather embedding tables, symmetric false) and bias correction
 * (engine/quant_bias.c), and — with ONNX Runtime from tests/oracle — that the
 * int8 artifacts run in ORT with outputs matching nncd's executor to 1e-4.
 * Usage: test_quant_int8 CASE DATA_DIR FIXTURES_DIR [NODE MODULES SCRIPT] */
#include <math.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "eval.h"
#include "exec.h"
#include "onnx_io.h"
#include "quant.h"
#include "synthmodel.h"
#include "tensor.h"

extern char **environ;

static const char *data_dir = ".", *fixtures_dir = ".";

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

/* Deterministic inputs: n samples of `per` values in [lo, lo + span). */
static int make_inputs(struct tensor *x, int ndim, const int64_t *shape, float lo, float span)
{
	struct nn_err e = {0};
	if (tensor_alloc(x, DT_FLOAT, ndim, shape, &e) != NN_OK)
		return 1;
	uint32_t s = 2463534242u;
	float *v = x->data;
	for (int64_t i = 0; i < tensor_numel(x); i++) {
		s ^= s << 13;
		s ^= s >> 17;
		s ^= s << 5;
		v[i] = lo + span * (float)(s >> 8) / 16777216.0f;
	}
	return 0;
}

/* The model's first output on x (all rows in one batch), copied; *width per row. */
static float *run(const struct onnx_model *m, const struct tensor *x, int64_t *count)
{
	struct exec_plan *p = NULL;
	struct nn_err e = {0};
	struct tensor out[4];
	float *copy = NULL;
	if (exec_compile(m, x->shape[0], &p, &e) != NN_OK) {
		fprintf(stderr, "compile: %s\n", e.message);
		return NULL;
	}
	size_t no = exec_output_count(p);
	if (no <= 4 && exec_run(p, x, 1, out, no, &e) == NN_OK) {
		*count = tensor_numel(&out[0]);
		copy = malloc((size_t)*count * sizeof *copy);
		if (copy)
			memcpy(copy, out[0].data, (size_t)*count * sizeof *copy);
	} else {
		fprintf(stderr, "run: %s\n", e.message);
	}
	exec_free(p);
	return copy;
}

static enum nn_status quantize(struct onnx_model *m, const char *step_json,
			       const struct tensor *calib, json_t **metrics, struct nn_err *e)
{
	json_t *step = json_loads(step_json, 0, NULL);
	struct quant_params p;
	struct eval_data cal = {.inputs = calib, .labels = NULL};
	struct step_ctx ctx = {.calib = calib ? &cal : NULL};
	enum nn_status st = quant_params_parse(step, 0, &p, e);
	if (st == NN_OK)
		st = quant_run(m, &p, &ctx, metrics, e);
	json_decref(step);
	return st;
}

/* Per-channel mean of (q - f) over rows and positions: output [N, C, inner...]
 * with channels at dim cd (1 for Conv, last for Gemm/MatMul). */
static void channel_mean_error(const float *f, const float *q, int64_t outer, int64_t ch,
			       int64_t inner, double *err)
{
	for (int64_t c = 0; c < ch; c++)
		err[c] = 0;
	for (int64_t o = 0; o < outer; o++)
		for (int64_t c = 0; c < ch; c++)
			for (int64_t i = 0; i < inner; i++) {
				int64_t k = (o * ch + c) * inner + i;
				err[c] += (double)q[k] - (double)f[k];
			}
	for (int64_t c = 0; c < ch; c++)
		err[c] /= (double)(outer * inner);
}

static int bias_case(const char *model, int ndim, const int64_t *shape, int64_t ch, bool conv)
{
	struct tensor x = {0};
	CHECK(make_inputs(&x, ndim, shape, 0.5f, 1.0f) == 0, "inputs");
	struct onnx_model *f = load(data_dir, model), *q = load(data_dir, model),
			  *c = load(data_dir, model);
	CHECK(f && q && c, "%s", model);
	struct nn_err e = {0};
	json_t *mq = NULL, *mc = NULL;
	CHECK(quantize(q, "{\"op\":\"quantize\",\"scheme\":\"int8\",\"granularity\":\"per_tensor\"}",
		       NULL, &mq, &e) == NN_OK,
	      "%s", e.message);
	CHECK(quantize(c, "{\"op\":\"quantize\",\"scheme\":\"int8\",\"granularity\":\"per_tensor\","
			  "\"bias_correction\":true}",
		       &x, &mc, &e) == NN_OK,
	      "%s", e.message);
	int64_t n = 0, n2 = 0, n3 = 0;
	float *yf = run(f, &x, &n), *yq = run(q, &x, &n2), *yc = run(c, &x, &n3);
	CHECK(yf && yq && yc && n == n2 && n == n3, "runs");
	int64_t outer = conv ? shape[0] : n / ch, inner = conv ? n / (shape[0] * ch) : 1;
	double before[16], after[16], mb = 0, ma = 0, mean_abs_before = 0;
	channel_mean_error(yf, yq, outer, ch, inner, before);
	channel_mean_error(yf, yc, outer, ch, inner, after);
	for (int64_t k = 0; k < ch; k++) {
		mb = fabs(before[k]) > mb ? fabs(before[k]) : mb;
		ma = fabs(after[k]) > ma ? fabs(after[k]) : ma;
		mean_abs_before += fabs(before[k]) / (double)ch;
	}
	printf("%s: max |channel mean error| before %.3g after %.3g\n", model, mb, ma);
	CHECK(mb > 1e-3, "the fixture should have a systematic error (%g)", mb);
	CHECK(ma < 1e-5 + 1e-3 * mb, "mean error after correction %g (before %g)", ma, mb);
	const json_t *bl = json_object_get(json_object_get(mc, "bias_correction"), "layers");
	CHECK(json_array_size(bl) == 1, "one corrected layer");
	double rep = json_real_value(json_object_get(json_array_get(bl, 0), "mean_abs_shift"));
	CHECK(fabs(rep - mean_abs_before) < 1e-4 * (1 + mean_abs_before), "reported shift %g vs %g",
	      rep, mean_abs_before);
	const json_t *l0 = json_array_get(json_object_get(mc, "layers"), 0);
	CHECK(json_is_number(json_object_get(l0, "bias_mean_shift")), "per-layer shift");
	free(yf);
	free(yq);
	free(yc);
	json_decref(mq);
	json_decref(mc);
	onnx_free(f);
	onnx_free(q);
	onnx_free(c);
	tensor_free(&x);
	return 0;
}

static int test_bias_correction_gemm_without_bias(void)
{
	int64_t s[2] = {256, 16};
	return bias_case("q8_gemm.onnx", 2, s, 8, false);
}

static int test_bias_correction_matmul_add(void)
{
	int64_t s[2] = {256, 16};
	return bias_case("q8_matmul.onnx", 2, s, 8, false);
}

static int test_bias_correction_conv(void)
{
	int64_t s[4] = {64, 2, 6, 6};
	return bias_case("q8_conv.onnx", 4, s, 4, true);
}

static int test_bias_correction_needs_data(void)
{
	struct onnx_model *m = load(data_dir, "q8_gemm.onnx");
	CHECK(m, "model");
	struct nn_err e = {0};
	json_t *mt = NULL;
	CHECK(quantize(m, "{\"op\":\"quantize\",\"scheme\":\"int8\",\"bias_correction\":true}", NULL,
		       &mt, &e) == NN_EINVAL,
	      "accepted without data");
	CHECK(strstr(e.message, "calibration data"), "%s", e.message);
	onnx_free(m);
	return 0;
}

static bool is_float_init(const struct onnx_model *m, const char *name)
{
	const Onnx__GraphProto *g = m->proto->graph;
	for (size_t i = 0; i < g->n_initializer; i++)
		if (!strcmp(g->initializer[i]->name, name))
			return g->initializer[i]->data_type == DT_FLOAT;
	return false;
}

static int test_ops_and_exclude(void)
{
	struct nn_err e = {0};
	json_t *mt = NULL;
	/* exclude by node name: that Gemm's weight stays float */
	struct onnx_model *m = load(fixtures_dir, "lenet300.onnx");
	CHECK(m, "fixture");
	const char *w2 = m->proto->graph->node[2]->input[1];
	char w2name[256];
	snprintf(w2name, sizeof w2name, "%s", w2);
	CHECK(quantize(m, "{\"op\":\"quantize\",\"scheme\":\"int8\",\"exclude\":[\"/fc2/Gemm\"]}",
		       NULL, &mt, &e) == NN_OK,
	      "%s", e.message);
	CHECK(is_float_init(m, w2name), "excluded weight %s quantized", w2name);
	CHECK(json_array_size(json_object_get(mt, "layers")) == 2, "two layers quantized");
	const json_t *k = json_array_get(json_object_get(mt, "kept_float"), 0);
	CHECK(!strcmp(json_string_value(json_object_get(k, "reason")), "excluded"), "reason");
	json_decref(mt);
	onnx_free(m);
	/* exclude by op type: nothing left */
	m = load(fixtures_dir, "lenet300.onnx");
	CHECK(quantize(m, "{\"op\":\"quantize\",\"scheme\":\"int8\",\"exclude\":[\"Gemm\"]}", NULL,
		       &mt, &e) == NN_EINVAL,
	      "quantized with every Gemm excluded");
	CHECK(strstr(e.message, "left float by ops/exclude"), "%s", e.message);
	onnx_free(m);
	/* ops: Conv only on the CNN; its Gemm weights stay float */
	m = load(fixtures_dir, "cnn.onnx");
	CHECK(m, "fixture");
	CHECK(quantize(m, "{\"op\":\"quantize\",\"scheme\":\"int8\",\"ops\":[\"Conv\"]}", NULL, &mt,
		       &e) == NN_OK,
	      "%s", e.message);
	const json_t *ls = json_object_get(mt, "layers");
	CHECK(json_array_size(ls) > 0, "conv layers");
	for (size_t i = 0; i < json_array_size(ls); i++)
		CHECK(!strcmp(json_string_value(json_object_get(json_array_get(ls, i), "op")), "Conv"),
		      "a non-Conv weight was quantized");
	const json_t *kf = json_object_get(mt, "kept_float");
	CHECK(json_array_size(kf) > 0, "Gemm weights listed as kept float");
	CHECK(!strcmp(json_string_value(json_object_get(json_array_get(kf, 0), "reason")),
		      "operator not in ops"),
	      "reason");
	const json_t *l0 = json_array_get(ls, 0);
	CHECK(json_integer_value(json_object_get(l0, "bits")) == 8 &&
		      !strcmp(json_string_value(json_object_get(l0, "scheme")), "int8") &&
		      json_is_number(json_object_get(l0, "scale_min")) &&
		      json_is_number(json_object_get(l0, "scale_max")) &&
		      json_is_number(json_object_get(l0, "mse")) &&
		      json_is_number(json_object_get(l0, "max_abs_error")),
	      "per-layer report fields");
	json_decref(mt);
	onnx_free(m);
	return 0;
}

static const Onnx__NodeProto *producer(const struct onnx_model *m, const char *value)
{
	const Onnx__GraphProto *g = m->proto->graph;
	for (size_t i = 0; i < g->n_node; i++)
		if (g->node[i]->n_output && !strcmp(g->node[i]->output[0], value))
			return g->node[i];
	return NULL;
}

static int gather_case(const char *step, bool per_row)
{
	struct onnx_model *f = load(data_dir, "q8_embed.onnx"), *q = load(data_dir, "q8_embed.onnx");
	CHECK(f && q, "model");
	struct nn_err e = {0};
	json_t *mt = NULL;
	CHECK(quantize(q, step, NULL, &mt, &e) == NN_OK, "%s", e.message);
	const Onnx__NodeProto *dq = producer(q, "table");
	CHECK(dq && !strcmp(dq->op_type, "DequantizeLinear"), "table not quantized");
	const Onnx__GraphProto *g = q->proto->graph;
	const Onnx__TensorProto *scale = NULL;
	for (size_t i = 0; i < g->n_initializer; i++)
		if (!strcmp(g->initializer[i]->name, dq->input[1]))
			scale = g->initializer[i];
	CHECK(scale, "scale");
	if (per_row)
		CHECK(scale->n_dims == 1 && scale->dims[0] == 50 &&
			      onnx_node_int_attr(dq, "axis", -1) == 0,
		      "per-row scales on axis 0");
	else
		CHECK(scale->n_dims == 0, "per-tensor scale");
	int64_t s[2] = {32, 4};
	struct tensor x = {0};
	CHECK(make_inputs(&x, 2, s, 0.0f, 50.0f) == 0, "inputs");
	for (int64_t i = 0; i < 32 * 4; i++) /* integral ids in [0, 50) */
		((float *)x.data)[i] = floorf(((float *)x.data)[i]);
	int64_t n = 0, n2 = 0;
	float *yf = run(f, &x, &n), *yq = run(q, &x, &n2);
	CHECK(yf && yq && n == n2, "runs");
	double mx = 0, d = 0;
	for (int64_t i = 0; i < n; i++) {
		mx = fabs(yf[i]) > mx ? fabs(yf[i]) : mx;
		d = fabs(yf[i] - yq[i]) > d ? fabs(yf[i] - yq[i]) : d;
	}
	CHECK(d < 0.05 * mx, "quantized embedding model too far: %g of %g", d, mx);
	free(yf);
	free(yq);
	tensor_free(&x);
	json_decref(mt);
	onnx_free(f);
	onnx_free(q);
	return 0;
}

static int test_gather_embedding(void)
{
	if (gather_case("{\"op\":\"quantize\",\"scheme\":\"int8\",\"ops\":[\"Gather\",\"Gemm\"]}",
			true) ||
	    gather_case("{\"op\":\"quantize\",\"scheme\":\"int8\",\"ops\":[\"Gather\"],"
			"\"granularity\":\"per_tensor\",\"symmetric\":false}",
			false))
		return 1;
	/* default ops leave the table float */
	struct onnx_model *m = load(data_dir, "q8_embed.onnx");
	struct nn_err e = {0};
	json_t *mt = NULL;
	CHECK(m && quantize(m, "{\"op\":\"quantize\",\"scheme\":\"int8\"}", NULL, &mt, &e) == NN_OK,
	      "%s", e.message);
	CHECK(is_float_init(m, "table"), "table quantized without Gather in ops");
	json_decref(mt);
	onnx_free(m);
	return 0;
}

/* ---- ONNX Runtime ---- */

static int write_file(const char *path, const void *data, size_t len)
{
	FILE *fp = fopen(path, "wb");
	if (!fp)
		return 1;
	size_t w = fwrite(data, 1, len, fp);
	return fclose(fp) != 0 || w != len;
}

static int test_ort_matches_executor(const char *node, const char *modules, const char *script)
{
	struct stat sb;
	char probe[1024];
	snprintf(probe, sizeof probe, "%s/onnxruntime-node", modules);
	if (!node || !node[0] || access(node, X_OK) != 0 || stat(probe, &sb) != 0) {
		fprintf(stderr, "ONNX Runtime not available: skipped\n");
		return 77;
	}
	static const struct {
		const char *dir_is_fixtures, *model, *step;
	} cases[] = {
		{"y", "lenet300.onnx", "{\"op\":\"quantize\",\"scheme\":\"int8\"}"},
		{"y", "lenet300.onnx", "{\"op\":\"quantize\",\"scheme\":\"int8\",\"symmetric\":false}"},
		{"y", "lenet300.onnx",
		 "{\"op\":\"quantize\",\"scheme\":\"int8\",\"granularity\":\"per_tensor\"}"},
		{"y", "lenet300.onnx",
		 "{\"op\":\"quantize\",\"scheme\":\"int8\",\"granularity\":\"per_tensor\","
		 "\"symmetric\":false}"},
		{"y", "cnn.onnx", "{\"op\":\"quantize\",\"scheme\":\"int8\"}"},
		{"y", "cnn.onnx", "{\"op\":\"quantize\",\"scheme\":\"int8\",\"symmetric\":false}"},
		{"y", "cnn.onnx",
		 "{\"op\":\"quantize\",\"scheme\":\"int8\",\"granularity\":\"per_tensor\","
		 "\"symmetric\":false}"},
		{"y", "cnn.onnx",
		 "{\"op\":\"quantize\",\"scheme\":\"int8\",\"exclude\":[\"Gemm\"]}"},
		{"", "q8_embed.onnx",
		 "{\"op\":\"quantize\",\"scheme\":\"int8\",\"ops\":[\"Gather\",\"Gemm\"]}"},
		{"", "q8_embed.onnx",
		 "{\"op\":\"quantize\",\"scheme\":\"int8\",\"ops\":[\"Gather\",\"Gemm\"],"
		 "\"symmetric\":false}"},
		{"", "q8_matmul.onnx",
		 "{\"op\":\"quantize\",\"scheme\":\"int8\",\"bias_correction\":true}"},
		{"", "q8_conv.onnx",
		 "{\"op\":\"quantize\",\"scheme\":\"int8\",\"bias_correction\":true}"},
	};
	char dir[] = "/tmp/nncd_q8_ortXXXXXX";
	CHECK(mkdtemp(dir), "mkdtemp");
	char *argv[64];
	char args[16][1200];
	int na = 0;
	argv[na++] = (char *)node;
	argv[na++] = (char *)script;
	argv[na++] = (char *)modules;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct onnx_model *m = load(cases[i].dir_is_fixtures[0] ? fixtures_dir : data_dir,
					    cases[i].model);
		CHECK(m, "%s", cases[i].model);
		const char *iname = NULL;
		struct tensor shape = {0}, x = {0};
		struct nn_err e = {0};
		CHECK(eval_model_input(m, &iname, &shape, &e) == NN_OK, "%s", e.message);
		int64_t s[TENSOR_MAX_DIMS];
		s[0] = 8;
		for (int d = 1; d < shape.ndim; d++)
			s[d] = shape.shape[d];
		bool ids = strstr(cases[i].model, "embed") != NULL;
		CHECK(make_inputs(&x, shape.ndim, s, ids ? 0.0f : 0.0f, ids ? 50.0f : 1.0f) == 0, "x");
		if (ids)
			for (int64_t k = 0; k < tensor_numel(&x); k++)
				((float *)x.data)[k] = floorf(((float *)x.data)[k]);
		json_t *mt = NULL;
		CHECK(quantize(m, cases[i].step, &x, &mt, &e) == NN_OK, "%s", e.message);
		json_decref(mt);
		int64_t n = 0;
		float *y = run(m, &x, &n);
		CHECK(y, "executor run");
		char mp[512], xp[512], yp[512];
		snprintf(mp, sizeof mp, "%s/m%zu.onnx", dir, i);
		snprintf(xp, sizeof xp, "%s/x%zu.bin", dir, i);
		snprintf(yp, sizeof yp, "%s/y%zu.bin", dir, i);
		CHECK(onnx_save_file(m, mp, &e) == NN_OK, "%s", e.message);
		CHECK(write_file(xp, x.data, (size_t)tensor_numel(&x) * 4) == 0 &&
			      write_file(yp, y, (size_t)n * 4) == 0,
		      "write");
		char shp[128] = "";
		for (int d = 0; d < shape.ndim; d++)
			snprintf(shp + strlen(shp), sizeof shp - strlen(shp), "%s%lld", d ? "x" : "",
				 (long long)s[d]);
		snprintf(args[i], sizeof args[i], "%s:%s:%s:%s", mp, xp, shp, yp);
		argv[na++] = args[i];
		free(y);
		tensor_free(&x);
		onnx_free(m);
	}
	argv[na] = NULL;
	pid_t pid;
	int status = 0;
	CHECK(posix_spawn(&pid, node, NULL, NULL, argv, environ) == 0, "spawn node");
	CHECK(waitpid(pid, &status, 0) == pid, "wait");
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char p[600];
		snprintf(p, sizeof p, "%s/m%zu.onnx", dir, i), unlink(p);
		snprintf(p, sizeof p, "%s/x%zu.bin", dir, i), unlink(p);
		snprintf(p, sizeof p, "%s/y%zu.bin", dir, i), unlink(p);
	}
	rmdir(dir);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "ORT check failed (status %d)",
	      WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	return 0;
}

/* The step's fast paths (a channel's range and quantization in one visit
 * when channels are contiguous, the AVX-512 or AVX2 error loops, values
 * written over the float storage) give exactly the scalar references'
 * values, scales and zero points, and error metrics matching a plain
 * double-precision recomputation (max abs error exactly: every path computes
 * each error with the same float operations; mse to 1e-6 relative, the
 * summation order differing). Gemm (transB: channels contiguous) and MatMul
 * (channels across rows) weights of random sizes, tails that are not a
 * multiple of 16, channels longer than the in-place piece (16384), a zero
 * channel; per channel and per tensor, symmetric and not. */
static int test_step_paths_match_reference(void)
{
	static const int64_t dims[][3] = {{37, 1003, 21}, {40009, 11, 64}, {300, 17, 129},
					  {5, 16, 33}};
	for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
		struct synthmodel sm = {.n_layers = 2, .dims = {dims[d][0], dims[d][1], dims[d][2]},
					.gemm = {true, false}};
		size_t n0 = (size_t)(dims[d][0] * dims[d][1]), n1 = (size_t)(dims[d][1] * dims[d][2]);
		float *w = malloc((n0 + n1) * sizeof *w);
		CHECK(w, "memory");
		synthmodel_fill(w, n0, 11 + d, 0.2f);
		synthmodel_fill(w + n0, n1, 23 + d, 3.0f);
		for (int64_t i = 0; i < dims[d][0]; i++) /* Gemm channel 1 (a row) all zero */
			w[(size_t)dims[d][0] + (size_t)i] = 0.0f;
		sm.weights[0] = w;
		sm.weights[1] = w + n0;
		uint8_t *bytes = NULL;
		size_t len = 0;
		struct nn_err e = {0};
		CHECK(synthmodel_pack(&sm, &bytes, &len, &e) == NN_OK, "%s", e.message);
		for (int v = 0; v < 4; v++) {
			bool per_tensor = v & 1, sym = !(v & 2);
			struct onnx_model *m = NULL;
			CHECK(onnx_load(bytes, len, &m, &e) == NN_OK, "%s", e.message);
			struct quant_params p = {.granularity = per_tensor ? QUANT_PER_TENSOR
									: QUANT_PER_CHANNEL,
						 .symmetric = sym, .scheme = QUANT_INT8,
						 .ops = QUANT_OP_GEMM | QUANT_OP_MATMUL | QUANT_OP_CONV};
			json_t *mt = NULL;
			CHECK(quant_run(m, &p, NULL, &mt, &e) == NN_OK, "%s", e.message);
			for (int l = 0; l < 2; l++) {
				/* Gemm W0 [N, K] (channel axis 0), MatMul W1 [K, N] (axis 1) */
				size_t rows = (size_t)dims[d][1];
				size_t cols = (size_t)(l ? dims[d][2] : dims[d][0]);
				size_t n = rows * cols, outer = 1, channels = 1, inner = n;
				if (!per_tensor && l == 0)
					channels = rows, inner = cols;
				else if (!per_tensor)
					outer = rows, channels = cols, inner = 1;
				const float *x = l ? w + n0 : w;
				uint8_t *qref = malloc(n), *zref = calloc(channels, 1);
				float *sref = malloc(channels * sizeof *sref);
				CHECK(qref && zref && sref, "memory");
				if (sym)
					CHECK(quant_ref_int8_symmetric(x, outer, channels, inner,
								       (int8_t *)qref, sref),
					      "reference");
				else
					CHECK(quant_ref_uint8_asymmetric(x, outer, channels, inner, qref,
									 sref, zref),
					      "reference");
				char qn[32], sn[32], zn[32];
				snprintf(qn, sizeof qn, "W%d_quantized", l);
				snprintf(sn, sizeof sn, "W%d_scale", l);
				snprintf(zn, sizeof zn, "W%d_zero_point", l);
				const Onnx__TensorProto *qi = onnx_find_initializer(m, qn);
				const Onnx__TensorProto *si = onnx_find_initializer(m, sn);
				const Onnx__TensorProto *zi = onnx_find_initializer(m, zn);
				CHECK(qi && si && zi, "initializers of W%d", l);
				CHECK(qi->raw_data.len == n && !memcmp(qi->raw_data.data, qref, n),
				      "dims %zu W%d per_tensor %d sym %d: values differ from the "
				      "reference",
				      d, l, per_tensor, sym);
				CHECK(si->raw_data.len == channels * 4 &&
					      !memcmp(si->raw_data.data, sref, channels * 4),
				      "W%d scales differ", l);
				CHECK(sym || (zi->raw_data.len == channels &&
					      !memcmp(zi->raw_data.data, zref, channels)),
				      "W%d zero points differ", l);
				/* the metrics, recomputed in double from the reference */
				double sq = 0;
				float mx = 0;
				for (size_t o = 0; o < outer; o++)
					for (size_t c = 0; c < channels; c++)
						for (size_t i = 0; i < inner; i++) {
							size_t at = (o * channels + c) * inner + i;
							int q = sym ? (int)(int8_t)qref[at] : qref[at];
							float dd = (float)(q - (int)zref[c]) * sref[c] - x[at];
							sq += (double)dd * dd;
							mx = fabsf(dd) > mx ? fabsf(dd) : mx;
						}
				json_t *ly = json_array_get(json_object_get(mt, "layers"), (size_t)l);
				char wn[8];
				snprintf(wn, sizeof wn, "W%d", l);
				CHECK(!strcmp(json_string_value(json_object_get(ly, "name")), wn),
				      "layer %d is %s", l, wn);
				double mse = json_number_value(json_object_get(ly, "mse"));
				double mae = json_number_value(json_object_get(ly, "max_abs_error"));
				CHECK(fabs(mse - sq / (double)n) <= 1e-6 * (sq / (double)n),
				      "W%d mse %.17g vs %.17g", l, mse, sq / (double)n);
				CHECK(mae == (double)mx, "W%d max_abs_error %.9g vs %.9g", l, mae,
				      (double)mx);
				free(qref);
				free(zref);
				free(sref);
			}
			json_decref(mt);
			onnx_free(m);
		}
		free(bytes);
		free(w);
	}
	return 0;
}

struct membuf {
	uint8_t *p;
	size_t len, cap;
};

static enum nn_status mem_write(void *ud, const void *data, size_t len, struct nn_err *e)
{
	struct membuf *b = ud;
	if (b->len + len > b->cap) {
		size_t cap = (b->len + len) * 2;
		uint8_t *p = realloc(b->p, cap);
		if (!p)
			return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory");
		b->p = p, b->cap = cap;
	}
	memcpy(b->p + b->len, data, len);
	b->len += len;
	return NN_OK;
}

/* The int8 step on `threads` threads: the model's serialized bytes and its
 * metrics as JSON text without "seconds" (caller frees both). */
static int step_on_threads(const uint8_t *bytes, size_t len, const char *spec, unsigned threads,
			   struct membuf *out, char **metrics)
{
	struct onnx_model *m = NULL;
	struct nn_err e = {0};
	CHECK(onnx_load(bytes, len, &m, &e) == NN_OK, "%s", e.message);
	json_t *step = json_loads(spec, 0, NULL);
	struct quant_params p;
	CHECK(step && quant_params_parse(step, 0, &p, &e) == NN_OK, "%s: %s", spec, e.message);
	struct step_ctx ctx = {.threads = threads};
	json_t *mt = NULL;
	CHECK(quant_run(m, &p, &ctx, &mt, &e) == NN_OK, "%s on %u threads: %s", spec, threads,
	      e.message);
	json_object_del(mt, "seconds");
	*metrics = json_dumps(mt, JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
	*out = (struct membuf){0};
	CHECK(*metrics && onnx_save(m, mem_write, out, &e) == NN_OK, "save: %s", e.message);
	json_decref(mt);
	json_decref(step);
	onnx_free(m);
	return 0;
}

/* The int8 step with ctx->threads 1, 2, 3 and 7 writes the same model bytes
 * and the same metrics (squared-error sums to the last bit) on the fixtures
 * and on a 14 MB model whose layers take every unit layout: Gemm weights
 * [N][K] cut by whole channels (per_channel) or by 256K-value runs
 * (per_tensor), MatMul [K][N] cut by rows, and layers below the units'
 * minimum run (calling thread); per_channel and per_tensor, symmetric and
 * not. A NaN in a later unit and a cancellation are reported on threads. */
static int test_threads_step_identical(void)
{
	static const char *names[] = {"lenet300.onnx", "cnn.onnx", "gelu_mlp.onnx", NULL};
	static const unsigned thread_counts[] = {1, 2, 3, 7};
	/* in -> out: Gemm 1100 -> 1300, MatMul 1300 -> 1030, MatMul 1030 -> 700,
	 * Gemm 700 -> 90 */
	struct synthmodel sm = {.n_layers = 4, .dims = {1100, 1300, 1030, 700, 90},
				.gemm = {true, false, false, true}};
	float *ws[4] = {0};
	for (size_t l = 0; l < 4; l++) {
		size_t cnt = (size_t)(sm.dims[l] * sm.dims[l + 1]);
		CHECK((ws[l] = malloc(cnt * sizeof(float))) != NULL, "memory");
		synthmodel_fill(ws[l], cnt, 500 + l, 0.1f);
		sm.weights[l] = ws[l];
	}
	uint8_t *big = NULL;
	size_t big_len = 0;
	struct nn_err e = {0};
	CHECK(synthmodel_pack(&sm, &big, &big_len, &e) == NN_OK, "%s", e.message);
	int cases = 0;
	for (int mi = 0; mi < 4; mi++) {
		uint8_t *bytes = big;
		size_t len = big_len;
		char path[1024];
		uint8_t *fb = NULL;
		if (names[mi]) {
			snprintf(path, sizeof path, "%s/%s", fixtures_dir, names[mi]);
			FILE *f = fopen(path, "rb");
			CHECK(f, "%s", path);
			fseek(f, 0, SEEK_END);
			len = (size_t)ftell(f);
			fseek(f, 0, SEEK_SET);
			CHECK((fb = malloc(len)) && fread(fb, 1, len, f) == len, "read %s", path);
			fclose(f);
			bytes = fb;
		}
		for (int v = 0; v < 4; v++) {
			char spec[200];
			snprintf(spec, sizeof spec,
				 "{\"op\":\"quantize\",\"scheme\":\"int8\",\"granularity\":\"%s\","
				 "\"symmetric\":%s}",
				 v < 2 ? "per_channel" : "per_tensor", v % 2 ? "false" : "true");
			struct membuf m1;
			char *j1 = NULL;
			if (step_on_threads(bytes, len, spec, 1, &m1, &j1))
				return 1;
			for (size_t t = 1; t < sizeof thread_counts / sizeof thread_counts[0]; t++) {
				struct membuf mt;
				char *jt = NULL;
				if (step_on_threads(bytes, len, spec, thread_counts[t], &mt, &jt))
					return 1;
				CHECK(mt.len == m1.len && !memcmp(mt.p, m1.p, m1.len),
				      "%s %s: model bytes differ on %u threads",
				      names[mi] ? names[mi] : "synthetic", spec, thread_counts[t]);
				CHECK(!strcmp(jt, j1), "%s %s: metrics differ on %u threads:\n%s\n%s",
				      names[mi] ? names[mi] : "synthetic", spec, thread_counts[t], jt,
				      j1);
				free(mt.p);
				free(jt);
				cases++;
			}
			free(m1.p);
			free(j1);
		}
		free(fb);
	}
	/* a NaN near the end of the Gemm weight (a later unit) and a canceled
	 * step are reported on every thread count */
	free(big);
	ws[0][(size_t)(1100 * 1300) - 5] = NAN;
	CHECK(synthmodel_pack(&sm, &big, &big_len, &e) == NN_OK, "%s", e.message);
	for (size_t t = 0; t < sizeof thread_counts / sizeof thread_counts[0]; t++)
		for (int v = 0; v < 4; v++) {
			struct onnx_model *m = NULL;
			CHECK(onnx_load(big, big_len, &m, &e) == NN_OK, "%s", e.message);
			struct quant_params p = {.scheme = QUANT_INT8,
						 .granularity = v < 2 ? QUANT_PER_CHANNEL
								      : QUANT_PER_TENSOR,
						 .symmetric = v % 2 == 0,
						 .ops = QUANT_OP_GEMM | QUANT_OP_MATMUL};
			json_t *mt = NULL;
			atomic_bool cancel = false;
			struct step_ctx ctx = {.cancel = &cancel, .threads = thread_counts[t]};
			CHECK(quant_run(m, &p, &ctx, &mt, &e) == NN_EINVAL &&
				      strstr(e.message, "NaN"),
			      "NaN on %u threads v %d: %s", thread_counts[t], v, e.message);
			onnx_free(m);
			CHECK(onnx_load(big, big_len, &m, &e) == NN_OK, "%s", e.message);
			cancel = true;
			mt = NULL;
			CHECK(quant_run(m, &p, &ctx, &mt, &e) == NN_ECANCELED,
			      "cancel on %u threads v %d not seen", thread_counts[t], v);
			onnx_free(m);
		}
	free(big);
	for (size_t l = 0; l < 4; l++)
		free(ws[l]);
	fprintf(stderr, "%d model x spec x thread-count runs compared with 1 thread\n", cases);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: test_quant_int8 CASE DATA_DIR FIXTURES_DIR [NODE MODULES SCRIPT]\n");
		return 2;
	}
	data_dir = argv[2];
	fixtures_dir = argv[3];
	if (!strcmp(argv[1], "ort_matches_executor"))
		return test_ort_matches_executor(argc > 4 ? argv[4] : NULL, argc > 5 ? argv[5] : "",
						 argc > 6 ? argv[6] : "");
	struct {
		const char *name;
		int (*fn)(void);
	} cases[] = {
		{"bias_correction_gemm_without_bias", test_bias_correction_gemm_without_bias},
		{"bias_correction_matmul_add", test_bias_correction_matmul_add},
		{"bias_correction_conv", test_bias_correction_conv},
		{"bias_correction_needs_data", test_bias_correction_needs_data},
		{"ops_and_exclude", test_ops_and_exclude},
		{"gather_embedding", test_gather_embedding},
		{"step_paths_match_reference", test_step_paths_match_reference},
		{"threads_step_identical", test_threads_step_identical},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (!strcmp(argv[1], cases[i].name))
			return cases[i].fn();
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}
