/* Unit tests for engine/quant: vectorized kernels against the scalar
 * references (bit for bit), dequantization error bounds, exact zeros, the
 * written ONNX form (names, dtypes, shapes, DequantizeLinear wiring), opset
 * raising and shared weights.
 * Usage: test_quant CASE DATA_DIR */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "onnx_io.h"
#include "quant.h"

#define CHECK(cond, ...)                                                              \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, \
				#cond);                                               \
			fprintf(stderr, __VA_ARGS__);                                 \
			fprintf(stderr, "\n");                                        \
			return 1;                                                     \
		}                                                                     \
	} while (0)

static const char *data_dir = ".";

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 11);
}

/* Weights with zeros, an all-zero channel, exact half-step values and a wide
 * dynamic range, so rounding ties and clamps are exercised. */
static void fill(float *w, size_t outer, size_t channels, size_t inner)
{
	for (size_t o = 0; o < outer; o++) {
		for (size_t c = 0; c < channels; c++) {
			for (size_t i = 0; i < inner; i++) {
				size_t at = (o * channels + c) * inner + i;
				float v = ((float)(rnd() % 20001) - 10000.0f) / 10000.0f;
				v *= (float)(1 + c % 7) * 0.37f;
				uint32_t r = rnd() % 16;
				if (r == 0)
					v = 0.0f;
				else if (r == 1)
					v = -0.0f;
				else if (r == 2)
					v = (float)((int)(rnd() % 255) - 127) * 0.5f / 127.0f;
				if (c == 3)
					v = 0.0f; /* all-zero channel */
				w[at] = v;
			}
		}
	}
}

struct layout {
	size_t outer, channels, inner;
};
static const struct layout layouts[] = {
	{1, 1, 1},     {1, 1, 1000},  {1, 8, 1},    {37, 70, 1},  {16, 32, 1},
	{1, 32, 16},   {1, 4, 9},     {3, 5, 130},  {1, 1, 64},   {2, 129, 1},
	{1, 300, 777},
};

static int test_sym_kernel_matches_reference(void)
{
	for (size_t l = 0; l < sizeof layouts / sizeof layouts[0]; l++) {
		struct layout L = layouts[l];
		size_t n = L.outer * L.channels * L.inner;
		float *w = malloc(n * sizeof *w), *s1 = malloc(L.channels * 4), *s2 = malloc(L.channels * 4);
		int8_t *q1 = malloc(n), *q2 = malloc(n);
		fill(w, L.outer, L.channels, L.inner);
		struct nn_err e = {0};
		CHECK(quant_int8_symmetric_per_channel(w, L.outer, L.channels, L.inner, q1, s1, NULL,
						       &e) == NN_OK,
		      "%s", e.message);
		CHECK(quant_ref_int8_symmetric(w, L.outer, L.channels, L.inner, q2, s2), "ref");
		CHECK(!memcmp(q1, q2, n), "layout %zu: q differs from reference", l);
		CHECK(!memcmp(s1, s2, L.channels * 4), "layout %zu: scales differ", l);
		for (size_t o = 0; o < L.outer; o++) {
			for (size_t c = 0; c < L.channels; c++) {
				for (size_t i = 0; i < L.inner; i++) {
					size_t at = (o * L.channels + c) * L.inner + i;
					float deq = (float)q1[at] * s1[c];
					CHECK(fabsf(deq - w[at]) <= s1[c] * 0.5f * (1 + 1e-5f),
					      "layout %zu: |%g - %g| > scale/2 (%g)", l, deq, w[at],
					      s1[c]);
					CHECK(q1[at] >= -127 && q1[at] <= 127, "range");
					if (w[at] == 0.0f)
						CHECK(q1[at] == 0, "zero stays zero");
				}
			}
		}
		if (L.channels > 3)
			CHECK(s1[3] == 1.0f, "all-zero channel gets scale 1");
		/* per tensor = one channel over everything */
		float st1, st2;
		CHECK(quant_int8_symmetric_per_tensor(w, n, q1, &st1, NULL, NULL) == NN_OK, "pt");
		CHECK(quant_ref_int8_symmetric(w, 1, 1, n, q2, &st2), "ref pt");
		CHECK(!memcmp(q1, q2, n) && st1 == st2, "per tensor differs");
		free(w);
		free(s1);
		free(s2);
		free(q1);
		free(q2);
	}
	return 0;
}

