/* Unit tests for engine/eval and engine/dataset on cases whose figures are
 * known by construction (data/make_eval_cases.py). Usage: test_eval CASE DATA_DIR */
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "dataset.h"
#include "eval.h"
#include "onnx_io.h"

static const char *data_dir = ".";

static char *case_path(const char *file)
{
	static char path[1024];
	snprintf(path, sizeof path, "%s/%s", data_dir, file);
	return path;
}

static int open_case(const char *file)
{
	return open(case_path(file), O_RDONLY | O_CLOEXEC);
}

static struct onnx_model *load_model(const char *file)
{
	struct onnx_model *m = NULL;
	struct nn_err e = {0};
	if (onnx_load_file(case_path(file), &m, &e) != NN_OK)
		fprintf(stderr, "%s: %s\n", file, e.message);
	return m;
}

/* Loads x (and y when given) for model m. */
static enum nn_status load_set(const struct onnx_model *m, const char *x, const char *y,
			       double scale, double holdout, struct eval_set *set, struct nn_err *e)
{
	int xfd = open_case(x), yfd = y ? open_case(y) : -1;
	enum nn_status st = eval_load_set(m, xfd, yfd, scale, holdout, EVAL_PART_HELD_OUT, set, e);
	close(xfd);
	if (yfd >= 0)
		close(yfd);
	return st;
}

static double num(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);
	return json_is_number(v) ? json_number_value(v) : NAN;
}

static int test_accuracy_and_fidelity_known_values(void)
{
	struct nn_err e = {0};
	struct onnx_model *id = load_model("eval_identity.onnx"), *half = load_model("eval_scaled.onnx");
	CHECK(id && half, "models load");
	struct eval_set set;
	CHECK(load_set(id, "eval_x.npy", "eval_y.npy", 1.0, 0, &set, &e) == NN_OK, "%s", e.message);
	struct eval_data data = {&set.inputs, set.labels};
	struct eval_opts opts = {.metrics = EVAL_ACCURACY | EVAL_FIDELITY};
	struct eval_outputs ref = {0};
	json_t *a = NULL, *b = NULL;
	CHECK(eval_model(id, &data, &opts, NULL, &ref, NULL, &a, &e) == NN_OK, "%s", e.message);
	CHECK(num(a, "samples") == 10 && num(a, "correct") == 7 && fabs(num(a, "accuracy") - 0.7) < 1e-12,
	      "identity: %s", json_dumps(a, 0));
	CHECK(!json_object_get(a, "agreement"), "no fidelity without a reference");
	CHECK(ref.n == 10 && ref.width == 4 && ref.values[0] == 0.9f, "outputs kept");
	CHECK(eval_model(half, &data, &opts, &ref, NULL, NULL, &b, &e) == NN_OK, "%s", e.message);
	/* y = x / 2: same argmax everywhere, |error| = x / 2, cosine exactly 1. */
	double mean_x = 0;
	for (int i = 0; i < 40; i++)
		mean_x += ((float *)set.inputs.data)[i];
	mean_x /= 40;
	CHECK(num(b, "agreement") == 1.0 && num(b, "accuracy") == 0.7, "%s", json_dumps(b, 0));
	CHECK(fabs(num(b, "max_abs_error") - 0.45) < 1e-6, "max abs %g", num(b, "max_abs_error"));
	CHECK(fabs(num(b, "mean_abs_error") - mean_x / 2) < 1e-6, "mean abs %g vs %g",
	      num(b, "mean_abs_error"), mean_x / 2);
	CHECK(fabs(num(b, "cosine_similarity") - 1.0) < 1e-9, "cosine %g",
	      num(b, "cosine_similarity"));
	json_decref(a);
	json_decref(b);
	eval_outputs_free(&ref);
	eval_set_free(&set);
	onnx_free(id);
	onnx_free(half);
	return 0;
}

