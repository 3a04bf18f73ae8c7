/* optim: trajectories of SGD / Adam / AdamW / L-BFGS and the schedules' lr
 * sequences against PyTorch 1.13 (data/optim_ref.json, written by
 * data/make_optim_ref.py: the same softmax regression and Rosenbrock problems,
 * gradients computed the same way on both sides), masks, weight decay only on
 * decay parameters, spec parsing with field paths.
 * Usage: test_optim CASE DATA_DIR */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "check.h"
#include "optim.h"
#include "train_loss.h"

static const char *data_dir = ".";

/* Replayed values must agree with PyTorch's to 1e-5 relative; entries that
 * pass near 0 are compared against 1e-5 of the tensor's largest magnitude. */
#define REL_TOL 1e-5

static json_t *load_ref(void)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/optim_ref.json", data_dir);
	json_error_t je;
	json_t *j = json_load_file(path, 0, &je);
	if (!j)
		fprintf(stderr, "%s: %s (line %d)\n", path, je.text, je.line);
	return j;
}

static void to_floats(const json_t *a, float *out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = (float)json_number_value(json_array_get(a, i));
}

/* ---- the problems ---- */
struct problem {
	int64_t n, f, k;
	float *x, *w0, *b0;
	int64_t *labels;
	uint8_t *mask;
	float rosen0[2];
	/* parameters */
	float *w, *b, *gw, *gb;
	float *logits, *dlogits;
	struct tg_param pw, pb;
	int calls;
	int fail_at; /* closure call that fails (0 = never) */
};

static void problem_free(struct problem *p)
{
	free(p->x);
	free(p->w0);
	free(p->b0);
	free(p->labels);
	free(p->mask);
	free(p->w);
	free(p->b);
	free(p->gw);
	free(p->gb);
	free(p->logits);
	free(p->dlogits);
}

static int problem_load(const json_t *ref, struct problem *p)
{
	memset(p, 0, sizeof *p);
	const json_t *j = json_object_get(ref, "problem");
	p->n = json_integer_value(json_object_get(j, "n"));
	p->f = json_integer_value(json_object_get(j, "features"));
	p->k = json_integer_value(json_object_get(j, "classes"));
	size_t nw = (size_t)(p->k * p->f);
	p->x = calloc((size_t)(p->n * p->f), sizeof(float));
	p->w0 = calloc(nw, sizeof(float));
	p->b0 = calloc((size_t)p->k, sizeof(float));
	p->w = calloc(nw, sizeof(float));
	p->b = calloc((size_t)p->k, sizeof(float));
	p->gw = calloc(nw, sizeof(float));
	p->gb = calloc((size_t)p->k, sizeof(float));
	p->labels = calloc((size_t)p->n, sizeof(int64_t));
	p->mask = calloc(nw, 1);
	p->logits = calloc((size_t)(p->n * p->k), sizeof(float));
	p->dlogits = calloc((size_t)(p->n * p->k), sizeof(float));
	if (!p->x || !p->w0 || !p->b0 || !p->w || !p->b || !p->gw || !p->gb || !p->labels ||
	    !p->mask || !p->logits || !p->dlogits)
		return 1;
	to_floats(json_object_get(j, "x"), p->x, (size_t)(p->n * p->f));
	to_floats(json_object_get(j, "w0"), p->w0, nw);
	to_floats(json_object_get(j, "b0"), p->b0, (size_t)p->k);
	to_floats(json_object_get(j, "rosenbrock0"), p->rosen0, 2);
	for (int64_t i = 0; i < p->n; i++)
		p->labels[i] = json_integer_value(json_array_get(json_object_get(j, "labels"), (size_t)i));
	for (size_t i = 0; i < nw; i++)
		p->mask[i] = (uint8_t)json_integer_value(json_array_get(json_object_get(j, "mask"), i));
	return 0;
}

