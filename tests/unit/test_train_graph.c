/* Unit tests for engine/train_graph.c: float32 central-difference gradient
 * checks of every operator on the tiny models of data/make_train_graph_models.py,
 * a smaller last batch, Dropout masks (same seed, same mask; measured drop
 * fraction), write-back of parameters and BatchNormalization running
 * statistics, taps, refusals; and an "oracle" mode that dumps nncd's forward
 * and gradients for data/train_graph_torch_ref.py to compare with PyTorch.
 *
 * Gradient check: loss = sum(y * w) with fixed random w; for sampled elements
 * of every parameter, (L(p + h) - L(p - h)) / 2h with h = 3e-3 on a freshly
 * compiled graph each time (so Dropout draws the same mask and BN's running
 * statistics start equal); max |numeric - analytic| / max(max |analytic|, 0.1)
 * <= 1e-2 per parameter.
 * Usage: test_train_graph CASE DATA_DIR [args] */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "exec.h"
#include "onnx_io.h"
#include "rng.h"
#include "train_graph.h"

static const char *data_dir = ".";

static struct onnx_model *load(const char *name)
{
	char path[1024];
	if (strchr(name, '/'))
		snprintf(path, sizeof path, "%s", name);
	else
		snprintf(path, sizeof path, "%s/train_graph/%s.onnx", data_dir, name);
	struct onnx_model *m = NULL;
	struct nn_err e;
	if (onnx_load_file(path, &m, &e) != NN_OK) {
		fprintf(stderr, "loading %s: %s\n", path, e.message);
		return NULL;
	}
	return m;
}

static void fill_normal(struct rng *r, float *p, int64_t n, float scale)
{
	for (int64_t i = 0; i < n; i++)
		p[i] = (float)rng_normal(r) * scale;
}

static struct tg_graph *compile(const struct onnx_model *m, int64_t batch, uint64_t seed)
{
	struct tg_options o = {.max_batch = batch, .seed = seed};
	struct tg_graph *g = NULL;
	struct nn_err e;
	if (tg_compile(m, &o, &g, &e) != NN_OK) {
		fprintf(stderr, "tg_compile: %s\n", e.message);
		return NULL;
	}
	return g;
}

static double loss_of(const float *y, const float *w, int64_t n)
{
	double s = 0.0;
	for (int64_t i = 0; i < n; i++)
		s += (double)y[i] * w[i];
	return s;
}

/* Loss of a fresh graph with parameter pi's element j moved by delta. */
static double perturbed_loss(const struct onnx_model *m, int64_t n, bool training, size_t pi,
			     size_t j, float delta, const float *x, const float *w, int *fail)
{
	struct tg_graph *g = compile(m, n, 77);
	if (!g) {
		*fail = 1;
		return 0.0;
	}
	tg_param(g, pi)->value[j] += delta;
	const float *y;
	struct nn_err e;
	double l = 0.0;
	if (tg_forward(g, x, n, training, &y, &e) != NN_OK) {
		fprintf(stderr, "forward: %s\n", e.message);
		*fail = 1;
	} else {
		l = loss_of(y, w, n * tg_output_sample_numel(g));
	}
	tg_free(g);
	return l;
}