static int test_asym_kernel_matches_reference(void)
{
	for (size_t l = 0; l < sizeof layouts / sizeof layouts[0]; l++) {
		struct layout L = layouts[l];
		size_t n = L.outer * L.channels * L.inner;
		float *w = malloc(n * sizeof *w), *s1 = malloc(L.channels * 4), *s2 = malloc(L.channels * 4);
		uint8_t *q1 = malloc(n), *q2 = malloc(n), *z1 = malloc(L.channels), *z2 = malloc(L.channels);
		fill(w, L.outer, L.channels, L.inner);
		/* one channel entirely positive, so the range's inclusion of 0 matters */
		if (L.channels > 1)
			for (size_t o = 0; o < L.outer; o++)
				for (size_t i = 0; i < L.inner; i++)
					w[(o * L.channels + 1) * L.inner + i] =
						0.25f + fabsf(w[(o * L.channels + 1) * L.inner + i]);
		struct nn_err e = {0};
		CHECK(quant_uint8_asymmetric_per_channel(w, L.outer, L.channels, L.inner, q1, s1, z1,
							 NULL, &e) == NN_OK,
		      "%s", e.message);
		CHECK(quant_ref_uint8_asymmetric(w, L.outer, L.channels, L.inner, q2, s2, z2), "ref");
		CHECK(!memcmp(q1, q2, n), "layout %zu: q differs", l);
		CHECK(!memcmp(s1, s2, L.channels * 4) && !memcmp(z1, z2, L.channels),
		      "layout %zu: scale/zero point differ", l);
		for (size_t o = 0; o < L.outer; o++) {
			for (size_t c = 0; c < L.channels; c++) {
				for (size_t i = 0; i < L.inner; i++) {
					size_t at = (o * L.channels + c) * L.inner + i;
					float deq = (float)((int)q1[at] - (int)z1[c]) * s1[c];
					CHECK(fabsf(deq - w[at]) <= s1[c] * (0.5f + 1e-4f),
					      "layout %zu: |%g - %g| > scale/2 (%g)", l, deq, w[at],
					      s1[c]);
					if (w[at] == 0.0f)
						CHECK(q1[at] == z1[c], "zero maps to the zero point");
				}
			}
		}
		free(w);
		free(s1);
		free(s2);
		free(q1);
		free(q2);
		free(z1);
		free(z2);
	}
	return 0;
}

static int test_nonfinite_rejected(void)
{
	float w[70];
	int8_t q[70];
	uint8_t uq[70], zp[2];
	float s[2];
	for (int i = 0; i < 70; i++)
		w[i] = (float)i / 70.0f;
	float bad[] = {NAN, INFINITY, -INFINITY};
	for (int b = 0; b < 3; b++) {
		w[66] = bad[b];
		CHECK(quant_int8_symmetric_per_channel(w, 1, 2, 35, q, s, NULL, NULL) == NN_EINVAL,
		      "sym %d", b);
		CHECK(quant_int8_symmetric_per_tensor(w, 70, q, s, NULL, NULL) == NN_EINVAL, "pt %d",
		      b);
		CHECK(quant_uint8_asymmetric_per_channel(w, 1, 2, 35, uq, s, zp, NULL, NULL) ==
			      NN_EINVAL,
		      "asym %d", b);
	}
	return 0;
}

static int test_cancel(void)
{
	float w[128] = {0};
	int8_t q[128];
	float s[1];
	atomic_bool flag = true;
	struct step_ctx ctx = {.cancel = &flag};
	/* the flag is polled every STEP_POLL_ELEMS elements: use a big enough weight */
	size_t n = STEP_POLL_ELEMS + 1;
	float *big = calloc(n, sizeof *big);
	int8_t *bq = malloc(n);
	CHECK(quant_int8_symmetric_per_tensor(big, n, bq, s, &ctx, NULL) == NN_ECANCELED, "cancel");
	CHECK(quant_int8_symmetric_per_tensor(w, 128, q, s, NULL, NULL) == NN_OK, "no ctx");
	free(big);
	free(bq);
	return 0;
}

