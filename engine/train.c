/* train: the training loop (see train.h). */
#include "train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "exec.h"
#include "rng.h"
#include "train_loss.h"

/* Rows the teacher's executor plan runs at once (the last chunk is padded). */
#define TRAIN_TEACHER_CHUNK 256

void train_params_default(struct train_params *p)
{
	memset(p, 0, sizeof *p);
	p->epochs = 10;
	p->batch_size = 64;
	p->temperature = 4.0;
	p->alpha = 0.9;
	optim_params_default(OPTIM_SGD, &p->optimizer);
	optim_schedule_default(&p->schedule);
	p->seed = 0;
	p->feature_weight = 1.0;
}

static enum nn_status oom(struct nn_err *e)
{
	return err_set(e, NN_ENOMEM, "out_of_memory", "", "out of memory");
}

static void *alloc_array(size_t count, size_t size)
{
	size_t bytes;
	if (__builtin_mul_overflow(count, size, &bytes))
		return NULL;
	return malloc(bytes ? bytes : 1);
}

/* The teacher's first output for every training sample, [n, k], computed
 * once by the executor. The plan runs chunks of `chunk` rows; the last chunk
 * is zero-padded to the plan's batch (rows are independent at inference). */
static enum nn_status teacher_logits(const struct onnx_model *teacher, const struct train_set *t,
				     int64_t k, const struct step_ctx *ctx, float *out,
				     struct nn_err *e)
{
	int64_t chunk = t->n < TRAIN_TEACHER_CHUNK ? t->n : TRAIN_TEACHER_CHUNK;
	unsigned threads = ctx && ctx->threads ? ctx->threads : 1;
	struct exec_plan *plan = NULL;
	float *pad = NULL;
	enum nn_status st = exec_compile_threads(teacher, chunk, threads, &plan, e);
	if (st != NN_OK) {
		err_prefix(e, "compiling the teacher");
		return st;
	}
	if (exec_input_count(plan) != 1 || exec_output_count(plan) < 1) {
		st = err_set(e, NN_EUNSUPPORTED, "unsupported_model", "",
			     "the teacher must have one input (it has %zu)", exec_input_count(plan));
		goto done;
	}
	const struct tensor *ispec = exec_input_spec(plan, 0);
	const struct tensor *ospec = exec_output_spec(plan, 0);
	int64_t in_numel = tensor_numel(ispec), out_numel = tensor_numel(ospec);
	if (ispec->dtype != DT_FLOAT || in_numel != chunk * t->sample_numel) {
		st = err_set(e, NN_EINVAL, "invalid_model", "",
			     "the teacher's input (%lld floats per sample) does not take the "
			     "training samples (%lld floats each)",
			     (long long)(in_numel / chunk), (long long)t->sample_numel);
		goto done;
	}
	if (ospec->dtype != DT_FLOAT || out_numel != chunk * k) {
		st = err_set(e, NN_EINVAL, "invalid_model", "",
			     "the teacher's output has %lld values per sample and the student's %lld: "
			     "they must match",
			     (long long)(out_numel / chunk), (long long)k);
		goto done;
	}
	size_t row = (size_t)t->sample_numel;
	if (t->n % chunk && !(pad = calloc((size_t)chunk, row * sizeof *pad))) {
		st = oom(e);
		goto done;
	}
	for (int64_t i = 0; i < t->n; i += chunk) {
		if (step_canceled(ctx)) {
			st = err_set(e, NN_ECANCELED, "canceled", "", "canceled");
			goto done;
		}
		int64_t rows = t->n - i < chunk ? t->n - i : chunk;
		const float *src = t->x + (size_t)i * row;
		if (rows < chunk) {
			memcpy(pad, src, (size_t)rows * row * sizeof *pad);
			src = pad;
		}
		struct tensor in, outs[8];
		size_t n_out = exec_output_count(plan) < 8 ? exec_output_count(plan) : 8;
		tensor_view(&in, DT_FLOAT, ispec->ndim, ispec->shape, (void *)src);
		if ((st = exec_run(plan, &in, 1, outs, n_out, e)) != NN_OK) {
			err_prefix(e, "running the teacher");
			goto done;
		}
		memcpy(out + (size_t)i * (size_t)k, outs[0].data,
		       (size_t)rows * (size_t)k * sizeof *out);
	}
done:
	free(pad);
	exec_free(plan);
	return st;
}