static int gradcheck(const char *name, bool training, int64_t n)
{
	struct onnx_model *m = load(name);
	CHECK(m, "load %s", name);
	struct tg_graph *g = compile(m, n, 77);
	CHECK(g, "compile %s", name);
	CHECK(tg_param_count(g) > 0, "%s has no parameters", name);
	struct rng r;
	rng_seed(&r, 2024);
	int64_t nx = n * tg_input_sample_numel(g), ny = n * tg_output_sample_numel(g);
	float *x = malloc((size_t)nx * sizeof(float)), *w = malloc((size_t)ny * sizeof(float));
	CHECK(x && w, "oom");
	fill_normal(&r, x, nx, 1.0f);
	fill_normal(&r, w, ny, 1.0f);
	const float *y;
	struct nn_err e;
	CHECK(tg_forward(g, x, n, training, &y, &e) == NN_OK, "%s", e.message);
	CHECK(tg_backward(g, w, &e) == NN_OK, "%s", e.message);
	const float h = 3e-3f;
	int fail = 0;
	for (size_t pi = 0; pi < tg_param_count(g); pi++) {
		const struct tg_param *p = tg_param(g, pi);
		size_t step = p->n > 12 ? p->n / 12 : 1;
		double maxd = 0.0, maxg = 0.0;
		for (size_t j = 0; j < p->n; j += step) {
			double lp = perturbed_loss(m, n, training, pi, j, h, x, w, &fail);
			double lm = perturbed_loss(m, n, training, pi, j, -h, x, w, &fail);
			CHECK(!fail, "%s: perturbed forward failed", name);
			double num = (lp - lm) / (2.0 * h);
			double d = fabs(num - p->grad[j]);
			maxd = d > maxd ? d : maxd;
			maxg = fabs(p->grad[j]) > maxg ? fabs(p->grad[j]) : maxg;
		}
		/* floor 0.1: a gradient that is truly ~0 (a conv bias before training-mode
		 * BN) is compared against the numeric noise, ~1e-4 at this step */
		double rel = maxd / (maxg > 0.1 ? maxg : 0.1);
		printf("%-16s %-8s %-8s n=%zu max|g|=%.4g rel=%.2e\n", name,
		       training ? "train" : "infer", p->name, p->n, maxg, rel);
		CHECK(rel <= 1e-2, "%s: param %s relative error %.3e (max |g| %.3g)", name, p->name,
		      rel, maxg);
	}
	free(x);
	free(w);
	tg_free(g);
	onnx_free(m);
	return 0;
}

static int test_gradcheck_ops(void)
{
	static const char *const models[] = {
		"tg_gemm", "tg_matmul3d", "tg_bcast", "tg_relu", "tg_leakyrelu", "tg_sigmoid",
		"tg_tanh", "tg_gelu", "tg_gelu_tanh", "tg_hardswish", "tg_hardsigmoid", "tg_clip",
		"tg_clip6", "tg_erf", "tg_softmax", "tg_logsoftmax", "tg_shape", "tg_dropout",
	};
	for (size_t i = 0; i < sizeof models / sizeof models[0]; i++)
		if (gradcheck(models[i], false, 4))
			return 1;
	/* Dropout in training: a fresh graph with the same seed draws the same mask */
	return gradcheck("tg_dropout", true, 4);
}

static int test_gradcheck_conv(void)
{
	if (gradcheck("tg_conv", false, 3) || gradcheck("tg_conv", true, 3))
		return 1;
	return gradcheck("tg_conv_group", false, 2) || gradcheck("tg_conv_group", true, 2);
}

/* A smaller last batch runs on the max-batch buffers with the same results as
 * a graph compiled for that batch. */
static int test_small_batch(void)
{
	static const char *const models[] = {"tg_conv", "tg_shape", "tg_bcast", "tg_matmul3d"};
	for (size_t k = 0; k < sizeof models / sizeof models[0]; k++) {
		struct onnx_model *m = load(models[k]);
		CHECK(m, "load");
		struct tg_graph *big = compile(m, 8, 1), *small = compile(m, 3, 1);
		CHECK(big && small, "compile %s", models[k]);
		struct rng r;
		rng_seed(&r, 5);
		int64_t nx = 3 * tg_input_sample_numel(big), ny = 3 * tg_output_sample_numel(big);
		float x[3 * 4 * 6 * 6], w[64];
		CHECK(nx <= (int64_t)(sizeof x / sizeof x[0]) && ny <= 64, "sizes");
		fill_normal(&r, x, nx, 1.0f);
		fill_normal(&r, w, ny, 1.0f);
		struct nn_err e;
		const float *yb, *ys;
		/* fill the big graph's buffers with a full batch first */
		float xfull[8 * 4 * 6 * 6];
		fill_normal(&r, xfull, 8 * tg_input_sample_numel(big), 3.0f);
		CHECK(tg_forward(big, xfull, 8, false, &yb, &e) == NN_OK, "%s", e.message);
		for (int mode = 0; mode < 2; mode++) {
			CHECK(tg_forward(big, x, 3, mode, &yb, &e) == NN_OK, "%s", e.message);
			CHECK(tg_forward(small, x, 3, mode, &ys, &e) == NN_OK, "%s", e.message);
			for (int64_t i = 0; i < ny; i++)
				CHECK(fabsf(yb[i] - ys[i]) <= 1e-5f * (1.0f + fabsf(ys[i])),
				      "%s y[%lld] %g vs %g", models[k], (long long)i, yb[i], ys[i]);
			CHECK(tg_backward(big, w, &e) == NN_OK, "%s", e.message);
			CHECK(tg_backward(small, w, &e) == NN_OK, "%s", e.message);
			for (size_t p = 0; p < tg_param_count(big); p++)
				for (size_t j = 0; j < tg_param(big, p)->n; j++) {
					float a = tg_param(big, p)->grad[j], b = tg_param(small, p)->grad[j];
					CHECK(fabsf(a - b) <= 1e-4f * (1.0f + fabsf(b)), "%s %s[%zu] %g vs %g",
					      models[k], tg_param(big, p)->name, j, a, b);
				}
		}
		tg_free(big);
		tg_free(small);
		onnx_free(m);
	}
	return 0;
}