/* softmax regression: logits = x w^T + b, mean cross-entropy */
static enum nn_status softmax_closure(void *ud, double *loss, struct nn_err *e)
{
	struct problem *p = ud;
	if (p->fail_at && ++p->calls == p->fail_at)
		return err_set(e, NN_ECANCELED, "canceled", "", "closure stopped at call %d", p->calls);
	for (int64_t i = 0; i < p->n; i++)
		for (int64_t c = 0; c < p->k; c++) {
			double s = p->b[c];
			for (int64_t j = 0; j < p->f; j++)
				s += (double)p->x[i * p->f + j] * p->w[c * p->f + j];
			p->logits[i * p->k + c] = (float)s;
		}
	enum nn_status st = loss_cross_entropy(p->logits, p->labels, p->n, p->k, p->dlogits, loss, e);
	if (st != NN_OK)
		return st;
	for (int64_t c = 0; c < p->k; c++) {
		double sb = 0;
		for (int64_t i = 0; i < p->n; i++)
			sb += p->dlogits[i * p->k + c];
		p->gb[c] = (float)sb;
		for (int64_t j = 0; j < p->f; j++) {
			double s = 0;
			for (int64_t i = 0; i < p->n; i++)
				s += (double)p->dlogits[i * p->k + c] * p->x[i * p->f + j];
			p->gw[c * p->f + j] = (float)s;
		}
	}
	return NN_OK;
}

/* Rosenbrock (1 - x)^2 + 100 (y - x^2)^2 on the two floats of p->w */
static enum nn_status rosen_closure(void *ud, double *loss, struct nn_err *e)
{
	struct problem *p = ud;
	(void)e;
	double x = p->w[0], y = p->w[1], r = y - x * x;
	*loss = (1 - x) * (1 - x) + 100 * r * r;
	p->gw[0] = (float)(-2 * (1 - x) - 400 * x * r);
	p->gw[1] = (float)(200 * r);
	return NN_OK;
}

static double max_abs(const json_t *a)
{
	double m = 0;
	for (size_t i = 0; i < json_array_size(a); i++)
		m = fmax(m, fabs(json_number_value(json_array_get(a, i))));
	return m;
}

/* Compares got[0..n) with the JSON array; tracks the worst relative error. */
static int compare(const char *what, const char *name, int step, const float *got,
		   const json_t *want, size_t n, double *worst)
{
	double scale = max_abs(want);
	for (size_t i = 0; i < n; i++) {
		double w = json_number_value(json_array_get(want, i));
		double err = fabs(got[i] - w) / fmax(fabs(w), scale);
		if (err > *worst)
			*worst = err;
		CHECK(err <= REL_TOL, "%s step %d: %s[%zu] = %.9g, PyTorch %.9g (rel %.2g)", name, step,
		      what, i, (double)got[i], w, err);
	}
	return 0;
}