/* Everything one run holds, allocated once. */
struct run {
	struct tg_graph *g;
	struct optim *opt;
	const struct train_params *p;
	const struct train_set *train;
	const struct step_ctx *ctx;
	int64_t k, batch, iters, numel;
	uint32_t *order;
	float *xb, *dout, *tb;
	int64_t *yb;
	const float *tlogits;        /* [n, k] or NULL */
	struct tg_graph *tfeat;      /* teacher graph for the feature loss, or NULL */
	float **gsum;                /* L-BFGS chunked: gradient sums per parameter */
	size_t n_params;
	/* epoch accumulators */
	double loss_sum;
	int64_t seen, correct;
	int64_t epoch;
	bool count_epoch;            /* L-BFGS: count the closure's first call only */
};

static enum nn_status diverged(struct nn_err *e, int64_t epoch)
{
	return err_set(e, NN_EINVAL, "training_diverged", "",
		       "the training loss became non-finite in epoch %lld: lower the learning rate",
		       (long long)epoch + 1);
}

/* Forward + loss + backward on rows idx[0..nb) (NULL: rows first..first+nb)
 * scaled by `weight` (1 for a mini-batch; nb/n for a chunk of a full batch).
 * Leaves every parameter's grad written; *loss = the batch's mean loss. */
static enum nn_status batch_pass(struct run *r, const uint32_t *idx, int64_t first, int64_t nb,
				 double weight, double *loss, struct nn_err *e)
{
	const struct train_params *p = r->p;
	const struct train_set *t = r->train;
	size_t row = (size_t)r->numel, k = (size_t)r->k;
	const float *x;
	const int64_t *labels = NULL;
	const float *teacher = NULL;
	if (idx) {
		for (int64_t i = 0; i < nb; i++) {
			size_t s = idx[i];
			memcpy(r->xb + (size_t)i * row, t->x + s * row, row * sizeof(float));
			if (t->labels)
				r->yb[i] = t->labels[s];
			if (r->tlogits)
				memcpy(r->tb + (size_t)i * k, r->tlogits + s * k, k * sizeof(float));
		}
		x = r->xb;
		labels = t->labels ? r->yb : NULL;
		teacher = r->tlogits ? r->tb : NULL;
	} else {
		x = t->x + (size_t)first * row;
		labels = t->labels ? t->labels + first : NULL;
		teacher = r->tlogits ? r->tlogits + (size_t)first * k : NULL;
	}
	if (p->before_forward)
		p->before_forward(p->before_forward_ud);
	const float *out;
	enum nn_status st = tg_forward(r->g, x, nb, true, &out, e);
	if (st != NN_OK)
		return st;
	double l = 0;
	if (teacher && p->alpha > 0)
		st = loss_distill(out, teacher, labels, nb, r->k, p->temperature, p->alpha, r->dout,
				  &l, e);
	else
		st = loss_cross_entropy(out, labels, nb, r->k, r->dout, &l, e);
	if (st != NN_OK)
		return st;
	if (r->count_epoch && labels)
		r->correct += loss_top1_correct(out, labels, nb, r->k);
	if (r->tfeat) {
		const float *tout;
		int64_t sn = 0, tn = 0;
		if ((st = tg_forward(r->tfeat, x, nb, false, &tout, e)) != NN_OK) {
			err_prefix(e, "teacher features");
			return st;
		}
		const float *sf = tg_tap(r->g, p->feature_student, &sn);
		const float *tf = tg_tap(r->tfeat, p->feature_teacher, &tn);
		float *sg = tg_tap_grad(r->g, p->feature_student);
		if (!sf || !tf || !sg || sn != tn)
			return err_set(e, NN_EINVAL, "invalid_spec", "",
				       "feature_loss: student tensor '%s' (%lld values per sample) and "
				       "teacher tensor '%s' (%lld) must both exist and match in size",
				       p->feature_student, (long long)sn, p->feature_teacher,
				       (long long)tn);
		double fl = 0;
		if ((st = loss_mse(sf, tf, (size_t)nb * (size_t)sn, p->feature_weight, sg, &fl, e)) !=
		    NN_OK)
			return st;
		l += fl;
		if (weight != 1.0)
			for (size_t i = 0; i < (size_t)nb * (size_t)sn; i++)
				sg[i] = (float)(sg[i] * weight);
	}
	if (!isfinite(l))
		return diverged(e, r->epoch);
	if (weight != 1.0)
		for (size_t i = 0; i < (size_t)nb * k; i++)
			r->dout[i] = (float)(r->dout[i] * weight);
	if ((st = tg_backward(r->g, r->dout, e)) != NN_OK)
		return st;
	if (r->count_epoch) {
		r->loss_sum += l * (double)nb;
		r->seen += nb;
	}
	*loss = l;
	return NN_OK;
}