static int test_dropout_mask(void)
{
	struct onnx_model *m = load("tg_dropout_wide");
	CHECK(m, "load");
	struct tg_graph *a = compile(m, 4, 99), *b = compile(m, 4, 99), *c = compile(m, 4, 100);
	CHECK(a && b && c, "compile");
	int64_t nx = 4 * 4000;
	float *x = malloc((size_t)nx * sizeof(float));
	float *ya = malloc((size_t)nx * sizeof(float));
	CHECK(x && ya, "oom");
	for (int64_t i = 0; i < nx; i++)
		x[i] = 1.0f + (float)(i % 7);
	const float *y, *yb, *yc;
	struct nn_err e;
	CHECK(tg_forward(a, x, 4, true, &y, &e) == NN_OK, "%s", e.message);
	memcpy(ya, y, (size_t)nx * sizeof(float));
	CHECK(tg_forward(b, x, 4, true, &yb, &e) == NN_OK, "%s", e.message);
	CHECK(tg_forward(c, x, 4, true, &yc, &e) == NN_OK, "%s", e.message);
	int64_t zeros = 0, differ = 0;
	for (int64_t i = 0; i < nx; i++) {
		CHECK(ya[i] == yb[i], "same seed, different output at %lld", (long long)i);
		differ += ya[i] != yc[i];
		if (ya[i] == 0.0f)
			zeros++;
		else
			CHECK(fabsf(ya[i] - x[i] / 0.7f) <= 1e-6f * ya[i], "kept value %g not x/(1-p)",
			      ya[i]);
	}
	double frac = (double)zeros / (double)nx;
	printf("dropout p=0.3: dropped fraction %.4f over %lld values\n", frac, (long long)nx);
	CHECK(fabs(frac - 0.3) < 0.015, "dropped fraction %.4f", frac);
	CHECK(differ > nx / 10, "another seed gives the same mask");
	/* a second batch draws a new mask */
	CHECK(tg_forward(a, x, 4, true, &y, &e) == NN_OK, "%s", e.message);
	int64_t same = 0;
	for (int64_t i = 0; i < nx; i++)
		same += y[i] == ya[i];
	CHECK(same < nx, "the mask repeated across batches");
	/* inference: identity */
	CHECK(tg_forward(a, x, 4, false, &y, &e) == NN_OK, "%s", e.message);
	for (int64_t i = 0; i < nx; i++)
		CHECK(y[i] == x[i], "inference Dropout is not the identity");
	free(x);
	free(ya);
	tg_free(a);
	tg_free(b);
	tg_free(c);
	onnx_free(m);
	return 0;
}

static int float_init(const struct onnx_model *m, const char *name, const float **out,
		      int64_t *n)
{
	Onnx__TensorProto *tp = onnx_find_initializer(m, name);
	if (!tp)
		return 1;
	struct tensor t;
	struct nn_err e;
	if (onnx_initializer_view(tp, &t, &e) != NN_OK)
		return 1;
	*out = t.data;
	*n = tensor_numel(&t);
	return 0;
}

