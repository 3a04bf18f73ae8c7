/* pipeline: runs the steps of a job spec on a model, in order.
 *
 * The spec is re-validated here (spec_validate without a model summary, then
 * each step's own parser) because `nncd compress` reaches this without the
 * API's check: a bad spec gets the same clear invalid_spec error, never a
 * crash. Progress from the steps is mapped onto [0,1] over all steps and
 * rate-limited to a few calls per second. */
#include "pipeline.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "distill.h"
#include "prune.h"
#include "quant.h"
#include "quant_verify.h"
#include "replace_act.h"
#include "sensitivity.h"
#include "spec.h"
#include "step.h"

#define PROGRESS_MIN_INTERVAL 0.25 /* seconds between two progress reports */

struct runner {
	const struct pipeline_hooks *hooks;
	const char *op; /* the running step's */
	size_t index, count;
	double last_value;
	struct timespec last_time;
	bool reported;
};

static double since(const struct timespec *t)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) * 1e-9;
}

static void report(struct runner *r, double overall, bool force)
{
	if (!r->hooks || !r->hooks->on_progress)
		return;
	if (overall < r->last_value) /* progress never goes backwards */
		overall = r->last_value;
	if (!force && r->reported && since(&r->last_time) < PROGRESS_MIN_INTERVAL)
		return;
	r->hooks->on_progress(r->hooks->ud, overall);
	r->last_value = overall;
	r->reported = true;
	clock_gettime(CLOCK_MONOTONIC, &r->last_time);
}

static void step_progress_cb(void *ud, double fraction)
{
	struct runner *r = ud;
	report(r, ((double)r->index + fraction) / (double)r->count, false);
}

static void step_event_cb(void *ud, const char *type, const json_t *data)
{
	struct runner *r = ud;
	if (r->hooks && r->hooks->on_event)
		r->hooks->on_event(r->hooks->ud, r->index, r->op, type, data);
}

/* Steps that train against the job's original model need a copy of it:
 * earlier steps change the model in place. */
static bool needs_input_model(const json_t *steps)
{
	for (size_t i = 0; i < json_array_size(steps); i++) {
		const char *op = json_string_value(json_object_get(json_array_get(steps, i), "op"));
		if (op && (!strcmp(op, "distill") || !strcmp(op, "finetune")))
			return true;
	}
	return false;
}

static void on_step(const struct runner *r, size_t i, const char *op, const char *state,
		    const json_t *metrics)
{
	if (r->hooks && r->hooks->on_step)
		r->hooks->on_step(r->hooks->ud, i, op, state, metrics);
}

static void set_step_data(struct step_ctx *ctx, const struct pipeline_data *d, size_t i)
{
	if (!d)
		return;
	ctx->calib = i < d->n_step_calib && d->step_calib[i] ? d->step_calib[i] : d->calib;
	ctx->eval = d->eval;
	ctx->reference = d->reference;
	ctx->threads = d->threads;
	ctx->models = d->models;
	ctx->n_models = d->n_models;
}

/* The finished model, run by nncd's executor on a few samples of the job's
 * data (zeros without any) before the job may succeed: an artifact that does
 * not load or run fails the last step, naming the node. Its description
 * (IR version, opsets, contrib operators) goes into the last step's metrics
 * as "artifact", which the job, its report and `nncd compress` show. */
static enum nn_status verify_artifact(const struct onnx_model *m, const struct pipeline_data *d,
				      json_t *metrics, struct nn_err *e)
{
	const struct eval_data *data = d ? (d->eval ? d->eval : d->calib) : NULL;
	const char *kind = d && d->eval ? "eval data" : "calibration data";
	json_t *artifact = NULL;
	enum nn_status st = quant_verify_run(m, data, kind, &artifact, e);
	if (st != NN_OK)
		return st;
	if (!metrics) {
		json_decref(artifact);
		return err_set(e, NN_EINTERNAL, "internal", "", "step left no metrics");
	}
	if (json_object_set_new(metrics, "artifact", artifact))
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "out of memory");
	return NN_OK;
}

/* Runs the evaluation of the model a step produced into metrics["eval"]. */
static enum nn_status evaluate_step(const struct onnx_model *m, const struct pipeline_eval *ev,
				    const atomic_bool *cancel, json_t *metrics, struct nn_err *e)
{
	struct step_ctx ctx = {.cancel = cancel};
	json_t *figures = NULL;
	enum nn_status st = eval_model(m, ev->data, &ev->opts, ev->reference, NULL, &ctx, &figures, e);
	if (st != NN_OK) {
		if (st != NN_ECANCELED)
			err_prefix(e, "evaluating the result");
		return st;
	}
	if (!metrics || json_object_set_new(metrics, "eval", figures))
		return err_set(e, NN_ENOMEM, NULL, NULL, "out of memory");
	return NN_OK;
}