/* L-BFGS closure: loss and gradient of the mean over the whole training set,
 * in max-batch chunks whose gradients are summed with weights nb/n. */
static enum nn_status full_batch(void *ud, double *loss, struct nn_err *e)
{
	struct run *r = ud;
	int64_t n = r->train->n;
	double total = 0;
	enum nn_status st;
	if (n <= r->batch) {
		st = batch_pass(r, NULL, 0, n, 1.0, &total, e);
		r->count_epoch = false;
		*loss = total;
		return st;
	}
	for (size_t j = 0; j < r->n_params; j++)
		memset(r->gsum[j], 0, tg_param(r->g, j)->n * sizeof(float));
	for (int64_t i = 0; i < n; i += r->batch) {
		if (step_canceled(r->ctx))
			return err_set(e, NN_ECANCELED, "canceled", "", "canceled");
		int64_t nb = n - i < r->batch ? n - i : r->batch;
		double l;
		if ((st = batch_pass(r, NULL, i, nb, (double)nb / (double)n, &l, e)) != NN_OK)
			return st;
		total += l * (double)nb / (double)n;
		for (size_t j = 0; j < r->n_params; j++) {
			struct tg_param *q = tg_param(r->g, j);
			for (size_t v = 0; v < q->n; v++)
				r->gsum[j][v] += q->grad[v];
		}
	}
	for (size_t j = 0; j < r->n_params; j++) {
		struct tg_param *q = tg_param(r->g, j);
		memcpy(q->grad, r->gsum[j], q->n * sizeof(float));
	}
	r->count_epoch = false;
	*loss = total;
	return NN_OK;
}

enum nn_status train_accuracy(struct tg_graph *g, const struct train_params *p,
			      const struct train_set *set, double *accuracy, struct nn_err *e)
{
	int64_t numel = tg_input_sample_numel(g), k = tg_output_sample_numel(g);
	int64_t mb = tg_max_batch(g), correct = 0;
	if (!set || !set->labels || set->n < 1 || set->sample_numel != numel)
		return err_set(e, NN_EINVAL, "invalid_dataset", "",
			       "accuracy needs labelled samples of %lld floats", (long long)numel);
	if (p && p->before_forward)
		p->before_forward(p->before_forward_ud);
	for (int64_t i = 0; i < set->n; i += mb) {
		int64_t nb = set->n - i < mb ? set->n - i : mb;
		const float *out;
		enum nn_status st =
			tg_forward(g, set->x + (size_t)i * (size_t)numel, nb, false, &out, e);
		if (st != NN_OK)
			return st;
		correct += loss_top1_correct(out, set->labels + i, nb, k);
	}
	*accuracy = (double)correct / (double)set->n;
	return NN_OK;
}

