/* sensitivity: per-layer pruning sensitivity (see sensitivity.h).
 *
 * Each trial prunes one weight in place with prune_arrays (exact k, the same
 * kernel as the magnitude step) and restores it from a saved copy, so trials
 * never see each other. The measure's baseline is the model as it enters the
 * step; for "agreement" its own predictions are the reference. */
#include "sensitivity.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eval.h"
#include "prune.h"

static const double default_levels[] = {0.5, 0.7, 0.8, 0.9, 0.95};

enum nn_status sensitivity_params_parse(const json_t *step, size_t index,
					struct sensitivity_params *out, struct nn_err *e)
{
	static const char *const keys[] = {"op", "sparsities", "budget", "layers", NULL};
	char field[128], got[96];
	enum nn_status st = step_check_keys(step, index, "sensitivity", keys, e);
	if (st != NN_OK)
		return st;
	memset(out, 0, sizeof *out);
	const json_t *levels = json_object_get(step, "sparsities");
	snprintf(field, sizeof field, "steps[%zu].sparsities", index);
	if (!levels) {
		out->n_sparsities = sizeof default_levels / sizeof default_levels[0];
		memcpy(out->sparsities, default_levels, sizeof default_levels);
	} else if (!json_is_array(levels) || json_array_size(levels) == 0 ||
		   json_array_size(levels) > SENSITIVITY_MAX_LEVELS) {
		return err_set(e, NN_EINVAL, "invalid_spec", field,
			       "sparsities must be an array of 1 to %d numbers in (0, 1), got %s",
			       SENSITIVITY_MAX_LEVELS, step_describe_json(levels, got, sizeof got));
	} else {
		for (size_t i = 0; i < json_array_size(levels); i++) {
			const json_t *v = json_array_get(levels, i);
			double s = json_is_number(v) ? json_number_value(v) : NAN;
			if (!(s > 0 && s < 1) || (i > 0 && !(s > out->sparsities[i - 1])))
				return err_set(e, NN_EINVAL, "invalid_spec", field,
					       "sparsities must be increasing numbers in (0, 1); "
					       "element %zu is %s",
					       i, step_describe_json(v, got, sizeof got));
			out->sparsities[i] = s;
		}
		out->n_sparsities = json_array_size(levels);
	}
	const json_t *budget = json_object_get(step, "budget");
	out->budget = 0.01;
	if (budget) {
		double b = json_is_number(budget) ? json_number_value(budget) : NAN;
		snprintf(field, sizeof field, "steps[%zu].budget", index);
		if (!(b >= 0 && b <= 1))
			return err_set(e, NN_EINVAL, "invalid_spec", field,
				       "budget (the largest accepted drop, e.g. 0.01 for one point) "
				       "must be in [0, 1], got %s",
				       step_describe_json(budget, got, sizeof got));
		out->budget = b;
	}
	const json_t *layers = json_object_get(step, "layers");
	if (layers) {
		snprintf(field, sizeof field, "steps[%zu].layers", index);
		bool ok = json_is_array(layers) && json_array_size(layers) > 0;
		for (size_t i = 0; ok && i < json_array_size(layers); i++)
			ok = json_is_string(json_array_get(layers, i));
		if (!ok)
			return err_set(e, NN_EINVAL, "invalid_spec", field,
				       "layers must be a non-empty array of weight names, got %s",
				       step_describe_json(layers, got, sizeof got));
		out->layers = layers;
	}
	return NN_OK;
}

static bool wanted(const struct sensitivity_params *p, const char *name)
{
	if (!p->layers)
		return true;
	for (size_t i = 0; i < json_array_size(p->layers); i++)
		if (!strcmp(json_string_value(json_array_get(p->layers, i)), name))
			return true;
	return false;
}

/* Each listed name must be a prunable weight. */
static enum nn_status check_listed(const struct sensitivity_params *p,
				   const struct onnx_weight_ref *refs, size_t n, struct nn_err *e)
{
	for (size_t i = 0; p->layers && i < json_array_size(p->layers); i++) {
		const char *name = json_string_value(json_array_get(p->layers, i));
		size_t r = 0;
		while (r < n && strcmp(refs[r].init->name, name))
			r++;
		if (r == n)
			return err_set(e, NN_EINVAL, "invalid_spec", "",
				       "layers: '%.100s' is not a prunable weight (Gemm/MatMul/Conv "
				       "float initializer) of this model",
				       name);
	}
	return NN_OK;
}

struct measure {
	const struct eval_data *data;
	struct eval_opts opts;
	const struct eval_outputs *reference;
	const char *key; /* "accuracy" or "agreement" */
	const struct step_ctx *ctx;
};

static enum nn_status measure(const struct measure *ms, const struct onnx_model *m,
			      struct eval_outputs *keep, double *value, struct nn_err *e)
{
	json_t *figures = NULL;
	struct step_ctx quiet = {.cancel = ms->ctx ? ms->ctx->cancel : NULL};
	enum nn_status st = eval_model(m, ms->data, &ms->opts, ms->reference, keep, &quiet,
				       &figures, e);
	if (st != NN_OK)
		return st;
	const json_t *v = json_object_get(figures, ms->key);
	*value = json_is_number(v) ? json_number_value(v) : 1.0; /* the reference itself */
	json_decref(figures);
	return NN_OK;
}

