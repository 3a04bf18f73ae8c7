/* optim: SGD, Adam, AdamW, L-BFGS and learning-rate schedules with PyTorch
 * 1.13's semantics (see optim.h). Element-wise updates run in float, as
 * PyTorch's CPU kernels do, with its scalars (lr, bias corrections) computed
 * in double and rounded once; reductions (L-BFGS dot products, norms) are
 * accumulated in double. */
#include "optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "step.h"

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

/* torch's _strong_wolfe is called with its defaults. */
#define WOLFE_C1 1e-4
#define WOLFE_C2 0.9
#define WOLFE_TOLERANCE_CHANGE 1e-9
#define WOLFE_MAX_LS 25
/* Caps on hyper-parameters that size memory or loops (spec input). */
#define OPTIM_MAX_HISTORY 1000
#define OPTIM_MAX_ITER 1000000

struct optim {
	struct optim_params p;
	double lr;
	size_t n;
	struct tg_param **params; /* borrowed tensors, owned array */
	size_t *offset;           /* n+1: parameter i's slice of the flat vectors */
	size_t total;
	uint8_t **masks;          /* n entries, NULL = unmasked; owned copies */
	/* sgd: momentum buffer; adam/adamw: exp_avg (s1) and exp_avg_sq (s2), flat */
	float *s1, *s2;
	bool started;             /* sgd: the momentum buffer holds a first value */
	int64_t steps;            /* updates applied (Adam's step count) */
	int64_t func_evals;
	/* lbfgs, flat over all parameters */
	float *flat_grad, *prev_flat_grad, *d, *y_tmp, *s_tmp, *x_init, *pool[3];
	float **old_dirs, **old_stps; /* ring of history_size slots, allocated on first use */
	double *ro, *al;
	size_t hist_start, hist_len;
	int64_t lbfgs_n_iter;     /* state['n_iter'] */
	double t, h_diag;
};

/* ---- hyper-parameters ---------------------------------------------------- */

const char *optim_kind_name(enum optim_kind kind)
{
	switch (kind) {
	case OPTIM_SGD: return "sgd";
	case OPTIM_ADAM: return "adam";
	case OPTIM_ADAMW: return "adamw";
	case OPTIM_LBFGS: return "lbfgs";
	}
	return "?";
}

void optim_params_default(enum optim_kind kind, struct optim_params *p)
{
	memset(p, 0, sizeof *p);
	p->kind = kind;
	p->beta1 = 0.9;
	p->beta2 = 0.999;
	p->eps = 1e-8;
	p->max_iter = 20;
	p->max_eval = 25;
	p->history_size = 100;
	p->tolerance_grad = 1e-7;
	p->tolerance_change = 1e-9;
	switch (kind) {
	case OPTIM_SGD: p->lr = 0.01; break;
	case OPTIM_ADAM: p->lr = 0.001; break;
	case OPTIM_ADAMW: p->lr = 0.001; p->weight_decay = 0.01; break;
	case OPTIM_LBFGS: p->lr = 1; break;
	}
}

/* "<field>.<key>", or "<key>" under an empty field. */
static const char *join(char *buf, size_t cap, const char *field, const char *key)
{
	if (field && *field)
		snprintf(buf, cap, "%s.%s", field, key);
	else
		snprintf(buf, cap, "%s", key);
	return buf;
}

static enum nn_status bad(struct nn_err *e, const char *field, const char *key, const char *fmt,
			  ...) __attribute__((format(printf, 4, 5)));
static enum nn_status bad(struct nn_err *e, const char *field, const char *key, const char *fmt,
			  ...)
{
	char path[160];
	va_list ap;
	va_start(ap, fmt);
	enum nn_status st = err_setv(e, NN_EINVAL, "invalid_spec", join(path, sizeof path, field, key),
				     fmt, ap);
	va_end(ap);
	return st;
}

enum nn_status optim_params_check(const struct optim_params *p, const char *field,
				  struct nn_err *e)
{
	if (p->kind > OPTIM_LBFGS)
		return bad(e, field, "name", "unknown optimizer");
	if (!(isfinite(p->lr) && p->lr > 0))
		return bad(e, field, "lr", "lr must be a finite number > 0, got %g", p->lr);
	if (!(isfinite(p->weight_decay) && p->weight_decay >= 0))
		return bad(e, field, "weight_decay", "weight_decay must be a finite number >= 0, got %g",
			   p->weight_decay);
	switch (p->kind) {
	case OPTIM_SGD:
		if (!(p->momentum >= 0 && p->momentum < 1))
			return bad(e, field, "momentum", "momentum must be in [0, 1), got %g",
				   p->momentum);
		if (!(p->dampening >= 0 && p->dampening <= 1))
			return bad(e, field, "dampening", "dampening must be in [0, 1], got %g",
				   p->dampening);
		if (p->nesterov && (p->momentum <= 0 || p->dampening != 0))
			return bad(e, field, "nesterov",
				   "nesterov needs momentum > 0 and dampening 0 (got momentum %g, "
				   "dampening %g)", p->momentum, p->dampening);
		break;
	case OPTIM_ADAM:
	case OPTIM_ADAMW:
		if (!(p->beta1 >= 0 && p->beta1 < 1))
			return bad(e, field, "betas[0]", "beta1 must be in [0, 1), got %g", p->beta1);
		if (!(p->beta2 >= 0 && p->beta2 < 1))
			return bad(e, field, "betas[1]", "beta2 must be in [0, 1), got %g", p->beta2);
		if (!(isfinite(p->eps) && p->eps > 0))
			return bad(e, field, "eps", "eps must be a finite number > 0, got %g", p->eps);
		if (p->kind == OPTIM_ADAMW && p->lr * p->weight_decay >= 1)
			return bad(e, field, "weight_decay",
				   "lr * weight_decay = %g >= 1 would flip or zero every weight at "
				   "each step (adamw multiplies weights by 1 - lr*weight_decay)",
				   p->lr * p->weight_decay);
		break;
	case OPTIM_LBFGS:
		if (p->weight_decay != 0)
			return bad(e, field, "weight_decay",
				   "lbfgs has no weight_decay (torch.optim.LBFGS neither)");
		if (p->max_iter < 1 || p->max_iter > OPTIM_MAX_ITER)
			return bad(e, field, "max_iter", "max_iter must be in [1, %d], got %lld",
				   OPTIM_MAX_ITER, (long long)p->max_iter);
		if (p->max_eval < 1 || p->max_eval > OPTIM_MAX_ITER)
			return bad(e, field, "max_eval", "max_eval must be in [1, %d], got %lld",
				   OPTIM_MAX_ITER, (long long)p->max_eval);
		if (p->history_size < 1 || p->history_size > OPTIM_MAX_HISTORY)
			return bad(e, field, "history_size", "history_size must be in [1, %d], got %lld",
				   OPTIM_MAX_HISTORY, (long long)p->history_size);
		if (!(isfinite(p->tolerance_grad) && p->tolerance_grad >= 0))
			return bad(e, field, "tolerance_grad",
				   "tolerance_grad must be a finite number >= 0, got %g",
				   p->tolerance_grad);
		if (!(isfinite(p->tolerance_change) && p->tolerance_change >= 0))
			return bad(e, field, "tolerance_change",
				   "tolerance_change must be a finite number >= 0, got %g",
				   p->tolerance_change);
		break;
	}
	return NN_OK;
}