static struct onnx_model *load(const char *name)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", data_dir, name);
	struct onnx_model *m = NULL;
	struct nn_err e = {0};
	if (onnx_load_file(path, &m, &e) != NN_OK) {
		fprintf(stderr, "load %s: %s\n", path, e.message);
		return NULL;
	}
	return m;
}

static Onnx__NodeProto *find_node_by_output(struct onnx_model *m, const char *out)
{
	Onnx__GraphProto *g = m->proto->graph;
	for (size_t i = 0; i < g->n_node; i++)
		for (size_t o = 0; o < g->node[i]->n_output; o++)
			if (!strcmp(g->node[i]->output[o], out))
				return g->node[i];
	return NULL;
}

static size_t count_op(struct onnx_model *m, const char *op)
{
	size_t n = 0;
	Onnx__GraphProto *g = m->proto->graph;
	for (size_t i = 0; i < g->n_node; i++)
		n += !strcmp(g->node[i]->op_type, op);
	return n;
}

/* Checks the quantized form of weight `name` against the original model:
 * dtypes and shapes, the DequantizeLinear node, and that (q - zp) * scale is
 * within scale/2 of every original element (zeros exactly zero). */
static int check_quantized(struct onnx_model *m, struct onnx_model *orig, const char *name,
			   int axis, bool symmetric)
{
	char qn[128], sn[128], zn[128];
	snprintf(qn, sizeof qn, "%s_quantized", name);
	snprintf(sn, sizeof sn, "%s_scale", name);
	snprintf(zn, sizeof zn, "%s_zero_point", name);
	CHECK(!onnx_find_initializer(m, name), "float initializer %s must be gone", name);
	Onnx__TensorProto *qi = onnx_find_initializer(m, qn), *si = onnx_find_initializer(m, sn),
			  *zi = onnx_find_initializer(m, zn), *wi = onnx_find_initializer(orig, name);
	CHECK(qi && si && zi && wi, "initializers for %s", name);
	int qt = symmetric ? DT_INT8 : DT_UINT8;
	CHECK(qi->data_type == qt && zi->data_type == qt && si->data_type == DT_FLOAT, "dtypes");
	CHECK(qi->n_dims == wi->n_dims, "q shape rank");
	for (size_t d = 0; d < wi->n_dims; d++)
		CHECK(qi->dims[d] == wi->dims[d], "q shape");
	size_t channels = 1;
	if (axis >= 0) {
		CHECK(si->n_dims == 1 && si->dims[0] == wi->dims[axis], "per-channel scale shape [C]");
		channels = (size_t)wi->dims[axis];
	} else {
		CHECK(si->n_dims == 0, "per-tensor scale is a scalar");
	}
	CHECK(zi->n_dims == si->n_dims && (si->n_dims == 0 || zi->dims[0] == si->dims[0]),
	      "zero point shaped like scale");
	Onnx__NodeProto *dq = find_node_by_output(m, name);
	CHECK(dq && !strcmp(dq->op_type, "DequantizeLinear"), "%s produced by DequantizeLinear",
	      name);
	CHECK(dq->n_input == 3 && !strcmp(dq->input[0], qn) && !strcmp(dq->input[1], sn) &&
		      !strcmp(dq->input[2], zn),
	      "DequantizeLinear inputs");
	int64_t ax = onnx_node_int_attr(dq, "axis", -999);
	if (axis >= 0)
		CHECK(ax == axis, "axis %lld want %d", (long long)ax, axis);

	struct tensor w;
	CHECK(onnx_initializer_view(wi, &w, NULL) == NN_OK, "view");
	CHECK(qi->has_raw_data && zi->has_raw_data && si->has_raw_data, "raw data");
	const uint8_t *qraw = qi->raw_data.data, *zraw = zi->raw_data.data;
	float *scales = malloc(channels * sizeof *scales);
	memcpy(scales, si->raw_data.data, channels * sizeof *scales);
	size_t outer = 1, inner = 1, n = (size_t)tensor_numel(&w);
	if (axis >= 0) {
		for (int d = 0; d < axis; d++)
			outer *= (size_t)w.shape[d];
		for (int d = axis + 1; d < w.ndim; d++)
			inner *= (size_t)w.shape[d];
	} else {
		inner = n;
	}
	const float *wf = w.data;
	for (size_t o = 0; o < outer; o++) {
		for (size_t c = 0; c < channels; c++) {
			for (size_t i = 0; i < inner; i++) {
				size_t at = (o * channels + c) * inner + i;
				int qv = symmetric ? (int)(int8_t)qraw[at] : (int)qraw[at];
				int zv = symmetric ? (int)(int8_t)zraw[c] : (int)zraw[c];
				float deq = (float)(qv - zv) * scales[c];
				CHECK(fabsf(deq - wf[at]) <= scales[c] * (0.5f + 1e-4f),
				      "%s[%zu]: %g vs %g (scale %g)", name, at, deq, wf[at], scales[c]);
				if (wf[at] == 0.0f)
					CHECK(deq == 0.0f, "%s[%zu]: zero must stay exactly zero", name,
					      at);
			}
		}
	}
	free(scales);
	tensor_free(&w);
	return 0;
}

