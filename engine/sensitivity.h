/* sensitivity: which layers can take how much pruning. The `sensitivity`
 * step prunes each prunable weight alone (magnitude, that layer only) at
 * several sparsities, measures the model on the job's evaluation data after
 * each trial, restores the weight, and reports a per-layer table plus the
 * largest tested sparsity per layer whose loss stays within a budget — a
 * ready-made "layers" object for a magnitude prune step.
 *
 * The quality measure is top-1 accuracy when the evaluation data has labels,
 * else agreement with the input model's predictions. The model is left as
 * it was (an analysis step). One model per call; no global state. */
#ifndef NNCD_SENSITIVITY_H
#define NNCD_SENSITIVITY_H

#include <stddef.h>

#include <jansson.h>

#include "err.h"
#include "onnx_io.h"
#include "step.h"

#define SENSITIVITY_MAX_LEVELS 16

struct sensitivity_params {
	double sparsities[SENSITIVITY_MAX_LEVELS]; /* ascending, in (0, 1) */
	size_t n_sparsities;
	double budget;          /* largest accepted drop of the measure, in [0, 1] */
	const json_t *layers;   /* array of weight names to analyse (borrowed), NULL = all */
};

/* Parses {"op": "sensitivity", "sparsities": [...], "budget": 0.01,
 * "layers": [...]}: defaults sparsities [0.5, 0.7, 0.8, 0.9, 0.95], budget
 * 0.01. NN_EINVAL "invalid_spec" naming the field. */
enum nn_status sensitivity_params_parse(const json_t *step, size_t index,
					struct sensitivity_params *out, struct nn_err *e);

/* Runs the analysis on ctx->eval (NN_EINVAL when absent). *metrics:
 * {"measure": "accuracy"|"agreement", "baseline", "budget", "sparsities",
 *  "samples", "layers": [{"name","op","node","parameters","results":
 *  [{"sparsity","value","drop"}], "suggested_sparsity"}],
 *  "suggested": {"layers": {name: sparsity}}, "seconds"}. */
enum nn_status sensitivity_run(struct onnx_model *m, const struct sensitivity_params *p,
			       const struct step_ctx *ctx, json_t **metrics, struct nn_err *e);

#endif
