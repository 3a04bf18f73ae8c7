/* train_loss: values and gradients against PyTorch (autograd in float64 on the
 * same float32 inputs, data/train_loss_ref.json written by
 * data/make_optim_ref.py), extreme logits, top-1 and refusals.
 * Usage: test_train_loss CASE DATA_DIR */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "check.h"
#include "train_loss.h"

static const char *data_dir = ".";

static json_t *load_ref(void)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/train_loss_ref.json", data_dir);
	json_error_t je;
	json_t *j = json_load_file(path, 0, &je);
	if (!j)
		fprintf(stderr, "%s: %s (line %d)\n", path, je.text, je.line);
	return j;
}

/* float32 / int64 copies of a JSON array */
static float *floats(const json_t *a)
{
	size_t n = json_array_size(a);
	float *v = calloc(n ? n : 1, sizeof *v);
	for (size_t i = 0; v && i < n; i++)
		v[i] = (float)json_number_value(json_array_get(a, i));
	return v;
}

static int64_t *ints(const json_t *a)
{
	if (!a)
		return NULL;
	size_t n = json_array_size(a);
	int64_t *v = calloc(n ? n : 1, sizeof *v);
	for (size_t i = 0; v && i < n; i++)
		v[i] = json_integer_value(json_array_get(a, i));
	return v;
}

/* 1e-5 relative, with an absolute floor of 1e-12 for entries that are 0 in
 * one and a float denormal / double residue in the other. */
static int close_rel(double got, double want)
{
	return fabs(got - want) <= 1e-5 * fabs(want) + 1e-12;
}

static int test_matches_pytorch(void)
{
	json_t *ref = load_ref();
	CHECK(ref, "no reference file");
	json_t *cases = json_object_get(ref, "cases"), *c;
	size_t idx;
	int checked = 0;
	json_array_foreach(cases, idx, c) {
		const char *name = json_string_value(json_object_get(c, "name"));
		const char *kind = json_string_value(json_object_get(c, "kind"));
		double want = json_number_value(json_object_get(c, "loss")), loss = NAN, loss2 = NAN;
		json_t *gref = json_object_get(c, "grad");
		size_t count = json_array_size(gref);
		float *grad = calloc(count, sizeof *grad);
		struct nn_err e = {0};
		enum nn_status st;
		if (!strcmp(kind, "ce")) {
			int64_t n = json_integer_value(json_object_get(c, "n"));
			int64_t k = json_integer_value(json_object_get(c, "k"));
			float *x = floats(json_object_get(c, "logits"));
			int64_t *y = ints(json_object_get(c, "labels"));
			st = loss_cross_entropy(x, y, n, k, grad, &loss, &e);
			if (st == NN_OK) /* value only: same loss, no gradient written */
				st = loss_cross_entropy(x, y, n, k, NULL, &loss2, &e);
			free(x);
			free(y);
		} else if (!strcmp(kind, "kd")) {
			int64_t n = json_integer_value(json_object_get(c, "n"));
			int64_t k = json_integer_value(json_object_get(c, "k"));
			float *s = floats(json_object_get(c, "student"));
			float *t = floats(json_object_get(c, "teacher"));
			int64_t *y = ints(json_object_get(c, "labels"));
			double temp = json_number_value(json_object_get(c, "T"));
			double alpha = json_number_value(json_object_get(c, "alpha"));
			st = loss_distill(s, t, y, n, k, temp, alpha, grad, &loss, &e);
			if (st == NN_OK)
				st = loss_distill(s, t, y, n, k, temp, alpha, NULL, &loss2, &e);
			free(s);
			free(t);
			free(y);
		} else {
			float *a = floats(json_object_get(c, "a"));
			float *b = floats(json_object_get(c, "b"));
			double w = json_number_value(json_object_get(c, "weight"));
			st = loss_mse(a, b, count, w, grad, &loss, &e);
			if (st == NN_OK)
				st = loss_mse(a, b, count, w, NULL, &loss2, &e);
			free(a);
			free(b);
		}
		CHECK(st == NN_OK, "%s: %s", name, e.message);
		CHECK(isfinite(loss) && close_rel(loss, want), "%s: loss %.17g, PyTorch %.17g", name,
		      loss, want);
		CHECK(loss2 == loss, "%s: value-only loss %.17g differs from %.17g", name, loss2, loss);
		for (size_t i = 0; i < count; i++) {
			double gw = json_number_value(json_array_get(gref, i));
			CHECK(isfinite(grad[i]) && close_rel(grad[i], gw),
			      "%s: grad[%zu] = %.9g, PyTorch %.17g", name, i, (double)grad[i], gw);
		}
		free(grad);
		checked++;
	}
	json_decref(ref);
	CHECK(checked >= 10, "only %d reference cases", checked);
	printf("%d loss cases match PyTorch to 1e-5\n", checked);
	return 0;
}