static enum nn_status get_number(const json_t *v, const char *field, const char *key,
				 double *out, struct nn_err *e)
{
	char got[96];
	if (!json_is_number(v))
		return bad(e, field, key, "%s must be a number, got %s", key,
			   step_describe_json(v, got, sizeof got));
	*out = json_number_value(v);
	return NN_OK;
}

static enum nn_status get_int(const json_t *v, const char *field, const char *key, int64_t *out,
			      struct nn_err *e)
{
	char got[96];
	double r = json_is_real(v) ? json_real_value(v) : NAN;
	if (json_is_integer(v))
		*out = (int64_t)json_integer_value(v);
	else if (isfinite(r) && r == floor(r) && fabs(r) < 1e15)
		*out = (int64_t)r;
	else
		return bad(e, field, key, "%s must be an integer, got %s", key,
			   step_describe_json(v, got, sizeof got));
	return NN_OK;
}

static enum nn_status get_bool(const json_t *v, const char *field, const char *key, bool *out,
			       struct nn_err *e)
{
	char got[96];
	if (!json_is_boolean(v))
		return bad(e, field, key, "%s must be true or false, got %s", key,
			   step_describe_json(v, got, sizeof got));
	*out = json_is_true(v);
	return NN_OK;
}

static bool key_in(const char *key, const char *const *keys)
{
	for (; *keys; keys++)
		if (!strcmp(key, *keys))
			return true;
	return false;
}

static void keys_list(char *buf, size_t cap, const char *const *keys)
{
	size_t used = 0;
	buf[0] = 0;
	for (; *keys && used < cap; keys++) {
		int w = snprintf(buf + used, cap - used, "%s%s", used ? ", " : "", *keys);
		if (w < 0)
			break;
		used += (size_t)w;
	}
}

enum nn_status optim_params_parse(const json_t *v, const char *field, struct optim_params *out,
				  struct nn_err *e)
{
	static const char *const sgd_keys[] = {"name", "lr", "momentum", "dampening", "nesterov",
					       "weight_decay", NULL};
	static const char *const adam_keys[] = {"name", "lr", "betas", "eps", "weight_decay", NULL};
	static const char *const lbfgs_keys[] = {"name", "lr", "max_iter", "max_eval",
						 "history_size", "tolerance_grad",
						 "tolerance_change", "line_search_fn", NULL};
	char got[96];
	enum nn_status st = NN_OK;
	optim_params_default(OPTIM_SGD, out);
	if (!v)
		return optim_params_check(out, field, e);
	if (!json_is_object(v))
		return err_set(e, NN_EINVAL, "invalid_spec", field,
			       "optimizer must be an object {\"name\": \"sgd\" | \"adam\" | \"adamw\" "
			       "| \"lbfgs\", \"lr\", ...}, got %s",
			       step_describe_json(v, got, sizeof got));
	const json_t *name = json_object_get(v, "name");
	const char *s = json_string_value(name);
	if (!name)
		return bad(e, field, "name",
			   "missing required field 'name' (\"sgd\", \"adam\", \"adamw\" or \"lbfgs\")");
	enum optim_kind kind;
	if (s && !strcmp(s, "sgd"))
		kind = OPTIM_SGD;
	else if (s && !strcmp(s, "adam"))
		kind = OPTIM_ADAM;
	else if (s && !strcmp(s, "adamw"))
		kind = OPTIM_ADAMW;
	else if (s && !strcmp(s, "lbfgs"))
		kind = OPTIM_LBFGS;
	else
		return bad(e, field, "name",
			   "unknown optimizer %s; allowed: \"sgd\", \"adam\", \"adamw\", \"lbfgs\"",
			   step_describe_json(name, got, sizeof got));
	optim_params_default(kind, out);
	const char *const *allowed = kind == OPTIM_SGD     ? sgd_keys
				     : kind == OPTIM_LBFGS ? lbfgs_keys
							   : adam_keys;
	bool max_eval_set = false;
	const char *key;
	json_t *x;
	json_object_foreach((json_t *)v, key, x) {
		if (kind == OPTIM_LBFGS && !strcmp(key, "weight_decay"))
			return bad(e, field, key,
				   "lbfgs has no weight_decay (torch.optim.LBFGS neither); use sgd, "
				   "adam or adamw for a decayed run");
		if (!key_in(key, allowed)) {
			char list[256];
			keys_list(list, sizeof list, allowed);
			return bad(e, field, key, "unknown field '%.60s' for optimizer %s; allowed: %s",
				   key, optim_kind_name(kind), list);
		}
		if (!strcmp(key, "name"))
			continue;
		if (!strcmp(key, "lr"))
			st = get_number(x, field, key, &out->lr, e);
		else if (!strcmp(key, "momentum"))
			st = get_number(x, field, key, &out->momentum, e);
		else if (!strcmp(key, "dampening"))
			st = get_number(x, field, key, &out->dampening, e);
		else if (!strcmp(key, "nesterov"))
			st = get_bool(x, field, key, &out->nesterov, e);
		else if (!strcmp(key, "weight_decay"))
			st = get_number(x, field, key, &out->weight_decay, e);
		else if (!strcmp(key, "eps"))
			st = get_number(x, field, key, &out->eps, e);
		else if (!strcmp(key, "betas")) {
			if (!json_is_array(x) || json_array_size(x) != 2)
				return bad(e, field, key, "betas must be an array of two numbers, got %s",
					   step_describe_json(x, got, sizeof got));
			for (size_t b = 0; b < 2; b++) {
				const json_t *bv = json_array_get(x, b);
				char at[16];
				snprintf(at, sizeof at, "betas[%zu]", b);
				if (!json_is_number(bv))
					return bad(e, field, at, "beta%zu must be a number, got %s", b + 1,
						   step_describe_json(bv, got, sizeof got));
				*(b ? &out->beta2 : &out->beta1) = json_number_value(bv);
			}
		} else if (!strcmp(key, "max_iter"))
			st = get_int(x, field, key, &out->max_iter, e);
		else if (!strcmp(key, "max_eval")) {
			st = get_int(x, field, key, &out->max_eval, e);
			max_eval_set = true;
		} else if (!strcmp(key, "history_size"))
			st = get_int(x, field, key, &out->history_size, e);
		else if (!strcmp(key, "tolerance_grad"))
			st = get_number(x, field, key, &out->tolerance_grad, e);
		else if (!strcmp(key, "tolerance_change"))
			st = get_number(x, field, key, &out->tolerance_change, e);
		else if (!strcmp(key, "line_search_fn")) {
			const char *ls = json_string_value(x);
			if (json_is_null(x) || (ls && !strcmp(ls, "none")))
				out->strong_wolfe = false;
			else if (ls && !strcmp(ls, "strong_wolfe"))
				out->strong_wolfe = true;
			else
				return bad(e, field, key,
					   "line_search_fn must be \"strong_wolfe\", \"none\" or null, "
					   "got %s", step_describe_json(x, got, sizeof got));
		}
		if (st != NN_OK)
			return st;
	}
	/* torch: max_eval defaults to max_iter * 5 // 4 */
	if (!max_eval_set && out->max_iter >= 1 && out->max_iter <= OPTIM_MAX_ITER)
		out->max_eval = out->max_iter * 5 / 4;
	return optim_params_check(out, field, e);
}