/* Write-back: parameters and BN running statistics land in the model's
 * initializers (same shapes), and the saved model reloads with them. */
static int test_write_back(void)
{
	struct onnx_model *m = load("tg_conv");
	CHECK(m, "load");
	struct tg_graph *g = compile(m, 4, 3);
	CHECK(g, "compile");
	float x[4 * 2 * 7 * 7];
	struct rng r;
	rng_seed(&r, 8);
	fill_normal(&r, x, 4 * 98, 1.0f);
	const float *y;
	struct nn_err e;
	const float *rm0;
	int64_t nrm;
	CHECK(float_init(m, "bn_m", &rm0, &nrm) == 0 && nrm == 4, "bn_m");
	float before[4];
	memcpy(before, rm0, sizeof before);
	CHECK(tg_forward(g, x, 4, true, &y, &e) == NN_OK, "%s", e.message);
	for (size_t p = 0; p < tg_param_count(g); p++)
		for (size_t j = 0; j < tg_param(g, p)->n; j++)
			tg_param(g, p)->value[j] += 0.25f * (float)(j % 3);
	struct onnx_model *c = NULL;
	CHECK(onnx_clone(m, &c, &e) == NN_OK, "%s", e.message);
	CHECK(tg_write_back(g, c, &e) == NN_OK, "%s", e.message);
	for (size_t p = 0; p < tg_param_count(g); p++) {
		const float *v;
		int64_t n;
		CHECK(float_init(c, tg_param(g, p)->name, &v, &n) == 0, "%s", tg_param(g, p)->name);
		CHECK(n == (int64_t)tg_param(g, p)->n, "size of %s", tg_param(g, p)->name);
		CHECK(memcmp(v, tg_param(g, p)->value, (size_t)n * sizeof(float)) == 0,
		      "%s not written back", tg_param(g, p)->name);
	}
	const float *rm;
	CHECK(float_init(c, "bn_m", &rm, &nrm) == 0 && nrm == 4, "bn_m");
	int moved = 0;
	for (int i = 0; i < 4; i++)
		moved += rm[i] != before[i];
	CHECK(moved == 4, "running mean not updated/written back");
	/* shapes kept: Conv weight still 4-D */
	Onnx__TensorProto *tp = onnx_find_initializer(c, "cw1");
	CHECK(tp && tp->n_dims == 4 && tp->dims[0] == 4, "cw1 shape changed");
	/* the written model compiles and runs in the executor */
	struct exec_plan *plan = NULL;
	CHECK(exec_compile(c, 2, &plan, &e) == NN_OK, "%s", e.message);
	exec_free(plan);
	/* trainable set: weights decay, biases and BN do not; constants are not params */
	static const struct {
		const char *name;
		bool decay;
	} want[] = {{"cw1", true}, {"cb1", false}, {"bn_s", false}, {"bn_b", false},
		    {"cw2", true}, {"cb2", false}, {"fw", true}, {"fb", false}};
	CHECK(tg_param_count(g) == sizeof want / sizeof want[0], "%zu params",
	      tg_param_count(g));
	for (size_t i = 0; i < tg_param_count(g); i++) {
		CHECK(strcmp(tg_param(g, i)->name, want[i].name) == 0, "param %zu is %s", i,
		      tg_param(g, i)->name);
		CHECK(tg_param(g, i)->decay == want[i].decay, "decay of %s", want[i].name);
	}
	onnx_free(c);
	tg_free(g);
	onnx_free(m);
	return 0;
}

/* Frozen initializers get no gradient and are not parameters; the Erf
 * pattern's constants are not parameters. */
