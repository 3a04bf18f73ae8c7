/* spec: validation of a job spec (JSON) against a model before it is queued.
 *
 * The spec shape (docs/API.md is the user-facing reference):
 *   {"model": "mdl_…", "steps": [STEP, ...], "output": {"format": "onnx"}}
 *   STEP = {"op": "prune", "method": "magnitude", "sparsity": 0.8, "scope": "global"|"layer"}
 *        | {"op": "quantize", "scheme": "int8", "granularity": "per_channel"|"per_tensor",
 *           "symmetric": true}
 * Unknown keys and values are rejected, each error naming the field as a JSON
 * path ("steps[1].granularity"). Pure function, thread-safe. */
#ifndef NNCD_SPEC_H
#define NNCD_SPEC_H

#include <jansson.h>

#include "err.h"

/* model_summary is onnx_summarize_fd's JSON; the spec must fit it (e.g. a
 * prune step needs prunable weights; a per-channel quantize needs an opset
 * that can be raised to 13). NN_EINVAL/NN_EUNSUPPORTED with e->field set.
 * model_summary may be NULL: only the checks that need no model run (what
 * pipeline_run does before running the steps). */
enum nn_status spec_validate(const json_t *spec, const json_t *model_summary, struct nn_err *e);

#endif
