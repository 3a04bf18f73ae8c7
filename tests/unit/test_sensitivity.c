/* Unit tests for engine/sensitivity on the identity model of
 * data/make_eval_cases.py, whose trials have known outcomes: I4 has 12 zeros
 * of 16, so pruning 50% or 75% changes nothing, and 80% zeroes the first
 * diagonal weight (ties go to the lowest index), which costs sample 0.
 * Usage: test_sensitivity CASE DATA_DIR */
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "eval.h"
#include "onnx_io.h"
#include "sensitivity.h"

static const char *data_dir = ".";

static struct onnx_model *load(const char *file)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", data_dir, file);
	struct onnx_model *m = NULL;
	struct nn_err e = {0};
	if (onnx_load_file(path, &m, &e) != NN_OK)
		fprintf(stderr, "%s: %s\n", file, e.message);
	return m;
}

static int open_case(const char *file)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", data_dir, file);
	return open(path, O_RDONLY | O_CLOEXEC);
}

static double num(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);
	return json_is_number(v) ? json_number_value(v) : NAN;
}

static int run(bool with_labels, json_t **out)
{
	struct nn_err e = {0};
	struct onnx_model *m = load("eval_identity.onnx");
	CHECK(m, "model");
	int xfd = open_case("eval_x.npy"), yfd = with_labels ? open_case("eval_y.npy") : -1;
	struct eval_set set;
	CHECK(eval_load_set(m, xfd, yfd, 1, 0, EVAL_PART_HELD_OUT, &set, &e) == NN_OK, "%s",
	      e.message);
	close(xfd);
	if (yfd >= 0)
		close(yfd);
	struct onnx_model *before = load("eval_identity.onnx");
	json_t *step = json_pack("{s:s, s:[f,f,f], s:f}", "op", "sensitivity", "sparsities", 0.5,
				 0.75, 0.8, "budget", 0.05);
	struct sensitivity_params p;
	CHECK(sensitivity_params_parse(step, 0, &p, &e) == NN_OK, "%s", e.message);
	struct eval_data data = {&set.inputs, set.labels};
	struct step_ctx ctx = {.eval = &data};
	CHECK(sensitivity_run(m, &p, &ctx, out, &e) == NN_OK, "%s", e.message);
	/* The model leaves the step as it came in. */
	const Onnx__TensorProto *w = m->proto->graph->initializer[0];
	const Onnx__TensorProto *w0 = before->proto->graph->initializer[0];
	CHECK(w->raw_data.len == w0->raw_data.len &&
		      !memcmp(w->raw_data.data, w0->raw_data.data, w->raw_data.len),
	      "weights restored");
	json_decref(step);
	eval_set_free(&set);
	onnx_free(m);
	onnx_free(before);
	return 0;
}

static int test_known_trials_and_suggestion(void)
{
	json_t *out = NULL;
	if (run(true, &out))
		return 1;
	CHECK(!strcmp(json_string_value(json_object_get(out, "measure")), "accuracy"), "measure");
	CHECK(num(out, "baseline") == 0.7, "baseline %g", num(out, "baseline"));
	json_t *layer = json_array_get(json_object_get(out, "layers"), 0);
	json_t *res = json_object_get(layer, "results");
	CHECK(json_array_size(res) == 3, "three trials");
	CHECK(num(json_array_get(res, 0), "value") == 0.7 && num(json_array_get(res, 1), "value") == 0.7,
	      "50%% and 75%% prune only zeros");
	CHECK(fabs(num(json_array_get(res, 2), "value") - 0.6) < 1e-12 &&
		      fabs(num(json_array_get(res, 2), "drop") - 0.1) < 1e-12,
	      "80%% costs sample 0: %s", json_dumps(res, 0));
	CHECK(num(layer, "suggested_sparsity") == 0.75, "largest level within 0.05");
	CHECK(num(json_object_get(json_object_get(out, "suggested"), "layers"), "w") == 0.75,
	      "suggested layers object");
	json_decref(out);
	return 0;
}

static int test_agreement_without_labels(void)
{
	json_t *out = NULL;
	if (run(false, &out))
		return 1;
	CHECK(!strcmp(json_string_value(json_object_get(out, "measure")), "agreement"), "measure");
	CHECK(num(out, "baseline") == 1.0, "baseline agreement 1");
	json_t *res = json_object_get(json_array_get(json_object_get(out, "layers"), 0), "results");
	/* Zeroing w[0][0] flips the 3 samples whose argmax was 0 (0, 4, 8). */
	CHECK(fabs(num(json_array_get(res, 2), "value") - 0.7) < 1e-12, "%s", json_dumps(res, 0));
	json_decref(out);
	return 0;
}

static int test_refusals(void)
{
	struct nn_err e = {0};
	struct sensitivity_params p;
	json_t *bad = json_pack("{s:s, s:[f,f]}", "op", "sensitivity", "sparsities", 0.9, 0.5);
	CHECK(sensitivity_params_parse(bad, 1, &p, &e) == NN_EINVAL &&
		      !strcmp(e.field, "steps[1].sparsities"),
	      "decreasing levels: %s", e.message);
	json_decref(bad);
	bad = json_pack("{s:s, s:[s]}", "op", "sensitivity", "layers", "nope");
	CHECK(sensitivity_params_parse(bad, 0, &p, &e) == NN_OK, "%s", e.message);
	struct onnx_model *m = load("eval_identity.onnx");
	json_t *out = NULL;
	CHECK(sensitivity_run(m, &p, NULL, &out, &e) == NN_EINVAL &&
		      strstr(e.message, "evaluation data"),
	      "no data: %s", e.message);
	json_decref(bad);
	onnx_free(m);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	if (argc > 2)
		data_dir = argv[2];
	if (!strcmp(argv[1], "known_trials_and_suggestion"))
		return test_known_trials_and_suggestion();
	if (!strcmp(argv[1], "agreement_without_labels"))
		return test_agreement_without_labels();
	if (!strcmp(argv[1], "refusals"))
		return test_refusals();
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}
