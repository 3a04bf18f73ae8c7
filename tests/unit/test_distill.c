/* Unit tests for engine/distill (the distill and finetune steps): spec
 * refusals with field paths (parser and spec_validate), the MLP student
 * nncd builds (structure, PyTorch nn.Linear's init range, seeded), distill
 * of the LeNet-300 fixture into 784-32-10 on 2,000 MNIST digits (accuracy
 * measured by nncd's executor and by ONNX Runtime through
 * tests/oracle/eval.js), structured and uploaded students, finetune after
 * 95% pruning (every zero kept, accuracy back up), finetune of an int8
 * model through fake quantization (layout, scales, zero points and size
 * kept), and distill then quantize int8 through pipeline_run with one event
 * per epoch.
 * Usage: test_distill CASE FIXTURES_DIR MNIST_DIR [NODE EVAL_JS] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "distill.h"
#include "eval.h"
#include "exec.h"
#include "onnx_io.h"
#include "pipeline.h"
#include "prune.h"
#include "quant.h"
#include "rng.h"
#include "spec.h"
#include "train_graph.h"
#include "train_mnist.h"

static const char *fixtures = ".", *mnist_dir = ".", *node = "", *eval_js = "";

static struct onnx_model *load_fixture(const char *name)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", fixtures, name);
	struct onnx_model *m = NULL;
	struct nn_err e = {0};
	if (onnx_load_file(path, &m, &e) != NN_OK)
		fprintf(stderr, "loading %s: %s\n", path, e.message);
	return m;
}

static json_t *parse(const char *text)
{
	json_error_t je;
	json_t *j = json_loads(text, 0, &je);
	if (!j)
		fprintf(stderr, "bad test JSON %s: %s\n", text, je.text);
	return j;
}

/* Training digits (first 2,000 of the training set) and evaluation digits
 * (first 1,000 of the test set), as the pipeline's data. */
struct data {
	float *x, *tx;
	int64_t *y, *ty;
	struct tensor in, tin;
	struct eval_data calib, eval;
};

static int data_load(struct data *d, int64_t n_train, int64_t n_test, int rank)
{
	memset(d, 0, sizeof *d);
	CHECK(mnist_load(mnist_dir, "train", n_train, &d->x, &d->y), "MNIST under %s", mnist_dir);
	CHECK(mnist_load(mnist_dir, "t10k", n_test, &d->tx, &d->ty), "MNIST test set");
	int64_t s2[2] = {n_train, 784}, t2[2] = {n_test, 784};
	int64_t s4[4] = {n_train, 1, 28, 28}, t4[4] = {n_test, 1, 28, 28};
	tensor_view(&d->in, DT_FLOAT, rank, rank == 2 ? s2 : s4, d->x);
	tensor_view(&d->tin, DT_FLOAT, rank, rank == 2 ? t2 : t4, d->tx);
	d->calib = (struct eval_data){&d->in, d->y};
	d->eval = (struct eval_data){&d->tin, d->ty};
	return 0;
}

static void data_free(struct data *d)
{
	free(d->x);
	free(d->y);
	free(d->tx);
	free(d->ty);
}

/* Top-1 accuracy of m by nncd's executor on the evaluation digits. */
static double exec_accuracy(const struct onnx_model *m, const struct data *d)
{
	struct eval_opts o = {.metrics = EVAL_ACCURACY};
	json_t *out = NULL;
	struct nn_err e = {0};
	if (eval_model(m, &d->eval, &o, NULL, NULL, NULL, &out, &e) != NN_OK) {
		fprintf(stderr, "eval_model: %s\n", e.message);
		return -1;
	}
	double acc = json_real_value(json_object_get(out, "accuracy"));
	json_decref(out);
	return acc;
}

/* ONNX Runtime's accuracy on the first n test digits (tests/oracle/eval.js);
 * -2 when node is not available (the caller skips the comparison). */
static double ort_accuracy(const struct onnx_model *m, int64_t n)
{
	if (!node[0] || access(node, X_OK))
		return -2;
	char path[] = "/tmp/nncd_distill_XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		return -1;
	close(fd);
	struct nn_err e = {0};
	if (onnx_save_file(m, path, &e) != NN_OK) {
		unlink(path);
		return -1;
	}
	char cmd[4096];
	snprintf(cmd, sizeof cmd, "'%s' '%s' accuracy '%s' --images %lld", node, eval_js, path,
		 (long long)n);
	FILE *p = popen(cmd, "r");
	char buf[4096] = {0};
	size_t got = p ? fread(buf, 1, sizeof buf - 1, p) : 0;
	int rc = p ? pclose(p) : -1;
	unlink(path);
	json_t *j = got ? json_loads(buf, 0, NULL) : NULL;
	double acc = rc == 0 && j ? json_number_value(json_object_get(j, "accuracy")) : -1;
	if (acc < 0)
		fprintf(stderr, "eval.js failed (rc %d): %s\n", rc, buf);
	json_decref(j);
	return acc;
}

struct seen {
	json_t *events;
	json_t *metrics; /* per step */
};

static void on_event(void *ud, size_t index, const char *op, const char *type, const json_t *data)
{
	struct seen *s = ud;
	json_array_append_new(s->events, json_pack("{s:i, s:s, s:s, s:O}", "index", (int)index,
						   "op", op, "type", type, "data", data));
}

static void on_step(void *ud, size_t index, const char *op, const char *state,
		    const json_t *metrics)
{
	struct seen *s = ud;
	(void)op;
	if (!strcmp(state, "succeeded"))
		json_array_set(s->metrics, index, (json_t *)metrics);
}