/* Logits at the float range's edge still give finite losses and gradients;
 * a gradient row sums to 0 (softmax minus one-hot / minus teacher softmax). */
static int test_extreme_logits_finite(void)
{
	const int64_t n = 3, k = 4;
	float x[12] = {3e38f, -3e38f, 0, 1e4f, -1e30f, -1e30f, -1e30f, -1e30f,
		       1e3f, 1e3f - 1e-3f, -1e3f, 999.0f};
	float t[12] = {-1e4f, 1e4f, 5, 0, 1e30f, 0, 0, -1e30f, 0, 0, 0, 0};
	int64_t y[3] = {1, 2, 3};
	float g[12];
	double loss;
	struct nn_err e = {0};
	CHECK(loss_cross_entropy(x, y, n, k, g, &loss, &e) == NN_OK, "%s", e.message);
	/* row 0: label 1 is 6e38 below the max; the other rows add O(1): mean 2e38 */
	CHECK(isfinite(loss) && fabs(loss - 2e38) / 2e38 < 1e-6, "loss %g", loss);
	for (int64_t i = 0; i < n; i++) {
		double sum = 0;
		for (int64_t j = 0; j < k; j++) {
			CHECK(isfinite(g[i * k + j]), "grad[%lld][%lld] = %g", (long long)i, (long long)j,
			      (double)g[i * k + j]);
			sum += g[i * k + j];
		}
		CHECK(fabs(sum) < 1e-6, "row %lld of the gradient sums to %g", (long long)i, sum);
	}
	/* row 0: softmax is one-hot on class 0, label 1: gradient (1, -1, 0, 0)/3 */
	CHECK(g[0] == 1.0f / 3 && g[1] == -1.0f / 3 && g[2] == 0 && g[3] == 0,
	      "row 0 gradient %g %g %g %g", (double)g[0], (double)g[1], (double)g[2], (double)g[3]);
	for (double temp = 0.5; temp <= 20; temp *= 2) {
		CHECK(loss_distill(x, t, y, n, k, temp, 0.9, g, &loss, &e) == NN_OK, "%s", e.message);
		CHECK(isfinite(loss) && loss >= 0, "T=%g: distillation loss %g", temp, loss);
		for (int64_t i = 0; i < n * k; i++)
			CHECK(isfinite(g[i]), "T=%g: grad[%lld] = %g", temp, (long long)i, (double)g[i]);
	}
	/* identical teacher and student, alpha 1: KL is exactly 0, gradient 0 */
	CHECK(loss_distill(x, x, NULL, n, k, 4.0, 1.0, g, &loss, &e) == NN_OK, "%s", e.message);
	CHECK(loss == 0, "KL(p || p) = %g", loss);
	for (int64_t i = 0; i < n * k; i++)
		CHECK(g[i] == 0, "grad[%lld] = %g for identical logits", (long long)i, (double)g[i]);
	return 0;
}

/* Central differences of the float64 loss agree with the analytic gradient. */
static int test_gradient_matches_central_differences(void)
{
	enum { N = 5, K = 7 };
	float s[N * K], t[N * K], g[N * K], gm[N * K];
	int64_t y[N];
	for (int i = 0; i < N * K; i++) {
		s[i] = (float)(3 * sin(1.7 * i + 0.3));
		t[i] = (float)(4 * cos(0.9 * i));
	}
	for (int i = 0; i < N; i++)
		y[i] = (i * 3) % K;
	struct nn_err e = {0};
	double loss, lp, lm;
	CHECK(loss_distill(s, t, y, N, K, 3.0, 0.6, g, &loss, &e) == NN_OK, "%s", e.message);
	CHECK(loss_mse(s, t, N * K, 0.7, gm, &loss, &e) == NN_OK, "%s", e.message);
	for (int i = 0; i < N * K; i++) {
		float keep = s[i];
		const float h = 1e-2f;
		s[i] = keep + h;
		loss_distill(s, t, y, N, K, 3.0, 0.6, NULL, &lp, &e);
		s[i] = keep - h;
		loss_distill(s, t, y, N, K, 3.0, 0.6, NULL, &lm, &e);
		double fd = (lp - lm) / (2.0 * h);
		/* central differences in float32 inputs: O(h^2) error, tolerance 1e-4 */
		CHECK(fabs(fd - g[i]) <= 1e-4 * (fabs(fd) + 1e-2), "distill grad[%d] %g vs fd %g", i,
		      (double)g[i], fd);
		s[i] = keep + h;
		loss_mse(s, t, N * K, 0.7, NULL, &lp, &e);
		s[i] = keep - h;
		loss_mse(s, t, N * K, 0.7, NULL, &lm, &e);
		s[i] = keep;
		fd = (lp - lm) / (2.0 * h);
		CHECK(fabs(fd - gm[i]) <= 1e-4 * (fabs(fd) + 1e-2), "mse grad[%d] %g vs fd %g", i,
		      (double)gm[i], fd);
	}
	return 0;
}