/* Replays one reference case; lbfgs selects which cases this run takes. */
static int replay(const json_t *c, struct problem *p, int *replayed)
{
	const char *name = json_string_value(json_object_get(c, "name"));
	const char *problem = json_string_value(json_object_get(c, "problem"));
	bool rosen = !strcmp(problem, "rosenbrock");
	bool masked = json_is_true(json_object_get(c, "masked"));
	struct nn_err e = {0};
	struct optim_params op;
	struct optim_schedule sched;
	const json_t *jsched = json_object_get(c, "schedule");
	CHECK(optim_params_parse(json_object_get(c, "optimizer"), "optimizer", &op, &e) == NN_OK,
	      "%s: %s (%s)", name, e.message, e.field);
	CHECK(optim_schedule_parse(jsched, "schedule", &sched, &e) == NN_OK, "%s: %s", name,
	      e.message);
	int64_t epochs = json_integer_value(json_object_get(c, "epochs"));
	int64_t ipe = json_integer_value(json_object_get(c, "iters_per_epoch"));
	if (jsched)
		CHECK(optim_schedule_check(&sched, op.lr, epochs, "schedule", &e) == NN_OK, "%s: %s",
		      name, e.message);

	size_t nw = rosen ? 2 : (size_t)(p->k * p->f);
	if (rosen) {
		memcpy(p->w, p->rosen0, sizeof p->rosen0);
	} else {
		memcpy(p->w, p->w0, nw * sizeof(float));
		memcpy(p->b, p->b0, (size_t)p->k * sizeof(float));
	}
	p->pw = (struct tg_param){"w", p->w, p->gw, nw, true};
	p->pb = (struct tg_param){"b", p->b, p->gb, (size_t)p->k, false};
	struct tg_param *params[2] = {&p->pw, &p->pb};
	struct optim *o = NULL;
	CHECK(optim_new(&op, params, rosen ? 1 : 2, &o, &e) == NN_OK, "%s: %s", name, e.message);
	if (masked) /* W0 * mask, as the reference starts */
		CHECK(optim_set_mask(o, 0, p->mask, &e) == NN_OK, "%s: %s", name, e.message);

	const json_t *ws = json_object_get(c, "w"), *bs = json_object_get(c, "b");
	const json_t *losses = json_object_get(c, "loss"), *lrs = json_object_get(c, "lr");
	const json_t *evals = json_object_get(c, "func_evals"), *iters = json_object_get(c, "n_iter");
	double worst = 0;
	int rc = 0;
	for (size_t k = 0; k < json_array_size(ws) && !rc; k++) {
		double want_lr = json_number_value(json_array_get(lrs, k));
		if (jsched) {
			double lr = optim_schedule_lr(&sched, op.lr, epochs, ipe, (int64_t)k / ipe,
						      (int64_t)k % ipe);
			if (fabs(lr - want_lr) > 1e-12 * fmax(want_lr, 1e-3)) {
				fprintf(stderr, "%s step %zu: lr %.17g, PyTorch %.17g\n", name, k, lr,
					want_lr);
				rc = 1;
				break;
			}
			optim_set_lr(o, lr);
		}
		double loss = NAN;
		enum nn_status st;
		if (op.kind == OPTIM_LBFGS) {
			st = optim_step_closure(o, rosen ? rosen_closure : softmax_closure, p, &loss, &e);
		} else {
			/* the plain API: gradients first, then the update */
			st = softmax_closure(p, &loss, &e);
			if (st == NN_OK)
				st = optim_step(o, &e);
		}
		if (st != NN_OK) {
			fprintf(stderr, "%s step %zu: %s\n", name, k, e.message);
			rc = 1;
			break;
		}
		double want_loss = json_number_value(json_array_get(losses, k));
		if (fabs(loss - want_loss) > REL_TOL * fabs(want_loss)) {
			fprintf(stderr, "%s step %zu: loss %.9g, PyTorch %.9g\n", name, k, loss,
				want_loss);
			rc = 1;
			break;
		}
		rc = compare("w", name, (int)k, p->w, json_array_get(ws, k), nw, &worst);
		if (!rc && !rosen)
			rc = compare("b", name, (int)k, p->b, json_array_get(bs, k), (size_t)p->k,
				     &worst);
		if (!rc && masked)
			for (size_t i = 0; i < nw; i++)
				if (!p->mask[i] && (p->w[i] != 0.0f || signbit(p->w[i]))) {
					fprintf(stderr, "%s step %zu: masked w[%zu] = %g\n", name, k, i,
						(double)p->w[i]);
					rc = 1;
					break;
				}
		if (!rc && op.kind == OPTIM_LBFGS) {
			int64_t we = json_integer_value(json_array_get(evals, k));
			int64_t wi = json_integer_value(json_array_get(iters, k));
			if (optim_func_evals(o) != we || optim_iterations(o) != wi) {
				fprintf(stderr,
					"%s step %zu: %lld closure calls / %lld iterations, PyTorch "
					"%lld / %lld\n",
					name, k, (long long)optim_func_evals(o),
					(long long)optim_iterations(o), (long long)we, (long long)wi);
				rc = 1;
			}
		}
	}
	if (!rc)
		printf("%-32s %2zu steps, worst relative difference %.2g\n", name, json_array_size(ws),
		       worst);
	optim_free(o);
	(*replayed)++;
	return rc;
}

static int replay_all(bool lbfgs)
{
	json_t *ref = load_ref();
	CHECK(ref, "no reference");
	struct problem p;
	int rc = problem_load(ref, &p), replayed = 0;
	json_t *c;
	size_t i;
	json_array_foreach(json_object_get(ref, "cases"), i, c) {
		const char *opt = json_string_value(json_object_get(json_object_get(c, "optimizer"),
								    "name"));
		if (!rc && !strcmp(opt, "lbfgs") == lbfgs)
			rc = replay(c, &p, &replayed);
	}
	problem_free(&p);
	json_decref(ref);
	CHECK(rc == 0, "a trajectory differs from PyTorch's");
	CHECK(replayed >= 4, "only %d cases replayed", replayed);
	return 0;
}

static int test_sgd_adam_adamw_match_pytorch(void)
{
	return replay_all(false);
}

static int test_lbfgs_matches_pytorch(void)
{
	return replay_all(true);
}