static int test_frozen_and_constants(void)
{
	struct onnx_model *m = load("tg_erf");
	CHECK(m, "load");
	const char *frozen[] = {"w1", "b1"};
	struct tg_options o = {.max_batch = 2, .seed = 1, .frozen = frozen, .n_frozen = 2};
	struct tg_graph *g = NULL;
	struct nn_err e;
	CHECK(tg_compile(m, &o, &g, &e) == NN_OK, "%s", e.message);
	CHECK(tg_param_count(g) == 2, "%zu params", tg_param_count(g));
	CHECK(strcmp(tg_param(g, 0)->name, "w2") == 0 && strcmp(tg_param(g, 1)->name, "b2") == 0,
	      "params %s %s", tg_param(g, 0)->name, tg_param(g, 1)->name);
	tg_free(g);
	o.n_frozen = 0;
	CHECK(tg_compile(m, &o, &g, &e) == NN_OK, "%s", e.message);
	CHECK(tg_param_count(g) == 4, "%zu params (Erf constants must not be)", tg_param_count(g));
	tg_free(g);
	onnx_free(m);
	return 0;
}

/* Taps: a tapped tensor's value is readable; a gradient put there flows back
 * (here: dLoss/dtap = 1 on the hidden layer, nothing on the output, equals
 * the gradient of sum(hidden)). */
static int test_taps(void)
{
	struct onnx_model *m = load("tg_relu");
	CHECK(m, "load");
	const char *taps[] = {"u"};
	struct tg_options o = {.max_batch = 3, .seed = 1, .taps = taps, .n_taps = 1};
	struct tg_graph *g = NULL;
	struct nn_err e;
	CHECK(tg_compile(m, &o, &g, &e) == NN_OK, "%s", e.message);
	float x[15], zero[9] = {0};
	for (int i = 0; i < 15; i++)
		x[i] = (float)(i % 5) - 2.0f;
	const float *y;
	CHECK(tg_forward(g, x, 3, true, &y, &e) == NN_OK, "%s", e.message);
	int64_t per = 0;
	const float *u = tg_tap(g, "u", &per);
	float *du = tg_tap_grad(g, "u");
	CHECK(u && du && per == 6, "tap");
	CHECK(tg_tap(g, "nope", NULL) == NULL && tg_tap_grad(g, "nope") == NULL, "unknown tap");
	for (int i = 0; i < 18; i++) {
		CHECK(du[i] == 0.0f, "tap gradient not zeroed by forward");
		CHECK(u[i] >= 0.0f, "tap value is not the Relu output");
		du[i] = 1.0f;
	}
	CHECK(tg_backward(g, zero, &e) == NN_OK, "%s", e.message);
	/* d sum(relu(x W1^T + b1)) / d b1[j] = count of rows with positive pre-activation */
	const struct tg_param *b1 = tg_param(g, 1);
	CHECK(strcmp(b1->name, "b1") == 0, "param order");
	for (int j = 0; j < 6; j++) {
		float cnt = 0.0f;
		for (int r = 0; r < 3; r++)
			cnt += u[r * 6 + j] > 0.0f;
		CHECK(fabsf(b1->grad[j] - cnt) < 1e-6f, "b1 grad %g vs %g", b1->grad[j], cnt);
	}
	/* output-layer parameters got no gradient from the tap alone */
	for (size_t j = 0; j < tg_param(g, 2)->n; j++)
		CHECK(tg_param(g, 2)->grad[j] == 0.0f, "w2 grad from nowhere");
	tg_free(g);
	const char *bad[] = {"no_such_tensor"};
	o.taps = bad;
	CHECK(tg_compile(m, &o, &g, &e) == NN_EINVAL && strstr(e.message, "no_such_tensor"),
	      "bad tap accepted: %s", e.message);
	onnx_free(m);
	return 0;
}

/* Activations backward does not read share buffers: on the cnn fixture the
 * first Relu's output (read by MaxPool only) and the second's share one slab,
 * so tapping both (taps are kept) costs exactly the smaller one's extra
 * buffer plus the two tap gradients. */
static int test_buffer_sharing(const char *fixtures)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/cnn.onnx", fixtures);
	struct onnx_model *m = load(path);
	CHECK(m, "load");
	struct tg_graph *a = compile(m, 16, 0), *b = NULL;
	CHECK(a, "compile");
	const char *taps[] = {"/Relu_output_0", "/Relu_1_output_0"};
	struct tg_options o = {.max_batch = 16, .taps = taps, .n_taps = 2};
	struct nn_err e;
	CHECK(tg_compile(m, &o, &b, &e) == NN_OK, "%s", e.message);
	size_t r1 = 16 * 8 * 24 * 24 * sizeof(float), r2 = 16 * 16 * 8 * 8 * sizeof(float);
	size_t ba = tg_graph_bytes(a), bb = tg_graph_bytes(b);
	printf("cnn at batch 16: %zu bytes, %zu with both Relu outputs kept and tapped\n", ba, bb);
	CHECK(bb == ba + r2 + (r1 + r2), "bytes %zu vs %zu (expected + %zu)", bb, ba,
	      r2 + r1 + r2);
	tg_free(a);
	tg_free(b);
	onnx_free(m);
	return 0;
}

