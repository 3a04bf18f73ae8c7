/* pipeline: runs a validated job spec's steps on a model, in order, in place.
 *
 * The engine entry point used both by the daemon's workers and by the offline
 * `nncd compress`. Reports each step's start/end and metrics through hooks,
 * and polls the cancel flag between steps and inside long loops. Runs on the
 * caller's thread; no global state. */
#ifndef NNCD_PIPELINE_H
#define NNCD_PIPELINE_H

#include <stdatomic.h>
#include <stddef.h>

#include <jansson.h>

#include "err.h"
#include "eval.h"
#include "onnx_io.h"
#include "step.h"

/* Evaluation after every step: the figures land in that step's metrics under
 * "eval" (eval_model's object), fidelity measured against `reference`. */
struct pipeline_eval {
	const struct eval_data *data;
	struct eval_opts opts;
	const struct eval_outputs *reference; /* the input model's outputs, or NULL */
};

/* Data the steps may run the model on (step_ctx's calib/eval/reference). */
struct pipeline_data {
	const struct eval_data *calib;             /* the spec's top-level dataset, or NULL */
	const struct eval_data *const *step_calib; /* [i]: steps[i]'s own dataset, or NULL */
	size_t n_step_calib;
	const struct eval_data *eval;              /* the job's evaluation data, or NULL */
	const struct eval_outputs *reference;      /* the input model's outputs on eval */
	unsigned threads;                          /* executor threads for the steps */
	const struct step_model *models;           /* models the steps name by id */
	size_t n_models;
};

struct pipeline_hooks {
	void *ud;
	/* state is "running" at start (metrics NULL), then "succeeded" (metrics set)
	 * or "failed"/"canceled" (metrics NULL). May be NULL. */
	void (*on_step)(void *ud, size_t index, const char *op, const char *state,
			const json_t *metrics);
	/* Overall progress in [0,1]; called at most a few times per second. May be NULL. */
	void (*on_progress)(void *ud, double progress);
	/* An event a step records (type, e.g. "epoch", and its data, borrowed),
	 * with the step's index and op. May be NULL. */
	void (*on_event)(void *ud, size_t index, const char *op, const char *type,
			 const json_t *data);
	/* Set by another thread to ask for a stop; may be NULL. */
	const atomic_bool *cancel;
	/* Evaluate the model after each step; may be NULL. */
	const struct pipeline_eval *eval;
	/* Data for steps that run the model; may be NULL. */
	const struct pipeline_data *data;
};

/* NN_ECANCELED when the cancel flag was seen; the model is then in an
 * unspecified (but freeable) state. */
enum nn_status pipeline_run(struct onnx_model *m, const json_t *spec,
			    const struct pipeline_hooks *hooks, struct nn_err *e);

#endif