static int test_schedules_match_pytorch(void)
{
	json_t *ref = load_ref();
	CHECK(ref, "no reference");
	json_t *c;
	size_t idx;
	int n = 0;
	json_array_foreach(json_object_get(ref, "schedules"), idx, c) {
		struct optim_schedule s;
		struct nn_err e = {0};
		const json_t *js = json_object_get(c, "schedule");
		CHECK(optim_schedule_parse(js, "schedule", &s, &e) == NN_OK, "%s", e.message);
		double base = json_number_value(json_object_get(c, "lr"));
		int64_t epochs = json_integer_value(json_object_get(c, "epochs"));
		int64_t ipe = json_integer_value(json_object_get(c, "iters_per_epoch"));
		CHECK(optim_schedule_check(&s, base, epochs, "schedule", &e) == NN_OK, "%s", e.message);
		const json_t *lrs = json_object_get(c, "lrs");
		CHECK(json_array_size(lrs) == (size_t)(epochs * ipe), "reference length");
		for (int64_t ep = 0; ep < epochs; ep++)
			for (int64_t it = 0; it < ipe; it++) {
				double want = json_number_value(json_array_get(lrs, (size_t)(ep * ipe + it)));
				double got = optim_schedule_lr(&s, base, epochs, ipe, ep, it);
				/* torch's recursive cosine form drifts ~1e-16 from the closed form */
				CHECK(fabs(got - want) <= 1e-12 * fmax(fabs(want), 1e-3),
				      "schedule %s epoch %lld iteration %lld: lr %.17g, PyTorch %.17g",
				      json_dumps(js, JSON_COMPACT), (long long)ep, (long long)it, got,
				      want);
			}
		n++;
	}
	json_decref(ref);
	CHECK(n >= 8, "only %d schedules", n);
	printf("%d schedules match PyTorch's lr sequences\n", n);
	return 0;
}

/* Masked entries stay exactly 0 with non-zero gradients and weight decay, and
 * their state is cleared: after the mask is removed, a zero-gradient step
 * leaves them at 0 (a stale momentum / Adam moment would move them). */
static int test_masks_keep_zeros_and_clear_state(void)
{
	enum { N = 64 };
	const enum optim_kind kinds[] = {OPTIM_SGD, OPTIM_ADAM, OPTIM_ADAMW};
	for (size_t kk = 0; kk < 3; kk++) {
		float w[N], g[N];
		uint8_t keep[N];
		for (int i = 0; i < N; i++) {
			w[i] = 0.5f + 0.01f * i;
			keep[i] = i % 3 != 0;
		}
		struct tg_param prm = {"w", w, g, N, true}, *ps[1] = {&prm};
		struct optim_params op;
		optim_params_default(kinds[kk], &op);
		op.lr = 0.1;
		op.momentum = 0.9;
		op.weight_decay = op.kind == OPTIM_SGD ? 0.1 : 0.01;
		struct optim *o;
		struct nn_err e = {0};
		CHECK(optim_new(&op, ps, 1, &o, &e) == NN_OK, "%s", e.message);
		/* build up state on every entry first */
		for (int s = 0; s < 3; s++) {
			for (int i = 0; i < N; i++)
				g[i] = 1.0f;
			CHECK(optim_step(o, &e) == NN_OK, "%s", e.message);
		}
		CHECK(optim_set_mask(o, 0, keep, &e) == NN_OK, "%s", e.message);
		for (int s = 0; s < 5; s++) {
			for (int i = 0; i < N; i++)
				g[i] = (float)(i % 5) - 2.0f;
			CHECK(optim_step(o, &e) == NN_OK, "%s", e.message);
			for (int i = 0; i < N; i++) {
				CHECK(keep[i] || (w[i] == 0.0f && !signbit(w[i])),
				      "%s: masked w[%d] = %g after step %d", optim_kind_name(op.kind), i,
				      (double)w[i], s);
				CHECK(keep[i] || g[i] == 0.0f, "%s: masked grad[%d] not zeroed",
				      optim_kind_name(op.kind), i);
			}
		}
		CHECK(optim_set_mask(o, 0, NULL, &e) == NN_OK, "%s", e.message);
		memset(g, 0, sizeof g);
		CHECK(optim_step(o, &e) == NN_OK, "%s", e.message);
		int moved_kept = 0;
		for (int i = 0; i < N; i++) {
			CHECK(keep[i] || w[i] == 0.0f, "%s: formerly masked w[%d] moved to %g: state "
			      "was not cleared", optim_kind_name(op.kind), i, (double)w[i]);
			moved_kept += keep[i];
		}
		CHECK(moved_kept > 0, "no kept entries");
		optim_free(o);
	}
	/* optim_mask_zeros masks what pruning zeroed */
	float w[6] = {1, 0, 2, 0, 0, 3}, g[6] = {1, 1, 1, 1, 1, 1};
	struct tg_param prm = {"w", w, g, 6, true}, *ps[1] = {&prm};
	struct optim_params op;
	optim_params_default(OPTIM_SGD, &op);
	struct optim *o;
	struct nn_err e = {0};
	size_t masked = 0;
	CHECK(optim_new(&op, ps, 1, &o, &e) == NN_OK, "%s", e.message);
	CHECK(optim_mask_zeros(o, 0, &masked, &e) == NN_OK && masked == 3, "masked %zu", masked);
	CHECK(optim_step(o, &e) == NN_OK, "%s", e.message);
	CHECK(w[1] == 0 && w[3] == 0 && w[4] == 0 && w[0] == 1 - 0.01f, "w %g %g %g %g", (double)w[0],
	      (double)w[1], (double)w[3], (double)w[4]);
	CHECK(optim_set_mask(o, 1, NULL, &e) == NN_EINVAL, "mask of parameter 1 of 1 accepted");
	optim_free(o);
	return 0;
}

