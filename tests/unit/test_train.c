/* Unit tests for engine/train (the training loop): same seed -> bit-identical
 * weights, a separable problem learnt to 100% (SGD mini-batches and full-batch
 * L-BFGS over several chunks), the chunked full-batch gradient equal to the
 * one-chunk gradient, one "epoch" event per epoch with the documented fields,
 * cancel within one batch, refusals of inconsistent inputs.
 * Students are MLPs built by distill_build_mlp on the shape of the LeNet-300
 * fixture; data are MNIST digits or planted separable rows.
 * Usage: test_train CASE FIXTURES_DIR MNIST_DIR */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "distill.h"
#include "onnx_io.h"
#include "optim.h"
#include "train.h"
#include "train_graph.h"
#include "train_mnist.h"

static const char *fixtures = ".", *mnist_dir = ".";

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

/* A student built on lenet300's shape (784 -> hidden... -> 10), compiled with
 * its optimizer. */
struct rig {
	struct onnx_model *m;
	struct tg_graph *g;
	struct optim *opt;
	struct tg_param **params;
};

static void rig_free(struct rig *r)
{
	optim_free(r->opt);
	tg_free(r->g);
	free(r->params);
	onnx_free(r->m);
	memset(r, 0, sizeof *r);
}

static int rig_new(struct rig *r, const int64_t *hidden, size_t n_hidden, uint64_t seed,
		   int64_t batch, const struct optim_params *op)
{
	memset(r, 0, sizeof *r);
	struct nn_err e = {0};
	struct onnx_model *t = load_fixture("lenet300.onnx");
	CHECK(t, "lenet300 fixture");
	enum nn_status st = distill_build_mlp(t, hidden, n_hidden, seed, &r->m, &e);
	onnx_free(t);
	CHECK(st == NN_OK, "build: %s", e.message);
	struct tg_options o = {.max_batch = batch, .seed = seed};
	CHECK(tg_compile(r->m, &o, &r->g, &e) == NN_OK, "compile: %s", e.message);
	size_t np = tg_param_count(r->g);
	r->params = calloc(np, sizeof *r->params);
	CHECK(r->params, "oom");
	for (size_t i = 0; i < np; i++)
		r->params[i] = tg_param(r->g, i);
	CHECK(optim_new(op, r->params, np, &r->opt, &e) == NN_OK, "optim: %s", e.message);
	return 0;
}

static struct optim_params sgd(double lr, double momentum)
{
	struct optim_params p;
	optim_params_default(OPTIM_SGD, &p);
	p.lr = lr;
	p.momentum = momentum;
	return p;
}

/* Trains a 784-32-10 student for 2 epochs on 600 digits with `seed`;
 * returns a copy of every parameter, concatenated. */
static float *train_once(uint64_t seed, size_t *count)
{
	float *x;
	int64_t *y;
	if (!mnist_load(mnist_dir, "train", 600, &x, &y))
		return NULL;
	int64_t hidden[1] = {32};
	struct train_params p;
	train_params_default(&p);
	p.epochs = 2;
	p.batch_size = 64;
	p.alpha = 0;
	p.seed = seed;
	p.optimizer = sgd(0.1, 0.9);
	struct rig r;
	float *out = NULL;
	if (rig_new(&r, hidden, 1, 1, 64, &p.optimizer))
		goto done;
	struct train_set t = {x, y, 600, 784};
	struct nn_err e = {0};
	if (train_run(r.g, r.opt, &p, &t, NULL, NULL, NULL, NULL, &e) != NN_OK) {
		fprintf(stderr, "train_run: %s\n", e.message);
		goto done;
	}
	size_t n = 0;
	for (size_t i = 0; i < tg_param_count(r.g); i++)
		n += tg_param(r.g, i)->n;
	out = malloc(n * sizeof *out);
	for (size_t i = 0, o = 0; out && i < tg_param_count(r.g); i++) {
		memcpy(out + o, tg_param(r.g, i)->value, tg_param(r.g, i)->n * sizeof *out);
		o += tg_param(r.g, i)->n;
	}
	*count = n;
done:
	rig_free(&r);
	free(x);
	free(y);
	return out;
}

static int test_same_seed_bit_identical(void)
{
	size_t n1 = 0, n2 = 0, n3 = 0;
	float *a = train_once(5, &n1), *b = train_once(5, &n2), *c = train_once(6, &n3);
	CHECK(a && b && c, "three runs");
	CHECK(n1 == n2 && n1 == n3 && n1 == 784 * 32 + 32 + 32 * 10 + 10, "sizes %zu", n1);
	CHECK(!memcmp(a, b, n1 * sizeof *a), "same seed gives bit-identical weights");
	CHECK(memcmp(a, c, n1 * sizeof *a), "another seed shuffles differently");
	free(a);
	free(b);
	free(c);
	return 0;
}

