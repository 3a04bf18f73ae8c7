/* dead: dead-channel detection on calibration data and lossless removal
 * (dead.h). */
#include "dead.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eval.h"
#include "exec.h"
#include "shrink.h"
#include "tensor.h"

#define DEAD_BATCH 64

static enum nn_status oom(struct nn_err *e)
{
	return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for dead-neuron removal");
}

/* Runs `plan` over rows [at, at + batch) of the calibration inputs. */
static enum nn_status run_rows(struct exec_plan *plan, const struct tensor *x, int64_t at,
			       int64_t batch, struct tensor *outs, size_t n_outs, struct nn_err *e)
{
	struct tensor in = *x;
	int64_t per = 1;
	for (int d = 1; d < x->ndim; d++)
		per *= x->shape[d];
	in.shape[0] = batch;
	in.data = (float *)x->data + (size_t)(at * per);
	in.owned = false;
	return exec_run(plan, &in, 1, outs, n_outs, e);
}

static int64_t argmax(const float *v, int64_t n)
{
	int64_t best = 0;
	for (int64_t i = 1; i < n; i++)
		if (v[i] > v[best])
			best = i;
	return best;
}

/* Largest |v| per channel of a tap output. */
static void fold_tap(const struct tensor *t, const struct shrink_tap *tap, int64_t channels,
		     double *maxabs)
{
	int axis = t->ndim - 1 - tap->from_end;
	int64_t outer = 1, inner = 1, along = t->shape[axis];
	for (int d = 0; d < t->ndim; d++) {
		if (d < axis)
			outer *= t->shape[d];
		else if (d > axis)
			inner *= t->shape[d];
	}
	const float *v = t->data;
	for (int64_t o = 0; o < outer; o++) {
		for (int64_t a = 0; a < along; a++) {
			int64_t c = a / tap->block;
			const float *r = v + ((size_t)o * (size_t)along + (size_t)a) * (size_t)inner;
			double mx = maxabs[c];
			for (int64_t i = 0; i < inner; i++) {
				double x = fabs((double)r[i]);
				if (!(x <= mx)) /* NaN counts as alive */
					mx = isnan(x) ? INFINITY : x;
			}
			maxabs[c] = mx;
		}
		(void)channels;
	}
}

struct tapref {
	size_t group;
	size_t tap;
	size_t out; /* output index in the tap plan */
};

static int64_t numel_of(const Onnx__TensorProto *t)
{
	int64_t n = 1;
	for (size_t d = 0; t && d < t->n_dims; d++)
		n *= t->dims[d];
	return t ? n : 0;
}