/* Weight decay only touches parameters with decay set: with zero gradients a
 * decay parameter shrinks by exactly what each rule says, the other does not
 * move. */
static int test_weight_decay_only_on_decay_params(void)
{
	const enum optim_kind kinds[] = {OPTIM_SGD, OPTIM_ADAM, OPTIM_ADAMW};
	for (size_t kk = 0; kk < 3; kk++) {
		float wd_v[4] = {1, -2, 3, 0}, nd_v[4] = {1, -2, 3, 0}, g1[4] = {0}, g2[4] = {0};
		struct tg_param a = {"w", wd_v, g1, 4, true}, b = {"bias", nd_v, g2, 4, false};
		struct tg_param *ps[2] = {&a, &b};
		struct optim_params op;
		optim_params_default(kinds[kk], &op);
		op.lr = 0.1;
		op.weight_decay = 0.5;
		struct optim *o;
		struct nn_err e = {0};
		CHECK(optim_new(&op, ps, 2, &o, &e) == NN_OK, "%s", e.message);
		CHECK(optim_step(o, &e) == NN_OK, "%s", e.message);
		for (int i = 0; i < 4; i++) {
			float w0 = (float)(i == 0 ? 1 : i == 1 ? -2 : i == 2 ? 3 : 0);
			CHECK(nd_v[i] == w0, "%s: non-decay parameter moved: %g", optim_kind_name(op.kind),
			      (double)nd_v[i]);
			float want;
			if (op.kind == OPTIM_SGD)
				want = w0 - 0.1f * (0.5f * w0); /* w - lr*wd*w */
			else if (op.kind == OPTIM_ADAMW)
				want = w0 * (float)(1 - 0.1 * 0.5); /* decoupled, no Adam step at g=0 */
			else /* Adam's first step moves by lr * sign(g + wd*w) */
				want = w0 == 0 ? 0 : w0 - 0.1f * (w0 > 0 ? 1 : -1);
			CHECK(fabsf(wd_v[i] - want) <= 1e-6f * fabsf(want) + 1e-6f,
			      "%s: decay parameter %g, expected %g", optim_kind_name(op.kind),
			      (double)wd_v[i], (double)want);
		}
		optim_free(o);
	}
	return 0;
}

/* The update runs on 4-float vectors with a scalar tail: a tensor of 13
 * updated whole and the same values split 1 + 5 + 7 (every lane and tail
 * position shifted) end bit-identical, for every rule. */