/* ---- schedules ----------------------------------------------------------- */

void optim_schedule_default(struct optim_schedule *s)
{
	memset(s, 0, sizeof *s);
	s->kind = OPTIM_SCHED_CONSTANT;
	s->gamma = 0.1;
}

static enum nn_status schedule_check_ranges(const struct optim_schedule *s, const char *field,
					    struct nn_err *e)
{
	if (s->kind > OPTIM_SCHED_COSINE)
		return bad(e, field, "name", "unknown schedule");
	if (s->warmup_epochs < 0 || s->warmup_epochs > OPTIM_MAX_ITER)
		return bad(e, field, "warmup_epochs", "warmup_epochs must be in [0, %d], got %lld",
			   OPTIM_MAX_ITER, (long long)s->warmup_epochs);
	if (s->step_size < 0 || s->step_size > OPTIM_MAX_ITER)
		return bad(e, field, "step_size", "step_size must be in [1, %d], got %lld",
			   OPTIM_MAX_ITER, (long long)s->step_size);
	if (!(s->gamma > 0 && s->gamma <= 1))
		return bad(e, field, "gamma", "gamma must be in (0, 1], got %g", s->gamma);
	if (!(isfinite(s->eta_min) && s->eta_min >= 0))
		return bad(e, field, "eta_min", "eta_min must be a finite number >= 0, got %g",
			   s->eta_min);
	return NN_OK;
}

enum nn_status optim_schedule_parse(const json_t *v, const char *field,
				    struct optim_schedule *out, struct nn_err *e)
{
	static const char *const constant_keys[] = {"name", "warmup_epochs", "per_iteration", NULL};
	static const char *const step_keys[] = {"name", "warmup_epochs", "per_iteration",
						"step_size", "gamma", NULL};
	static const char *const cosine_keys[] = {"name", "warmup_epochs", "per_iteration",
						  "eta_min", NULL};
	char got[96];
	enum nn_status st = NN_OK;
	optim_schedule_default(out);
	if (!v)
		return NN_OK;
	if (!json_is_object(v))
		return err_set(e, NN_EINVAL, "invalid_spec", field,
			       "schedule must be an object {\"name\": \"constant\" | \"step\" | "
			       "\"cosine\", \"warmup_epochs\", ...}, got %s",
			       step_describe_json(v, got, sizeof got));
	const json_t *name = json_object_get(v, "name");
	const char *s = json_string_value(name);
	if (!name)
		return bad(e, field, "name",
			   "missing required field 'name' (\"constant\", \"step\" or \"cosine\")");
	if (s && !strcmp(s, "constant"))
		out->kind = OPTIM_SCHED_CONSTANT;
	else if (s && !strcmp(s, "step"))
		out->kind = OPTIM_SCHED_STEP;
	else if (s && !strcmp(s, "cosine"))
		out->kind = OPTIM_SCHED_COSINE;
	else
		return bad(e, field, "name",
			   "unknown schedule %s; allowed: \"constant\", \"step\", \"cosine\"",
			   step_describe_json(name, got, sizeof got));
	const char *const *allowed = out->kind == OPTIM_SCHED_STEP     ? step_keys
				     : out->kind == OPTIM_SCHED_COSINE ? cosine_keys
								       : constant_keys;
	const char *key;
	json_t *x;
	json_object_foreach((json_t *)v, key, x) {
		if (!key_in(key, allowed)) {
			char list[160];
			keys_list(list, sizeof list, allowed);
			return bad(e, field, key, "unknown field '%.60s' for schedule %s; allowed: %s",
				   key, s, list);
		}
		if (!strcmp(key, "warmup_epochs"))
			st = get_int(x, field, key, &out->warmup_epochs, e);
		else if (!strcmp(key, "step_size")) {
			st = get_int(x, field, key, &out->step_size, e);
			if (st == NN_OK && out->step_size < 1)
				return bad(e, field, key, "step_size must be >= 1, got %lld",
					   (long long)out->step_size);
		} else if (!strcmp(key, "gamma"))
			st = get_number(x, field, key, &out->gamma, e);
		else if (!strcmp(key, "eta_min"))
			st = get_number(x, field, key, &out->eta_min, e);
		else if (!strcmp(key, "per_iteration"))
			st = get_bool(x, field, key, &out->per_iteration, e);
		if (st != NN_OK)
			return st;
	}
	return schedule_check_ranges(out, field, e);
}

