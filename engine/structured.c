/* structured: ranking and choice of the channels to remove (structured.h). */
#include "structured.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shrink.h"
#include "tensor.h"

static enum nn_status oom(struct nn_err *e)
{
	return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for structured pruning");
}

/* Sum of |r[i]| (L1) or r[i]^2 (L2) over one row: NORM_LANES independent
 * float lanes the compiler vectorizes, folded into double every NORM_CHUNK
 * elements so long rows keep their precision. */
#define NORM_LANES 16
#define NORM_CHUNK 4096
static double row_norm(const float *r, int64_t n, enum prune_criterion cr)
{
	double total = 0;
	for (int64_t at = 0; at < n; at += NORM_CHUNK) {
		int64_t len = n - at < NORM_CHUNK ? n - at : NORM_CHUNK, i = 0;
		const float *p = r + at;
		float lane[NORM_LANES] = {0};
		if (cr == PRUNE_L1) {
			for (; i + NORM_LANES <= len; i += NORM_LANES)
				for (int j = 0; j < NORM_LANES; j++)
					lane[j] += fabsf(p[i + j]);
			for (; i < len; i++)
				lane[0] += fabsf(p[i]);
		} else {
			for (; i + NORM_LANES <= len; i += NORM_LANES)
				for (int j = 0; j < NORM_LANES; j++)
					lane[j] += p[i + j] * p[i + j];
			for (; i < len; i++)
				lane[0] += p[i] * p[i];
		}
		for (int j = 0; j < NORM_LANES; j++)
			total += (double)lane[j];
	}
	return total;
}

/* Per channel (index along `axis`) L1 or L2 norm of w, added into out[]
 * after dividing by the mean norm of this layer (so layers of different
 * scales weigh the same in a joint ranking). */
static enum nn_status add_norms(const Onnx__TensorProto *init, int axis, enum prune_criterion cr,
				double *out, int64_t n, struct nn_err *e)
{
	struct tensor v;
	enum nn_status st = onnx_initializer_view(init, &v, e);
	if (st != NN_OK)
		return st;
	double *acc = calloc((size_t)n, sizeof *acc);
	if (!acc) {
		tensor_free(&v);
		return oom(e);
	}
	int64_t outer = 1, inner = 1;
	for (int d = 0; d < v.ndim; d++) {
		if (d < axis)
			outer *= v.shape[d];
		else if (d > axis)
			inner *= v.shape[d];
	}
	const float *w = v.data;
	for (int64_t o = 0; o < outer; o++) {
		for (int64_t c = 0; c < n; c++) {
			const float *r = w + ((size_t)o * (size_t)n + (size_t)c) * (size_t)inner;
			acc[c] += row_norm(r, inner, cr);
		}
	}
	double mean = 0;
	for (int64_t c = 0; c < n; c++) {
		if (cr == PRUNE_L2)
			acc[c] = sqrt(acc[c]);
		mean += acc[c];
	}
	mean /= (double)n;
	for (int64_t c = 0; c < n; c++)
		out[c] += mean > 0 ? acc[c] / mean : acc[c];
	free(acc);
	tensor_free(&v);
	return NN_OK;
}

struct cand {
	double score;
	size_t group;
	int64_t channel;
};

static int cmp_cand(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	if (x->score != y->score)
		return x->score < y->score ? -1 : 1;
	if (x->group != y->group)
		return x->group < y->group ? -1 : 1;
	return (x->channel > y->channel) - (x->channel < y->channel);
}

static int64_t round_count(double ratio, int64_t n)
{
	double k = floor(ratio * (double)n + 0.5);
	return k <= 0 ? 0 : k >= (double)n ? n : (int64_t)k;
}

static int64_t numel_of(const Onnx__TensorProto *t)
{
	int64_t n = 1;
	for (size_t d = 0; t && d < t->n_dims; d++)
		n *= t->dims[d];
	return t ? n : 0;
}

/* Why a prunable weight is no producing layer of any group. */
static const char *not_source_reason(const struct onnx_weight_ref *r)
{
	const Onnx__NodeProto *n = r->node;
	if (!strcmp(n->op_type, "Conv"))
		return "grouped Conv: its output channels are tied to its input groups";
	if (!strcmp(n->op_type, "MatMul"))
		return "the weight is not a 2-D second MatMul operand";
	return "the weight layout is not one the surgery supports";
}