static int test_vector_and_tail_paths_identical(void)
{
	enum { N = 13 };
	const enum optim_kind kinds[] = {OPTIM_SGD, OPTIM_SGD, OPTIM_SGD, OPTIM_ADAM, OPTIM_ADAMW};
	for (size_t kk = 0; kk < 5; kk++) {
		float w1[N], g1[N], w2[N], g2[N];
		for (int i = 0; i < N; i++)
			w1[i] = w2[i] = (float)sin(1.3 * i + 0.2);
		struct tg_param whole = {"w", w1, g1, N, true};
		struct tg_param a = {"a", w2, g2, 1, true}, b = {"b", w2 + 1, g2 + 1, 5, true},
				c = {"c", w2 + 6, g2 + 6, 7, true};
		struct tg_param *p1[1] = {&whole}, *p2[3] = {&a, &b, &c};
		struct optim_params op;
		optim_params_default(kinds[kk], &op);
		op.lr = 0.05;
		op.weight_decay = 0.01;
		if (kk == 1)
			op.momentum = 0.9, op.dampening = 0.2;
		if (kk == 2)
			op.momentum = 0.8, op.nesterov = true;
		struct optim *o1, *o2;
		struct nn_err e = {0};
		CHECK(optim_new(&op, p1, 1, &o1, &e) == NN_OK && optim_new(&op, p2, 3, &o2, &e) == NN_OK,
		      "%s", e.message);
		for (int s = 0; s < 6; s++) {
			for (int i = 0; i < N; i++)
				g1[i] = g2[i] = (float)cos(0.7 * i * (s + 1)) * w1[i] + 0.1f;
			CHECK(optim_step(o1, &e) == NN_OK && optim_step(o2, &e) == NN_OK, "%s", e.message);
			CHECK(!memcmp(w1, w2, sizeof w1), "%s (variant %zu): split parameters differ "
			      "after step %d", optim_kind_name(op.kind), kk, s);
		}
		optim_free(o1);
		optim_free(o2);
	}
	return 0;
}

static int expect_error(const char *json, const char *field, const char *needle, bool schedule)
{
	json_error_t je;
	json_t *v = json_loads(json, 0, &je);
	CHECK(v, "bad test JSON %s", json);
	struct nn_err e = {0};
	struct optim_params op;
	struct optim_schedule s;
	enum nn_status st = schedule ? optim_schedule_parse(v, "steps[2].schedule", &s, &e)
				     : optim_params_parse(v, "steps[2].optimizer", &op, &e);
	json_decref(v);
	CHECK(st == NN_EINVAL, "%s accepted", json);
	CHECK(!strcmp(e.field, field), "%s: field %s, expected %s", json, e.field, field);
	CHECK(!strcmp(e.code, "invalid_spec"), "%s: code %s", json, e.code);
	CHECK(strstr(e.message, needle), "%s: message '%s' lacks '%s'", json, e.message, needle);
	return 0;
}

