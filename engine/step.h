/* step: what the pipeline hands every compression step while it runs.
 *
 * A step (prune, quantize, ...) receives a struct step_ctx and must poll
 * step_canceled() between weights and every few million elements inside its
 * kernels' outer loops, returning NN_ECANCELED as soon as it sees the flag, and
 * may report its own progress as a fraction in [0,1] (the pipeline maps it onto
 * the job's overall progress and rate-limits it). A NULL ctx means "no cancel,
 * no progress" so kernels can be called bare from tests and benchmarks.
 * Header-only; the cancel flag is read with atomic_load, so another thread may
 * set it at any time. */
#ifndef NNCD_STEP_H
#define NNCD_STEP_H

#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include <jansson.h>
#include <string.h>

#include "err.h"

/* Elements a kernel processes between two cancel polls (and progress reports). */
#define STEP_POLL_ELEMS ((size_t)1 << 22)

struct eval_data;
struct eval_outputs;
struct onnx_model;

/* An uploaded model a step names by id (a distill teacher or student). */
struct step_model {
	const char *id;
	const struct onnx_model *model;
};

struct step_ctx {
	const atomic_bool *cancel;                 /* may be NULL */
	void (*progress)(void *ud, double fraction); /* fraction of this step done; may be NULL */
	void *ud;
	/* Data a step may run the model on (eval.h), all may be NULL:
	 * calib: the step's own "dataset", else the spec's top-level one (its
	 *        non-held-out part with "holdout") — for calibration/training;
	 * eval:  the job's evaluation data (what "eval" measures on);
	 * reference: the input model's outputs on `eval`. */
	const struct eval_data *calib;
	const struct eval_data *eval;
	const struct eval_outputs *reference;
	unsigned threads;                          /* executor threads; 0 = 1 */
	/* The job's model as it was before step 0 (distill's default teacher),
	 * kept by the pipeline only when a step needs it; else NULL. */
	const struct onnx_model *input_model;
	/* Other models the steps name ({"model": "mdl_..."}), loaded by the caller. */
	const struct step_model *models;
	size_t n_models;
	/* Records a job event (e.g. one per training epoch); data is borrowed.
	 * Called with `ud`; may be NULL. */
	void (*event)(void *ud, const char *type, const json_t *data);
};

/* The model named `id` among ctx->models, or NULL. */
static inline const struct onnx_model *step_model_by_id(const struct step_ctx *ctx, const char *id)
{
	for (size_t i = 0; ctx && id && i < ctx->n_models; i++)
		if (ctx->models[i].id && !strcmp(ctx->models[i].id, id))
			return ctx->models[i].model;
	return NULL;
}

static inline void step_event(const struct step_ctx *ctx, const char *type, const json_t *data)
{
	if (ctx && ctx->event)
		ctx->event(ctx->ud, type, data);
}

static inline bool step_canceled(const struct step_ctx *ctx)
{
	return ctx && ctx->cancel && atomic_load(ctx->cancel);
}

static inline void step_progress(const struct step_ctx *ctx, double fraction)
{
	if (ctx && ctx->progress)
		ctx->progress(ctx->ud, fraction < 0 ? 0 : fraction > 1 ? 1 : fraction);
}

/* Writes a short rendering of a spec value for error messages ("1.5",
 * "\"abc\"", "an object"), so a message says what was received. */
static inline const char *step_describe_json(const json_t *v, char *buf, size_t cap)
{
	if (!v)
		snprintf(buf, cap, "nothing");
	else if (json_is_integer(v))
		snprintf(buf, cap, "%lld", (long long)json_integer_value(v));
	else if (json_is_real(v))
		snprintf(buf, cap, "%g", json_real_value(v));
	else if (json_is_string(v))
		snprintf(buf, cap, "\"%.60s\"", json_string_value(v));
	else if (json_is_true(v))
		snprintf(buf, cap, "true");
	else if (json_is_false(v))
		snprintf(buf, cap, "false");
	else if (json_is_null(v))
		snprintf(buf, cap, "null");
	else if (json_is_array(v))
		snprintf(buf, cap, "an array");
	else
		snprintf(buf, cap, "an object");
	return buf;
}

/* "a, b, c" from a NULL-terminated list, for "supported: ..." messages. */
static inline const char *step_join(const char *const *names, char *buf, size_t cap)
{
	size_t used = 0;
	buf[0] = '\0';
	for (size_t i = 0; names[i] && used < cap; i++) {
		int n = snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", names[i]);
		if (n < 0)
			break;
		used += (size_t)n;
	}
	return buf;
}

/* Checks that a spec step is an object whose keys are all in `allowed`
 * (NULL-terminated), naming the first unknown one ("steps[1].bits"). Every
 * step's parser starts with this, so unknown keys are refused the same way. */
static inline enum nn_status step_check_keys(const json_t *step, size_t index, const char *op,
					     const char *const *allowed, struct nn_err *e)
{
	char field[128], got[96], list[256];
	if (!json_is_object(step)) {
		snprintf(field, sizeof field, "steps[%zu]", index);
		return err_set(e, NN_EINVAL, "invalid_spec", field, "step must be an object, got %s",
			       step_describe_json(step, got, sizeof got));
	}
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)step, key, v) {
		size_t i = 0;
		while (allowed[i] && strcmp(allowed[i], key))
			i++;
		if (allowed[i])
			continue;
		snprintf(field, sizeof field, "steps[%zu].%.80s", index, key);
		return err_set(e, NN_EINVAL, "invalid_spec", field,
			       "unknown field '%.80s' for op %s; allowed: %s", key, op,
			       step_join(allowed, list, sizeof list));
	}
	return NN_OK;
}

/* Reads step[key] as one of `choices` (NULL-terminated) into *out (its
 * index). When absent: *out = fallback, or an error if fallback < 0 (the key
 * is required). */
static inline enum nn_status step_parse_choice(const json_t *step, size_t index, const char *key,
					       const char *const *choices, int fallback, int *out,
					       struct nn_err *e)
{
	char field[128], got[96], list[256];
	snprintf(field, sizeof field, "steps[%zu].%s", index, key);
	const json_t *v = json_object_get(step, key);
	if (!v) {
		if (fallback >= 0) {
			*out = fallback;
			return NN_OK;
		}
		return err_set(e, NN_EINVAL, "invalid_spec", field,
			       "missing required field '%s'; supported: %s", key,
			       step_join(choices, list, sizeof list));
	}
	const char *text = json_is_string(v) ? json_string_value(v) : NULL;
	for (int i = 0; text && choices[i]; i++) {
		if (!strcmp(choices[i], text)) {
			*out = i;
			return NN_OK;
		}
	}
	return err_set(e, NN_EINVAL, "invalid_spec", field, "unsupported %s %s; supported: %s", key,
		       step_describe_json(v, got, sizeof got), step_join(choices, list, sizeof list));
}

/* JSON number for a metric; null when not finite (jansson has no NaN/Inf). */
static inline json_t *step_json_real(double x)
{
	return isfinite(x) ? json_real(x) : json_null();
}

/* Sets o[key] = v (stolen); returns nonzero if v is NULL or the set failed, so
 * callers can OR the results and report one NN_ENOMEM. */
static inline int step_json_set(json_t *o, const char *key, json_t *v)
{
	if (!v)
		return 1;
	return json_object_set_new(o, key, v) != 0;
}

static inline double step_seconds_since(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) * 1e-9;
}

#endif