static int roundtrip(struct onnx_model *m)
{
	char path[] = "/tmp/nncd-test-quant-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0, "mkstemp");
	close(fd);
	struct nn_err e = {0};
	CHECK(onnx_save_file(m, path, &e) == NN_OK, "%s", e.message);
	struct onnx_model *back = NULL;
	CHECK(onnx_load_file(path, &back, &e) == NN_OK, "reload: %s", e.message);
	onnx_free(back);
	unlink(path);
	return 0;
}

static int test_model_per_channel(void)
{
	struct onnx_model *m = load("steps_mlp.onnx"), *orig = load("steps_mlp.onnx");
	CHECK(m && orig, "load");
	struct quant_params p = {.granularity = QUANT_PER_CHANNEL, .symmetric = true};
	json_t *mt = NULL;
	struct nn_err e = {0};
	CHECK(quant_run(m, &p, NULL, &mt, &e) == NN_OK, "%s", e.message);
	/* foo: MatMul B [16, 32], output channels on axis 1; g.w: Gemm transB=1 [8, 32], axis 0 */
	if (check_quantized(m, orig, "foo", 1, true) || check_quantized(m, orig, "g.w", 0, true))
		return 1;
	CHECK(onnx_find_initializer(m, "fc.weight") &&
		      onnx_find_initializer(m, "fc.weight")->data_type == DT_FLOAT,
	      "fc.weight (feeds Add) stays float");
	CHECK(count_op(m, "DequantizeLinear") == 2, "two DequantizeLinear nodes");
	/* DequantizeLinear nodes come first (producers before consumers) */
	CHECK(!strcmp(m->proto->graph->node[0]->op_type, "DequantizeLinear") &&
		      !strcmp(m->proto->graph->node[1]->op_type, "DequantizeLinear"),
	      "prepended");
	CHECK(!strcmp(json_string_value(json_object_get(mt, "scheme")), "int8"), "scheme");
	CHECK(!strcmp(json_string_value(json_object_get(mt, "granularity")), "per_channel"),
	      "granularity");
	CHECK(json_integer_value(json_object_get(mt, "parameters")) == 16 * 32 + 8 * 32,
	      "parameters");
	CHECK(json_integer_value(json_object_get(mt, "bytes_after")) <
		      json_integer_value(json_object_get(mt, "bytes_before")),
	      "smaller");
	CHECK(json_integer_value(json_object_get(mt, "opset")) == 13, "opset");
	json_t *layers = json_object_get(mt, "layers");
	CHECK(json_array_size(layers) == 2, "layers");
	for (size_t i = 0; i < 2; i++) {
		json_t *l = json_array_get(layers, i);
		double smin = json_real_value(json_object_get(l, "scale_min"));
		double smax = json_real_value(json_object_get(l, "scale_max"));
		double mse = json_real_value(json_object_get(l, "mse"));
		double mae = json_real_value(json_object_get(l, "max_abs_error"));
		CHECK(smin > 0 && smin <= smax, "scales");
		CHECK(mae <= smax * 0.5 * (1 + 1e-4) && mse <= mae * mae, "errors %g %g", mse, mae);
		CHECK(!strcmp(json_string_value(json_object_get(l, "granularity")), "per_channel"),
		      "layer granularity");
	}
	if (roundtrip(m))
		return 1;
	json_decref(mt);
	onnx_free(m);
	onnx_free(orig);
	return 0;
}