static enum nn_status run_pipeline(struct onnx_model *m, const char *spec_text, struct data *d,
				   const struct step_model *models, size_t n_models,
				   struct seen *s, struct nn_err *e)
{
	json_t *spec = parse(spec_text);
	if (!spec)
		return NN_EINVAL;
	s->events = json_array();
	s->metrics = json_array();
	for (size_t i = 0; i < json_array_size(json_object_get(spec, "steps")); i++)
		json_array_append_new(s->metrics, json_null());
	struct pipeline_data pd = {.calib = &d->calib, .eval = &d->eval, .threads = 2,
				   .models = models, .n_models = n_models};
	struct pipeline_hooks hooks = {.ud = s, .on_step = on_step, .on_event = on_event,
				       .data = &pd};
	enum nn_status st = pipeline_run(m, spec, &hooks, e);
	json_decref(spec);
	return st;
}

static void seen_free(struct seen *s)
{
	json_decref(s->events);
	json_decref(s->metrics);
}

/* ---- refusals ---- */

static int refused(const char *step_text, bool finetune, const char *field)
{
	json_t *step = parse(step_text);
	CHECK(step, "json");
	struct distill_params p;
	struct nn_err e = {0};
	enum nn_status st = distill_params_parse(step, 3, finetune, &p, &e);
	json_decref(step);
	CHECK(st == NN_EINVAL, "%s refused", step_text);
	CHECK(!strcmp(e.field, field), "%s: field %s, expected %s (%s)", step_text, e.field, field,
	      e.message);
	return 0;
}

static int spec_refused(const char *spec_text, const char *field, const char *words)
{
	json_t *spec = parse(spec_text);
	CHECK(spec, "json");
	struct nn_err e = {0};
	enum nn_status st = spec_validate(spec, NULL, &e);
	json_decref(spec);
	CHECK(st == NN_EINVAL, "%s refused", spec_text);
	CHECK(!strcmp(e.field, field), "%s: field %s, expected %s (%s)", spec_text, e.field, field,
	      e.message);
	CHECK(strstr(e.message, words), "message '%s' says '%s'", e.message, words);
	return 0;
}

static int test_params_refused(void)
{
	int r = 0;
	r |= refused("{\"op\":\"distill\",\"bogus\":1}", false, "steps[3].bogus");
	r |= refused("{\"op\":\"distill\",\"epochs\":-1}", false, "steps[3].epochs");
	r |= refused("{\"op\":\"distill\",\"epochs\":1.5}", false, "steps[3].epochs");
	r |= refused("{\"op\":\"distill\",\"batch_size\":0}", false, "steps[3].batch_size");
	r |= refused("{\"op\":\"distill\",\"temperature\":0}", false, "steps[3].temperature");
	r |= refused("{\"op\":\"distill\",\"alpha\":1.5}", false, "steps[3].alpha");
	r |= refused("{\"op\":\"distill\",\"seed\":-3}", false, "steps[3].seed");
	r |= refused("{\"op\":\"distill\",\"teacher\":\"me\"}", false, "steps[3].teacher");
	r |= refused("{\"op\":\"distill\",\"teacher\":{\"model\":5}}", false, "steps[3].teacher.model");
	r |= refused("{\"op\":\"distill\",\"student\":{\"hidden\":[30,0]}}", false,
		     "steps[3].student.hidden[1]");
	r |= refused("{\"op\":\"distill\",\"student\":{\"hidden\":[]}}", false,
		     "steps[3].student.hidden");
	r |= refused("{\"op\":\"distill\",\"student\":{\"from\":\"structured\",\"ratio\":1}}", false,
		     "steps[3].student.ratio");
	r |= refused("{\"op\":\"distill\",\"student\":{\"from\":\"magnitude\",\"ratio\":0.5}}", false,
		     "steps[3].student.from");
	r |= refused("{\"op\":\"distill\",\"student\":{\"hidden\":[3],\"model\":\"mdl_a\"}}", false,
		     "steps[3].student");
	r |= refused("{\"op\":\"distill\",\"student\":{\"hidden\":[3],\"ratio\":0.5}}", false,
		     "steps[3].student.ratio");
	r |= refused("{\"op\":\"distill\",\"optimizer\":{\"name\":\"adam\",\"momentum\":0.9}}", false,
		     "steps[3].optimizer.momentum");
	r |= refused("{\"op\":\"distill\",\"schedule\":{\"name\":\"cosine\",\"warmup_epochs\":10}}",
		     false, "steps[3].schedule.warmup_epochs");
	r |= refused("{\"op\":\"distill\",\"feature_loss\":{\"teacher\":\"a\"}}", false,
		     "steps[3].feature_loss.student");
	r |= refused("{\"op\":\"finetune\",\"student\":{\"hidden\":[3]}}", true, "steps[3].student");
	r |= refused("{\"op\":\"finetune\",\"alpha\":0.5}", true, "steps[3].alpha");
	r |= refused("{\"op\":\"finetune\",\"feature_loss\":{\"teacher\":\"a\",\"student\":\"b\"}}",
		     true, "steps[3].feature_loss");
	if (r)
		return r;
	/* accepted, with defaults */
	json_t *step = parse("{\"op\":\"finetune\",\"teacher\":\"input\"}");
	struct distill_params p;
	struct nn_err e = {0};
	CHECK(distill_params_parse(step, 0, true, &p, &e) == NN_OK, "%s", e.message);
	CHECK(p.teacher == DISTILL_TEACHER_INPUT && p.train.alpha == 0.9 && p.train.epochs == 10 &&
		      p.train.batch_size == 64 && p.train.temperature == 4,
	      "finetune with a teacher: distill's defaults");
	json_decref(step);
	step = parse("{\"op\":\"finetune\"}");
	CHECK(distill_params_parse(step, 0, true, &p, &e) == NN_OK, "%s", e.message);
	CHECK(p.teacher == DISTILL_TEACHER_NONE && p.train.alpha == 0, "finetune alone: labels");
	json_decref(step);
	/* labels needed unless alpha == 1 with a teacher */
	step = parse("{\"op\":\"distill\",\"alpha\":0.5}");
	CHECK(distill_params_parse(step, 2, false, &p, &e) == NN_OK, "%s", e.message);
	CHECK(distill_check(&p, NULL, false, &e) == NN_EINVAL && !strcmp(e.field, "steps[2].dataset"),
	      "no labels: %s", e.field);
	p.train.alpha = 1;
	CHECK(distill_check(&p, NULL, false, &e) == NN_OK, "alpha 1 needs no labels");
	json_decref(step);

	/* spec_validate */
	r |= spec_refused("{\"steps\":[{\"op\":\"distill\",\"student\":{\"hidden\":[8]}}]}",
			  "steps[0].dataset", "dataset");
	r |= spec_refused("{\"dataset\":\"ds_a\",\"steps\":[{\"op\":\"quantize\",\"scheme\":\"int4\"},"
			  "{\"op\":\"finetune\"}]}",
			  "steps[1]", "int8");
	r |= spec_refused("{\"dataset\":\"ds_a\",\"steps\":[{\"op\":\"distill\",\"temperature\":-1}]}",
			  "steps[0].temperature", "temperature");
	r |= spec_refused("{\"dataset\":\"ds_a\",\"steps\":[{\"op\":\"distil\"}]}", "steps[0].op",
			  "distill, finetune");
	if (r)
		return r;
	const char *ok[] = {
		"{\"dataset\":\"ds_a\",\"steps\":[{\"op\":\"quantize\",\"scheme\":\"int8\"},"
		"{\"op\":\"finetune\",\"epochs\":1}]}",
		"{\"dataset\":\"ds_a\",\"steps\":[{\"op\":\"quantize\",\"scheme\":\"int4\"},"
		"{\"op\":\"distill\",\"student\":{\"hidden\":[8]}},{\"op\":\"prune\",\"sparsity\":0.5}]}",
		"{\"steps\":[{\"op\":\"distill\",\"epochs\":0,\"student\":{\"hidden\":[8]}}]}",
		"{\"dataset\":\"ds_a\",\"steps\":[{\"op\":\"distill\",\"teacher\":{\"model\":\"mdl_t\"},"
		"\"student\":{\"model\":\"mdl_s\"},\"optimizer\":{\"name\":\"sgd\",\"lr\":0.05,"
		"\"momentum\":0.9,\"nesterov\":true},\"schedule\":{\"name\":\"cosine\"},\"seed\":3}]}",
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		json_t *spec = parse(ok[i]);
		CHECK(spec_validate(spec, NULL, &e) == NN_OK, "accepted: %s (%s: %s)", ok[i], e.field,
		      e.message);
		json_decref(spec);
	}
	struct spec_model_ref refs[SPEC_MAX_MODEL_REFS];
	step = parse("{\"op\":\"distill\",\"teacher\":{\"model\":\"mdl_t\"},\"student\":{\"model\":"
		     "\"mdl_s\"}}");
	CHECK(spec_step_model_refs(step, 4, refs) == 2 && !strcmp(refs[1].id, "mdl_s") &&
		      !strcmp(refs[1].field, "steps[4].student.model"),
	      "model refs for the API's existence check");
	json_decref(step);
	return 0;
}

