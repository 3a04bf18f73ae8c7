/* spec: validation of a job spec (JSON) against a model before it is queued.
 *
 * The spec shape (docs/API.md is the user-facing reference):
 *   {"model": "mdl_…", "dataset": DATA, "holdout": 0.2, "steps": [STEP, ...],
 *    "eval": {"dataset": DATA, "metrics": ["accuracy","fidelity","size","latency"]},
 *    "output": {"format": "onnx"}}
 *   DATA = "ds_…" | {"id": "ds_…", "labels": "ds_…", "scale": 0.00392156862745098}
 *   STEP = {"op": "prune", "method": "magnitude", "sparsity": 0.8, "scope": "global"|"layer"}
 *        | {"op": "quantize", "scheme": "int8", "granularity": "per_channel"|"per_tensor",
 *           "symmetric": true}
 * Unknown keys and values are rejected, each error naming the field as a JSON
 * path ("steps[1].granularity"). Pure function, thread-safe. */
#ifndef NNCD_SPEC_H
#define NNCD_SPEC_H

#include <stdbool.h>

#include <jansson.h>

#include "err.h"

#define SPEC_ID_CAP 48

/* A dataset as a spec names it: the dataset's id, optionally a second
 * dataset holding the labels (two .npy uploads), and the factor inputs are
 * multiplied by (1 when absent; 1/255 for uint8 images). */
struct spec_dataset {
	bool set;
	char id[SPEC_ID_CAP];
	char labels_id[SPEC_ID_CAP]; /* "" when the labels are in `id` */
	double scale;
};

/* Parses DATA (a dataset id or {"id", "labels", "scale"}); field names it in
 * errors ("steps[2].dataset"). */
enum nn_status spec_parse_dataset(const json_t *v, const char *field, struct spec_dataset *out,
				  struct nn_err *e);

/* What a job evaluates, and on which data. */
struct spec_eval {
	bool requested;            /* the spec has "eval" */
	unsigned metrics;          /* EVAL_* bits (eval.h) */
	struct spec_dataset data;  /* eval.dataset, or the top-level dataset */
	double holdout;            /* 0, or the fraction of `data` held out */
	bool from_holdout;         /* evaluate on the held-out part of the top-level dataset */
	struct spec_dataset train; /* the top-level dataset (calibration/training) */
};

/* Reads "dataset", "holdout" and "eval" of a spec (which spec_validate has
 * accepted, or which it checks the same way). */
enum nn_status spec_parse_eval(const json_t *spec, struct spec_eval *out, struct nn_err *e);

/* model_summary is onnx_summarize_fd's JSON; the spec must fit it (e.g. a
 * prune step needs prunable weights; a per-channel quantize needs an opset
 * that can be raised to 13). NN_EINVAL/NN_EUNSUPPORTED with e->field set.
 * model_summary may be NULL: only the checks that need no model run (what
 * pipeline_run does before running the steps). */
enum nn_status spec_validate(const json_t *spec, const json_t *model_summary, struct nn_err *e);

/* A model a step names by id: "teacher": {"model": id} or "student":
 * {"model": id} (distill, finetune). */
struct spec_model_ref {
	char id[SPEC_ID_CAP];
	char field[64]; /* "steps[2].teacher.model" */
};
#define SPEC_MAX_MODEL_REFS 2 /* per step: teacher and student */

/* The model ids steps[index] names (at most SPEC_MAX_MODEL_REFS); values
 * that are not strings are left to the step's own parser to refuse. */
size_t spec_step_model_refs(const json_t *step, size_t index,
			    struct spec_model_ref out[SPEC_MAX_MODEL_REFS]);

#endif