static enum nn_status check_inputs(struct tg_graph *g, const struct train_params *p,
				   const struct train_set *t, const struct onnx_model *teacher,
				   const struct train_set *eval, struct nn_err *e)
{
	int64_t numel = tg_input_sample_numel(g);
	if (!t || !t->x || t->n < 1)
		return err_set(e, NN_EINVAL, "invalid_dataset", "dataset",
			       "training needs at least one sample");
	if (t->n > (int64_t)UINT32_MAX)
		return err_set(e, NN_ETOOBIG, "too_big", "dataset", "at most %u training samples",
			       UINT32_MAX);
	if (t->sample_numel != numel)
		return err_set(e, NN_EINVAL, "invalid_dataset", "dataset",
			       "training samples have %lld values and the model's input takes %lld",
			       (long long)t->sample_numel, (long long)numel);
	if (eval && eval->sample_numel != numel)
		return err_set(e, NN_EINVAL, "invalid_dataset", "eval.dataset",
			       "evaluation samples have %lld values and the model's input takes %lld",
			       (long long)eval->sample_numel, (long long)numel);
	if (p->epochs < 0 || p->batch_size < 1)
		return err_set(e, NN_EINVAL, "invalid_spec", "", "epochs >= 0 and batch_size >= 1");
	int64_t b = p->batch_size < t->n ? p->batch_size : t->n;
	if (b > tg_max_batch(g))
		return err_set(e, NN_EINTERNAL, "internal", "",
			       "graph compiled for batches of %lld, training uses %lld",
			       (long long)tg_max_batch(g), (long long)b);
	if (!(p->alpha >= 0 && p->alpha <= 1) || !(p->temperature > 0))
		return err_set(e, NN_EINVAL, "invalid_spec", "",
			       "alpha must be in [0, 1] and temperature > 0");
	if (p->alpha > 0 && !teacher)
		return err_set(e, NN_EINVAL, "invalid_spec", "", "alpha > 0 needs a teacher");
	if (!t->labels && !(teacher && p->alpha == 1))
		return err_set(e, NN_EINVAL, "invalid_dataset", "dataset",
			       "training on hard labels (alpha < 1) needs a labelled dataset");
	if ((p->feature_student != NULL) != (p->feature_teacher != NULL) ||
	    (p->feature_student && !teacher))
		return err_set(e, NN_EINVAL, "invalid_spec", "",
			       "a feature loss needs a teacher and both tensor names");
	return NN_OK;
}