/* ---- the MLP student ---- */

static int count_op(const struct onnx_model *m, const char *op)
{
	int n = 0;
	for (size_t i = 0; i < m->proto->graph->n_node; i++)
		n += !strcmp(m->proto->graph->node[i]->op_type, op);
	return n;
}

static int test_mlp_student_init(void)
{
	struct onnx_model *t = load_fixture("lenet300.onnx"), *cnn = load_fixture("cnn.onnx");
	CHECK(t && cnn, "fixtures");
	int64_t hidden[2] = {40, 20};
	struct onnx_model *a = NULL, *b = NULL, *c = NULL, *f = NULL;
	struct nn_err e = {0};
	CHECK(distill_build_mlp(t, hidden, 2, 11, &a, &e) == NN_OK, "%s", e.message);
	CHECK(distill_build_mlp(t, hidden, 2, 11, &b, &e) == NN_OK, "%s", e.message);
	CHECK(distill_build_mlp(t, hidden, 2, 12, &c, &e) == NN_OK, "%s", e.message);
	CHECK(count_op(a, "Gemm") == 3 && count_op(a, "Relu") == 2 && count_op(a, "Flatten") == 0 &&
		      a->proto->graph->n_node == 5,
	      "Gemm+Relu, Gemm+Relu, Gemm");
	CHECK(a->proto->graph->n_initializer == 6, "3 weights + 3 biases");
	const int64_t fan[3] = {784, 40, 20}, rows[3] = {40, 20, 10};
	for (int l = 0; l < 3; l++) {
		char name[64];
		snprintf(name, sizeof name, "student.fc%d.weight", l + 1);
		for (int k = 0; k < 2; k++) {
			if (k)
				snprintf(name, sizeof name, "student.fc%d.bias", l + 1);
			Onnx__TensorProto *ia = onnx_find_initializer(a, name),
					  *ib = onnx_find_initializer(b, name),
					  *ic = onnx_find_initializer(c, name);
			CHECK(ia && ib && ic, "%s", name);
			struct tensor va, vb, vc;
			CHECK(onnx_initializer_view(ia, &va, &e) == NN_OK &&
				      onnx_initializer_view(ib, &vb, &e) == NN_OK &&
				      onnx_initializer_view(ic, &vc, &e) == NN_OK,
			      "views");
			int64_t n = tensor_numel(&va);
			CHECK(n == (k ? rows[l] : rows[l] * fan[l]), "%s: %lld values", name,
			      (long long)n);
			if (!k)
				CHECK(va.ndim == 2 && va.shape[0] == rows[l] && va.shape[1] == fan[l],
				      "[out, in] with transB=1");
			float bound = (float)(1.0 / sqrt((double)fan[l]));
			double sum = 0, sumsq = 0;
			for (int64_t i = 0; i < n; i++) {
				float v = ((float *)va.data)[i];
				CHECK(fabsf(v) <= bound, "%s[%lld] = %g within 1/sqrt(%lld)", name,
				      (long long)i, v, (long long)fan[l]);
				sum += v;
				sumsq += (double)v * v;
			}
			CHECK(!memcmp(va.data, vb.data, (size_t)n * 4), "same seed, same weights");
			CHECK(memcmp(va.data, vc.data, (size_t)n * 4), "another seed differs");
			if (n >= 1000) /* uniform: variance bound^2 / 3 */
				CHECK(fabs(sumsq / (double)n / ((double)bound * bound / 3) - 1) < 0.05 &&
					      fabs(sum / (double)n) < 0.05 * bound,
				      "%s looks like U(-b, b)", name);
		}
	}
	/* The first weight's first value is the stream's first draw. */
	struct rng r;
	rng_seed(&r, 11);
	float first = (float)((1.0 / sqrt(784.0)) * (2.0 * (double)rng_uniform(&r) - 1.0));
	struct tensor w1;
	CHECK(onnx_initializer_view(onnx_find_initializer(a, "student.fc1.weight"), &w1, &e) == NN_OK,
	      "view");
	CHECK(((float *)w1.data)[0] == first, "documented draw order");
	/* a rank-4 teacher gets a Flatten */
	CHECK(distill_build_mlp(cnn, hidden, 1, 1, &f, &e) == NN_OK, "%s", e.message);
	CHECK(count_op(f, "Flatten") == 1 && count_op(f, "Gemm") == 2, "Flatten + 2 Gemm");
	CHECK(distill_check_pair(cnn, f, "steps[0].student", &e) == NN_OK, "%s", e.message);
	/* per-sample counts decide: lenet300's [N,784] and the cnn's [N,1,28,28] fit */
	CHECK(distill_check_pair(t, f, "steps[0].student", &e) == NN_OK, "%s", e.message);
	onnx_free(a);
	onnx_free(b);
	onnx_free(c);
	onnx_free(f);
	onnx_free(t);
	onnx_free(cnn);
	return 0;
}