enum nn_status optim_schedule_check(const struct optim_schedule *s, double base_lr,
				    int64_t epochs, const char *field, struct nn_err *e)
{
	enum nn_status st = schedule_check_ranges(s, field, e);
	if (st != NN_OK)
		return st;
	if (epochs < 1)
		return bad(e, field, "epochs", "a schedule needs at least one epoch, got %lld",
			   (long long)epochs);
	if (s->warmup_epochs >= epochs)
		return bad(e, field, "warmup_epochs",
			   "warmup_epochs %lld leaves nothing of a %lld-epoch run: it must be "
			   "smaller than epochs", (long long)s->warmup_epochs, (long long)epochs);
	if (s->kind == OPTIM_SCHED_COSINE && !(s->eta_min <= base_lr))
		return bad(e, field, "eta_min", "eta_min %g is above the optimizer's lr %g",
			   s->eta_min, base_lr);
	return NN_OK;
}

double optim_schedule_lr(const struct optim_schedule *s, double base_lr, int64_t epochs,
			 int64_t iters_per_epoch, int64_t epoch, int64_t iter)
{
	int64_t ipe = s->per_iteration && iters_per_epoch > 0 ? iters_per_epoch : 1;
	int64_t w = s->warmup_epochs;
	/* position and run length in schedule units (epochs, or iterations) */
	double pos = s->per_iteration ? (double)epoch * (double)ipe + (double)iter : (double)epoch;
	double warm = (double)w * (double)ipe;
	if (pos < warm)
		return base_lr * (pos + 1) / (warm + 1);
	double t = pos - warm;
	double span = ((double)epochs - (double)w) * (double)ipe;
	switch (s->kind) {
	case OPTIM_SCHED_CONSTANT:
		return base_lr;
	case OPTIM_SCHED_STEP: {
		int64_t size = s->step_size;
		if (size < 1) { /* auto: a third of the run after warm-up, rounded up */
			int64_t rest = epochs - w;
			size = rest > 0 ? (rest + 2) / 3 : 1;
		}
		return base_lr * pow(s->gamma, floor(t / ((double)size * (double)ipe)));
	}
	case OPTIM_SCHED_COSINE:
		if (!(span > 0))
			return base_lr;
		return s->eta_min + (base_lr - s->eta_min) * (1 + cos(M_PI * t / span)) / 2;
	}
	return base_lr;
}

/* ---- optimizer ----------------------------------------------------------- */

static float *falloc(size_t n)
{
	return calloc(n ? n : 1, sizeof(float));
}

void optim_free(struct optim *o)
{
	if (!o)
		return;
	if (o->masks)
		for (size_t i = 0; i < o->n; i++)
			free(o->masks[i]);
	free(o->masks);
	free(o->params);
	free(o->offset);
	free(o->s1);
	free(o->s2);
	free(o->flat_grad);
	free(o->prev_flat_grad);
	free(o->d);
	free(o->y_tmp);
	free(o->s_tmp);
	free(o->x_init);
	for (int i = 0; i < 3; i++)
		free(o->pool[i]);
	if (o->old_dirs)
		for (int64_t i = 0; i < o->p.history_size; i++) {
			free(o->old_dirs[i]);
			free(o->old_stps[i]);
		}
	free(o->old_dirs);
	free(o->old_stps);
	free(o->ro);
	free(o->al);
	free(o);
}

enum nn_status optim_new(const struct optim_params *p, struct tg_param *const *params, size_t n,
			 struct optim **out, struct nn_err *e)
{
	*out = NULL;
	enum nn_status st = optim_params_check(p, "optimizer", e);
	if (st != NN_OK)
		return st;
	if (n == 0)
		return err_set(e, NN_EINVAL, "invalid_model", "",
			       "nothing to train: the model has no trainable parameters");
	size_t total = 0;
	for (size_t i = 0; i < n; i++) {
		if (!params[i] || !params[i]->value || !params[i]->grad)
			return err_set(e, NN_EINTERNAL, "internal", "",
				       "optimizer parameter %zu has no value or gradient", i);
		if (__builtin_add_overflow(total, params[i]->n, &total))
			return err_set(e, NN_ETOOBIG, "too_big", "",
				       "parameter count overflows size_t");
	}
	size_t bytes;
	if (__builtin_mul_overflow(total, 2 * sizeof(float), &bytes))
		return err_set(e, NN_ETOOBIG, "too_big", "",
			       "%zu parameters: optimizer state would not fit memory", total);
	struct optim *o = calloc(1, sizeof *o);
	if (!o)
		goto nomem;
	o->p = *p;
	o->lr = p->lr;
	o->n = n;
	o->total = total;
	o->h_diag = 1;
	o->params = calloc(n, sizeof *o->params);
	o->offset = calloc(n + 1, sizeof *o->offset);
	o->masks = calloc(n, sizeof *o->masks);
	if (!o->params || !o->offset || !o->masks)
		goto nomem;
	for (size_t i = 0; i < n; i++) {
		o->params[i] = params[i];
		o->offset[i + 1] = o->offset[i] + params[i]->n;
	}
	switch (p->kind) {
	case OPTIM_SGD:
		if (p->momentum != 0 && !(o->s1 = falloc(total)))
			goto nomem;
		break;
	case OPTIM_ADAM:
	case OPTIM_ADAMW:
		if (!(o->s1 = falloc(total)) || !(o->s2 = falloc(total)))
			goto nomem;
		break;
	case OPTIM_LBFGS: {
		size_t h = (size_t)p->history_size;
		o->flat_grad = falloc(total);
		o->prev_flat_grad = falloc(total);
		o->d = falloc(total);
		o->y_tmp = falloc(total);
		o->s_tmp = falloc(total);
		o->old_dirs = calloc(h, sizeof *o->old_dirs);
		o->old_stps = calloc(h, sizeof *o->old_stps);
		o->ro = calloc(h, sizeof *o->ro);
		o->al = calloc(h, sizeof *o->al);
		if (!o->flat_grad || !o->prev_flat_grad || !o->d || !o->y_tmp || !o->s_tmp ||
		    !o->old_dirs || !o->old_stps || !o->ro || !o->al)
			goto nomem;
		if (p->strong_wolfe) {
			if (!(o->x_init = falloc(total)))
				goto nomem;
			for (int i = 0; i < 3; i++)
				if (!(o->pool[i] = falloc(total)))
					goto nomem;
		}
		break;
	}
	}
	*out = o;
	return NN_OK;
nomem:
	optim_free(o);
	return err_set(e, NN_ENOMEM, "out_of_memory", "",
		       "no memory for %s state over %zu parameters", optim_kind_name(p->kind), total);
}