enum nn_status structured_run(struct onnx_model *m, const struct prune_params *p,
			      const struct step_ctx *ctx, json_t **metrics, struct nn_err *e)
{
	enum nn_status st = NN_OK;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct shrink_plan *plan = NULL;
	struct onnx_weight_ref *refs = NULL;
	size_t nref = 0;
	struct cand *pool = NULL;
	double *score = NULL;
	const char **why = NULL; /* per group: decision note when not pruned */
	int64_t *before_ch = NULL, *before_params = NULL;
	json_t *out = NULL, *layers = NULL;
	*metrics = NULL;

	size_t bytes_before = onnx_packed_size(m);
	uint64_t params_before, params_after, nz;
	prune_model_counts(m, &params_before, &nz);
	if ((st = onnx_prunable_weights(m, &refs, &nref, e)) != NN_OK)
		goto fail;
	if (nref == 0) {
		st = err_set(e, NN_EINVAL, "invalid_spec", "",
			     "model has no Gemm/MatMul/Conv float weights to prune");
		goto fail;
	}
	if (p->layers) {
		const char *name;
		json_t *v;
		json_object_foreach((json_t *)p->layers, name, v) {
			size_t i = 0;
			while (i < nref && strcmp(refs[i].init->name, name))
				i++;
			if (i == nref) {
				st = err_set(e, NN_EINVAL, "invalid_spec", "layers",
					     "layers names '%.100s', which is not a prunable weight of "
					     "the model (e.g. '%.100s')", name, refs[0].init->name);
				goto fail;
			}
		}
	}
	if ((st = shrink_analyze(m, &plan, e)) != NN_OK)
		goto fail;
	size_t ng = plan->n_groups;
	why = calloc(ng ? ng : 1, sizeof *why);
	before_ch = calloc(nref, sizeof *before_ch);
	before_params = calloc(nref, sizeof *before_params);
	if (!why || !before_ch || !before_params) {
		st = oom(e);
		goto fail;
	}
	for (size_t i = 0; i < nref; i++) {
		long gi = shrink_group_of_weight(plan, refs[i].init);
		before_ch[i] = gi >= 0 ? plan->groups[gi].channels : refs[i].init->dims[refs[i].channel_axis];
		before_params[i] = numel_of(refs[i].init);
		for (size_t l = 0; gi >= 0 && l < plan->groups[gi].n_layers; l++)
			if (plan->groups[gi].layers[l].weight == refs[i].init)
				before_params[i] += numel_of(plan->groups[gi].layers[l].bias);
	}

	size_t n_pool = 0, cap_pool = 0;
	for (size_t gi = 0; gi < ng; gi++) {
		struct shrink_group *gr = &plan->groups[gi];
		if (!gr->prunable || gr->derived)
			continue;
		if (step_canceled(ctx)) {
			st = err_set(e, NN_ECANCELED, "canceled", "", "canceled while pruning");
			goto fail;
		}
		bool pinned = false, has_override = false;
		double r = p->ratio;
		for (size_t l = 0; l < gr->n_layers; l++) {
			const Onnx__TensorProto *w = gr->layers[l].weight;
			if (p->keep_first_last && (w == refs[0].init || w == refs[nref - 1].init))
				pinned = true;
			const json_t *o = p->layers ? json_object_get(p->layers, w->name) : NULL;
			if (o && !has_override) {
				r = json_number_value(o);
				has_override = true;
			}
		}
		if (pinned) {
			why[gi] = "keep_first_last: the first and last layers stay whole";
			continue;
		}
		if (r <= 0) {
			why[gi] = has_override ? "ratio 0 in \"layers\"" : "ratio 0";
			continue;
		}
		free(score);
		score = calloc((size_t)gr->channels, sizeof *score);
		if (!score) {
			st = oom(e);
			goto fail;
		}
		for (size_t l = 0; l < gr->n_layers; l++)
			if ((st = add_norms(gr->layers[l].weight, gr->layers[l].axis, p->criterion, score,
					    gr->channels, e)) != NN_OK)
				goto fail;
		for (int64_t c = 0; c < gr->channels; c++)
			score[c] /= (double)gr->n_layers;
		bool global = p->scope == PRUNE_SCOPE_GLOBAL && !has_override;
		size_t need = n_pool + (size_t)gr->channels;
		if (need > cap_pool) {
			size_t nc = cap_pool ? cap_pool * 2 : 256;
			while (nc < need)
				nc *= 2;
			struct cand *np = realloc(pool, nc * sizeof *np);
			if (!np) {
				st = oom(e);
				goto fail;
			}
			pool = np;
			cap_pool = nc;
		}
		size_t base = global ? n_pool : n_pool;
		for (int64_t c = 0; c < gr->channels; c++)
			pool[base + (size_t)c] = (struct cand){score[c], gi, c};
		if (global) {
			n_pool += (size_t)gr->channels;
			continue;
		}
		/* layer scope (or an override): the group's own lowest channels */
		qsort(pool + base, (size_t)gr->channels, sizeof *pool, cmp_cand);
		int64_t k = round_count(r, gr->channels);
		if (k >= gr->channels)
			k = gr->channels - 1;
		for (int64_t i = 0; i < k; i++)
			gr->keep[pool[base + (size_t)i].channel] = 0;
	}
	if (p->scope == PRUNE_SCOPE_GLOBAL && n_pool) {
		qsort(pool, n_pool, sizeof *pool, cmp_cand);
		int64_t k = round_count(p->ratio, (int64_t)n_pool);
		for (size_t i = 0; i < n_pool && k > 0; i++) {
			struct shrink_group *gr = &plan->groups[pool[i].group];
			if (shrink_kept(gr) <= 1)
				continue; /* never a whole layer */
			gr->keep[pool[i].channel] = 0;
			k--;
		}
	}
	step_progress(ctx, 0.5);
	if ((st = shrink_apply(m, plan, e)) != NN_OK)
		goto fail;
	prune_model_counts(m, &params_after, &nz);

	out = json_object();
	layers = json_array();
	int bad = !out || !layers;
	for (size_t i = 0; !bad && i < nref; i++) {
		long gi = shrink_group_of_weight(plan, refs[i].init);
		const struct shrink_group *gr = gi >= 0 ? &plan->groups[gi] : NULL;
		int64_t after_ch = gr ? shrink_kept(gr) : before_ch[i];
		int64_t after_params = numel_of(refs[i].init);
		for (size_t l = 0; gr && l < gr->n_layers; l++)
			if (gr->layers[l].weight == refs[i].init)
				after_params += numel_of(gr->layers[l].bias);
		const char *status, *reason = "";
		if (!gr) {
			status = "skipped";
			reason = not_source_reason(&refs[i]);
		} else if (!gr->prunable) {
			status = "skipped";
			reason = gr->reason;
		} else if (why[gi]) {
			status = "skipped";
			reason = why[gi];
		} else if (after_ch < before_ch[i]) {
			status = gr->n_layers > 1 ? "pruned with its residual group" : "pruned";
		} else {
			status = "unchanged";
			reason = "no channel fell below the threshold";
		}
		json_t *l = json_object();
		bad |= !l || json_array_append_new(layers, l);
		if (bad)
			break;
		bad |= step_json_set(l, "name", json_string(refs[i].init->name));
		bad |= step_json_set(l, "op", json_string(refs[i].node->op_type));
		bad |= step_json_set(l, "node", json_string(refs[i].node->name ? refs[i].node->name : ""));
		bad |= step_json_set(l, "channels_before", json_integer(before_ch[i]));
		bad |= step_json_set(l, "channels_after", json_integer(after_ch));
		bad |= step_json_set(l, "parameters_before", json_integer(before_params[i]));
		bad |= step_json_set(l, "parameters_after", json_integer(after_params));
		bad |= step_json_set(l, "status", json_string(status));
		bad |= step_json_set(l, "reason", json_string(reason));
	}
	static const char *const crit[] = {"l1", "l2"};
	bad |= step_json_set(out, "method", json_string("structured"));
	bad |= step_json_set(out, "ratio", json_real(p->ratio));
	bad |= step_json_set(out, "criterion", json_string(crit[p->criterion == PRUNE_L2]));
	bad |= step_json_set(out, "scope",
			     json_string(p->scope == PRUNE_SCOPE_GLOBAL ? "global" : "layer"));
	bad |= step_json_set(out, "parameters_before", json_integer((json_int_t)params_before));
	bad |= step_json_set(out, "parameters_after", json_integer((json_int_t)params_after));
	bad |= step_json_set(out, "bytes_before", json_integer((json_int_t)bytes_before));
	bad |= step_json_set(out, "bytes_after", json_integer((json_int_t)onnx_packed_size(m)));
	bad |= step_json_set(out, "layers", layers);
	layers = NULL;
	bad |= step_json_set(out, "groups", shrink_groups_json(plan));
	bad |= step_json_set(out, "seconds", json_real(step_seconds_since(&t0)));
	if (bad) {
		st = oom(e);
		goto fail;
	}
	step_progress(ctx, 1.0);
	*metrics = out;
	out = NULL;
fail:
	json_decref(layers);
	json_decref(out);
	free(pool);
	free(score);
	free((void *)why);
	free(before_ch);
	free(before_params);
	free(refs);
	shrink_plan_free(plan);
	return st;
}