/* distill with "epochs": 0 returns the initialised student through the pipeline. */
static int test_epochs0_returns_initial_student(void)
{
	struct onnx_model *m = load_fixture("lenet300.onnx"), *t = load_fixture("lenet300.onnx");
	CHECK(m && t, "fixture");
	struct data d;
	CHECK(!data_load(&d, 100, 100, 2), "data");
	struct seen s;
	struct nn_err e = {0};
	CHECK(run_pipeline(m,
			   "{\"steps\":[{\"op\":\"distill\",\"epochs\":0,\"seed\":11,"
			   "\"student\":{\"hidden\":[40,20]}}]}",
			   &d, NULL, 0, &s, &e) == NN_OK,
	      "%s", e.message);
	int64_t hidden[2] = {40, 20};
	struct onnx_model *ref = NULL;
	CHECK(distill_build_mlp(t, hidden, 2, 11, &ref, &e) == NN_OK, "%s", e.message);
	struct tensor a, b;
	CHECK(onnx_initializer_view(onnx_find_initializer(m, "student.fc2.weight"), &a, &e) == NN_OK &&
		      onnx_initializer_view(onnx_find_initializer(ref, "student.fc2.weight"), &b,
					    &e) == NN_OK,
	      "views");
	CHECK(!memcmp(a.data, b.data, 800 * 4), "the job's model is the seeded initial student");
	const json_t *mt = json_array_get(s.metrics, 0);
	CHECK(json_integer_value(json_object_get(mt, "parameters_after")) ==
		      784 * 40 + 40 + 40 * 20 + 20 + 200 + 10,
	      "parameters_after");
	CHECK(json_array_size(s.events) == 0, "no epochs, no events");
	seen_free(&s);
	onnx_free(ref);
	onnx_free(m);
	onnx_free(t);
	data_free(&d);
	return 0;
}

/* ---- distill on MNIST ---- */

static int test_distill_lenet300_mlp32(void)
{
	struct onnx_model *m = load_fixture("lenet300.onnx");
	CHECK(m, "fixture");
	struct data d;
	CHECK(!data_load(&d, 2000, 1000, 2), "data");
	struct seen s;
	struct nn_err e = {0};
	CHECK(run_pipeline(m,
			   "{\"dataset\":\"ds_train\",\"steps\":[{\"op\":\"distill\","
			   "\"student\":{\"hidden\":[32]},\"epochs\":2,\"temperature\":4,"
			   "\"alpha\":0.9,\"seed\":1,\"optimizer\":{\"name\":\"sgd\",\"lr\":0.05,"
			   "\"momentum\":0.9,\"nesterov\":true},\"schedule\":{\"name\":\"cosine\"}}]}",
			   &d, NULL, 0, &s, &e) == NN_OK,
	      "%s", e.message);
	CHECK(count_op(m, "Gemm") == 2 && count_op(m, "Relu") == 1, "the job's model is the student");
	const json_t *mt = json_array_get(s.metrics, 0);
	CHECK(json_array_size(json_object_get(mt, "history")) == 2, "history of 2 epochs");
	CHECK(json_array_size(s.events) == 2, "2 epoch events, got %zu", json_array_size(s.events));
	const json_t *ev = json_array_get(s.events, 1);
	CHECK(!strcmp(json_string_value(json_object_get(ev, "op")), "distill") &&
		      !strcmp(json_string_value(json_object_get(ev, "type")), "epoch") &&
		      json_integer_value(json_object_get(ev, "index")) == 0,
	      "events tagged with the step");
	double ours = exec_accuracy(m, &d);
	double step_acc = json_real_value(json_object_get(mt, "eval_accuracy"));
	fprintf(stderr, "784-32-10 after 2 epochs on 2,000 digits: executor %.4f, step %.4f\n", ours,
		step_acc);
	CHECK(ours > 0.8, "accuracy %.4f well above chance", ours);
	CHECK(fabs(ours - step_acc) < 1e-9, "the step's eval accuracy is the artifact's");
	double ort = ort_accuracy(m, 1000);
	if (ort > -2) {
		fprintf(stderr, "ONNX Runtime: %.4f\n", ort);
		CHECK(ort >= 0 && fabs(ort - ours) <= 0.002, "ORT %.4f vs executor %.4f", ort, ours);
	} else {
		fprintf(stderr, "node not available: ORT comparison skipped\n");
	}
	seen_free(&s);
	onnx_free(m);
	data_free(&d);
	return 0;
}