const struct optim_params *optim_get_params(const struct optim *o)
{
	return &o->p;
}

void optim_set_lr(struct optim *o, double lr)
{
	o->lr = lr;
}

double optim_get_lr(const struct optim *o)
{
	return o->lr;
}

int64_t optim_func_evals(const struct optim *o)
{
	return o->func_evals;
}

int64_t optim_iterations(const struct optim *o)
{
	return o->p.kind == OPTIM_LBFGS ? o->lbfgs_n_iter : o->steps;
}

/* Clears masked entries of a flat vector (optimizer state, L-BFGS vectors). */
static void zero_masked_flat(const struct optim *o, size_t i, float *flat)
{
	if (!flat || !o->masks[i])
		return;
	const uint8_t *keep = o->masks[i];
	float *v = flat + o->offset[i];
	for (size_t j = 0; j < o->params[i]->n; j++)
		if (!keep[j])
			v[j] = 0.0f;
}

static void zero_masked(const struct optim *o, size_t i, float *v)
{
	if (!o->masks[i])
		return;
	const uint8_t *keep = o->masks[i];
	for (size_t j = 0; j < o->params[i]->n; j++)
		if (!keep[j])
			v[j] = 0.0f;
}

enum nn_status optim_set_mask(struct optim *o, size_t i, const uint8_t *keep, struct nn_err *e)
{
	if (i >= o->n)
		return err_set(e, NN_EINVAL, "invalid_argument", "",
			       "mask for parameter %zu of %zu", i, o->n);
	if (!keep) {
		free(o->masks[i]);
		o->masks[i] = NULL;
		return NN_OK;
	}
	size_t n = o->params[i]->n;
	uint8_t *copy = o->masks[i] ? o->masks[i] : malloc(n ? n : 1);
	if (!copy)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for a %zu-entry mask", n);
	memcpy(copy, keep, n);
	o->masks[i] = copy;
	zero_masked(o, i, o->params[i]->value);
	zero_masked(o, i, o->params[i]->grad);
	zero_masked_flat(o, i, o->s1);
	zero_masked_flat(o, i, o->s2);
	zero_masked_flat(o, i, o->flat_grad);
	zero_masked_flat(o, i, o->prev_flat_grad);
	zero_masked_flat(o, i, o->d);
	if (o->old_dirs)
		for (int64_t h = 0; h < o->p.history_size; h++) {
			zero_masked_flat(o, i, o->old_dirs[h]);
			zero_masked_flat(o, i, o->old_stps[h]);
		}
	return NN_OK;
}

enum nn_status optim_mask_zeros(struct optim *o, size_t i, size_t *masked, struct nn_err *e)
{
	if (i >= o->n)
		return err_set(e, NN_EINVAL, "invalid_argument", "",
			       "mask for parameter %zu of %zu", i, o->n);
	size_t n = o->params[i]->n, count = 0;
	uint8_t *keep = malloc(n ? n : 1);
	if (!keep)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for a %zu-entry mask", n);
	const float *v = o->params[i]->value;
	for (size_t j = 0; j < n; j++) {
		keep[j] = v[j] != 0.0f;
		count += !keep[j];
	}
	enum nn_status st = optim_set_mask(o, i, keep, e);
	free(keep);
	if (masked)
		*masked = count;
	return st;
}

/* The element-wise updates run on 4-float vectors (GCC/Clang vector
 * extensions: SSE on x86-64) with a scalar tail. Every lane does the same
 * IEEE single operations in the same order as the tail, so the result does
 * not depend on where a parameter's slice starts or ends; the update is
 * memory-bound, and this keeps it at a few passes' worth of bandwidth
 * (scalar code, which -O2 does not vectorize, was 3-4x slower). */
typedef float v4 __attribute__((vector_size(16)));

static inline v4 v4_load(const float *p)
{
	v4 v;
	memcpy(&v, p, sizeof v);
	return v;
}

static inline void v4_store(float *p, v4 v)
{
	memcpy(p, &v, sizeof v);
}

static inline v4 v4_sqrt(v4 v)
{
#if defined(__SSE__)
	return (v4)_mm_sqrt_ps((__m128)v);
#else
	for (int i = 0; i < 4; i++)
		v[i] = sqrtf(v[i]);
	return v;
#endif
}

enum sgd_variant { SGD_PLAIN, SGD_FIRST, SGD_MOMENTUM };

/* One parameter's SGD update; inlined per variant so the loops carry no
 * branches. PyTorch: d = g + wd*w; buf = d (first) or buf*mom + (1-damp)*d;
 * d = nesterov ? d + mom*buf : buf; w += -lr*d. */
static inline __attribute__((always_inline)) void
sgd_kernel(float *restrict w, const float *restrict g, float *restrict buf, size_t n, float lr,
	   float wd, float mom, float damp1, enum sgd_variant variant, bool nesterov)
{
	size_t j = 0;
	for (; j + 4 <= n; j += 4) {
		v4 wv = v4_load(w + j);
		v4 dp = v4_load(g + j) + wd * wv;
		v4 upd = dp;
		if (variant != SGD_PLAIN) {
			v4 b = variant == SGD_FIRST ? dp : v4_load(buf + j) * mom + damp1 * dp;
			v4_store(buf + j, b);
			upd = nesterov ? dp + mom * b : b;
		}
		v4_store(w + j, wv - lr * upd);
	}
	for (; j < n; j++) {
		float dp = g[j] + wd * w[j], upd = dp;
		if (variant != SGD_PLAIN) {
			float b = variant == SGD_FIRST ? dp : buf[j] * mom + damp1 * dp;
			buf[j] = b;
			upd = nesterov ? dp + mom * b : b;
		}
		w[j] = w[j] - lr * upd;
	}
}