static int test_refusals(void)
{
	struct { const char *model; enum nn_status st; const char *words; } cases[] = {
		{"tg_two_inputs", NN_EUNSUPPORTED, "exactly one input"},
		{"tg_exp", NN_EUNSUPPORTED, "Exp"},
		{"tg_fixed1_reshape", NN_EUNSUPPORTED, "reshape_to_batch_1"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct onnx_model *m = load(cases[i].model);
		CHECK(m, "load");
		struct tg_options o = {.max_batch = 2};
		struct tg_graph *g = NULL;
		struct nn_err e = {0};
		enum nn_status st = tg_compile(m, &o, &g, &e);
		CHECK(st == cases[i].st && !g && strstr(e.message, cases[i].words),
		      "%s: status %d message '%s'", cases[i].model, st, e.message);
		onnx_free(m);
	}
	/* a batch fixed at 1 by the export still trains at batch 4 */
	struct onnx_model *f1 = load("tg_fixed1");
	CHECK(f1, "load");
	struct tg_graph *g = compile(f1, 4, 0);
	CHECK(g && tg_input_spec(g)->shape[0] == 4 && tg_output_spec(g)->shape[0] == 4,
	      "fixed batch 1 not trainable at 4");
	float x4[20] = {1, 2, 3, 4, 5}, d4[12] = {1};
	const float *y4;
	struct nn_err e4;
	CHECK(tg_forward(g, x4, 4, true, &y4, &e4) == NN_OK && tg_backward(g, d4, &e4) == NN_OK,
	      "%s", e4.message);
	tg_free(g);
	onnx_free(f1);
	struct onnx_model *m = load("tg_relu");
	CHECK(m, "load");
	g = compile(m, 2, 0);
	CHECK(g, "compile");
	float x[15] = {0};
	const float *y;
	struct nn_err e;
	CHECK(tg_backward(g, x, &e) == NN_EINVAL, "backward before forward accepted");
	CHECK(tg_forward(g, x, 3, false, &y, &e) == NN_EINVAL, "batch above max accepted");
	CHECK(tg_forward(g, x, 0, false, &y, &e) == NN_EINVAL, "empty batch accepted");
	tg_free(g);
	struct tg_options o = {.max_batch = 0};
	CHECK(tg_compile(m, &o, &g, &e) == NN_EINVAL, "max batch 0 accepted");
	onnx_free(m);
	return 0;
}

/* ---- oracle mode: read x and w, write nncd's results for the Python side ---- */

static int put(FILE *f, const char *name, const float *v, uint64_t n)
{
	uint32_t len = (uint32_t)strlen(name);
	return fwrite(&len, 4, 1, f) != 1 || fwrite(name, 1, len, f) != len ||
	       fwrite(&n, 8, 1, f) != 1 || fwrite(v, 4, n, f) != n;
}

static int oracle(const char *model, const char *in_path, const char *out_path)
{
	struct onnx_model *m = load(model);
	CHECK(m, "load %s", model);
	FILE *f = fopen(in_path, "rb");
	CHECK(f, "open %s", in_path);
	int64_t n;
	CHECK(fread(&n, 8, 1, f) == 1 && n > 0 && n < 4096, "header");
	struct tg_graph *g = compile(m, n, 1);
	CHECK(g, "compile");
	int64_t nx = n * tg_input_sample_numel(g), ny = n * tg_output_sample_numel(g);
	float *x = malloc((size_t)nx * 4), *w = malloc((size_t)ny * 4);
	CHECK(x && w, "oom");
	CHECK(fread(x, 4, (size_t)nx, f) == (size_t)nx && fread(w, 4, (size_t)ny, f) == (size_t)ny,
	      "short input");
	fclose(f);
	FILE *o = fopen(out_path, "wb");
	CHECK(o, "open %s", out_path);
	const float *y;
	struct nn_err e;
	/* inference forward vs the executor */
	CHECK(tg_forward(g, x, n, false, &y, &e) == NN_OK, "%s", e.message);
	CHECK(put(o, "out_infer", y, (uint64_t)ny) == 0, "write");
	struct exec_plan *plan = NULL;
	CHECK(exec_compile(m, n, &plan, &e) == NN_OK, "%s", e.message);
	struct tensor in, out;
	tensor_view(&in, DT_FLOAT, tg_input_spec(g)->ndim, tg_input_spec(g)->shape, x);
	CHECK(exec_run(plan, &in, 1, &out, 1, &e) == NN_OK, "%s", e.message);
	double md = 0.0, my = 0.0;
	for (int64_t i = 0; i < ny; i++) {
		float ev = ((const float *)out.data)[i];
		md = fmax(md, fabs((double)ev - y[i]));
		my = fmax(my, fabs((double)ev));
	}
	printf("%s: inference forward vs exec_run: max |diff| %.3g, max |y| %.3g\n", model, md, my);
	CHECK(md <= 1e-5 * (my > 1.0 ? my : 1.0), "forward differs from the executor");
	exec_free(plan);
	/* one training step: forward (BN batch statistics), backward */
	CHECK(tg_forward(g, x, n, true, &y, &e) == NN_OK, "%s", e.message);
	CHECK(put(o, "out_train", y, (uint64_t)ny) == 0, "write");
	CHECK(tg_backward(g, w, &e) == NN_OK, "%s", e.message);
	for (size_t p = 0; p < tg_param_count(g); p++) {
		char nm[300];
		snprintf(nm, sizeof nm, "grad:%s", tg_param(g, p)->name);
		CHECK(put(o, nm, tg_param(g, p)->grad, tg_param(g, p)->n) == 0, "write");
	}
	struct onnx_model *c = NULL;
	CHECK(onnx_clone(m, &c, &e) == NN_OK, "%s", e.message);
	CHECK(tg_write_back(g, c, &e) == NN_OK, "%s", e.message);
	const Onnx__GraphProto *gp = c->proto->graph;
	for (size_t i = 0; i < gp->n_node; i++) {
		const Onnx__NodeProto *nd = gp->node[i];
		if (strcmp(nd->op_type, "BatchNormalization") != 0 || nd->n_input < 5)
			continue;
		for (size_t s = 3; s < 5; s++) {
			const float *v;
			int64_t k;
			CHECK(float_init(c, nd->input[s], &v, &k) == 0, "%s", nd->input[s]);
			char key[300];
			snprintf(key, sizeof key, "state:%s", nd->input[s]);
			CHECK(put(o, key, v, (uint64_t)k) == 0, "write");
		}
	}
	onnx_free(c);
	CHECK(fclose(o) == 0, "close");
	free(x);
	free(w);
	tg_free(g);
	onnx_free(m);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: test_train_graph CASE DATA_DIR | oracle MODEL IN OUT\n");
		return 2;
	}
	if (strcmp(argv[1], "oracle") == 0) {
		if (argc < 5)
			return 2;
		return oracle(argv[2], argv[3], argv[4]);
	}
	data_dir = argv[2];
	if (strcmp(argv[1], "buffer_sharing") == 0)
		return argc > 3 ? test_buffer_sharing(argv[3]) : 2;
	static const struct {
		const char *name;
		int (*fn)(void);
	} cases[] = {
		{"gradcheck_ops", test_gradcheck_ops},
		{"gradcheck_conv", test_gradcheck_conv},
		{"small_batch", test_small_batch},
		{"dropout_mask", test_dropout_mask},
		{"write_back", test_write_back},
		{"frozen_and_constants", test_frozen_and_constants},
		{"taps", test_taps},
		{"refusals", test_refusals},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (strcmp(argv[1], cases[i].name) == 0)
			return cases[i].fn();
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}