enum nn_status pipeline_run(struct onnx_model *m, const json_t *spec,
			    const struct pipeline_hooks *hooks, struct nn_err *e)
{
	enum nn_status st;
	if (!m || !m->proto)
		return err_set(e, NN_EINTERNAL, "internal", "", "pipeline_run: no model");
	if ((st = spec_validate(spec, NULL, e)) != NN_OK)
		return st;
	const json_t *steps = json_object_get(spec, "steps");
	struct runner r = {.hooks = hooks, .count = steps ? json_array_size(steps) : 0};
	const atomic_bool *cancel = hooks ? hooks->cancel : NULL;
	struct step_ctx ctx = {
		.cancel = cancel, .progress = step_progress_cb, .ud = &r, .event = step_event_cb};
	struct onnx_model *input = NULL;
	if (needs_input_model(steps)) {
		if ((st = onnx_clone(m, &input, e)) != NN_OK)
			return st;
		ctx.input_model = input;
	}
	report(&r, 0.0, true);

	for (size_t i = 0; i < r.count; i++) {
		const json_t *step = json_array_get(steps, i);
		const char *op = json_string_value(json_object_get(step, "op"));
		r.index = i;
		r.op = op;
		if (step_canceled(&ctx)) {
			on_step(&r, i, op, "canceled", NULL);
			onnx_free(input);
			return err_set(e, NN_ECANCELED, "canceled", "", "canceled before steps[%zu] (%s)",
				       i, op);
		}
		on_step(&r, i, op, "running", NULL);
		set_step_data(&ctx, hooks ? hooks->data : NULL, i);
		json_t *metrics = NULL;
		if (!strcmp(op, "prune")) {
			struct prune_params pp;
			st = prune_params_parse(step, i, &pp, e);
			if (st == NN_OK)
				st = prune_run(m, &pp, &ctx, &metrics, e);
		} else if (!strcmp(op, "distill") || !strcmp(op, "finetune")) {
			struct distill_params dp;
			bool ft = !strcmp(op, "finetune");
			st = distill_params_parse(step, i, ft, &dp, e);
			if (st == NN_OK)
				st = ft ? finetune_run(m, &dp, &ctx, &metrics, e)
					: distill_run(m, &dp, &ctx, &metrics, e);
		} else if (!strcmp(op, "replace_activation")) {
			struct ract_params rp;
			st = ract_params_parse(step, i, &rp, e);
			if (st == NN_OK)
				st = ract_run(m, &rp, &ctx, &metrics, e);
		} else if (!strcmp(op, "sensitivity")) {
			struct sensitivity_params sp;
			st = sensitivity_params_parse(step, i, &sp, e);
			if (st == NN_OK)
				st = sensitivity_run(m, &sp, &ctx, &metrics, e);
		} else {
			struct quant_params qp;
			st = quant_params_parse(step, i, &qp, e);
			if (st == NN_OK)
				st = quant_run(m, &qp, &ctx, &metrics, e);
		}
		if (st == NN_OK && hooks && hooks->eval)
			st = evaluate_step(m, hooks->eval, cancel, metrics, e);
		if (st == NN_OK && i + 1 == r.count)
			st = verify_artifact(m, hooks ? hooks->data : NULL, metrics, e);
		if (st == NN_OK && step_canceled(&ctx)) {
			json_decref(metrics);
			metrics = NULL;
			st = err_set(e, NN_ECANCELED, "canceled", "", "canceled during steps[%zu] (%s)",
				     i, op);
		}
		if (st != NN_OK) {
			json_decref(metrics);
			on_step(&r, i, op, st == NN_ECANCELED ? "canceled" : "failed", NULL);
			if (st != NN_ECANCELED) {
				if (e && e->field[0] == '\0' && !strcmp(e->code, "invalid_spec"))
					snprintf(e->field, sizeof e->field, "steps[%zu]", i);
				err_prefix(e, "steps[%zu] (%s)", i, op);
			}
			onnx_free(input);
			return st;
		}
		on_step(&r, i, op, "succeeded", metrics);
		json_decref(metrics);
		report(&r, (double)(i + 1) / (double)r.count, i + 1 == r.count);
	}
	if (r.count == 0)
		report(&r, 1.0, true);
	onnx_free(input);
	return NN_OK;
}