/* Students from structured pruning and from an uploaded model; a student whose
 * output width differs is refused with the field. */
static int test_structured_and_model_students(void)
{
	struct onnx_model *m = load_fixture("lenet300.onnx"), *t = load_fixture("lenet300.onnx");
	CHECK(m && t, "fixture");
	struct data d;
	CHECK(!data_load(&d, 1000, 500, 2), "data");
	struct seen s;
	struct nn_err e = {0};
	CHECK(run_pipeline(m,
			   "{\"dataset\":\"ds_train\",\"steps\":[{\"op\":\"distill\",\"student\":"
			   "{\"from\":\"structured\",\"ratio\":0.5},\"epochs\":1,\"optimizer\":"
			   "{\"name\":\"adam\",\"lr\":0.001}}]}",
			   &d, NULL, 0, &s, &e) == NN_OK,
	      "%s", e.message);
	const json_t *mt = json_array_get(s.metrics, 0);
	int64_t before = json_integer_value(json_object_get(mt, "parameters_before"));
	int64_t after = json_integer_value(json_object_get(mt, "parameters_after"));
	double acc = exec_accuracy(m, &d);
	fprintf(stderr, "structured 0.5: %lld -> %lld parameters, accuracy %.4f\n",
		(long long)before, (long long)after, acc);
	CHECK(after < before * 6 / 10, "the student is smaller");
	CHECK(json_object_get(mt, "structured"), "structured metrics kept");
	CHECK(acc > 0.9, "accuracy %.4f", acc);
	seen_free(&s);

	/* uploaded student (an MLP saved elsewhere) */
	int64_t h[1] = {24};
	struct onnx_model *up = NULL, *wrong = NULL;
	CHECK(distill_build_mlp(t, h, 1, 5, &up, &e) == NN_OK, "%s", e.message);
	struct step_model models[2] = {{"mdl_student", up}, {"mdl_teacher", t}};
	CHECK(run_pipeline(m,
			   "{\"dataset\":\"ds_train\",\"steps\":[{\"op\":\"distill\",\"teacher\":"
			   "{\"model\":\"mdl_teacher\"},\"student\":{\"model\":\"mdl_student\"},"
			   "\"epochs\":3,\"optimizer\":{\"name\":\"adam\",\"lr\":0.005}}]}",
			   &d, models, 2, &s, &e) == NN_OK,
	      "%s", e.message);
	CHECK(onnx_find_initializer(m, "student.fc1.weight") &&
		      count_op(m, "Gemm") == 2,
	      "the uploaded student became the job's model");
	acc = exec_accuracy(m, &d);
	CHECK(acc > 0.75, "uploaded student trained: %.4f", acc);
	seen_free(&s);
	/* a student with another output width */
	struct onnx_model *cnn = load_fixture("cnn.onnx");
	CHECK(cnn, "cnn");
	int64_t h2[1] = {8};
	CHECK(distill_build_mlp(cnn, h2, 1, 5, &wrong, &e) == NN_OK, "%s", e.message);
	/* cnn's input is [N,1,28,28] (784 per sample), output 10: it fits; make
	 * it not fit by asking for the cnn as the teacher of a 784-input MLP
	 * with 7 outputs instead */
	Onnx__TensorProto *w2 = onnx_find_initializer(wrong, "student.fc2.weight");
	Onnx__TensorProto *b2 = onnx_find_initializer(wrong, "student.fc2.bias");
	struct tensor nw, nb;
	int64_t sw[2] = {7, 8}, sb[1] = {7};
	CHECK(tensor_alloc(&nw, DT_FLOAT, 2, sw, &e) == NN_OK &&
		      tensor_alloc(&nb, DT_FLOAT, 1, sb, &e) == NN_OK,
	      "alloc");
	CHECK(onnx_initializer_set(w2, &nw, &e) == NN_OK && onnx_initializer_set(b2, &nb, &e) == NN_OK,
	      "set");
	tensor_free(&nw);
	tensor_free(&nb);
	wrong->proto->graph->output[0]->type->tensor_type->shape->dim[1]->dim_value = 7;
	struct step_model bad[1] = {{"mdl_wrong", wrong}};
	struct onnx_model *m2 = load_fixture("lenet300.onnx");
	CHECK(run_pipeline(m2,
			   "{\"dataset\":\"ds_train\",\"steps\":[{\"op\":\"distill\",\"student\":"
			   "{\"model\":\"mdl_wrong\"},\"epochs\":1}]}",
			   &d, bad, 1, &s, &e) == NN_EINVAL,
	      "refused");
	CHECK(!strcmp(e.field, "steps[0].student.model") && strstr(e.message, "must match"),
	      "field %s: %s", e.field, e.message);
	seen_free(&s);
	onnx_free(m2);
	onnx_free(cnn);
	onnx_free(wrong);
	onnx_free(up);
	onnx_free(m);
	onnx_free(t);
	data_free(&d);
	return 0;
}

/* ---- finetune ---- */

