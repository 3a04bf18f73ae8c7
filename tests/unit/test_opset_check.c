/* Unit tests for the summary's "opset_upgrade" verdict (engine/onnx_io.c) and
 * the quantize-step check spec_validate builds on it (engine/spec.c): the
 * verdict computed on the weightless skeleton agrees with onnx_raise_opset on
 * the loaded model, and a quantize step on a model that cannot be raised to
 * opset 13 is a spec error naming the step, never a failed job.
 * Models: data/make_opset_cases.py (opset_quant_*) and make_onnx_cases.py.
 * Usage: test_opset_check CASE DATA_DIR */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "onnx_io.h"
#include "spec.h"

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

static json_t *summarize(const char *name)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", data_dir, name);
	int fd = open(path, O_RDONLY);
	if (fd < 0) {
		perror(path);
		return NULL;
	}
	json_t *s = NULL;
	struct nn_err e = { 0 };
	if (onnx_summarize_fd(fd, &s, &e) != NN_OK)
		fprintf(stderr, "%s: %s\n", name, e.message);
	close(fd);
	return s;
}

/* opset_upgrade["13"] of a summary; NULL when the key is missing. */
static const json_t *verdict13(const json_t *s)
{
	return json_object_get(json_object_get(s, "opset_upgrade"), "13");
}

static int check_refusal(const char *model, const char *node, const char *op,
			 const char *why_part)
{
	json_t *s = summarize(model);
	CHECK(s, "%s: no summary", model);
	const json_t *v = verdict13(s);
	CHECK(json_is_object(v), "%s: opset_upgrade[\"13\"] should be an object", model);
	CHECK(json_object_size(json_object_get(s, "opset_upgrade")) == 2, "targets 13 and 21");
	const char *got_node = json_string_value(json_object_get(v, "node"));
	const char *got_op = json_string_value(json_object_get(v, "op"));
	const char *msg = json_string_value(json_object_get(v, "message"));
	CHECK(got_node && !strcmp(got_node, node), "%s: node %s, want %s", model,
	      got_node ? got_node : "(null)", node);
	CHECK(got_op && !strcmp(got_op, op), "%s: op %s, want %s", model,
	      got_op ? got_op : "(null)", op);
	CHECK(msg && strstr(msg, why_part), "%s: message '%s' lacks '%s'", model,
	      msg ? msg : "(null)", why_part);
	json_decref(s);
	return 0;
}

static int test_reject_softmax4d(void)
{
	return check_refusal("opset_quant_reject_softmax4d_11.onnx", "sm_channels", "Softmax",
			     "coerces its input to 2-D around a non-last axis");
}

static int test_reject_in_subgraph(void)
{
	return check_refusal("opset_quant_reject_if_11.onnx", "branch_logsoftmax", "LogSoftmax",
			     "unknown rank");
}

static int test_convertible_null(void)
{
	/* opset 11 with conversions; opset 13 already; opset 7 with BatchNorm */
	static const char *const models[] = { "opset_quant_unsqueeze_11.onnx", "steps_mlp.onnx",
					      "opset_batchnorm_7.onnx", "mlp_raw.onnx" };
	for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
		json_t *s = summarize(models[i]);
		CHECK(s, "%s: no summary", models[i]);
		const json_t *v = verdict13(s);
		CHECK(v && json_is_null(v), "%s: opset_upgrade[\"13\"] should be null", models[i]);
		json_decref(s);
	}
	return 0;
}

/* The skeleton verdict equals onnx_raise_opset's on every model of the data
 * dir: null exactly when raising to 13 succeeds; otherwise the same node
 * (named in raise's message) and the same reason. */
static int test_summary_matches_raise(void)
{
	DIR *d = opendir(data_dir);
	CHECK(d, "cannot open %s", data_dir);
	struct dirent *de;
	int checked = 0, refused = 0;
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		if (len < 6 || strcmp(de->d_name + len - 5, ".onnx"))
			continue;
		char path[1024];
		snprintf(path, sizeof path, "%s/%s", data_dir, de->d_name);
		struct onnx_model *m = NULL;
		struct nn_err e = { 0 };
		if (onnx_load_file(path, &m, &e) != NN_OK)
			continue; /* external data etc.: no summary either */
		json_t *s = summarize(de->d_name);
		if (!s) {
			onnx_free(m);
			closedir(d);
			CHECK(0, "%s loads but has no summary", de->d_name);
		}
		const json_t *v = verdict13(s);
		enum nn_status st = onnx_raise_opset(m, 13, &e);
		int bad = 0;
		if (st == NN_OK) {
			bad = !json_is_null(v);
		} else {
			const char *node = json_string_value(json_object_get(v, "node"));
			const char *msg = json_string_value(json_object_get(v, "message"));
			char quoted[300];
			snprintf(quoted, sizeof quoted, "'%s'", node ? node : "");
			bad = !json_is_object(v) || !msg || !strstr(e.message, msg) ||
			      (node && !strstr(e.message, quoted));
			refused++;
		}
		if (bad) {
			char *dump = json_dumps(v, JSON_ENCODE_ANY);
			fprintf(stderr, "%s: raise says '%s', summary says %s\n", de->d_name,
				st == NN_OK ? "ok" : e.message, dump ? dump : "(missing)");
			free(dump);
		}
		json_decref(s);
		onnx_free(m);
		if (bad) {
			closedir(d);
			CHECK(0, "verdicts differ");
		}
		checked++;
	}
	closedir(d);
	CHECK(checked >= 10 && refused >= 3, "%d models checked, %d refused", checked, refused);
	return 0;
}