/* Planted separable rows: class c lights pixels [100c, 100c + 50) at ~1 with
 * noise elsewhere; labels 0..2 of the 10 outputs. */
static void planted(int64_t n, float *x, int64_t *y)
{
	uint64_t s = 42;
	for (int64_t i = 0; i < n; i++) {
		int64_t c = i % 3;
		y[i] = c;
		for (int64_t j = 0; j < 784; j++) {
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			float noise = (float)((s >> 40) & 0xffff) / 65536.0f * 0.2f;
			x[i * 784 + j] = noise + ((j >= 100 * c && j < 100 * c + 50) ? 1.0f : 0.0f);
		}
	}
}

static int separable(const struct optim_params *op, int64_t epochs, int64_t batch)
{
	enum { N = 300 };
	float *x = malloc((size_t)N * 784 * sizeof *x);
	int64_t *y = malloc(N * sizeof *y);
	CHECK(x && y, "oom");
	planted(N, x, y);
	struct train_params p;
	train_params_default(&p);
	p.epochs = epochs;
	p.batch_size = batch;
	p.alpha = 0;
	p.optimizer = *op;
	struct rig r;
	CHECK(!rig_new(&r, NULL, 0, 3, batch, op), "linear model");
	struct train_set t = {x, y, N, 784};
	struct nn_err e = {0};
	json_t *hist = NULL;
	CHECK(train_run(r.g, r.opt, &p, &t, NULL, &t, NULL, &hist, &e) == NN_OK, "%s", e.message);
	CHECK(json_array_size(hist) == (size_t)epochs, "one history row per epoch");
	const json_t *last = json_array_get(hist, (size_t)epochs - 1);
	double loss = json_real_value(json_object_get(last, "loss"));
	double acc = 0;
	CHECK(train_accuracy(r.g, NULL, &t, &acc, &e) == NN_OK, "%s", e.message);
	fprintf(stderr, "%s: final loss %.5f, accuracy %.4f\n", optim_kind_name(op->kind), loss, acc);
	CHECK(acc == 1.0, "separable set learnt exactly (accuracy %.4f)", acc);
	CHECK(loss < 0.05, "loss %.5f below 0.05", loss);
	CHECK(json_real_value(json_object_get(last, "eval_accuracy")) == 1.0, "eval accuracy 1");
	json_decref(hist);
	rig_free(&r);
	free(x);
	free(y);
	return 0;
}

static int test_separable_sgd(void)
{
	struct optim_params op = sgd(0.1, 0.9);
	return separable(&op, 10, 32);
}

static int test_separable_lbfgs_chunks(void)
{
	struct optim_params op;
	optim_params_default(OPTIM_LBFGS, &op);
	op.strong_wolfe = true;
	/* batch 64 < 300 samples: the closure sums 5 chunks */
	return separable(&op, 3, 64);
}

/* The full-batch closure over chunks gives the gradient of the mean over the
 * set: compared with one forward/backward of the whole set at once. */
static int test_chunked_gradient_matches_whole(void)
{
	float *x;
	int64_t *y;
	CHECK(mnist_load(mnist_dir, "train", 200, &x, &y), "MNIST under %s", mnist_dir);
	int64_t hidden[1] = {16};
	struct optim_params op;
	optim_params_default(OPTIM_LBFGS, &op);
	op.max_iter = 1;
	op.lr = 1e-9; /* the step barely moves: compare the gradients it was given */
	struct rig whole, chunks;
	CHECK(!rig_new(&whole, hidden, 1, 9, 200, &op), "whole");
	CHECK(!rig_new(&chunks, hidden, 1, 9, 48, &op), "chunks");
	struct train_params p;
	train_params_default(&p);
	p.epochs = 1;
	p.alpha = 0;
	p.optimizer = op;
	struct train_set t = {x, y, 200, 784};
	struct nn_err e = {0};
	p.batch_size = 200;
	CHECK(train_run(whole.g, whole.opt, &p, &t, NULL, NULL, NULL, NULL, &e) == NN_OK, "%s",
	      e.message);
	p.batch_size = 48;
	CHECK(train_run(chunks.g, chunks.opt, &p, &t, NULL, NULL, NULL, NULL, &e) == NN_OK, "%s",
	      e.message);
	/* L-BFGS's first closure left each parameter's grad = the set's gradient;
	 * later closures (line search) ran at nearly the same point. */
	double maxd = 0, maxg = 0;
	for (size_t i = 0; i < tg_param_count(whole.g); i++) {
		const struct tg_param *a = tg_param(whole.g, i), *b = tg_param(chunks.g, i);
		for (size_t k = 0; k < a->n; k++) {
			maxd = fmax(maxd, fabs((double)a->grad[k] - (double)b->grad[k]));
			maxg = fmax(maxg, fabs((double)a->grad[k]));
		}
	}
	fprintf(stderr, "max |grad| %.3g, max difference %.3g\n", maxg, maxd);
	CHECK(maxg > 0 && maxd <= 1e-5 * maxg + 1e-7, "chunked gradient = whole-set gradient");
	rig_free(&whole);
	rig_free(&chunks);
	free(x);
	free(y);
	return 0;
}