/* Gemm weights of m (float initializers named *.weight), concatenated. */
static float *weights(const struct onnx_model *m, size_t *n)
{
	struct onnx_weight_ref *refs = NULL;
	size_t count = 0, total = 0;
	struct nn_err e = {0};
	if (onnx_prunable_weights(m, &refs, &count, &e) != NN_OK)
		return NULL;
	float *out = NULL;
	for (int pass = 0; pass < 2; pass++) {
		total = 0;
		for (size_t i = 0; i < count; i++) {
			struct tensor v;
			if (onnx_initializer_view(refs[i].init, &v, &e) != NN_OK)
				continue;
			if (pass)
				memcpy(out + total, v.data, (size_t)tensor_numel(&v) * 4);
			total += (size_t)tensor_numel(&v);
			tensor_free(&v);
		}
		if (!pass && !(out = malloc(total * sizeof *out)))
			break;
	}
	free(refs);
	*n = total;
	return out;
}

static int test_finetune_after_prune(void)
{
	struct onnx_model *m = load_fixture("lenet300.onnx");
	CHECK(m, "fixture");
	struct data d;
	CHECK(!data_load(&d, 2000, 1000, 2), "data");
	double dense = exec_accuracy(m, &d);
	json_t *step = parse("{\"op\":\"prune\",\"sparsity\":0.97}");
	struct prune_params pp;
	struct nn_err e = {0};
	json_t *metrics = NULL;
	CHECK(prune_params_parse(step, 0, &pp, &e) == NN_OK, "%s", e.message);
	CHECK(prune_run(m, &pp, NULL, &metrics, &e) == NN_OK, "%s", e.message);
	json_decref(metrics);
	json_decref(step);
	double pruned = exec_accuracy(m, &d);
	size_t n0 = 0, n1 = 0;
	float *w0 = weights(m, &n0);
	CHECK(w0 && n0 == 266200, "weights %zu", n0);
	step = parse("{\"op\":\"finetune\",\"epochs\":3,\"batch_size\":64,\"optimizer\":"
		     "{\"name\":\"sgd\",\"lr\":0.02,\"momentum\":0.9,\"weight_decay\":1e-4}}");
	struct distill_params p;
	CHECK(distill_params_parse(step, 1, true, &p, &e) == NN_OK, "%s", e.message);
	struct step_ctx ctx = {.calib = &d.calib, .eval = &d.eval};
	CHECK(finetune_run(m, &p, &ctx, &metrics, &e) == NN_OK, "%s", e.message);
	json_decref(step);
	float *w1 = weights(m, &n1);
	CHECK(w1 && n1 == n0, "same weights");
	size_t zeros = 0, kept = 0, changed = 0;
	for (size_t i = 0; i < n0; i++) {
		if (w0[i] == 0) {
			zeros++;
			kept += w1[i] == 0 && !signbit(w1[i]);
		} else {
			changed += w1[i] != w0[i];
		}
	}
	double tuned = exec_accuracy(m, &d);
	fprintf(stderr,
		"dense %.4f, pruned 97%% %.4f, finetuned %.4f; %zu zeros, %zu kept, %zu weights "
		"changed; masked %lld\n",
		dense, pruned, tuned, zeros, kept, changed,
		(long long)json_integer_value(json_object_get(metrics, "masked")));
	CHECK(zeros > n0 * 96 / 100 && kept == zeros, "every pruned weight stays exactly +0");
	CHECK(changed > 0, "the kept weights trained");
	CHECK(json_integer_value(json_object_get(metrics, "masked")) == (json_int_t)zeros,
	      "masked = zeros");
	CHECK(tuned > pruned + 0.01, "finetune raises accuracy (%.4f -> %.4f)", pruned, tuned);
	double ort = ort_accuracy(m, 1000);
	if (ort > -2)
		CHECK(fabs(ort - tuned) <= 0.002, "ORT %.4f vs executor %.4f", ort, tuned);
	json_decref(metrics);
	free(w0);
	free(w1);
	onnx_free(m);
	data_free(&d);
	return 0;
}

struct init_info {
	char name[128];
	int dtype;
	size_t n_dims;
	int64_t dims[8];
	size_t bytes;
};

static size_t snapshot(const struct onnx_model *m, struct init_info *out, size_t cap)
{
	const Onnx__GraphProto *g = m->proto->graph;
	size_t n = 0;
	for (size_t i = 0; i < g->n_initializer && n < cap; i++, n++) {
		const Onnx__TensorProto *t = g->initializer[i];
		snprintf(out[n].name, sizeof out[n].name, "%s", t->name);
		out[n].dtype = t->data_type;
		out[n].n_dims = t->n_dims;
		for (size_t k = 0; k < t->n_dims && k < 8; k++)
			out[n].dims[k] = t->dims[k];
		out[n].bytes = t->raw_data.len;
	}
	return n;
}