enum nn_status dead_run(struct onnx_model *m, const struct prune_params *p,
			const struct step_ctx *ctx, json_t **metrics, struct nn_err *e)
{
	enum nn_status st = NN_OK;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct shrink_plan *plan = NULL;
	struct onnx_model *probe = NULL;
	struct exec_plan *xp = NULL;
	struct tapref *taps = NULL;
	struct tensor *outs = NULL;
	double **maxabs = NULL;
	float *ref = NULL;
	int64_t *before = NULL, *params_b = NULL;
	struct onnx_weight_ref *refs = NULL;
	size_t nref = 0, n_taps = 0, n_outs = 0;
	json_t *out = NULL, *layers = NULL;
	*metrics = NULL;

	const struct eval_data *cal = ctx ? ctx->calib : NULL;
	if (!cal || !cal->inputs || !cal->inputs->data || cal->inputs->ndim < 1 ||
	    cal->inputs->shape[0] < 1)
		return err_set(e, NN_EINVAL, "invalid_spec", "dataset",
			       "method dead needs calibration data: name a dataset (the step's "
			       "\"dataset\" or the spec's top-level one)");
	if (cal->inputs->dtype != DT_FLOAT)
		return err_set(e, NN_EINVAL, "invalid_dataset", "dataset",
			       "calibration inputs must be float32");
	const struct tensor *x = cal->inputs;
	int64_t N = x->shape[0];
	size_t bytes_before = onnx_packed_size(m);
	uint64_t params_before, params_after, nz;
	prune_model_counts(m, &params_before, &nz);

	if ((st = onnx_prunable_weights(m, &refs, &nref, e)) != NN_OK ||
	    (st = shrink_analyze(m, &plan, e)) != NN_OK || (st = onnx_clone(m, &probe, e)) != NN_OK)
		goto fail;
	size_t n_orig_out = probe->proto->graph->n_output;
	if (n_orig_out < 1) {
		st = err_set(e, NN_EINVAL, "invalid_model", "", "model has no graph output");
		goto fail;
	}
	/* Taps of every prunable group (derived ones too: a Concat's consumers
	 * see its inputs' channels). */
	maxabs = calloc(plan->n_groups ? plan->n_groups : 1, sizeof *maxabs);
	before = calloc(nref ? nref : 1, sizeof *before);
	params_b = calloc(nref ? nref : 1, sizeof *params_b);
	if (!maxabs || !before || !params_b) {
		st = oom(e);
		goto fail;
	}
	for (size_t gi = 0; gi < plan->n_groups; gi++) {
		const struct shrink_group *gr = &plan->groups[gi];
		if (!gr->prunable || gr->n_taps == 0)
			continue;
		if (!(maxabs[gi] = calloc((size_t)gr->channels, sizeof **maxabs))) {
			st = oom(e);
			goto fail;
		}
		struct tapref *nt = realloc(taps, (n_taps + gr->n_taps) * sizeof *nt);
		if (!nt) {
			st = oom(e);
			goto fail;
		}
		taps = nt;
		for (size_t t = 0; t < gr->n_taps; t++) {
			/* one graph output per tensor, even if two groups tap it */
			size_t o = n_orig_out;
			const Onnx__GraphProto *pg = probe->proto->graph;
			while (o < pg->n_output && strcmp(pg->output[o]->name, gr->taps[t].tensor))
				o++;
			if (o == pg->n_output &&
			    (st = onnx_add_graph_output(probe->proto->graph, gr->taps[t].tensor, e)) !=
				    NN_OK)
				goto fail;
			taps[n_taps++] = (struct tapref){gi, t, o};
		}
	}
	n_outs = probe->proto->graph->n_output;
	outs = calloc(n_outs, sizeof *outs);
	if (!outs) {
		st = oom(e);
		goto fail;
	}

	/* Pass 1: per channel max |v| at every tap, and the original outputs. */
	int64_t width = 0, batch = N < DEAD_BATCH ? N : DEAD_BATCH, planned = 0;
	for (int64_t at = 0; at < N; at += batch) {
		int64_t b = N - at < batch ? N - at : batch;
		if (b != planned) {
			exec_free(xp);
			xp = NULL;
			if ((st = exec_compile_threads(probe, b, ctx->threads, &xp, e)) != NN_OK)
				goto fail;
			planned = b;
		}
		if ((st = run_rows(xp, x, at, b, outs, n_outs, e)) != NN_OK)
			goto fail;
		if (!ref) {
			width = tensor_numel(&outs[0]) / b;
			size_t cells;
			if (width < 1 || __builtin_mul_overflow((size_t)N, (size_t)width, &cells) ||
			    !(ref = malloc(cells * sizeof *ref))) {
				st = oom(e);
				goto fail;
			}
		}
		memcpy(ref + (size_t)(at * width), outs[0].data, (size_t)(b * width) * sizeof *ref);
		for (size_t t = 0; t < n_taps; t++) {
			const struct shrink_group *gr = &plan->groups[taps[t].group];
			const struct shrink_tap *tap = &gr->taps[taps[t].tap];
			const struct tensor *v = &outs[taps[t].out];
			int axis = v->ndim - 1 - tap->from_end;
			if (axis < 0 || v->shape[axis] != gr->channels * tap->block) {
				st = err_set(e, NN_EINTERNAL, "internal", "",
					     "tensor '%s' does not have %lld channels on its axis",
					     tap->tensor, (long long)gr->channels);
				goto fail;
			}
			fold_tap(v, tap, gr->channels, maxabs[taps[t].group]);
		}
		step_progress(ctx, 0.45 * (double)(at + b) / (double)N);
		if (step_canceled(ctx)) {
			st = err_set(e, NN_ECANCELED, "canceled", "", "canceled while pruning");
			goto fail;
		}
	}
	exec_free(xp);
	xp = NULL;

	/* Dead channels; a Concat's consumers must see them dead too. */
	for (size_t gi = plan->n_groups; gi-- > 0;) {
		struct shrink_group *gr = &plan->groups[gi];
		if (!maxabs[gi])
			continue;
		for (int64_t c = 0; c < gr->channels; c++)
			gr->keep[c] = !(maxabs[gi][c] <= p->threshold);
		if (!gr->derived)
			continue;
		int64_t off = 0;
		for (size_t s = 0; s < gr->n_inputs; s++) {
			struct shrink_group *ig = &plan->groups[gr->inputs[s]];
			for (int64_t c = 0; c < ig->channels && maxabs[gr->inputs[s]]; c++)
				if (gr->keep[off + c]) /* alive after the Concat: alive */
					maxabs[gr->inputs[s]][c] = INFINITY;
			off += ig->channels;
		}
	}
	for (size_t gi = 0; gi < plan->n_groups; gi++) {
		struct shrink_group *gr = &plan->groups[gi];
		if (gr->derived || !gr->prunable)
			continue;
		if (!maxabs[gi]) {
			memset(gr->keep, 1, (size_t)gr->channels);
			continue;
		}
		for (int64_t c = 0; c < gr->channels; c++)
			gr->keep[c] = !(maxabs[gi][c] <= p->threshold);
		if (shrink_kept(gr) == 0)
			gr->keep[0] = 1; /* a layer keeps one channel (dead: still exact) */
	}
	for (size_t i = 0; i < nref; i++) {
		long gi = shrink_group_of_weight(plan, refs[i].init);
		before[i] = gi >= 0 ? plan->groups[gi].channels
				    : refs[i].init->dims[refs[i].channel_axis];
		params_b[i] = numel_of(refs[i].init);
	}
	int64_t removed_total = 0;
	for (size_t gi = 0; gi < plan->n_groups; gi++)
		if (!plan->groups[gi].derived && plan->groups[gi].prunable)
			removed_total += plan->groups[gi].channels - shrink_kept(&plan->groups[gi]);
	if ((st = shrink_apply(m, plan, e)) != NN_OK)
		goto fail;
	prune_model_counts(m, &params_after, &nz);

	/* Pass 2: what the removal changed on the calibration data. */
	double max_diff = 0;
	int64_t agree = 0;
	planned = 0;
	struct tensor o0;
	for (int64_t at = 0; at < N; at += batch) {
		int64_t b = N - at < batch ? N - at : batch;
		if (b != planned) {
			exec_free(xp);
			xp = NULL;
			if ((st = exec_compile_threads(m, b, ctx->threads, &xp, e)) != NN_OK)
				goto fail;
			planned = b;
		}
		size_t no = exec_output_count(xp);
		struct tensor *o = no <= n_outs ? outs : NULL;
		if (!o || (st = run_rows(xp, x, at, b, o, no, e)) != NN_OK) {
			if (!o)
				st = err_set(e, NN_EINTERNAL, "internal", "", "output count changed");
			goto fail;
		}
		o0 = o[0];
		if (tensor_numel(&o0) != b * width) {
			st = err_set(e, NN_EINTERNAL, "internal", "",
				     "the output shape changed after removing channels");
			goto fail;
		}
		const float *y = o0.data;
		for (int64_t s = 0; s < b; s++) {
			const float *r = ref + (size_t)((at + s) * width), *q = y + (size_t)(s * width);
			for (int64_t j = 0; j < width; j++) {
				double d = fabs((double)r[j] - (double)q[j]);
				if (!(d <= max_diff))
					max_diff = isnan(d) ? INFINITY : d;
			}
			agree += argmax(r, width) == argmax(q, width);
		}
		step_progress(ctx, 0.55 + 0.45 * (double)(at + b) / (double)N);
		if (step_canceled(ctx)) {
			st = err_set(e, NN_ECANCELED, "canceled", "", "canceled while pruning");
			goto fail;
		}
	}

	out = json_object();
	layers = json_array();
	int bad = !out || !layers;
	for (size_t i = 0; !bad && i < nref; i++) {
		long gi = shrink_group_of_weight(plan, refs[i].init);
		const struct shrink_group *gr = gi >= 0 ? &plan->groups[gi] : NULL;
		int64_t dead = 0, after = gr ? shrink_kept(gr) : before[i];
		if (gr && maxabs[gi])
			for (int64_t c = 0; c < gr->channels; c++)
				dead += maxabs[gi][c] <= p->threshold;
		const char *status = "unchanged", *reason = "";
		if (!gr) {
			status = "skipped";
			reason = "not a layer whose channels the surgery can remove";
		} else if (!gr->prunable) {
			status = "skipped";
			reason = gr->reason;
		} else if (!maxabs[gi]) {
			status = "skipped";
			reason = "no consumer reads its channels";
		} else if (after < before[i]) {
			status = "pruned";
		} else if (dead > 0) {
			reason = "every channel is dead: one is kept";
		}
		json_t *l = json_object();
		bad |= !l || json_array_append_new(layers, l);
		if (bad)
			break;
		bad |= step_json_set(l, "name", json_string(refs[i].init->name));
		bad |= step_json_set(l, "op", json_string(refs[i].node->op_type));
		bad |= step_json_set(l, "node", json_string(refs[i].node->name ? refs[i].node->name : ""));
		bad |= step_json_set(l, "channels_before", json_integer(before[i]));
		bad |= step_json_set(l, "dead", json_integer(dead));
		bad |= step_json_set(l, "removed", json_integer(before[i] - after));
		bad |= step_json_set(l, "channels_after", json_integer(after));
		bad |= step_json_set(l, "parameters_before", json_integer(params_b[i]));
		bad |= step_json_set(l, "parameters_after", json_integer(numel_of(refs[i].init)));
		bad |= step_json_set(l, "status", json_string(status));
		bad |= step_json_set(l, "reason", json_string(reason));
	}
	bad |= step_json_set(out, "method", json_string("dead"));
	bad |= step_json_set(out, "threshold", json_real(p->threshold));
	bad |= step_json_set(out, "samples", json_integer(N));
	bad |= step_json_set(out, "removed", json_integer(removed_total));
	bad |= step_json_set(out, "parameters_before", json_integer((json_int_t)params_before));
	bad |= step_json_set(out, "parameters_after", json_integer((json_int_t)params_after));
	bad |= step_json_set(out, "bytes_before", json_integer((json_int_t)bytes_before));
	bad |= step_json_set(out, "bytes_after", json_integer((json_int_t)onnx_packed_size(m)));
	bad |= step_json_set(out, "max_abs_diff", step_json_real(max_diff));
	bad |= step_json_set(out, "argmax_agreement", json_real((double)agree / (double)N));
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
	exec_free(xp);
	if (maxabs)
		for (size_t gi = 0; plan && gi < plan->n_groups; gi++)
			free(maxabs[gi]);
	free(maxabs);
	free(taps);
	free(outs);
	free(ref);
	free(before);
	free(params_b);
	free(refs);
	onnx_free(probe);
	shrink_plan_free(plan);
	return st;
}
