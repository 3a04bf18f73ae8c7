/* engine/exec.c compile-time fusion (data/make_fusion_models.py): the Erf GELU
 * pattern in both association orders becomes one Gelu step and an inference
 * BatchNormalization after a Conv is folded into the Conv's weights (and a
 * Relu after either fused into the Conv's output pass), with
 * outputs equal to a double-precision reference; look-alikes (a divisor that
 * is not sqrt(2), intermediates that are graph outputs) are left alone and
 * still correct; the fused plans hold fewer buffers (exec_plan_bytes) and give
 * bit-identical outputs with 1 and 2 threads. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "conv.h"
#include "exec.h"
#include "exec_op.h"
#include "onnx_io.h"

#define BATCH 4
#define TOL 2e-6

static const char *data_dir = ".";

static struct onnx_model *load(const char *name)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", data_dir, name);
	struct onnx_model *m = NULL;
	struct nn_err e;
	if (onnx_load_file(path, &m, &e) != NN_OK) {
		fprintf(stderr, "loading %s: %s\n", path, e.message);
		return NULL;
	}
	return m;
}

static void fill(float *x, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		x[i] = ((float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f) * 4.0f;
	}
}

/* Runs m at BATCH with `threads` on x (shape [BATCH, rest...]); copies output
 * `which` into y (n floats). Returns the plan's bytes, 0 on failure. */
static size_t run_model(const struct onnx_model *m, unsigned threads, const float *x,
			const int64_t *xshape, int xnd, size_t which, float *y, size_t n)
{
	struct exec_plan *p = NULL;
	struct nn_err e;
	if (exec_compile_threads(m, BATCH, threads, &p, &e) != NN_OK) {
		fprintf(stderr, "compile: %s\n", e.message);
		return 0;
	}
	struct tensor in, out[2];
	tensor_view(&in, DT_FLOAT, xnd, xshape, (void *)x);
	size_t bytes = exec_plan_bytes(p);
	size_t no = exec_output_count(p);
	if (no > 2 || which >= no || exec_run(p, &in, 1, out, no, &e) != NN_OK ||
	    (size_t)tensor_numel(&out[which]) != n) {
		fprintf(stderr, "run failed: %s\n", e.message);
		bytes = 0;
	} else {
		memcpy(y, out[which].data, n * sizeof(float));
	}
	exec_free(p);
	return bytes;
}

static double gelu_ref(double v, double divisor)
{
	return 0.5 * v * (1.0 + erf(v / divisor));
}

static int check_gelu_model(const char *name, double divisor, size_t *bytes)
{
	struct onnx_model *m = load(name);
	CHECK(m, "load %s", name);
	enum { N = BATCH * 8 };
	float x[N], y[N], y2[N];
	int64_t shape[2] = {BATCH, 8};
	fill(x, N, 99);
	x[0] = 0.0f, x[1] = -9.0f, x[2] = 9.0f, x[3] = 1e-3f;
	*bytes = run_model(m, 1, x, shape, 2, 0, y, N);
	CHECK(*bytes > 0, "%s did not run", name);
	CHECK(run_model(m, 2, x, shape, 2, 0, y2, N) > 0, "%s 2 threads", name);
	onnx_free(m);
	for (int i = 0; i < N; i++) {
		double r = gelu_ref(x[i], divisor);
		CHECK(fabs(y[i] - r) <= TOL * (1.0 + fabs(r)), "%s: gelu(%g) = %.9g, want %.9g",
		      name, x[i], y[i], r);
	}
	CHECK(memcmp(y, y2, sizeof y) == 0, "%s: 2-thread output differs from 1-thread", name);
	return 0;
}

static int case_gelu(void)
{
	size_t div = 0, mul = 0, not_gelu = 0, shared = 0;
	if (check_gelu_model("fusion_gelu_div.onnx", sqrt(2.0), &div) ||
	    check_gelu_model("fusion_gelu_mul.onnx", sqrt(2.0), &mul) ||
	    check_gelu_model("fusion_gelu_not.onnx", 2.0, &not_gelu) ||
	    check_gelu_model("fusion_gelu_shared.onnx", sqrt(2.0), &shared))
		return 1;
	/* the shared model's second output is Erf(x / sqrt 2): still computed */
	struct onnx_model *m = load("fusion_gelu_shared.onnx");
	CHECK(m, "load");
	enum { N = BATCH * 8 };
	float x[N], e[N];
	int64_t shape[2] = {BATCH, 8};
	fill(x, N, 5);
	CHECK(run_model(m, 1, x, shape, 2, 1, e, N) > 0, "shared run");
	onnx_free(m);
	for (int i = 0; i < N; i++)
		CHECK(fabs(e[i] - erf(x[i] / sqrt(2.0))) <= 1e-6, "erf output %d", i);
	printf("plan bytes: gelu (div) %zu, gelu (mul) %zu, not gelu %zu, shared %zu\n", div, mul,
	       not_gelu, shared);
	/* fused: one output buffer; unfused chains keep intermediates alive */
	CHECK(div < not_gelu && mul < not_gelu && div < shared,
	      "fused plans are not smaller (%zu %zu vs %zu %zu)", div, mul, not_gelu, shared);
	return 0;
}