static int test_model_per_tensor_and_asym(void)
{
	bool syms[2] = {true, false};
	enum quant_granularity grans[2] = {QUANT_PER_TENSOR, QUANT_PER_CHANNEL};
	for (int s = 0; s < 2; s++) {
		for (int g = 0; g < 2; g++) {
			struct onnx_model *m = load("steps_mlp.onnx"), *orig = load("steps_mlp.onnx");
			CHECK(m && orig, "load");
			struct quant_params p = {.granularity = grans[g], .symmetric = syms[s]};
			json_t *mt = NULL;
			struct nn_err e = {0};
			CHECK(quant_run(m, &p, NULL, &mt, &e) == NN_OK, "%s", e.message);
			int per_ch = grans[g] == QUANT_PER_CHANNEL;
			if (check_quantized(m, orig, "foo", per_ch ? 1 : -1, syms[s]) ||
			    check_quantized(m, orig, "g.w", per_ch ? 0 : -1, syms[s]))
				return 1;
			CHECK(json_is_false(json_object_get(mt, "symmetric")) == !syms[s], "symmetric");
			if (roundtrip(m))
				return 1;
			json_decref(mt);
			onnx_free(m);
			onnx_free(orig);
		}
	}
	return 0;
}

static int test_opset_raised_shared_once(void)
{
	struct onnx_model *m = load("steps_cnn11.onnx"), *orig = load("steps_cnn11.onnx");
	CHECK(m && orig, "load");
	CHECK(onnx_opset(m) == 11, "fixture opset 11");
	struct quant_params p = {.granularity = QUANT_PER_CHANNEL, .symmetric = true};
	json_t *mt = NULL;
	struct nn_err e = {0};
	CHECK(quant_run(m, &p, NULL, &mt, &e) == NN_OK, "%s", e.message);
	CHECK(onnx_opset(m) == 13, "opset raised to 13, got %lld", (long long)onnx_opset(m));
	CHECK(json_integer_value(json_object_get(mt, "opset")) == 13, "metrics opset");
	/* conv.w [4,1,3,3] axis 0 (channel 2 all zeros); w1 [144,10] axis 1;
	 * "shared" feeds two MatMuls: quantized once. */
	if (check_quantized(m, orig, "conv.w", 0, true) || check_quantized(m, orig, "w1", 1, true) ||
	    check_quantized(m, orig, "shared", 1, true))
		return 1;
	CHECK(count_op(m, "DequantizeLinear") == 3, "one DequantizeLinear per weight");
	CHECK(json_array_size(json_object_get(mt, "layers")) == 3, "three layers");
	float s2;
	memcpy(&s2, onnx_find_initializer(m, "conv.w_scale")->raw_data.data + 2 * sizeof(float),
	       sizeof s2);
	CHECK(s2 == 1.0f, "all-zero channel has scale 1");
	CHECK(onnx_find_initializer(m, "conv.b") &&
		      onnx_find_initializer(m, "conv.b")->data_type == DT_FLOAT,
	      "bias stays float");
	if (roundtrip(m))
		return 1;
	json_decref(mt);
	onnx_free(m);
	onnx_free(orig);
	return 0;
}

static int test_no_weights(void)
{
	struct onnx_model *m = load("steps_noweights.onnx");
	CHECK(m, "load");
	struct quant_params p = {.granularity = QUANT_PER_CHANNEL, .symmetric = true};
	json_t *mt = NULL;
	struct nn_err e = {0};
	CHECK(quant_run(m, &p, NULL, &mt, &e) == NN_EINVAL && !mt, "no weights");
	CHECK(strstr(e.message, "no Gemm/MatMul/Conv"), "%s", e.message);
	onnx_free(m);
	return 0;
}