static int expect_spec(const json_t *summary, const char *spec_text, enum nn_status want,
		       const char *field, const char *const *parts)
{
	json_t *spec = json_loads(spec_text, 0, NULL);
	CHECK(spec, "bad spec json %s", spec_text);
	struct nn_err e = { 0 };
	enum nn_status st = spec_validate(spec, summary, &e);
	json_decref(spec);
	CHECK(st == want, "%s: status %d, want %d (%s)", spec_text, (int)st, (int)want,
	      e.message);
	if (want == NN_OK)
		return 0;
	CHECK(!strcmp(e.code, "invalid_spec"), "%s: code %s", spec_text, e.code);
	CHECK(!strcmp(e.field, field), "%s: field %s, want %s", spec_text, e.field, field);
	for (; parts && *parts; parts++)
		CHECK(strstr(e.message, *parts), "%s: message '%s' lacks '%s'", spec_text,
		      e.message, *parts);
	return 0;
}

#define QUANT "{\"op\":\"quantize\",\"scheme\":\"int8\"}"
#define QUANT_PT "{\"op\":\"quantize\",\"scheme\":\"int8\",\"granularity\":\"per_tensor\"}"
#define PRUNE "{\"op\":\"prune\",\"sparsity\":0.5}"

static int test_spec_quantize_refused(void)
{
	static const char *const parts[] = {
		"cannot quantize: raising the model from opset 11 to 13",
		"(needed by DequantizeLinear per-axis)", "node 'sm_channels' (Softmax)",
		"non-last axis", "re-export the model at opset >= 13", NULL
	};
	static const char *const parts_pt[] = { "opset 11 to 13", "'sm_channels'", NULL };
	static const char *const parts_if[] = { "node 'branch_logsoftmax' (LogSoftmax)",
						"unknown rank", NULL };
	json_t *s = summarize("opset_quant_reject_softmax4d_11.onnx");
	CHECK(s, "no summary");
	int rc = expect_spec(s, "{\"steps\":[" QUANT "]}", NN_EINVAL, "steps[0]", parts) ||
		 expect_spec(s, "{\"steps\":[" PRUNE "," QUANT "]}", NN_EINVAL, "steps[1]",
			     parts) ||
		 expect_spec(s, "{\"steps\":[" QUANT_PT "]}", NN_EINVAL, "steps[0]", parts_pt) ||
		 /* the model is fine for everything but quantize */
		 expect_spec(s, "{\"steps\":[" PRUNE "]}", NN_OK, NULL, NULL) ||
		 /* without a model summary (pipeline_run) the check does not apply */
		 expect_spec(NULL, "{\"steps\":[" QUANT "]}", NN_OK, NULL, NULL);
	/* summaries stored before the key existed skip the check */
	json_object_del(s, "opset_upgrade");
	rc = rc || expect_spec(s, "{\"steps\":[" QUANT "]}", NN_OK, NULL, NULL);
	json_decref(s);
	CHECK(!rc, "softmax4d model");

	s = summarize("opset_quant_reject_if_11.onnx");
	CHECK(s, "no summary");
	rc = expect_spec(s, "{\"steps\":[" QUANT "]}", NN_EINVAL, "steps[0]", parts_if);
	json_decref(s);
	CHECK(!rc, "if model");
	return 0;
}

static int test_spec_quantize_accepted(void)
{
	json_t *s = summarize("opset_quant_unsqueeze_11.onnx");
	CHECK(s, "no summary");
	int rc = expect_spec(s, "{\"steps\":[" PRUNE "," QUANT "]}", NN_OK, NULL, NULL) ||
		 expect_spec(s, "{\"steps\":[" QUANT_PT "]}", NN_OK, NULL, NULL);
	json_decref(s);
	CHECK(!rc, "unsqueeze model");
	return 0;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(void);
	} cases[] = {
		{ "reject_softmax4d", test_reject_softmax4d },
		{ "reject_in_subgraph", test_reject_in_subgraph },
		{ "convertible_null", test_convertible_null },
		{ "summary_matches_raise", test_summary_matches_raise },
		{ "spec_quantize_refused", test_spec_quantize_refused },
		{ "spec_quantize_accepted", test_spec_quantize_accepted },
	};
	if (argc < 3) {
		fprintf(stderr, "usage: %s CASE DATA_DIR\n", argv[0]);
		return 2;
	}
	data_dir = argv[2];
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
		if (!strcmp(argv[1], cases[i].name))
			return cases[i].fn();
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}