struct recorder {
	json_t *events;
	int progress_calls;
	int cancel_after;
	atomic_bool cancel;
};

static void rec_event(void *ud, const char *type, const json_t *data)
{
	struct recorder *r = ud;
	json_array_append_new(r->events, json_pack("{s:s, s:O}", "type", type, "data", data));
}

static void rec_progress(void *ud, double f)
{
	struct recorder *r = ud;
	(void)f;
	r->progress_calls++;
	if (r->cancel_after && r->progress_calls == r->cancel_after)
		atomic_store(&r->cancel, true);
}

static int test_epoch_events(void)
{
	float *x, *tx;
	int64_t *y, *ty;
	CHECK(mnist_load(mnist_dir, "train", 500, &x, &y), "MNIST under %s", mnist_dir);
	CHECK(mnist_load(mnist_dir, "t10k", 300, &tx, &ty), "MNIST test");
	int64_t hidden[1] = {32};
	struct train_params p;
	train_params_default(&p);
	p.epochs = 3;
	p.batch_size = 100;
	p.alpha = 0;
	p.optimizer = sgd(0.1, 0.9);
	p.schedule.kind = OPTIM_SCHED_COSINE;
	struct rig r;
	CHECK(!rig_new(&r, hidden, 1, 2, 100, &p.optimizer), "rig");
	struct recorder rec = {.events = json_array()};
	struct step_ctx ctx = {.event = rec_event, .progress = rec_progress, .ud = &rec};
	struct train_set t = {x, y, 500, 784}, ev = {tx, ty, 300, 784};
	struct nn_err e = {0};
	json_t *hist = NULL;
	CHECK(train_run(r.g, r.opt, &p, &t, NULL, &ev, &ctx, &hist, &e) == NN_OK, "%s", e.message);
	CHECK(json_array_size(rec.events) == 3, "3 events, got %zu", json_array_size(rec.events));
	CHECK(rec.progress_calls >= 15, "progress per batch (%d calls)", rec.progress_calls);
	double prev_loss = INFINITY;
	for (size_t i = 0; i < 3; i++) {
		const json_t *ev_i = json_array_get(rec.events, i);
		const json_t *d = json_object_get(ev_i, "data");
		CHECK(!strcmp(json_string_value(json_object_get(ev_i, "type")), "epoch"), "type");
		CHECK(json_integer_value(json_object_get(d, "epoch")) == (json_int_t)i + 1, "epoch");
		const char *keys[] = {"loss", "train_accuracy", "eval_accuracy", "lr", "seconds"};
		for (size_t k = 0; k < 5; k++)
			CHECK(json_is_number(json_object_get(d, keys[k])), "field %s", keys[k]);
		CHECK(json_equal(d, json_array_get(hist, i)), "history row = event data");
		double loss = json_real_value(json_object_get(d, "loss"));
		CHECK(loss < prev_loss, "loss decreases (%g after %g)", loss, prev_loss);
		prev_loss = loss;
	}
	/* cosine over 3 epochs, per epoch: lr 0.1, 0.075, 0.025 */
	double lr2 = json_real_value(json_object_get(json_array_get(hist, 1), "lr"));
	CHECK(fabs(lr2 - 0.075) < 1e-12, "epoch 2 lr %g", lr2);
	double acc = json_real_value(json_object_get(json_array_get(hist, 2), "eval_accuracy"));
	CHECK(acc > 0.5, "eval accuracy %.3f after 3 epochs on 500 digits (chance: 0.1)", acc);
	json_decref(hist);
	json_decref(rec.events);
	rig_free(&r);
	free(x);
	free(y);
	free(tx);
	free(ty);
	return 0;
}

