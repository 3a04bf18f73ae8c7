/* quant_verify: the check every artifact passes before a job succeeds, and
 * the description of what runtimes it needs.
 *
 * quant_verify_run loads the finished model in nncd's own executor
 * (exec_check_support, exec_compile, exec_run) on a few samples of the job's
 * data (evaluation data first, else calibration data) or, with no data, on
 * zeros of the input shapes, and describes the artifact: IR version, the
 * default-domain opset, every imported opset and the contrib operators (any
 * node whose domain is neither "" nor "ai.onnx") it uses, so a user knows which
 * runtimes can load it. Used by pipeline_run after the last step, for every
 * scheme and step kind.
 *
 * Owns nothing beyond the call: the plan it compiles is freed before it
 * returns. Threading: reads the model only; one call per model at a time. */
#ifndef NNCD_QUANT_VERIFY_H
#define NNCD_QUANT_VERIFY_H

#include <jansson.h>

#include "err.h"
#include "eval.h"
#include "onnx_io.h"

/* Samples of the job's data the check runs (fewer when the data has fewer). */
#define QUANT_VERIFY_SAMPLES 4

/* data: eval or calibration data shaped for m's single input, or NULL (then
 * zeros of every graph input's shape, batch 1). On NN_OK *out is a new object
 * the caller owns:
 * {"ir_version", "opset", "opsets": [{"domain","version"}], "contrib_ops":
 *  ["domain.Op", ...], "verified": {"runtime": "nncd", "inputs": "eval data" |
 *  "calibration data" | "zeros", "samples", "outputs_finite", "ms"}}.
 * On failure e names the node the executor refused or failed on, prefixed
 * "the artifact does not run in nncd's executor". `data_kind` says which data
 * `data` is ("eval data", "calibration data"); ignored when data is NULL. */
enum nn_status quant_verify_run(const struct onnx_model *m, const struct eval_data *data,
				const char *data_kind, json_t **out, struct nn_err *e);

/* The description part alone (no run): ir_version, opset, opsets, contrib_ops. */
enum nn_status quant_verify_describe(const struct onnx_model *m, json_t **out, struct nn_err *e);

#endif