/* One layer's trials: prune it to each level, measure, restore. */
static enum nn_status trial_layer(struct onnx_model *m, const struct sensitivity_params *p,
				  const struct measure *ms, const struct onnx_weight_ref *ref,
				  double baseline, json_t *row, json_t *suggested, struct nn_err *e)
{
	struct tensor w;
	enum nn_status st = onnx_initializer_view(ref->init, &w, e);
	if (st != NN_OK)
		return st;
	size_t n = (size_t)tensor_numel(&w);
	float *saved = malloc(sizeof(float) * (n ? n : 1));
	json_t *results = json_array();
	if (!saved || !results) {
		st = err_set(e, NN_ENOMEM, NULL, NULL, "out of memory");
		goto done;
	}
	memcpy(saved, w.data, sizeof(float) * n);
	double best = 0;
	for (size_t i = 0; i < p->n_sparsities; i++) {
		float *arrays[1] = {w.data};
		size_t lens[1] = {n};
		float threshold;
		uint64_t k = (uint64_t)llround(p->sparsities[i] * (double)n);
		double value = 0;
		if (k > 0)
			st = prune_arrays(arrays, lens, 1, k, NULL, &threshold, e);
		if (st == NN_OK)
			st = measure(ms, m, NULL, &value, e);
		memcpy(w.data, saved, sizeof(float) * n);
		if (st != NN_OK)
			goto done;
		double drop = baseline - value;
		if (drop <= p->budget + 1e-12 && p->sparsities[i] > best)
			best = p->sparsities[i];
		json_array_append_new(results, json_pack("{s:f, s:f, s:f}", "sparsity",
							 p->sparsities[i], "value", value, "drop",
							 drop));
		step_progress(ms->ctx, 0); /* keeps the job's progress clock alive */
	}
	json_object_set_new(row, "results", results);
	results = NULL;
	json_object_set_new(row, "suggested_sparsity", json_real(best));
	json_object_set_new(suggested, ref->init->name, json_real(best));
done:
	json_decref(results);
	free(saved);
	tensor_free(&w);
	return st;
}

enum nn_status sensitivity_run(struct onnx_model *m, const struct sensitivity_params *p,
			       const struct step_ctx *ctx, json_t **metrics, struct nn_err *e)
{
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	*metrics = NULL;
	if (!ctx || !ctx->eval || !ctx->eval->inputs)
		return err_set(e, NN_EINVAL, "invalid_spec", "",
			       "sensitivity measures each trial on the evaluation data: add "
			       "\"eval\": {\"dataset\": \"ds_…\"} (or a top-level dataset with "
			       "\"holdout\") to the spec");
	struct onnx_weight_ref *refs = NULL;
	size_t nref = 0;
	struct eval_outputs own_ref = {0};
	json_t *out = NULL, *rows = NULL, *suggested = NULL;
	enum nn_status st = onnx_prunable_weights(m, &refs, &nref, e);
	if (st != NN_OK)
		return st;
	if (nref == 0) {
		st = err_set(e, NN_EINVAL, "invalid_spec", "",
			     "model has no Gemm/MatMul/Conv float weights to analyse");
		goto done;
	}
	if ((st = check_listed(p, refs, nref, e)) != NN_OK)
		goto done;
	bool labels = ctx->eval->labels != NULL;
	struct measure ms = {
		.data = ctx->eval,
		.opts = {.metrics = labels ? EVAL_ACCURACY : EVAL_FIDELITY, .threads = ctx->threads},
		.key = labels ? "accuracy" : "agreement",
		.ctx = ctx,
	};
	double baseline = 1.0;
	/* The baseline run also keeps the predictions "agreement" compares with. */
	if ((st = measure(&ms, m, &own_ref, &baseline, e)) != NN_OK)
		goto done;
	ms.reference = &own_ref;
	rows = json_array();
	suggested = json_object();
	if (!rows || !suggested) {
		st = err_set(e, NN_ENOMEM, NULL, NULL, "out of memory");
		goto done;
	}
	size_t selected = 0, analysed = 0;
	for (size_t r = 0; r < nref; r++)
		selected += wanted(p, refs[r].init->name);
	for (size_t r = 0; r < nref; r++) {
		if (!wanted(p, refs[r].init->name))
			continue;
		if (step_canceled(ctx)) {
			st = err_set(e, NN_ECANCELED, "canceled", "", "canceled");
			goto done;
		}
		int64_t params = 1;
		for (size_t d = 0; d < refs[r].init->n_dims; d++)
			params *= refs[r].init->dims[d];
		json_t *row = json_pack("{s:s, s:s, s:s, s:I}", "name", refs[r].init->name, "op",
					refs[r].node->op_type, "node",
					refs[r].node->name ? refs[r].node->name : "", "parameters",
					(json_int_t)params);
		if (!row || json_array_append_new(rows, row)) {
			st = err_set(e, NN_ENOMEM, NULL, NULL, "out of memory");
			goto done;
		}
		if ((st = trial_layer(m, p, &ms, &refs[r], baseline, row, suggested, e)) != NN_OK)
			goto done;
		step_progress(ctx, (double)++analysed / (double)selected);
	}
	json_t *levels = json_array();
	for (size_t i = 0; levels && i < p->n_sparsities; i++)
		json_array_append_new(levels, json_real(p->sparsities[i]));
	out = json_pack("{s:s, s:f, s:f, s:o, s:I, s:o, s:{s:o}, s:f}", "measure", ms.key,
			"baseline", baseline, "budget", p->budget, "sparsities", levels, "samples",
			(json_int_t)ctx->eval->inputs->shape[0], "layers", rows, "suggested", "layers",
			suggested, "seconds", step_seconds_since(&t0));
	rows = suggested = NULL;
	if (!out)
		st = err_set(e, NN_ENOMEM, NULL, NULL, "out of memory");
done:
	if (st == NN_OK)
		*metrics = out;
	else
		json_decref(out);
	json_decref(rows);
	json_decref(suggested);
	eval_outputs_free(&own_ref);
	free(refs);
	return st;
}