static int finetune_int8(const char *granularity, struct data *d)
{
	struct onnx_model *m = load_fixture("lenet300.onnx");
	CHECK(m, "fixture");
	char text[256];
	snprintf(text, sizeof text,
		 "{\"op\":\"quantize\",\"scheme\":\"int8\",\"granularity\":\"%s\"}", granularity);
	json_t *step = parse(text);
	struct quant_params qp;
	struct nn_err e = {0};
	json_t *metrics = NULL;
	CHECK(quant_params_parse(step, 0, &qp, &e) == NN_OK, "%s", e.message);
	CHECK(quant_run(m, &qp, NULL, &metrics, &e) == NN_OK, "%s", e.message);
	json_decref(metrics);
	json_decref(step);
	double before = exec_accuracy(m, d);
	struct init_info a[64], b[64];
	size_t na = snapshot(m, a, 64);
	size_t size0 = onnx_packed_size(m);
	Onnx__TensorProto *sc = onnx_find_initializer(m, "fc1.weight_scale");
	Onnx__TensorProto *q = onnx_find_initializer(m, "fc1.weight_quantized");
	CHECK(sc && q, "quant.c's names (%s)", m->proto->graph->initializer[0]->name);
	void *scale0 = malloc(sc->raw_data.len), *q0 = malloc(q->raw_data.len);
	memcpy(scale0, sc->raw_data.data, sc->raw_data.len);
	memcpy(q0, q->raw_data.data, q->raw_data.len);
	size_t qlen = q->raw_data.len;
	step = parse("{\"op\":\"finetune\",\"teacher\":\"input\",\"alpha\":0.5,\"epochs\":2,"
		     "\"optimizer\":{\"name\":\"sgd\",\"lr\":0.01,\"momentum\":0.9}}");
	struct distill_params p;
	CHECK(distill_params_parse(step, 1, true, &p, &e) == NN_OK, "%s", e.message);
	json_decref(step);
	struct onnx_model *input = load_fixture("lenet300.onnx");
	struct step_ctx ctx = {.calib = &d->calib, .eval = &d->eval, .input_model = input};
	CHECK(finetune_run(m, &p, &ctx, &metrics, &e) == NN_OK, "%s", e.message);
	size_t nb = snapshot(m, b, 64);
	CHECK(na == nb, "same initializers (%zu, %zu)", na, nb);
	for (size_t i = 0; i < na; i++)
		CHECK(!strcmp(a[i].name, b[i].name) && a[i].dtype == b[i].dtype &&
			      a[i].n_dims == b[i].n_dims &&
			      !memcmp(a[i].dims, b[i].dims, a[i].n_dims * 8) &&
			      a[i].bytes == b[i].bytes,
		      "initializer %s keeps name, dtype, shape and size", a[i].name);
	CHECK(onnx_packed_size(m) == size0, "artifact size %zu == %zu", onnx_packed_size(m), size0);
	sc = onnx_find_initializer(m, "fc1.weight_scale");
	q = onnx_find_initializer(m, "fc1.weight_quantized");
	CHECK(!memcmp(scale0, sc->raw_data.data, sc->raw_data.len), "scales kept");
	size_t diff = 0;
	for (size_t i = 0; i < qlen; i++)
		diff += ((uint8_t *)q0)[i] != q->raw_data.data[i];
	CHECK(count_op(m, "DequantizeLinear") == 3 && count_op(m, "Gemm") == 3, "layout kept");
	CHECK(json_integer_value(json_object_get(metrics, "fake_quantized")) == 3, "3 shadows");
	double after = exec_accuracy(m, d);
	fprintf(stderr, "int8 %s: accuracy %.4f -> %.4f, %zu of %zu int8 values changed\n",
		granularity, before, after, diff, qlen);
	CHECK(diff > 0, "the int8 values trained");
	CHECK(after >= before - 0.01, "accuracy kept (%.4f -> %.4f)", before, after);
	double ort = ort_accuracy(m, 1000);
	if (ort > -2)
		CHECK(fabs(ort - after) <= 0.002, "ORT %.4f vs executor %.4f", ort, after);
	json_decref(metrics);
	free(scale0);
	free(q0);
	onnx_free(input);
	onnx_free(m);
	return 0;
}

static int test_finetune_int8(void)
{
	struct data d;
	CHECK(!data_load(&d, 1000, 1000, 2), "data");
	int r = finetune_int8("per_channel", &d) || finetune_int8("per_tensor", &d);
	data_free(&d);
	return r;
}

static int test_finetune_refuses_int4(void)
{
	struct onnx_model *m = load_fixture("lenet300.onnx");
	CHECK(m, "fixture");
	struct data d;
	CHECK(!data_load(&d, 200, 100, 2), "data");
	json_t *step = parse("{\"op\":\"quantize\",\"scheme\":\"int4\"}");
	struct quant_params qp;
	struct nn_err e = {0};
	json_t *metrics = NULL;
	CHECK(quant_params_parse(step, 0, &qp, &e) == NN_OK, "%s", e.message);
	CHECK(quant_run(m, &qp, NULL, &metrics, &e) == NN_OK, "%s", e.message);
	json_decref(metrics);
	json_decref(step);
	step = parse("{\"op\":\"finetune\",\"epochs\":1}");
	struct distill_params p;
	CHECK(distill_params_parse(step, 1, true, &p, &e) == NN_OK, "%s", e.message);
	json_decref(step);
	struct step_ctx ctx = {.calib = &d.calib};
	metrics = NULL;
	enum nn_status st = finetune_run(m, &p, &ctx, &metrics, &e);
	CHECK(st == NN_EUNSUPPORTED && strstr(e.message, "int8"), "int4 refused: %s", e.message);
	onnx_free(m);
	data_free(&d);
	return 0;
}

/* distill then quantize int8 in one pipeline; the CNN teacher (rank-4 input)
 * into an MLP student, with a feature-free distillation at alpha 1 (no
 * labels needed). */
static int test_pipeline_distill_then_int8(void)
{
	struct onnx_model *m = load_fixture("cnn.onnx");
	CHECK(m, "fixture");
	struct data d;
	CHECK(!data_load(&d, 1000, 500, 4), "data");
	d.calib.labels = NULL; /* soft targets only */
	struct seen s;
	struct nn_err e = {0};
	CHECK(run_pipeline(m,
			   "{\"dataset\":\"ds_train\",\"steps\":[{\"op\":\"distill\",\"student\":"
			   "{\"hidden\":[64]},\"alpha\":1,\"temperature\":2,\"epochs\":5,"
			   "\"optimizer\":{\"name\":\"adam\",\"lr\":0.003}},"
			   "{\"op\":\"quantize\",\"scheme\":\"int8\"}]}",
			   &d, NULL, 0, &s, &e) == NN_OK,
	      "%s", e.message);
	CHECK(count_op(m, "Flatten") == 1 && count_op(m, "DequantizeLinear") == 2 &&
		      count_op(m, "Conv") == 0,
	      "an int8 MLP student");
	CHECK(json_array_size(s.events) == 5, "5 epoch events");
	const json_t *row = json_object_get(json_array_get(s.events, 0), "data");
	CHECK(!json_object_get(row, "train_accuracy"), "no labels: no train accuracy");
	double acc = exec_accuracy(m, &d);
	fprintf(stderr, "cnn -> 784-64-10 (soft targets only) + int8: accuracy %.4f\n", acc);
	CHECK(acc > 0.8, "accuracy %.4f", acc);
	const json_t *last = json_array_get(s.metrics, 1);
	CHECK(json_object_get(last, "artifact"), "artifact verified");
	double ort = ort_accuracy(m, 500);
	if (ort > -2)
		CHECK(fabs(ort - acc) <= 0.004, "ORT %.4f vs executor %.4f", ort, acc);
	seen_free(&s);
	onnx_free(m);
	data_free(&d);
	return 0;
}

