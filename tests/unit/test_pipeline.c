/* Unit tests for engine/pipeline: steps run in order with hooks, defaults are
 * filled, bad specs get invalid_spec errors naming the field, cancellation
 * returns NN_ECANCELED (before a step and inside one), and — when ONNX
 * Runtime (tests/oracle/node_modules/onnxruntime-node) is installed — the
 * compressed models run in ONNX Runtime close to their references.
 * Usage: test_pipeline CASE DATA_DIR [NODE ORACLE_NODE_MODULES SCRIPT] */
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "onnx_io.h"
#include "pipeline.h"

extern char **environ;

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

struct record {
	char events[32][64];
	size_t n_events;
	json_t *metrics[8];
	double progress[4096];
	size_t n_progress;
	atomic_bool cancel;
	long cancel_at_step; /* set the flag when this step reports "running"; -1 never */
};

static void rec_step(void *ud, size_t index, const char *op, const char *state,
		     const json_t *metrics)
{
	struct record *r = ud;
	if (r->n_events < 32)
		snprintf(r->events[r->n_events++], 64, "%zu:%s:%s", index, op, state);
	if (metrics && index < 8)
		r->metrics[index] = json_deep_copy(metrics);
	if ((long)index == r->cancel_at_step && !strcmp(state, "running"))
		atomic_store(&r->cancel, true);
}

static void rec_progress(void *ud, double p)
{
	struct record *r = ud;
	if (r->n_progress < 4096)
		r->progress[r->n_progress++] = p;
}

static void rec_init(struct record *r)
{
	memset(r, 0, sizeof *r);
	atomic_init(&r->cancel, false);
	r->cancel_at_step = -1;
}

