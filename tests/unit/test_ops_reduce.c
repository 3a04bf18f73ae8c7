/* engine/ops_math.c Reduce* and Cast edge cases the ONNX conformance cases do
 * not reach (data/make_reduce_models.py): opset-18 axes as an input,
 * noop_with_empty_axes, NaN in ReduceMax, reductions over no elements, and
 * Cast of out-of-range and NaN floats (saturating, defined). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "exec.h"
#include "onnx_io.h"

static const char *data_dir = ".";

/* Compiles `name` at batch 2 and runs it on x; outputs in out[]. */
static struct exec_plan *run(const char *name, const float *x, int64_t cols,
			     struct onnx_model **m, struct tensor *out, size_t n_out)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", data_dir, name);
	struct nn_err e;
	struct exec_plan *p = NULL;
	if (onnx_load_file(path, m, &e) != NN_OK || exec_compile(*m, 2, &p, &e) != NN_OK) {
		fprintf(stderr, "%s: %s\n", name, e.message);
		return NULL;
	}
	struct tensor in;
	int64_t shape[2] = {2, cols};
	tensor_view(&in, DT_FLOAT, 2, shape, (void *)x);
	if (exec_output_count(p) != n_out || exec_run(p, &in, 1, out, n_out, &e) != NN_OK) {
		fprintf(stderr, "%s run: %s\n", name, e.message);
		exec_free(p);
		return NULL;
	}
	return p;
}

static int case_opset18(void)
{
	struct onnx_model *m = NULL;
	struct tensor out[2];
	const float x[6] = {1.0f, 5.0f, -2.0f, 3.0f, NAN, 4.0f};
	struct exec_plan *p = run("reduce_opset18.onnx", x, 3, &m, out, 2);
	CHECK(p, "run");
	const float *ymax = out[0].data, *ynoop = out[1].data;
	CHECK(out[0].ndim == 1 && out[0].shape[0] == 2, "ReduceMax keepdims 0: rank %d", out[0].ndim);
	CHECK(ymax[0] == 5.0f && isnan(ymax[1]), "ReduceMax rows: %g %g (NaN propagates)", ymax[0],
	      ymax[1]);
	CHECK(out[1].ndim == 2 && out[1].shape[1] == 3, "noop keeps the shape");
	for (int i = 0; i < 6; i++)
		CHECK(ynoop[i] == x[i] || (isnan(ynoop[i]) && isnan(x[i])), "noop element %d", i);
	exec_free(p);
	onnx_free(m);
	return 0;
}

static int case_empty(void)
{
	struct onnx_model *m = NULL;
	struct tensor out[4];
	float dummy = 0.0f;
	struct exec_plan *p = run("reduce_empty.onnx", &dummy, 0, &m, out, 4);
	CHECK(p, "run");
	const float *s = out[0].data, *mean = out[1].data, *mx = out[2].data, *mn = out[3].data;
	CHECK(out[0].ndim == 2 && out[0].shape[0] == 2 && out[0].shape[1] == 1, "sum shape");
	for (int i = 0; i < 2; i++) {
		CHECK(s[i] == 0.0f, "empty ReduceSum %g", s[i]);
		CHECK(isnan(mean[i]), "empty ReduceMean %g", mean[i]);
		CHECK(isinf(mx[i]) && mx[i] < 0, "empty ReduceMax %g", mx[i]);
		CHECK(isinf(mn[i]) && mn[i] > 0, "empty ReduceMin %g", mn[i]);
	}
	exec_free(p);
	onnx_free(m);
	return 0;
}

static int case_cast(void)
{
	struct onnx_model *m = NULL;
	struct tensor out[3];
	const float x[8] = {-5.0f, 300.0f, NAN, 3.7f, -200.0f, 127.9f, 0.0f, -0.5f};
	struct exec_plan *p = run("cast_saturate.onnx", x, 4, &m, out, 3);
	CHECK(p, "run");
	const uint8_t *u8 = out[0].data, *b = out[2].data;
	const int8_t *i8 = out[1].data;
	const uint8_t want_u8[8] = {0, 255, 0, 3, 0, 127, 0, 0};
	const int8_t want_i8[8] = {-5, 127, 0, 3, -128, 127, 0, 0};
	const uint8_t want_b[8] = {1, 1, 1, 1, 1, 1, 0, 1};
	for (int i = 0; i < 8; i++) {
		CHECK(u8[i] == want_u8[i], "uint8 of %g: %u, want %u", x[i], u8[i], want_u8[i]);
		CHECK(i8[i] == want_i8[i], "int8 of %g: %d, want %d", x[i], i8[i], want_i8[i]);
		CHECK(b[i] == want_b[i], "bool of %g: %u, want %u", x[i], b[i], want_b[i]);
	}
	exec_free(p);
	onnx_free(m);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	data_dir = argv[2];
	if (!strcmp(argv[1], "opset18"))
		return case_opset18();
	if (!strcmp(argv[1], "empty"))
		return case_empty();
	if (!strcmp(argv[1], "cast"))
		return case_cast();
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}