/* Mean squared difference between a student tensor and a teacher tensor on
 * the evaluation digits (train graphs with taps, inference mode). */
static double feature_gap(const struct onnx_model *s, const char *sname,
			  const struct onnx_model *t, const char *tname, const struct data *d)
{
	const char *st[1] = {sname}, *tt[1] = {tname};
	struct tg_options so = {.max_batch = 1000, .taps = st, .n_taps = 1};
	struct tg_options to = {.max_batch = 1000, .taps = tt, .n_taps = 1};
	struct tg_graph *gs = NULL, *gt = NULL;
	struct nn_err e = {0};
	double gap = -1;
	const float *out;
	int64_t ns = 0, nt = 0;
	if (tg_compile(s, &so, &gs, &e) == NN_OK && tg_compile(t, &to, &gt, &e) == NN_OK &&
	    tg_forward(gs, d->tx, 1000, false, &out, &e) == NN_OK &&
	    tg_forward(gt, d->tx, 1000, false, &out, &e) == NN_OK) {
		const float *a = tg_tap(gs, sname, &ns), *b = tg_tap(gt, tname, &nt);
		if (a && b && ns == nt) {
			double sum = 0;
			for (int64_t i = 0; i < 1000 * ns; i++)
				sum += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
			gap = sum / (double)(1000 * ns);
		}
	}
	if (gap < 0)
		fprintf(stderr, "feature_gap: %s\n", e.message);
	tg_free(gs);
	tg_free(gt);
	return gap;
}

/* feature_loss pulls the student's hidden layer towards the teacher's; sizes
 * that differ are refused naming both tensors. */
static int test_feature_loss(void)
{
	struct onnx_model *t = load_fixture("lenet300.onnx");
	CHECK(t, "fixture");
	struct data d;
	CHECK(!data_load(&d, 1000, 1000, 2), "data");
	double gaps[2];
	for (int k = 0; k < 2; k++) {
		struct onnx_model *m = load_fixture("lenet300.onnx");
		struct seen s;
		struct nn_err e = {0};
		char spec[1024];
		snprintf(spec, sizeof spec,
			 "{\"dataset\":\"ds_train\",\"steps\":[{\"op\":\"distill\",\"student\":"
			 "{\"hidden\":[100]},\"epochs\":3,\"seed\":4,\"optimizer\":{\"name\":\"adam\","
			 "\"lr\":0.002}%s}]}",
			 k ? ",\"feature_loss\":{\"teacher\":\"/Relu_1_output_0\",\"student\":"
			     "\"student/relu1\",\"weight\":1.0}"
			   : "");
		CHECK(run_pipeline(m, spec, &d, NULL, 0, &s, &e) == NN_OK, "%s", e.message);
		gaps[k] = feature_gap(m, "student/relu1", t, "/Relu_1_output_0", &d);
		double acc = exec_accuracy(m, &d);
		fprintf(stderr, "%s feature loss: hidden-layer gap %.4f, accuracy %.4f\n",
			k ? "with" : "without", gaps[k], acc);
		CHECK(acc > 0.7, "accuracy %.4f", acc);
		seen_free(&s);
		onnx_free(m);
	}
	CHECK(gaps[0] > 0 && gaps[1] >= 0 && gaps[1] < 0.8 * gaps[0],
	      "the feature loss brings the hidden layer closer (%.4f vs %.4f)", gaps[1], gaps[0]);
	struct onnx_model *m = load_fixture("lenet300.onnx");
	struct seen s;
	struct nn_err e = {0};
	CHECK(run_pipeline(m,
			   "{\"dataset\":\"ds_train\",\"steps\":[{\"op\":\"distill\",\"student\":"
			   "{\"hidden\":[64]},\"epochs\":1,\"feature_loss\":{\"teacher\":"
			   "\"/Relu_1_output_0\",\"student\":\"student/relu1\"}}]}",
			   &d, NULL, 0, &s, &e) == NN_EINVAL,
	      "sizes differ");
	CHECK(strstr(e.message, "student/relu1") && strstr(e.message, "/Relu_1_output_0"),
	      "%s", e.message);
	seen_free(&s);
	onnx_free(m);
	onnx_free(t);
	data_free(&d);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: test_distill CASE FIXTURES_DIR MNIST_DIR [NODE EVAL_JS]\n");
		return 2;
	}
	fixtures = argv[2];
	mnist_dir = argv[3];
	if (argc >= 6) {
		node = argv[4];
		eval_js = argv[5];
	}
	static const struct {
		const char *name;
		int (*fn)(void);
	} cases[] = {
		{"params_refused", test_params_refused},
		{"mlp_student_init", test_mlp_student_init},
		{"epochs0_initial_student", test_epochs0_returns_initial_student},
		{"distill_lenet300_mlp32", test_distill_lenet300_mlp32},
		{"structured_and_model_students", test_structured_and_model_students},
		{"finetune_after_prune", test_finetune_after_prune},
		{"finetune_int8", test_finetune_int8},
		{"finetune_refuses_int4", test_finetune_refuses_int4},
		{"pipeline_distill_then_int8", test_pipeline_distill_then_int8},
		{"feature_loss", test_feature_loss},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (!strcmp(argv[1], cases[i].name))
			return cases[i].fn();
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}