static void sgd_update(struct optim *o)
{
	const float lr = (float)o->lr, mom = (float)o->p.momentum;
	const float damp1 = (float)(1 - o->p.dampening);
	const bool first = !o->started, nesterov = o->p.nesterov;
	for (size_t i = 0; i < o->n; i++) {
		struct tg_param *prm = o->params[i];
		float *w = prm->value, *g = prm->grad, *buf = o->s1 ? o->s1 + o->offset[i] : NULL;
		const float wd = prm->decay ? (float)o->p.weight_decay : 0.0f;
		size_t n = prm->n;
		zero_masked(o, i, g);
		if (!buf)
			sgd_kernel(w, g, NULL, n, lr, wd, 0, 0, SGD_PLAIN, false);
		else if (first)
			sgd_kernel(w, g, buf, n, lr, wd, mom, damp1, SGD_FIRST, nesterov);
		else if (nesterov)
			sgd_kernel(w, g, buf, n, lr, wd, mom, damp1, SGD_MOMENTUM, true);
		else
			sgd_kernel(w, g, buf, n, lr, wd, mom, damp1, SGD_MOMENTUM, false);
		zero_masked(o, i, w);
	}
	o->started = true;
}

struct adam_consts {
	float step_size, bc2_sqrt, b1, b2, one_b1, one_b2, eps;
	float l2;     /* adam: L2 coefficient added to the gradient */
	float shrink; /* adamw: 1 - lr*wd, applied to w first */
};

/* PyTorch: (adamw: w *= 1 - lr*wd); g += wd*w (adam); m = m*b1 + (1-b1)*g;
 * v = v*b2 + (1-b2)*g*g; w += -step_size * m / (sqrt(v)/sqrt(bc2) + eps). */
static void adam_kernel(float *restrict w, const float *restrict g, float *restrict m,
			float *restrict v, size_t n, const struct adam_consts *c)
{
	const float step_size = c->step_size, bc2_sqrt = c->bc2_sqrt, b1 = c->b1, b2 = c->b2;
	const float one_b1 = c->one_b1, one_b2 = c->one_b2, eps = c->eps, l2 = c->l2;
	const float shrink = c->shrink;
	size_t j = 0;
	for (; j + 4 <= n; j += 4) {
		v4 wv = v4_load(w + j) * shrink;
		v4 gv = v4_load(g + j) + l2 * wv;
		v4 mv = v4_load(m + j) * b1 + one_b1 * gv;
		v4 vv = v4_load(v + j) * b2 + one_b2 * gv * gv;
		v4_store(m + j, mv);
		v4_store(v + j, vv);
		v4_store(w + j, wv - step_size * (mv / (v4_sqrt(vv) / bc2_sqrt + eps)));
	}
	for (; j < n; j++) {
		float wj = w[j] * shrink;
		float gj = g[j] + l2 * wj;
		float mj = m[j] * b1 + one_b1 * gj;
		float vj = v[j] * b2 + one_b2 * gj * gj;
		m[j] = mj;
		v[j] = vj;
		w[j] = wj - step_size * (mj / (sqrtf(vj) / bc2_sqrt + eps));
	}
}

static void adam_update(struct optim *o)
{
	o->steps++;
	const double step = (double)o->steps;
	const double bc1 = 1 - pow(o->p.beta1, step), bc2 = 1 - pow(o->p.beta2, step);
	const bool decoupled = o->p.kind == OPTIM_ADAMW;
	struct adam_consts c = {
		.step_size = (float)(o->lr / bc1),
		.bc2_sqrt = (float)sqrt(bc2),
		.b1 = (float)o->p.beta1,
		.b2 = (float)o->p.beta2,
		.one_b1 = (float)(1 - o->p.beta1),
		.one_b2 = (float)(1 - o->p.beta2),
		.eps = (float)o->p.eps,
	};
	for (size_t i = 0; i < o->n; i++) {
		struct tg_param *prm = o->params[i];
		const double wd = prm->decay ? o->p.weight_decay : 0.0;
		/* w * 1.0f and g + 0.0f * w leave finite values unchanged */
		c.shrink = decoupled ? (float)(1 - o->lr * wd) : 1.0f;
		c.l2 = decoupled ? 0.0f : (float)wd;
		zero_masked(o, i, prm->grad);
		adam_kernel(prm->value, prm->grad, o->s1 + o->offset[i], o->s2 + o->offset[i], prm->n,
			    &c);
		zero_masked(o, i, prm->value);
	}
}

enum nn_status optim_step(struct optim *o, struct nn_err *e)
{
	switch (o->p.kind) {
	case OPTIM_SGD:
		sgd_update(o);
		o->steps++;
		return NN_OK;
	case OPTIM_ADAM:
	case OPTIM_ADAMW:
		adam_update(o);
		return NN_OK;
	case OPTIM_LBFGS:
		break;
	}
	return err_set(e, NN_EINVAL, "invalid_argument", "",
		       "lbfgs re-evaluates the loss: use optim_step_closure");
}

/* ---- L-BFGS (torch.optim.LBFGS, 1.13) ------------------------------------ */

static double dot(const float *a, const float *b, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)a[i] * (double)b[i];
	return s;
}

static double abs_max(const float *a, size_t n)
{
	double m = 0;
	for (size_t i = 0; i < n; i++) {
		double v = fabs((double)a[i]);
		if (v > m || isnan(v))
			m = v;
	}
	return m;
}

static double abs_sum(const float *a, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += fabs((double)a[i]);
	return s;
}

/* _gather_flat_grad, with masked entries zeroed (in the tensors too). */
static void gather_grad(struct optim *o, float *flat)
{
	for (size_t i = 0; i < o->n; i++) {
		zero_masked(o, i, o->params[i]->grad);
		memcpy(flat + o->offset[i], o->params[i]->grad, o->params[i]->n * sizeof(float));
	}
}

/* _add_grad: w += t * d */
static void add_dir(struct optim *o, double t, const float *d)
{
	const float tf = (float)t;
	for (size_t i = 0; i < o->n; i++) {
		float *w = o->params[i]->value;
		const float *di = d + o->offset[i];
		for (size_t j = 0; j < o->params[i]->n; j++)
			w[j] += tf * di[j];
		zero_masked(o, i, w);
	}
}

static void save_params(struct optim *o, float *x)
{
	for (size_t i = 0; i < o->n; i++)
		memcpy(x + o->offset[i], o->params[i]->value, o->params[i]->n * sizeof(float));
}

static void load_params(struct optim *o, const float *x)
{
	for (size_t i = 0; i < o->n; i++)
		memcpy(o->params[i]->value, x + o->offset[i], o->params[i]->n * sizeof(float));
}

static enum nn_status call_closure(struct optim *o, optim_closure_fn fn, void *ud, double *loss,
				   struct nn_err *e)
{
	enum nn_status st = fn(ud, loss, e);
	o->func_evals++;
	return st;
}