enum nn_status train_run(struct tg_graph *g, struct optim *opt, const struct train_params *p,
			 const struct train_set *train, const struct onnx_model *teacher,
			 const struct train_set *eval, const struct step_ctx *ctx,
			 json_t **history, struct nn_err *e)
{
	enum nn_status st = check_inputs(g, p, train, teacher, eval, e);
	if (st != NN_OK)
		return st;
	struct run r = {.g = g, .opt = opt, .p = p, .train = train, .ctx = ctx};
	r.numel = train->sample_numel;
	r.k = tg_output_sample_numel(g);
	r.batch = p->batch_size < train->n ? p->batch_size : train->n;
	bool lbfgs = optim_get_params(opt)->kind == OPTIM_LBFGS;
	r.iters = lbfgs ? 1 : (train->n + r.batch - 1) / r.batch;
	r.n_params = tg_param_count(g);
	size_t n = (size_t)train->n, row = (size_t)r.numel, k = (size_t)r.k, b = (size_t)r.batch;
	float *tl = NULL;
	json_t *hist = history ? json_array() : NULL;
	struct tg_graph *tfeat = NULL;
	r.order = alloc_array(n, sizeof *r.order);
	r.xb = alloc_array(b, row * sizeof(float));
	r.yb = alloc_array(b, sizeof *r.yb);
	r.dout = alloc_array(b, k * sizeof(float));
	r.tb = alloc_array(b, k * sizeof(float));
	if (!r.order || !r.xb || !r.yb || !r.dout || !r.tb || (history && !hist)) {
		st = oom(e);
		goto done;
	}
	if (lbfgs && train->n > r.batch) {
		if (!(r.gsum = calloc(r.n_params ? r.n_params : 1, sizeof *r.gsum))) {
			st = oom(e);
			goto done;
		}
		for (size_t j = 0; j < r.n_params; j++)
			if (!(r.gsum[j] = alloc_array(tg_param(g, j)->n, sizeof(float)))) {
				st = oom(e);
				goto done;
			}
	}
	if (teacher && p->alpha > 0 && p->epochs > 0) {
		if (!(tl = alloc_array(n, k * sizeof(float)))) {
			st = oom(e);
			goto done;
		}
		if ((st = teacher_logits(teacher, train, r.k, ctx, tl, e)) != NN_OK)
			goto done;
		r.tlogits = tl;
	}
	if (p->feature_teacher && p->epochs > 0) {
		const char *taps[1] = {p->feature_teacher};
		struct tg_options to = {.max_batch = r.batch, .seed = p->seed, .taps = taps, .n_taps = 1};
		if ((st = tg_compile(teacher, &to, &tfeat, e)) != NN_OK) {
			err_prefix(e, "feature_loss: compiling the teacher");
			goto done;
		}
		r.tfeat = tfeat;
	}
	for (size_t i = 0; i < n; i++)
		r.order[i] = (uint32_t)i;
	struct rng rng;
	rng_seed(&rng, p->seed);
	double base_lr = optim_get_params(opt)->lr;
	int64_t total_iters = p->epochs * r.iters;
	for (int64_t ep = 0; ep < p->epochs; ep++) {
		struct timespec t0;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		r.epoch = ep;
		r.loss_sum = 0;
		r.seen = 0;
		r.correct = 0;
		double lr = base_lr;
		if (lbfgs) {
			if (step_canceled(ctx)) {
				st = err_set(e, NN_ECANCELED, "canceled", "", "canceled in epoch %lld",
					     (long long)ep + 1);
				goto done;
			}
			lr = optim_schedule_lr(&p->schedule, base_lr, p->epochs, 1, ep, 0);
			optim_set_lr(opt, lr);
			r.count_epoch = true;
			double l;
			if ((st = optim_step_closure(opt, full_batch, &r, &l, e)) != NN_OK)
				goto done;
			step_progress(ctx, (double)(ep + 1) / (double)total_iters);
		} else {
			rng_shuffle(&rng, r.order, n);
			for (int64_t it = 0; it < r.iters; it++) {
				if (step_canceled(ctx)) {
					st = err_set(e, NN_ECANCELED, "canceled", "",
						     "canceled in epoch %lld, batch %lld",
						     (long long)ep + 1, (long long)it + 1);
					goto done;
				}
				int64_t first = it * r.batch;
				int64_t nb = train->n - first < r.batch ? train->n - first : r.batch;
				lr = optim_schedule_lr(&p->schedule, base_lr, p->epochs, r.iters, ep, it);
				optim_set_lr(opt, lr);
				r.count_epoch = true;
				double l;
				if ((st = batch_pass(&r, r.order + first, 0, nb, 1.0, &l, e)) != NN_OK)
					goto done;
				if ((st = optim_step(opt, e)) != NN_OK)
					goto done;
				step_progress(ctx, (double)(ep * r.iters + it + 1) / (double)total_iters);
			}
		}
		double loss = r.seen ? r.loss_sum / (double)r.seen : NAN;
		double train_acc = r.seen && train->labels ? (double)r.correct / (double)r.seen : NAN;
		double eval_acc = NAN;
		if (eval && eval->labels && eval->n > 0 &&
		    (st = train_accuracy(g, p, eval, &eval_acc, e)) != NN_OK)
			goto done;
		double secs = step_seconds_since(&t0);
		json_t *rowj = json_object();
		int bad = !rowj;
		if (rowj) {
			bad |= step_json_set(rowj, "epoch", json_integer(ep + 1));
			bad |= step_json_set(rowj, "loss", step_json_real(loss));
			if (train->labels)
				bad |= step_json_set(rowj, "train_accuracy", step_json_real(train_acc));
			if (eval && eval->labels && eval->n > 0)
				bad |= step_json_set(rowj, "eval_accuracy", step_json_real(eval_acc));
			bad |= step_json_set(rowj, "lr", step_json_real(lr));
			bad |= step_json_set(rowj, "seconds", step_json_real(secs));
		}
		if (bad) {
			json_decref(rowj);
			st = oom(e);
			goto done;
		}
		step_event(ctx, "epoch", rowj);
		if (hist && json_array_append(hist, rowj)) {
			json_decref(rowj);
			st = oom(e);
			goto done;
		}
		json_decref(rowj);
	}
	step_progress(ctx, 1.0);
done:
	if (r.gsum)
		for (size_t j = 0; j < r.n_params; j++)
			free(r.gsum[j]);
	free(r.gsum);
	tg_free(tfeat);
	free(tl);
	free(r.order);
	free(r.xb);
	free(r.yb);
	free(r.dout);
	free(r.tb);
	if (st == NN_OK && history)
		*history = hist;
	else
		json_decref(hist);
	return st;
}