static int test_spec_parse_defaults_and_field_errors(void)
{
	struct nn_err e = {0};
	struct optim_params op;
	struct optim_schedule s;
	/* defaults */
	CHECK(optim_params_parse(NULL, "optimizer", &op, &e) == NN_OK && op.kind == OPTIM_SGD &&
	      op.lr == 0.01 && op.momentum == 0, "absent optimizer");
	json_t *v = json_loads("{\"name\":\"adamw\"}", 0, NULL);
	CHECK(optim_params_parse(v, "o", &op, &e) == NN_OK && op.kind == OPTIM_ADAMW &&
	      op.lr == 0.001 && op.weight_decay == 0.01 && op.beta1 == 0.9 && op.beta2 == 0.999 &&
	      op.eps == 1e-8, "adamw defaults");
	json_decref(v);
	v = json_loads("{\"name\":\"lbfgs\",\"max_iter\":8}", 0, NULL);
	CHECK(optim_params_parse(v, "o", &op, &e) == NN_OK && op.lr == 1 && op.max_eval == 10 &&
	      op.history_size == 100 && !op.strong_wolfe && op.tolerance_grad == 1e-7,
	      "lbfgs defaults: max_eval %lld", (long long)op.max_eval);
	json_decref(v);
	v = json_loads("{\"name\":\"sgd\",\"lr\":0.05,\"momentum\":0.9,\"nesterov\":true,"
		       "\"weight_decay\":5e-4}", 0, NULL);
	CHECK(optim_params_parse(v, "o", &op, &e) == NN_OK && op.nesterov && op.momentum == 0.9 &&
	      op.lr == 0.05 && op.weight_decay == 5e-4, "sgd nesterov: %s", e.message);
	json_decref(v);
	CHECK(optim_schedule_parse(NULL, "s", &s, &e) == NN_OK && s.kind == OPTIM_SCHED_CONSTANT &&
	      s.warmup_epochs == 0, "absent schedule");
	v = json_loads("{\"name\":\"cosine\",\"warmup_epochs\":2}", 0, NULL);
	CHECK(optim_schedule_parse(v, "s", &s, &e) == NN_OK && s.kind == OPTIM_SCHED_COSINE &&
	      s.warmup_epochs == 2 && s.eta_min == 0 && !s.per_iteration, "cosine");
	json_decref(v);
	CHECK(optim_schedule_check(&s, 0.1, 2, "steps[0].schedule", &e) == NN_EINVAL &&
	      !strcmp(e.field, "steps[0].schedule.warmup_epochs"), "warm-up = epochs: %s", e.field);
	s.eta_min = 0.5;
	CHECK(optim_schedule_check(&s, 0.1, 10, "steps[0].schedule", &e) == NN_EINVAL &&
	      !strcmp(e.field, "steps[0].schedule.eta_min"), "eta_min above lr: %s", e.field);
	/* step with auto step_size: a third of the epochs after warm-up */
	v = json_loads("{\"name\":\"step\"}", 0, NULL);
	CHECK(optim_schedule_parse(v, "s", &s, &e) == NN_OK && s.gamma == 0.1, "step");
	json_decref(v);
	CHECK(fabs(optim_schedule_lr(&s, 1, 9, 1, 2, 0) - 1) < 1e-15 &&
	      fabs(optim_schedule_lr(&s, 1, 9, 1, 3, 0) - 0.1) < 1e-15, "auto step_size of 9 epochs");

	/* refusals name the field */
	const char *P = "steps[2].optimizer.", *S = "steps[2].schedule.";
	char f[96];
#define F(pre, key) (snprintf(f, sizeof f, "%s%s", pre, key), f)
	if (expect_error("{\"name\":\"rmsprop\"}", F(P, "name"), "unknown optimizer", false) ||
	    expect_error("{\"lr\":0.1}", F(P, "name"), "missing", false) ||
	    expect_error("{\"name\":\"sgd\",\"lr\":0}", F(P, "lr"), "> 0", false) ||
	    expect_error("{\"name\":\"sgd\",\"lr\":-1}", F(P, "lr"), "> 0", false) ||
	    expect_error("{\"name\":\"sgd\",\"lr\":\"big\"}", F(P, "lr"), "number", false) ||
	    expect_error("{\"name\":\"sgd\",\"nesterov\":true}", F(P, "nesterov"), "momentum", false) ||
	    expect_error("{\"name\":\"sgd\",\"momentum\":0.9,\"dampening\":0.1,\"nesterov\":true}",
			 F(P, "nesterov"), "dampening", false) ||
	    expect_error("{\"name\":\"sgd\",\"momentum\":1.0}", F(P, "momentum"), "[0, 1)", false) ||
	    expect_error("{\"name\":\"sgd\",\"nesterov\":1}", F(P, "nesterov"), "true or false", false) ||
	    expect_error("{\"name\":\"adam\",\"momentum\":0.9}", F(P, "momentum"), "unknown field",
			 false) ||
	    expect_error("{\"name\":\"adam\",\"betas\":[0.9]}", F(P, "betas"), "two numbers", false) ||
	    expect_error("{\"name\":\"adam\",\"betas\":[0.9,1.0]}", F(P, "betas[1]"), "[0, 1)",
			 false) ||
	    expect_error("{\"name\":\"adam\",\"betas\":[\"a\",0.9]}", F(P, "betas[0]"), "number",
			 false) ||
	    expect_error("{\"name\":\"adam\",\"eps\":0}", F(P, "eps"), "> 0", false) ||
	    expect_error("{\"name\":\"adamw\",\"weight_decay\":-0.1}", F(P, "weight_decay"), ">= 0",
			 false) ||
	    expect_error("{\"name\":\"lbfgs\",\"weight_decay\":0.1}", F(P, "weight_decay"), "LBFGS",
			 false) ||
	    expect_error("{\"name\":\"lbfgs\",\"max_iter\":0}", F(P, "max_iter"), "[1,", false) ||
	    expect_error("{\"name\":\"lbfgs\",\"max_iter\":2.5}", F(P, "max_iter"), "integer", false) ||
	    expect_error("{\"name\":\"lbfgs\",\"history_size\":100000}", F(P, "history_size"), "[1,",
			 false) ||
	    expect_error("{\"name\":\"lbfgs\",\"line_search_fn\":\"armijo\"}", F(P, "line_search_fn"),
			 "strong_wolfe", false) ||
	    expect_error("[1]", "steps[2].optimizer", "object", false) ||
	    expect_error("{\"name\":\"linear\"}", F(S, "name"), "unknown schedule", true) ||
	    expect_error("{\"name\":\"cosine\",\"gamma\":0.5}", F(S, "gamma"), "unknown field", true) ||
	    expect_error("{\"name\":\"step\",\"step_size\":0}", F(S, "step_size"), ">= 1", true) ||
	    expect_error("{\"name\":\"step\",\"gamma\":1.5}", F(S, "gamma"), "(0, 1]", true) ||
	    expect_error("{\"name\":\"cosine\",\"warmup_epochs\":-1}", F(S, "warmup_epochs"), "[0,",
			 true) ||
	    expect_error("{\"name\":\"cosine\",\"eta_min\":-1}", F(S, "eta_min"), ">= 0", true) ||
	    expect_error("{\"name\":\"cosine\",\"per_iteration\":\"yes\"}", F(S, "per_iteration"),
			 "true or false", true))
		return 1;
#undef F
	/* optim_new re-checks hand-built params */
	optim_params_default(OPTIM_SGD, &op);
	op.lr = NAN;
	float w = 1, g = 0;
	struct tg_param prm = {"w", &w, &g, 1, true}, *ps[1] = {&prm};
	struct optim *o = NULL;
	CHECK(optim_new(&op, ps, 1, &o, &e) == NN_EINVAL && !o && !strcmp(e.field, "optimizer.lr"),
	      "NaN lr accepted (field %s)", e.field);
	op.lr = 0.1;
	CHECK(optim_new(&op, ps, 0, &o, &e) == NN_EINVAL, "no parameters accepted");
	optim_params_default(OPTIM_LBFGS, &op);
	CHECK(optim_new(&op, ps, 1, &o, &e) == NN_OK, "%s", e.message);
	CHECK(optim_step(o, &e) == NN_EINVAL, "lbfgs without closure accepted");
	optim_free(o);
	return 0;
}