static int test_params_parse(void)
{
	struct {
		const char *json, *field, *msg_part;
	} bad[] = {
		{"{\"op\":\"quantize\"}", "steps[1].scheme", "missing required field 'scheme'"},
		{"{\"op\":\"quantize\",\"scheme\":\"int3\"}", "steps[1].scheme",
		 "unsupported scheme \"int3\"; supported: int8, int4, fp16, bf16, dynamic, static, "
		 "kmeans"},
		{"{\"op\":\"quantize\",\"scheme\":\"kmeans\",\"bits\":9}", "steps[1].bits",
		 "bits must be an integer in [2, 8]"},
		{"{\"op\":\"quantize\",\"scheme\":\"int4\",\"block_size\":24}",
		 "steps[1].block_size", "16, 32, 64 or 128"},
		{"{\"op\":\"quantize\",\"scheme\":\"int4\",\"format\":\"matmulnbits\","
		 "\"ops\":[\"Conv\"]}", "steps[1].ops", "quantizes the weights of Gemm, MatMul"},
		{"{\"op\":\"quantize\",\"scheme\":\"static\",\"calibration\":\"minmax\","
		 "\"percentile\":99.9}", "steps[1].percentile", "calibration \"percentile\" only"},
		{"{\"op\":\"quantize\",\"scheme\":\"static\",\"calibration\":\"kl\"}",
		 "steps[1].calibration", "supported: minmax, percentile, entropy, mse"},
		{"{\"op\":\"quantize\",\"scheme\":\"fp16\",\"block_size\":32}",
		 "steps[1].block_size", "unknown field 'block_size'"},
		{"{\"op\":\"quantize\",\"scheme\":\"int8\",\"granularity\":\"per_row\"}",
		 "steps[1].granularity", "supported: per_channel, per_tensor"},
		{"{\"op\":\"quantize\",\"scheme\":\"int8\",\"symmetric\":1}", "steps[1].symmetric",
		 "true or false"},
		{"{\"op\":\"quantize\",\"scheme\":\"int8\",\"bits\":8}", "steps[1].bits",
		 "unknown field 'bits'"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		json_t *j = json_loads(bad[i].json, 0, NULL);
		struct quant_params p;
		struct nn_err e = {0};
		CHECK(quant_params_parse(j, 1, &p, &e) == NN_EINVAL, "%s accepted", bad[i].json);
		CHECK(!strcmp(e.field, bad[i].field), "%s: field '%s'", bad[i].json, e.field);
		CHECK(strstr(e.message, bad[i].msg_part), "%s: message '%s'", bad[i].json,
		      e.message);
		json_decref(j);
	}
	json_t *j = json_loads("{\"op\":\"quantize\",\"scheme\":\"int8\"}", 0, NULL);
	struct quant_params p;
	CHECK(quant_params_parse(j, 0, &p, NULL) == NN_OK && p.granularity == QUANT_PER_CHANNEL &&
		      p.symmetric,
	      "defaults");
	json_decref(j);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: test_quant CASE [DATA_DIR]\n");
		return 2;
	}
	if (argc > 2)
		data_dir = argv[2];
	struct {
		const char *name;
		int (*fn)(void);
	} cases[] = {
		{"sym_kernel_matches_reference", test_sym_kernel_matches_reference},
		{"asym_kernel_matches_reference", test_asym_kernel_matches_reference},
		{"nonfinite_rejected", test_nonfinite_rejected},
		{"cancel", test_cancel},
		{"model_per_channel", test_model_per_channel},
		{"model_per_tensor_and_asym", test_model_per_tensor_and_asym},
		{"opset_raised_shared_once", test_opset_raised_shared_once},
		{"no_weights", test_no_weights},
		{"params_parse", test_params_parse},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (!strcmp(argv[1], cases[i].name))
			return cases[i].fn();
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}