static int test_top1_ties_nan_and_range(void)
{
	float x[] = {1, 3, 3, 0,          /* tie: first max (1) wins */
		     NAN, 2, 1, 0,        /* NaN never wins: 1 */
		     -1, -2, -3, -0.5f,   /* 3 */
		     5, 5, 5, 5};         /* all equal: 0 */
	int64_t right[] = {1, 1, 3, 0}, wrong[] = {2, 0, 0, 1}, bad[] = {-1, 9, 3, 0};
	CHECK(loss_top1_correct(x, right, 4, 4) == 4, "expected 4 correct");
	CHECK(loss_top1_correct(x, wrong, 4, 4) == 0, "expected 0 correct");
	CHECK(loss_top1_correct(x, bad, 4, 4) == 2, "labels outside [0, k) never count");
	return 0;
}

static int test_rejections_say_why(void)
{
	float x[6] = {0, 1, 2, 3, 4, 5};
	int64_t y[2] = {0, 3};
	double loss = -1;
	struct nn_err e = {0};
	CHECK(loss_cross_entropy(x, y, 2, 3, NULL, &loss, &e) == NN_EINVAL, "label 3 of 3 accepted");
	CHECK(strstr(e.message, "label 3 of sample 1") && !strcmp(e.code, "invalid_dataset"),
	      "message: %s", e.message);
	CHECK(loss == -1, "loss written on failure");
	CHECK(loss_cross_entropy(x, y, 0, 3, NULL, &loss, &e) == NN_EINVAL, "n = 0 accepted");
	CHECK(loss_distill(x, x, NULL, 2, 3, 2.0, 0.5, NULL, &loss, &e) == NN_EINVAL,
	      "alpha 0.5 without labels accepted");
	CHECK(strstr(e.message, "labels") != NULL, "message: %s", e.message);
	CHECK(loss_distill(x, x, NULL, 2, 3, 0.0, 1.0, NULL, &loss, &e) == NN_EINVAL, "T = 0 accepted");
	CHECK(!strcmp(e.field, "temperature"), "field %s", e.field);
	CHECK(loss_distill(x, x, NULL, 2, 3, NAN, 1.0, NULL, &loss, &e) == NN_EINVAL, "T NaN accepted");
	CHECK(loss_distill(x, x, NULL, 2, 3, 2.0, 1.5, NULL, &loss, &e) == NN_EINVAL,
	      "alpha 1.5 accepted");
	CHECK(!strcmp(e.field, "alpha"), "field %s", e.field);
	CHECK(loss_distill(x, x, NULL, 2, 3, 2.0, 1.0, NULL, &loss, &e) == NN_OK && loss == 0,
	      "alpha 1 without labels refused: %s", e.message);
	CHECK(loss_mse(x, x, 0, 1.0, NULL, &loss, &e) == NN_EINVAL, "MSE over 0 elements accepted");
	CHECK(loss_mse(x, x, 6, -1.0, NULL, &loss, &e) == NN_EINVAL, "negative weight accepted");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: test_train_loss CASE [DATA_DIR]\n");
		return 2;
	}
	if (argc > 2)
		data_dir = argv[2];
	struct {
		const char *name;
		int (*fn)(void);
	} cases[] = {
		{"matches_pytorch", test_matches_pytorch},
		{"extreme_logits_finite", test_extreme_logits_finite},
		{"gradient_matches_central_differences", test_gradient_matches_central_differences},
		{"top1_ties_nan_and_range", test_top1_ties_nan_and_range},
		{"rejections_say_why", test_rejections_say_why},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (!strcmp(argv[1], cases[i].name))
			return cases[i].fn();
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}