/* _directional_evaluate: loss and gradient at x + t*d, parameters back at x. */
static enum nn_status directional_eval(struct optim *o, optim_closure_fn fn, void *ud, double t,
				       double *f, float *g, struct nn_err *e)
{
	add_dir(o, t, o->d);
	enum nn_status st = call_closure(o, fn, ud, f, e);
	if (st == NN_OK)
		gather_grad(o, g);
	load_params(o, o->x_init);
	return st;
}

/* torch's _cubic_interpolate, including Python's min/max behaviour on NaN. */
static double cubic_interpolate(double x1, double f1, double g1, double x2, double f2, double g2,
				const double *bounds)
{
	double lo, hi;
	if (bounds) {
		lo = bounds[0];
		hi = bounds[1];
	} else if (x1 <= x2) {
		lo = x1;
		hi = x2;
	} else {
		lo = x2;
		hi = x1;
	}
	double d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2);
	double d2_square = d1 * d1 - g1 * g2;
	if (d2_square >= 0) {
		double d2 = sqrt(d2_square), min_pos;
		if (x1 <= x2)
			min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2));
		else
			min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2));
		double m = lo > min_pos ? lo : min_pos; /* max(min_pos, lo) */
		return hi < m ? hi : m;                 /* min(m, hi) */
	}
	return (lo + hi) / 2;
}

/* A line-search gradient buffer referenced by none of a, b. */
static float *free_buf(struct optim *o, const float *a, const float *b)
{
	for (int i = 0; i < 3; i++)
		if (o->pool[i] != a && o->pool[i] != b)
			return o->pool[i];
	return NULL; /* unreachable: three buffers, two references */
}

/* torch's _strong_wolfe from x_init (saved by the caller) along o->d, from
 * loss f with gradient g = o->flat_grad and directional derivative gtd. On
 * return *f_out / o->flat_grad hold the accepted point's loss and gradient. */
static enum nn_status strong_wolfe(struct optim *o, optim_closure_fn fn, void *ud, double t,
				   double f, double gtd, double *f_out, double *t_out,
				   int64_t *evals, struct nn_err *e)
{
	const size_t n = o->total;
	const float *g = o->flat_grad;
	double d_norm = abs_max(o->d, n);
	enum nn_status st;
	double f_new;
	float *g_new = o->pool[0];
	if ((st = directional_eval(o, fn, ud, t, &f_new, g_new, e)) != NN_OK)
		return st;
	int64_t ls_evals = 1;
	double gtd_new = dot(g_new, o->d, n);

	double t_prev = 0, f_prev = f, gtd_prev = gtd;
	const float *g_prev = g;
	bool done = false;
	int ls_iter = 0;
	double br[2] = {0, 0}, brf[2] = {0, 0}, brgtd[2] = {0, 0};
	const float *brg[2] = {g, g};
	int nbr = 2;
	while (ls_iter < WOLFE_MAX_LS) {
		if (f_new > f + WOLFE_C1 * t * gtd || (ls_iter > 1 && f_new >= f_prev)) {
			br[0] = t_prev, br[1] = t;
			brf[0] = f_prev, brf[1] = f_new;
			brg[0] = g_prev, brg[1] = g_new;
			brgtd[0] = gtd_prev, brgtd[1] = gtd_new;
			break;
		}
		if (fabs(gtd_new) <= -WOLFE_C2 * gtd) {
			br[0] = br[1] = t;
			brf[0] = brf[1] = f_new;
			brg[0] = brg[1] = g_new;
			brgtd[0] = brgtd[1] = gtd_new;
			nbr = 1;
			done = true;
			break;
		}
		if (gtd_new >= 0) {
			br[0] = t_prev, br[1] = t;
			brf[0] = f_prev, brf[1] = f_new;
			brg[0] = g_prev, brg[1] = g_new;
			brgtd[0] = gtd_prev, brgtd[1] = gtd_new;
			break;
		}
		/* interpolate */
		double bounds[2] = {t + 0.01 * (t - t_prev), t * 10};
		double tmp = t;
		t = cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds);
		t_prev = tmp;
		f_prev = f_new;
		g_prev = g_new;
		gtd_prev = gtd_new;
		g_new = free_buf(o, g_prev, NULL);
		if ((st = directional_eval(o, fn, ud, t, &f_new, g_new, e)) != NN_OK)
			return st;
		ls_evals++;
		gtd_new = dot(g_new, o->d, n);
		ls_iter++;
	}
	if (ls_iter == WOLFE_MAX_LS) {
		br[0] = 0, br[1] = t;
		brf[0] = f, brf[1] = f_new;
		brg[0] = g, brg[1] = g_new;
	}
	(void)nbr;

	/* zoom */
	bool insuf_progress = false;
	int low = brf[0] <= brf[1] ? 0 : 1, high = 1 - low;
	while (!done && ls_iter < WOLFE_MAX_LS) {
		if (fabs(br[1] - br[0]) * d_norm < WOLFE_TOLERANCE_CHANGE)
			break;
		t = cubic_interpolate(br[0], brf[0], brgtd[0], br[1], brf[1], brgtd[1], NULL);
		double bmax = br[0] > br[1] ? br[0] : br[1], bmin = br[0] < br[1] ? br[0] : br[1];
		double eps = 0.1 * (bmax - bmin);
		double near = bmax - t < t - bmin ? bmax - t : t - bmin;
		if (near < eps) {
			if (insuf_progress || t >= bmax || t <= bmin) {
				if (fabs(t - bmax) < fabs(t - bmin))
					t = bmax - eps;
				else
					t = bmin + eps;
				insuf_progress = false;
			} else {
				insuf_progress = true;
			}
		} else {
			insuf_progress = false;
		}
		g_new = free_buf(o, brg[0], brg[1]);
		if ((st = directional_eval(o, fn, ud, t, &f_new, g_new, e)) != NN_OK)
			return st;
		ls_evals++;
		gtd_new = dot(g_new, o->d, n);
		ls_iter++;
		if (f_new > f + WOLFE_C1 * t * gtd || f_new >= brf[low]) {
			br[high] = t;
			brf[high] = f_new;
			brg[high] = g_new;
			brgtd[high] = gtd_new;
			low = brf[0] <= brf[1] ? 0 : 1;
			high = 1 - low;
		} else {
			if (fabs(gtd_new) <= -WOLFE_C2 * gtd) {
				done = true;
			} else if (gtd_new * (br[high] - br[low]) >= 0) {
				br[high] = br[low];
				brf[high] = brf[low];
				brg[high] = brg[low];
				brgtd[high] = brgtd[low];
			}
			br[low] = t;
			brf[low] = f_new;
			brg[low] = g_new;
			brgtd[low] = gtd_new;
		}
	}
	*t_out = br[low];
	*f_out = brf[low];
	if (brg[low] != o->flat_grad)
		memcpy(o->flat_grad, brg[low], n * sizeof(float));
	*evals = ls_evals;
	return NN_OK;
}