/* A closure failing inside the strong-Wolfe line search stops the step with
 * its status and leaves the parameters at the last accepted point. */
static int test_lbfgs_closure_failure_restores_point(void)
{
	json_t *ref = load_ref();
	CHECK(ref, "no reference");
	struct problem p;
	CHECK(problem_load(ref, &p) == 0, "problem");
	json_decref(ref);
	size_t nw = (size_t)(p.k * p.f);
	memcpy(p.w, p.w0, nw * sizeof(float));
	memcpy(p.b, p.b0, (size_t)p.k * sizeof(float));
	p.pw = (struct tg_param){"w", p.w, p.gw, nw, true};
	p.pb = (struct tg_param){"b", p.b, p.gb, (size_t)p.k, false};
	struct tg_param *ps[2] = {&p.pw, &p.pb};
	struct optim_params op;
	optim_params_default(OPTIM_LBFGS, &op);
	op.strong_wolfe = true;
	struct optim *o;
	struct nn_err e = {0};
	CHECK(optim_new(&op, ps, 2, &o, &e) == NN_OK, "%s", e.message);
	/* call 1 evaluates the start, call 2 is the line search's first trial */
	p.fail_at = 2;
	double loss;
	enum nn_status st = optim_step_closure(o, softmax_closure, &p, &loss, &e);
	CHECK(st == NN_ECANCELED, "status %d: %s", st, e.message);
	CHECK(!memcmp(p.w, p.w0, nw * sizeof(float)) &&
	      !memcmp(p.b, p.b0, (size_t)p.k * sizeof(float)), "parameters left at a trial point");
	optim_free(o);
	problem_free(&p);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: test_optim CASE [DATA_DIR]\n");
		return 2;
	}
	if (argc > 2)
		data_dir = argv[2];
	struct {
		const char *name;
		int (*fn)(void);
	} cases[] = {
		{"sgd_adam_adamw_match_pytorch", test_sgd_adam_adamw_match_pytorch},
		{"lbfgs_matches_pytorch", test_lbfgs_matches_pytorch},
		{"schedules_match_pytorch", test_schedules_match_pytorch},
		{"masks_keep_zeros_and_clear_state", test_masks_keep_zeros_and_clear_state},
		{"weight_decay_only_on_decay_params", test_weight_decay_only_on_decay_params},
		{"spec_parse_defaults_and_field_errors", test_spec_parse_defaults_and_field_errors},
		{"lbfgs_closure_failure_restores_point", test_lbfgs_closure_failure_restores_point},
		{"vector_and_tail_paths_identical", test_vector_and_tail_paths_identical},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (!strcmp(argv[1], cases[i].name))
			return cases[i].fn();
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}