static int test_uint8_scaled_and_reshaped(void)
{
	struct nn_err e = {0};
	struct onnx_model *id = load_model("eval_identity.onnx");
	CHECK(id, "model loads");
	struct eval_set set;
	CHECK(load_set(id, "eval_x_u8.npy", "eval_y.npy", 1.0 / 255, 0, &set, &e) == NN_OK, "%s",
	      e.message);
	CHECK(set.inputs.ndim == 2 && set.inputs.shape[0] == 10 && set.inputs.shape[1] == 4,
	      "[10,2,2] uint8 reshaped to the model's [N,4]");
	const float *v = set.inputs.data;
	CHECK(fabsf(v[0] - 0.9f) <= 1.0f / 255 && fabsf(v[1] - 0.2f) <= 1.0f / 255, "scaled: %g %g",
	      v[0], v[1]);
	struct eval_data data = {&set.inputs, set.labels};
	struct eval_opts opts = {.metrics = EVAL_ACCURACY};
	json_t *a = NULL;
	CHECK(eval_model(id, &data, &opts, NULL, NULL, NULL, &a, &e) == NN_OK, "%s", e.message);
	CHECK(num(a, "accuracy") == 0.7, "%s", json_dumps(a, 0));
	json_decref(a);
	eval_set_free(&set);
	onnx_free(id);
	return 0;
}

static int test_bad_data_refused_with_reason(void)
{
	struct nn_err e = {0};
	struct onnx_model *id = load_model("eval_identity.onnx");
	CHECK(id, "model loads");
	struct eval_set set;
	CHECK(load_set(id, "eval_x.npy", "eval_y_float.npy", 1, 0, &set, &e) == NN_EINVAL &&
		      strstr(e.message, "labels must be an integer array"),
	      "float labels: %s", e.message);
	CHECK(load_set(id, "eval_x.npy", "eval_y_short.npy", 1, 0, &set, &e) == NN_EINVAL &&
		      strstr(e.message, "mismatched N"),
	      "short labels: %s", e.message);
	CHECK(load_set(id, "npy_f32_2x3x4.npy", NULL, 1, 0, &set, &e) == NN_EINVAL &&
		      strstr(e.message, "per-sample size 12"),
	      "per-sample size: %s", e.message);
	CHECK(load_set(id, "npy_f32_truncated.npy", NULL, 1, 0, &set, &e) == NN_EINVAL &&
		      strstr(e.message, "truncated"),
	      "truncated: %s", e.message);
	CHECK(load_set(id, "eval_x.npy", NULL, 1e39, 0, &set, &e) == NN_EINVAL &&
		      strstr(e.message, "not a finite float32"),
	      "overflowing scale: %s", e.message);
	/* The submit-time check on the API's description of a dataset. */
	json_t *arrays = json_pack("{s:{s:s, s:[i,i]}, s:{s:s, s:[i]}}", "x", "dtype", "float32",
				   "shape", 10, 12, "y", "dtype", "int64", "shape", 10);
	json_t *input = json_pack("{s:s, s:[s,i,i]}", "name", "x", "shape", "N", 2, 2);
	char xin[64], yin[64];
	CHECK(dataset_check_fit(arrays, input, "eval.dataset", xin, yin, &e) == NN_EINVAL &&
		      strstr(e.message, "per-sample size 12") && !strcmp(e.field, "eval.dataset"),
	      "fit: %s (%s)", e.message, e.field);
	json_array_set_new(json_object_get(json_object_get(arrays, "x"), "shape"), 1,
			   json_integer(4));
	CHECK(dataset_check_fit(arrays, input, "eval.dataset", xin, yin, &e) == NN_OK &&
		      !strcmp(xin, "x") && !strcmp(yin, "y"),
	      "fits: %s", e.message);
	json_decref(arrays);
	json_decref(input);
	onnx_free(id);
	return 0;
}

