/* onnx_opset: raising a model's default-domain opset (onnx_raise_opset), as
 * engine steps need (quantize writes DequantizeLinear with `axis`: opset 13).
 *
 * Owns the conversion rules for the ops whose meaning changed between
 * opsets, the conservative rank/element-type inference some of them depend
 * on, and the dry pass that finds a refusal before anything is changed. The
 * summary (onnx_summary) runs the same dry pass on a weightless skeleton of
 * a model file, so its opset_upgrade verdict and onnx_raise_opset agree.
 * Converted nodes and new initializers live in the model's proto (malloc'd,
 * released by onnx_free).
 * Threading: not thread-safe per model; distinct models are independent; no
 * global state. */
#ifndef NNCD_ONNX_OPSET_H
#define NNCD_ONNX_OPSET_H

#include <stdint.h>

#include "err.h"
#include "onnx.pb-c.h"

struct onnx_model;

/* Raises the default-domain opset to at least `version` (and ir_version to
 * what that opset needs), converting nodes whose semantics changed on the way.
 * NN_EUNSUPPORTED, naming the node, when a node cannot be converted safely. */
enum nn_status onnx_raise_opset(struct onnx_model *m, int64_t version, struct nn_err *e);

/* For onnx_summary.c (not for engine passes): onnx_raise_opset's dry pass
 * alone, from opset `from` to `to`, on m, which may be a weightless skeleton
 * (initializers need only name, dims and data_type). Changes nothing. On a
 * refusal (NN_EUNSUPPORTED or NN_EINVAL) *rejected is the node refused
 * (borrowed from m, NULL if none) and *why the reason (a string literal, NULL
 * if none), besides the message in e. */
enum nn_status onnx_raise_opset_dry(struct onnx_model *m, int64_t from, int64_t to,
				    const Onnx__NodeProto **rejected, const char **why,
				    struct nn_err *e);

#endif