static void rec_free(struct record *r)
{
	for (int i = 0; i < 8; i++)
		json_decref(r->metrics[i]);
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

static enum nn_status run(const char *model, const char *spec_text, struct record *r,
			  struct onnx_model **out, struct nn_err *e)
{
	struct onnx_model *m = load(model);
	if (!m)
		return NN_EIO;
	json_t *spec = json_loads(spec_text, 0, NULL);
	struct pipeline_hooks hooks = {
		.ud = r, .on_step = rec_step, .on_progress = rec_progress, .cancel = &r->cancel};
	enum nn_status st = pipeline_run(m, spec, &hooks, e);
	json_decref(spec);
	if (out)
		*out = m;
	else
		onnx_free(m);
	return st;
}

static int test_steps_in_order_with_metrics(void)
{
	struct record r;
	rec_init(&r);
	struct nn_err e = {0};
	struct onnx_model *m = NULL;
	enum nn_status st = run("steps_mlp.onnx",
				"{\"model\":\"mdl_x\",\"steps\":[{\"op\":\"prune\",\"sparsity\":0.8},"
				"{\"op\":\"quantize\",\"scheme\":\"int8\"}],"
				"\"output\":{\"format\":\"onnx\"}}",
				&r, &m, &e);
	CHECK(st == NN_OK, "%s (%s)", e.message, e.field);
	const char *want[] = {"0:prune:running", "0:prune:succeeded", "1:quantize:running",
			      "1:quantize:succeeded"};
	CHECK(r.n_events == 4, "%zu events", r.n_events);
	for (int i = 0; i < 4; i++)
		CHECK(!strcmp(r.events[i], want[i]), "event %d: %s", i, r.events[i]);
	/* defaults filled: global scope, magnitude, per-channel symmetric */
	CHECK(!strcmp(json_string_value(json_object_get(r.metrics[0], "scope")), "global"), "scope");
	CHECK(!strcmp(json_string_value(json_object_get(r.metrics[0], "method")), "magnitude"),
	      "method");
	CHECK(!strcmp(json_string_value(json_object_get(r.metrics[1], "granularity")),
		      "per_channel"),
	      "granularity");
	CHECK(json_is_true(json_object_get(r.metrics[1], "symmetric")), "symmetric");
	double s = json_real_value(json_object_get(r.metrics[0], "sparsity"));
	CHECK(s > 0.799 && s < 0.801, "sparsity %g", s);
	/* progress: starts at 0, never decreases, ends at exactly 1 */
	CHECK(r.n_progress >= 2 && r.progress[0] == 0.0 && r.progress[r.n_progress - 1] == 1.0,
	      "progress ends %zu", r.n_progress);
	for (size_t i = 1; i < r.n_progress; i++)
		CHECK(r.progress[i] >= r.progress[i - 1], "monotonic");
	/* pruned zeros survive quantization exactly: q == 0 for 80% of weights */
	Onnx__TensorProto *q = onnx_find_initializer(m, "foo_quantized");
	CHECK(q && q->has_raw_data, "foo_quantized");
	size_t zeros = 0;
	for (size_t i = 0; i < q->raw_data.len; i++)
		zeros += q->raw_data.data[i] == 0;
	CHECK(zeros >= (size_t)(0.7 * (double)q->raw_data.len), "zeros %zu of %zu", zeros,
	      q->raw_data.len);
	onnx_free(m);
	rec_free(&r);
	return 0;
}

static int test_bad_spec_rejected(void)
{
	struct {
		const char *model, *spec, *field;
		const char *msg_part;
	} cases[] = {
		{"steps_mlp.onnx", "{\"steps\":[{\"op\":\"prune\",\"sparsity\":1.5}]}",
		 "steps[0].sparsity", "got 1.5"},
		{"steps_mlp.onnx", "{\"steps\":[{\"op\":\"distil\"}]}", "steps[0].op",
		 "unknown op 'distil'"},
		{"steps_mlp.onnx", "{\"goal\":{}}", "goal", "unknown field 'goal'"},
		{"steps_noweights.onnx", "{\"steps\":[{\"op\":\"prune\",\"sparsity\":0.5}]}",
		 "steps[0]", "model has no Gemm/MatMul/Conv float weights to prune"},
		{"steps_noweights.onnx", "{\"steps\":[{\"op\":\"quantize\",\"scheme\":\"int8\"}]}",
		 "steps[0]", "model has no Gemm/MatMul/Conv float weights to quantize"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct record r;
		rec_init(&r);
		struct nn_err e = {0};
		enum nn_status st = run(cases[i].model, cases[i].spec, &r, NULL, &e);
		CHECK(st == NN_EINVAL, "%s: status %d", cases[i].spec, st);
		CHECK(!strcmp(e.code, "invalid_spec"), "%s: code %s", cases[i].spec, e.code);
		CHECK(!strcmp(e.field, cases[i].field), "%s: field %s", cases[i].spec, e.field);
		CHECK(strstr(e.message, cases[i].msg_part), "%s: message %s", cases[i].spec,
		      e.message);
		rec_free(&r);
	}
	/* a spec that is not an object, and a NULL spec, fail cleanly */
	struct onnx_model *m = load("steps_mlp.onnx");
	struct nn_err e = {0};
	json_t *arr = json_array();
	CHECK(pipeline_run(m, arr, NULL, &e) == NN_EINVAL, "array spec");
	CHECK(pipeline_run(m, NULL, NULL, &e) == NN_EINVAL, "NULL spec");
	json_decref(arr);
	onnx_free(m);
	return 0;
}

static int test_cancel_returns_ecanceled(void)
{
	const char *spec = "{\"steps\":[{\"op\":\"prune\",\"sparsity\":0.5},"
			   "{\"op\":\"quantize\",\"scheme\":\"int8\"}]}";
	/* flag already set: nothing runs */
	struct record r;
	rec_init(&r);
	atomic_store(&r.cancel, true);
	struct nn_err e = {0};
	CHECK(run("steps_mlp.onnx", spec, &r, NULL, &e) == NN_ECANCELED, "preset: %s", e.message);
	CHECK(r.n_events == 1 && !strcmp(r.events[0], "0:prune:canceled"), "events %zu %s",
	      r.n_events, r.events[0]);
	rec_free(&r);
	/* flag set while step 1 starts: step 1 is reported canceled, not succeeded */
	rec_init(&r);
	r.cancel_at_step = 1;
	CHECK(run("steps_mlp.onnx", spec, &r, NULL, &e) == NN_ECANCELED, "mid: %s", e.message);
	CHECK(r.n_events == 4 && !strcmp(r.events[1], "0:prune:succeeded") &&
		      !strcmp(r.events[2], "1:quantize:running") &&
		      !strcmp(r.events[3], "1:quantize:canceled"),
	      "events: %s %s %s", r.events[1], r.events[2], r.events[3]);
	CHECK(e.status == NN_ECANCELED, "err status");
	rec_free(&r);
	/* set when step 0 starts: the prune kernels see it */
	rec_init(&r);
	r.cancel_at_step = 0;
	CHECK(run("steps_mlp.onnx", spec, &r, NULL, &e) == NN_ECANCELED, "in prune");
	CHECK(r.n_events == 2 && !strcmp(r.events[1], "0:prune:canceled"), "events %s",
	      r.events[1]);
	rec_free(&r);
	return 0;
}

static int test_empty_steps_progress_complete(void)
{
	struct record r;
	rec_init(&r);
	struct nn_err e = {0};
	CHECK(run("steps_mlp.onnx", "{\"steps\":[]}", &r, NULL, &e) == NN_OK, "%s", e.message);
	CHECK(r.n_events == 0 && r.n_progress >= 1 && r.progress[r.n_progress - 1] == 1.0,
	      "progress");
	CHECK(run("steps_mlp.onnx", "{}", &r, NULL, &e) == NN_OK, "no steps key");
	rec_free(&r);
	return 0;
}

/* ---- ONNX Runtime comparison ---- */

static int save_run(const char *model, const char *spec, const char *path)
{
	struct record r;
	rec_init(&r);
	struct nn_err e = {0};
	struct onnx_model *m = NULL;
	enum nn_status st = run(model, spec, &r, &m, &e);
	rec_free(&r);
	if (st != NN_OK) {
		fprintf(stderr, "%s: %s\n", model, e.message);
		onnx_free(m);
		return 1;
	}
	st = onnx_save_file(m, path, &e);
	onnx_free(m);
	if (st != NN_OK) {
		fprintf(stderr, "save %s: %s\n", path, e.message);
		return 1;
	}
	return 0;
}

#define PYTHON "/usr/bin/python3"
#define CHECKER_PY                                                                   \
	"import sys\n"                                                               \
	"try:\n"                                                                     \
	"    import onnx\n"                                                          \
	"except ImportError:\n"                                                      \
	"    sys.exit(77)\n"                                                         \
	"for p in sys.argv[1:]:\n"                                                   \
	"    onnx.checker.check_model(onnx.load(p))\n"                               \
	"    print('onnx.checker ok:', p.rsplit('/', 1)[-1])\n"

static int spawn_wait(char *const argv[])
{
	pid_t pid;
	if (posix_spawn(&pid, argv[0], NULL, NULL, argv, environ) != 0)
		return -1;
	int status;
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

static int test_onnxruntime_outputs_close(const char *node, const char *modules,
					  const char *script)
{
	struct stat sb;
	char probe[1024];
	snprintf(probe, sizeof probe, "%s/onnxruntime-node", modules);
	bool have_ort = node && node[0] && access(node, X_OK) == 0 && stat(probe, &sb) == 0;
	bool have_py = access(PYTHON, X_OK) == 0;
	if (!have_ort && !have_py) {
		fprintf(stderr, "neither ONNX Runtime (%s) nor %s: skipped\n", modules, PYTHON);
		return 77;
	}
	char dir[] = "/tmp/nncd-steps-ort-XXXXXX";
	CHECK(mkdtemp(dir), "mkdtemp");
	const char *prune = "{\"op\":\"prune\",\"sparsity\":0.8,\"scope\":\"global\"}";
	const char *quant = "{\"op\":\"quantize\",\"scheme\":\"int8\",\"granularity\":\"per_channel\"}";
	const char *quant_t = "{\"op\":\"quantize\",\"scheme\":\"int8\",\"granularity\":"
			      "\"per_tensor\",\"symmetric\":false}";
	const char *quant_a = "{\"op\":\"quantize\",\"scheme\":\"int8\",\"symmetric\":false}";
	struct {
		const char *model, *name, *s1, *s2;
	} runs[] = {
		{"steps_mlp.onnx", "mlp_p", prune, NULL},  {"steps_mlp.onnx", "mlp_pq", prune, quant},
		{"steps_mlp.onnx", "mlp_q", quant, NULL},  {"steps_mlp.onnx", "mlp_qt", quant_t, NULL},
		{"steps_cnn11.onnx", "cnn_p", prune, NULL}, {"steps_cnn11.onnx", "cnn_pq", prune, quant},
		{"steps_cnn11.onnx", "cnn_q", quant, NULL}, {"steps_cnn11.onnx", "cnn_qa", quant_a, NULL},
	};
	char path[1024], spec[512];
	for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
		snprintf(path, sizeof path, "%s/%s.onnx", dir, runs[i].name);
		if (runs[i].s2)
			snprintf(spec, sizeof spec, "{\"steps\":[%s,%s]}", runs[i].s1, runs[i].s2);
		else
			snprintf(spec, sizeof spec, "{\"steps\":[%s]}", runs[i].s1);
		if (save_run(runs[i].model, spec, path))
			return 1;
	}
	/* reference:candidate:input shape. Quantized models are compared with the
	 * float model they were made from (pruned or original). */
	char pairs[6][1200];
	snprintf(pairs[0], sizeof pairs[0], "%s/steps_mlp.onnx:%s/mlp_q.onnx:4x16", data_dir, dir);
	snprintf(pairs[1], sizeof pairs[1], "%s/steps_mlp.onnx:%s/mlp_qt.onnx:4x16", data_dir, dir);
	snprintf(pairs[2], sizeof pairs[2], "%s/mlp_p.onnx:%s/mlp_pq.onnx:4x16", dir, dir);
	snprintf(pairs[3], sizeof pairs[3], "%s/steps_cnn11.onnx:%s/cnn_q.onnx:1x1x8x8", data_dir,
		 dir);
	snprintf(pairs[4], sizeof pairs[4], "%s/cnn_p.onnx:%s/cnn_pq.onnx:1x1x8x8", dir, dir);
	snprintf(pairs[5], sizeof pairs[5], "%s/steps_cnn11.onnx:%s/cnn_qa.onnx:1x1x8x8", data_dir,
		 dir);
	/* python3-onnx's checker accepts every artifact (77 from the script: no onnx module) */
	char *paths[8];
	for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
		paths[i] = malloc(1100);
		snprintf(paths[i], 1100, "%s/%s.onnx", dir, runs[i].name);
	}
	int checker_rc = 77;
	if (have_py) {
		char *pargv[] = {PYTHON,   "-c",     CHECKER_PY, paths[0], paths[1], paths[2],
				 paths[3], paths[4], paths[5],   paths[6], paths[7], NULL};
		checker_rc = spawn_wait(pargv);
	}
	for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++)
		free(paths[i]);
	int rc = 77;
	if (have_ort) {
		char *argv[] = {(char *)node, (char *)script, (char *)modules, pairs[0], pairs[1],
				pairs[2],     pairs[3],       pairs[4],        pairs[5], NULL};
		rc = spawn_wait(argv);
	} else {
		fprintf(stderr, "ONNX Runtime not installed under %s: outputs not compared\n",
			modules);
	}
	for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
		snprintf(path, sizeof path, "%s/%s.onnx", dir, runs[i].name);
		unlink(path);
	}
	rmdir(dir);
	CHECK(checker_rc == 0 || checker_rc == 77, "onnx.checker rejected an artifact (exit %d)",
	      checker_rc);
	CHECK(rc == 0 || rc == 77, "ONNX Runtime comparison failed (exit %d)", rc);
	return rc == 0 || checker_rc == 0 ? 0 : 77;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: test_pipeline CASE [DATA_DIR [NODE MODULES SCRIPT]]\n");
		return 2;
	}
	if (argc > 2)
		data_dir = argv[2];
	if (!strcmp(argv[1], "onnxruntime_outputs_close"))
		return test_onnxruntime_outputs_close(argc > 3 ? argv[3] : NULL,
						      argc > 4 ? argv[4] : "",
						      argc > 5 ? argv[5] : "");
	struct {
		const char *name;
		int (*fn)(void);
	} cases[] = {
		{"steps_in_order_with_metrics", test_steps_in_order_with_metrics},
		{"bad_spec_rejected", test_bad_spec_rejected},
		{"cancel_returns_ecanceled", test_cancel_returns_ecanceled},
		{"empty_steps_progress_complete", test_empty_steps_progress_complete},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (!strcmp(argv[1], cases[i].name))
			return cases[i].fn();
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}