static int test_array_roles_picked_by_name(void)
{
	struct nn_err e = {0};
	size_t xi;
	long yi;
	const char *a[] = {"images", "labels"};
	CHECK(dataset_pick_arrays(a, 2, "input", &xi, &yi, &e) == NN_OK && xi == 0 && yi == 1,
	      "the only non-label array is the input");
	const char *b[] = {"z", "x", "y"};
	CHECK(dataset_pick_arrays(b, 3, "input", &xi, &yi, &e) == NN_OK && xi == 1 && yi == 2,
	      "x among several");
	const char *c[] = {"x", "input", "target"};
	CHECK(dataset_pick_arrays(c, 3, "input", &xi, &yi, &e) == NN_OK && xi == 1 && yi == 2,
	      "the model's input name wins over x");
	const char *d[] = {"a", "b"};
	CHECK(dataset_pick_arrays(d, 2, "input", &xi, &yi, &e) == NN_EINVAL &&
		      strstr(e.message, "'a', 'b'"),
	      "ambiguous: %s", e.message);
	return 0;
}

static int test_holdout_split_deterministic(void)
{
	struct nn_err e = {0};
	int64_t *p1 = NULL, *p2 = NULL, kept = 0, kept2 = 0;
	CHECK(dataset_holdout(1000, 0.2, EVAL_HOLDOUT_SEED, &p1, &kept, &e) == NN_OK, "%s",
	      e.message);
	CHECK(dataset_holdout(1000, 0.2, EVAL_HOLDOUT_SEED, &p2, &kept2, &e) == NN_OK, "%s",
	      e.message);
	CHECK(kept == 800 && kept2 == 800, "800 kept, 200 held out (got %lld)", (long long)kept);
	char seen[1000] = {0};
	int moved = 0;
	for (int i = 0; i < 1000; i++) {
		CHECK(p1[i] == p2[i], "same permutation twice");
		CHECK(p1[i] >= 0 && p1[i] < 1000 && !seen[p1[i]], "a permutation");
		seen[p1[i]] = 1;
		moved += p1[i] != i;
	}
	CHECK(moved > 900, "shuffled (%d moved)", moved);
	/* The split of a 10-sample set: 2 held out, the rows the permutation names. */
	struct onnx_model *id = load_model("eval_identity.onnx");
	struct eval_set whole, part;
	int64_t *p10 = NULL, k10;
	CHECK(id && load_set(id, "eval_x.npy", "eval_y.npy", 1, 0, &whole, &e) == NN_OK, "load");
	CHECK(load_set(id, "eval_x.npy", "eval_y.npy", 1, 0.2, &part, &e) == NN_OK, "%s", e.message);
	CHECK(dataset_holdout(10, 0.2, EVAL_HOLDOUT_SEED, &p10, &k10, &e) == NN_OK && k10 == 8, "10");
	CHECK(part.inputs.shape[0] == 2, "2 held out of 10");
	for (int i = 0; i < 2; i++) {
		CHECK(!memcmp((float *)part.inputs.data + 4 * i,
			      (float *)whole.inputs.data + 4 * p10[8 + i], 4 * sizeof(float)),
		      "row %d is sample %lld", i, (long long)p10[8 + i]);
		CHECK(part.labels[i] == whole.labels[p10[8 + i]], "label %d", i);
	}
	CHECK(dataset_holdout(1, 0.5, 1, &p2, &kept, &e) == NN_EINVAL, "one sample cannot split");
	free(p1);
	free(p2);
	free(p10);
	eval_set_free(&whole);
	eval_set_free(&part);
	onnx_free(id);
	return 0;
}

static int test_size_counts_zero_points_as_zeros(void)
{
	struct nn_err e = {0};
	struct onnx_model *m = load_model("eval_dq.onnx");
	CHECK(m, "model loads");
	struct eval_opts opts = {.metrics = EVAL_SIZE};
	json_t *a = NULL;
	CHECK(eval_model(m, NULL, &opts, NULL, NULL, NULL, &a, &e) == NN_OK, "%s", e.message);
	struct stat sb;
	CHECK(stat(case_path("eval_dq.onnx"), &sb) == 0, "stat");
	/* 16 weights (6 differ from the zero point) + scale + zero point. */
	CHECK(num(a, "parameters") == 18 && num(a, "nonzeros") == 8, "%s", json_dumps(a, 0));
	CHECK(num(a, "bytes") == (double)sb.st_size, "bytes %g vs file %lld", num(a, "bytes"),
	      (long long)sb.st_size);
	CHECK(num(a, "bytes_zstd") > 0, "zstd bytes");
	CHECK(!json_object_get(a, "accuracy") && !json_object_get(a, "latency_ms"),
	      "only what was asked");
	json_decref(a);
	onnx_free(m);
	return 0;
}