/* Ring position of the k-th oldest history pair. */
static size_t hist_index(const struct optim *o, size_t k)
{
	return (o->hist_start + k) % (size_t)o->p.history_size;
}

static enum nn_status lbfgs_step(struct optim *o, optim_closure_fn fn, void *ud, double *loss_out,
				 struct nn_err *e)
{
	const struct optim_params *p = &o->p;
	const size_t n = o->total;
	const size_t hsize = (size_t)p->history_size;
	double loss;
	enum nn_status st = call_closure(o, fn, ud, &loss, e);
	if (st != NN_OK)
		return st;
	if (loss_out)
		*loss_out = loss;
	int64_t current_evals = 1;
	float *g = o->flat_grad;
	gather_grad(o, g);
	if (abs_max(g, n) <= p->tolerance_grad)
		return NN_OK;

	int64_t n_iter = 0;
	while (n_iter < p->max_iter) {
		n_iter++;
		o->lbfgs_n_iter++;
		if (o->lbfgs_n_iter == 1) {
			for (size_t j = 0; j < n; j++)
				o->d[j] = -g[j];
			o->hist_start = o->hist_len = 0;
			o->h_diag = 1;
		} else {
			/* y = g - prev_g, s = d * t */
			float *y = o->y_tmp, *s = o->s_tmp;
			const float tf = (float)o->t;
			for (size_t j = 0; j < n; j++) {
				y[j] = g[j] - o->prev_flat_grad[j];
				s[j] = o->d[j] * tf;
			}
			double ys = dot(y, s, n);
			if (ys > 1e-10) {
				if (o->hist_len == hsize) { /* drop the oldest */
					o->hist_start = (o->hist_start + 1) % hsize;
					o->hist_len--;
				}
				size_t slot = hist_index(o, o->hist_len);
				if (!o->old_dirs[slot]) /* the ring still fills: new pair */
					o->old_dirs[slot] = falloc(n);
				if (!o->old_stps[slot])
					o->old_stps[slot] = falloc(n);
				if (!o->old_dirs[slot] || !o->old_stps[slot])
					return err_set(e, NN_ENOMEM, "out_of_memory", "",
						       "no memory for L-BFGS history (%zu floats "
						       "per pair)", n);
				/* (y, s) move into the slot; its old buffers become scratch */
				o->y_tmp = o->old_dirs[slot];
				o->s_tmp = o->old_stps[slot];
				o->old_dirs[slot] = y;
				o->old_stps[slot] = s;
				o->ro[slot] = 1.0 / ys;
				o->hist_len++;
				o->h_diag = ys / dot(y, y, n);
			}
			/* two-loop recursion; q and r live in d */
			float *q = o->d;
			for (size_t j = 0; j < n; j++)
				q[j] = -g[j];
			for (size_t k = o->hist_len; k-- > 0;) {
				size_t h = hist_index(o, k);
				o->al[h] = dot(o->old_stps[h], q, n) * o->ro[h];
				const float a = (float)o->al[h];
				const float *yd = o->old_dirs[h];
				for (size_t j = 0; j < n; j++)
					q[j] += -a * yd[j];
			}
			const float hd = (float)o->h_diag;
			for (size_t j = 0; j < n; j++)
				q[j] *= hd;
			for (size_t k = 0; k < o->hist_len; k++) {
				size_t h = hist_index(o, k);
				double be = dot(o->old_dirs[h], q, n) * o->ro[h];
				const float c = (float)(o->al[h] - be);
				const float *sd = o->old_stps[h];
				for (size_t j = 0; j < n; j++)
					q[j] += c * sd[j];
			}
		}
		memcpy(o->prev_flat_grad, g, n * sizeof(float));
		double prev_loss = loss;

		/* step length */
		double t;
		if (o->lbfgs_n_iter == 1) {
			double inv = 1.0 / abs_sum(g, n);
			t = (inv < 1.0 ? inv : 1.0) * o->lr;
		} else {
			t = o->lr;
		}
		o->t = t;
		double gtd = dot(g, o->d, n);
		if (gtd > -p->tolerance_change)
			break;

		int64_t ls_evals = 0;
		bool opt_cond = false;
		if (p->strong_wolfe) {
			save_params(o, o->x_init);
			st = strong_wolfe(o, fn, ud, t, loss, gtd, &loss, &t, &ls_evals, e);
			if (st != NN_OK)
				return st;
			o->t = t;
			add_dir(o, t, o->d);
			opt_cond = abs_max(g, n) <= p->tolerance_grad;
		} else {
			add_dir(o, t, o->d);
			if (n_iter != p->max_iter) {
				if ((st = call_closure(o, fn, ud, &loss, e)) != NN_OK)
					return st;
				gather_grad(o, g);
				opt_cond = abs_max(g, n) <= p->tolerance_grad;
				ls_evals = 1;
			}
		}
		current_evals += ls_evals;

		if (n_iter == p->max_iter)
			break;
		if (current_evals >= p->max_eval)
			break;
		if (opt_cond)
			break;
		/* lack of progress: max |d * t| */
		if (abs_max(o->d, n) * fabs(t) <= p->tolerance_change)
			break;
		if (fabs(loss - prev_loss) < p->tolerance_change)
			break;
	}
	return NN_OK;
}

enum nn_status optim_step_closure(struct optim *o, optim_closure_fn fn, void *ud, double *loss,
				  struct nn_err *e)
{
	if (o->p.kind == OPTIM_LBFGS)
		return lbfgs_step(o, fn, ud, loss, e);
	double l;
	enum nn_status st = call_closure(o, fn, ud, &l, e);
	if (st != NN_OK)
		return st;
	if (loss)
		*loss = l;
	return optim_step(o, e);
}