static int test_cancel_within_one_batch(void)
{
	float *x;
	int64_t *y;
	CHECK(mnist_load(mnist_dir, "train", 1000, &x, &y), "MNIST under %s", mnist_dir);
	int64_t hidden[1] = {32};
	struct train_params p;
	train_params_default(&p);
	p.epochs = 5;
	p.batch_size = 50;
	p.alpha = 0;
	struct rig r;
	CHECK(!rig_new(&r, hidden, 1, 2, 50, &p.optimizer), "rig");
	/* The flag goes up during batch 7 of epoch 2 (after its progress call). */
	struct recorder rec = {.events = json_array(), .cancel_after = 27};
	atomic_init(&rec.cancel, false);
	struct step_ctx ctx = {
		.event = rec_event, .progress = rec_progress, .ud = &rec, .cancel = &rec.cancel};
	struct train_set t = {x, y, 1000, 784};
	struct nn_err e = {0};
	CHECK(train_run(r.g, r.opt, &p, &t, NULL, NULL, &ctx, NULL, &e) == NN_ECANCELED,
	      "canceled: %s", e.message);
	CHECK(rec.progress_calls == 27, "no batch ran after the flag (%d)", rec.progress_calls);
	CHECK(json_array_size(rec.events) == 1, "epoch 1 reported, epoch 2 not");
	fprintf(stderr, "%s\n", e.message);
	CHECK(strstr(e.message, "epoch 2, batch 8"), "message names where: %s", e.message);
	json_decref(rec.events);
	rig_free(&r);
	free(x);
	free(y);
	return 0;
}

static int test_refusals(void)
{
	float x[784 * 4] = {0};
	int64_t y[4] = {0, 1, 2, 3};
	struct train_params p;
	train_params_default(&p);
	p.epochs = 1;
	p.batch_size = 4;
	struct rig r;
	CHECK(!rig_new(&r, NULL, 0, 1, 4, &p.optimizer), "rig");
	struct nn_err e = {0};
	struct train_set t = {x, y, 4, 784};
	p.alpha = 0.5;
	CHECK(train_run(r.g, r.opt, &p, &t, NULL, NULL, NULL, NULL, &e) == NN_EINVAL &&
		      strstr(e.message, "teacher"),
	      "alpha without a teacher: %s", e.message);
	p.alpha = 0;
	struct train_set nolabels = {x, NULL, 4, 784};
	CHECK(train_run(r.g, r.opt, &p, &nolabels, NULL, NULL, NULL, NULL, &e) == NN_EINVAL &&
		      strstr(e.message, "labelled"),
	      "labels needed: %s", e.message);
	struct train_set narrow = {x, y, 4, 783};
	CHECK(train_run(r.g, r.opt, &p, &narrow, NULL, NULL, NULL, NULL, &e) == NN_EINVAL &&
		      strstr(e.message, "783"),
	      "sample size: %s", e.message);
	int64_t bad_labels[4] = {0, 1, 10, 3};
	struct train_set badl = {x, bad_labels, 4, 784};
	CHECK(train_run(r.g, r.opt, &p, &badl, NULL, NULL, NULL, NULL, &e) == NN_EINVAL,
	      "label out of range: %s", e.message);
	/* a non-finite loss stops the run */
	float big[784 * 4];
	for (size_t i = 0; i < 784 * 4; i++)
		big[i] = NAN;
	struct train_set huge = {big, y, 4, 784};
	enum nn_status st = train_run(r.g, r.opt, &p, &huge, NULL, NULL, NULL, NULL, &e);
	CHECK(st == NN_EINVAL && !strcmp(e.code, "training_diverged"), "diverged: %s", e.message);
	rig_free(&r);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: test_train CASE FIXTURES_DIR MNIST_DIR\n");
		return 2;
	}
	fixtures = argv[2];
	mnist_dir = argv[3];
	static const struct {
		const char *name;
		int (*fn)(void);
	} cases[] = {
		{"same_seed_bit_identical", test_same_seed_bit_identical},
		{"separable_sgd", test_separable_sgd},
		{"separable_lbfgs_chunks", test_separable_lbfgs_chunks},
		{"chunked_gradient_matches_whole", test_chunked_gradient_matches_whole},
		{"epoch_events", test_epoch_events},
		{"cancel_within_one_batch", test_cancel_within_one_batch},
		{"refusals", test_refusals},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (!strcmp(argv[1], cases[i].name))
			return cases[i].fn();
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}