/* Float initializer `name` of m (borrowed or copied into *owned). */
static const float *init_of(const struct onnx_model *m, const char *name, struct tensor *t)
{
	const Onnx__GraphProto *g = m->proto->graph;
	for (size_t i = 0; i < g->n_initializer; i++)
		if (!strcmp(g->initializer[i]->name, name)) {
			struct nn_err e;
			if (exec_tensor_proto(g->initializer[i], name, t, &e) != NN_OK)
				return NULL;
			return t->data;
		}
	return NULL;
}

static int check_conv_bn(const char *name, bool bias, int64_t k, int64_t pad, int64_t stride,
			 bool relu, size_t *bytes)
{
	struct onnx_model *m = load(name);
	CHECK(m, "load %s", name);
	struct conv_params p;
	memset(&p, 0, sizeof p);
	p.batch = BATCH, p.in_channels = 3, p.out_channels = 6, p.group = 1;
	p.win.nspatial = 2;
	for (int i = 0; i < 2; i++) {
		p.win.in[i] = 12, p.win.kernel[i] = k, p.win.strides[i] = stride;
		p.win.dilations[i] = 1, p.win.pads[i] = pad, p.win.pads[2 + i] = pad;
	}
	struct nn_err e;
	CHECK(conv_window_resolve(&p.win, CONV_PAD_NOTSET, false, &e) == NN_OK, "%s", e.message);
	int64_t ohw = p.win.out[0] * p.win.out[1];
	size_t nx = BATCH * 3 * 144, ny = (size_t)(BATCH * 6 * ohw);
	float *x = malloc(nx * sizeof *x), *y = malloc(ny * sizeof *y);
	float *y2 = malloc(ny * sizeof *y2), *c = malloc(ny * sizeof *c);
	CHECK(x && y && y2 && c, "oom");
	fill(x, nx, 17);
	int64_t shape[4] = {BATCH, 3, 12, 12};
	*bytes = run_model(m, 1, x, shape, 4, 0, y, ny);
	CHECK(*bytes > 0, "%s did not run", name);
	CHECK(run_model(m, 2, x, shape, 4, 0, y2, ny) > 0, "%s 2 threads", name);
	struct tensor tw, tb, ts, tbb, tmu, tvar;
	const float *w = init_of(m, "W", &tw), *b = bias ? init_of(m, "B", &tb) : NULL;
	const float *s = init_of(m, "s", &ts), *bb = init_of(m, "bb", &tbb);
	const float *mu = init_of(m, "mu", &tmu), *var = init_of(m, "var", &tvar);
	CHECK(w && (b || !bias) && s && bb && mu && var, "initializers of %s", name);
	conv_reference(&p, x, w, b, c);
	for (int64_t n = 0; n < BATCH; n++)
		for (int64_t o = 0; o < 6; o++)
			for (int64_t q = 0; q < ohw; q++) {
				size_t i = (size_t)((n * 6 + o) * ohw + q);
				double r = ((double)c[i] - mu[o]) / sqrt((double)var[o] + 1e-3) * s[o] +
					   bb[o];
				if (relu && r < 0.0)
					r = 0.0;
				CHECK(fabs(y[i] - r) <= 1e-5 * (1.0 + fabs(r)),
				      "%s: y[%zu] = %.9g, want %.9g", name, i, y[i], r);
			}
	CHECK(memcmp(y, y2, ny * sizeof *y) == 0, "%s: 2-thread output differs", name);
	tensor_free(&tw), tensor_free(&ts), tensor_free(&tbb), tensor_free(&tmu);
	tensor_free(&tvar);
	if (bias)
		tensor_free(&tb);
	free(x), free(y), free(y2), free(c);
	onnx_free(m);
	return 0;
}

static int case_conv_bn(void)
{
	size_t folded = 0, nobias = 0, shared = 0;
	size_t relu = 0;
	if (check_conv_bn("fusion_conv_bn.onnx", true, 1, 0, 1, false, &folded) ||
	    check_conv_bn("fusion_conv_nobias_bn.onnx", false, 3, 1, 2, false, &nobias) ||
	    check_conv_bn("fusion_conv_bn_shared.onnx", true, 1, 0, 1, false, &shared) ||
	    check_conv_bn("fusion_conv_bn_relu.onnx", true, 3, 1, 1, true, &relu))
		return 1;
	printf("plan bytes: conv+bn folded %zu, no bias %zu, conv output shared %zu, "
	       "conv+bn+relu %zu\n", folded, nobias, shared, relu);
	/* 1x1 convs need no scratch: folded, the Conv writes y directly (plus 6x3 + 6
	 * folded constants); unfolded, the Conv output and y are both buffers */
	CHECK(folded < shared, "folded plan %zu not below unfolded %zu", folded, shared);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	data_dir = argv[2];
	if (!strcmp(argv[1], "gelu"))
		return case_gelu();
	if (!strcmp(argv[1], "conv_bn"))
		return case_conv_bn();
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}
