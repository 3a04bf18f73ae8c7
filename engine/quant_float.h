/* quant_float: the fp16 and bf16 schemes of the `quantize` step, and the
 * weight selection (ops, exclude) that quant_dynamic and quant_kmeans share.
 *
 * Weights only: each selected Gemm/MatMul/Conv float32 weight W becomes a
 * FLOAT16 (BFLOAT16) initializer W_fp16 (W_bf16) and a Cast(to FLOAT) node,
 * prepended to the graph, whose output keeps the name W: the graph still
 * computes in float32 and every consumer is untouched. Rounding is to
 * nearest even (ops_float16.h). bf16 needs Cast-13: the opset is raised to 13
 * when lower. Weights whose values exceed float16's range (|w| >= 65520
 * rounds to infinity) or are not finite are refused, naming the weight.
 * Whole-graph conversion (`graph: true`) is refused (spec_validate refuses it
 * at submit; formats: docs/internals/quantized-formats.md).
 * Thread rules as quant.h: one model, one thread. */
#ifndef NNCD_QUANT_FLOAT_H
#define NNCD_QUANT_FLOAT_H

#include <stdbool.h>

#include <jansson.h>

#include "err.h"
#include "onnx_io.h"
#include "quant.h"
#include "step.h"

/* p->scheme is QUANT_FP16 or QUANT_BF16. Metrics as quant_run's. */
enum nn_status quant_float_run(struct onnx_model *m, const struct quant_params *p,
			       const struct step_ctx *ctx, json_t **metrics, struct nn_err *e);

/* A weight the scheme may change: the consuming node's op is in p->ops and
 * neither its name nor its op type is listed in p->exclude. */
bool quant_float_selected(const struct quant_params *p, const Onnx__NodeProto *node);

/* A weight named by quant_*_run, copied out of onnx_prunable_weights (its
 * pointers do not survive initializer removals). */
struct quant_wref {
	char *name, *op, *node;
	int channel_axis;
};
/* The weights quant_select_weights picks (Gemm/MatMul/Conv, Gather tables
 * with QUANT_OP_GATHER; ops and exclude honoured), copied: *out malloc'd, free
 * with quant_wrefs_free. kept_float (may be NULL) receives the weights left
 * float. NN_EINVAL "model has no ... weights to quantize" when none is left. */
enum nn_status quant_wrefs_new(const struct onnx_model *m, const struct quant_params *p,
			       json_t *kept_float, struct quant_wref **out, size_t *count,
			       struct nn_err *e);
void quant_wrefs_free(struct quant_wref *w, size_t count);

/* Name "<base><suffix>" not yet used in m; NULL when out of memory. Caller frees. */
char *quant_float_name(const struct onnx_model *m, const char *base, const char *suffix);

#endif