/* A batch that does not divide the data (padded last batch) and executor
 * threads give the same figures and outputs as one batch. */
static int test_batches_and_threads_agree(void)
{
	struct nn_err e = {0};
	struct onnx_model *m = load_model("eval_dq.onnx");
	struct eval_set set;
	CHECK(m && load_set(m, "eval_x.npy", "eval_y.npy", 1, 0, &set, &e) == NN_OK, "load");
	struct eval_data data = {&set.inputs, set.labels};
	struct eval_outputs o1 = {0}, o2 = {0};
	json_t *a = NULL, *b = NULL;
	struct eval_opts one = {.metrics = EVAL_ALL, .latency_seconds = 0.01};
	struct eval_opts split = {.metrics = EVAL_ALL, .batch = 3, .threads = 2,
				  .latency_seconds = 0.01};
	CHECK(eval_model(m, &data, &one, NULL, &o1, NULL, &a, &e) == NN_OK, "%s", e.message);
	CHECK(eval_model(m, &data, &split, &o1, &o2, NULL, &b, &e) == NN_OK, "%s", e.message);
	CHECK(!memcmp(o1.values, o2.values, sizeof(float) * 40), "identical outputs");
	CHECK(num(a, "accuracy") == num(b, "accuracy") && num(b, "agreement") == 1 &&
		      num(b, "max_abs_error") == 0,
	      "%s", json_dumps(b, 0));
	CHECK(num(a, "throughput_batch") == 10 && num(b, "throughput_batch") == 3, "batches");
	CHECK(num(b, "latency_ms") > 0 && num(b, "throughput") > 0 && num(b, "memory_bytes") > 0,
	      "timings present");
	json_decref(a);
	json_decref(b);
	eval_outputs_free(&o1);
	eval_outputs_free(&o2);
	eval_set_free(&set);
	onnx_free(m);
	return 0;
}

static int test_metric_names_parsed(void)
{
	struct nn_err e = {0};
	unsigned bits = 0;
	json_t *ok = json_pack("[s,s]", "size", "accuracy");
	json_t *bad = json_pack("[s]", "speed");
	json_t *empty = json_array();
	CHECK(eval_parse_metrics(NULL, "eval.metrics", &bits, &e) == NN_OK && bits == EVAL_ALL,
	      "absent = all");
	CHECK(eval_parse_metrics(ok, "eval.metrics", &bits, &e) == NN_OK &&
		      bits == (EVAL_SIZE | EVAL_ACCURACY),
	      "subset");
	CHECK(eval_parse_metrics(bad, "eval.metrics", &bits, &e) == NN_EINVAL &&
		      strstr(e.message, "unknown metric \"speed\"") &&
		      !strcmp(e.field, "eval.metrics"),
	      "%s", e.message);
	CHECK(eval_parse_metrics(empty, "eval.metrics", &bits, &e) == NN_EINVAL, "empty list");
	json_decref(ok);
	json_decref(bad);
	json_decref(empty);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: test_eval CASE [DATA_DIR]\n");
		return 2;
	}
	if (argc > 2)
		data_dir = argv[2];
	struct {
		const char *name;
		int (*fn)(void);
	} cases[] = {
		{"accuracy_and_fidelity_known_values", test_accuracy_and_fidelity_known_values},
		{"uint8_scaled_and_reshaped", test_uint8_scaled_and_reshaped},
		{"bad_data_refused_with_reason", test_bad_data_refused_with_reason},
		{"array_roles_picked_by_name", test_array_roles_picked_by_name},
		{"holdout_split_deterministic", test_holdout_split_deterministic},
		{"size_counts_zero_points_as_zeros", test_size_counts_zero_points_as_zeros},
		{"batches_and_threads_agree", test_batches_and_threads_agree},
		{"metric_names_parsed", test_metric_names_parsed},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (!strcmp(argv[1], cases[i].name))
			return cases[i].fn();
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}
