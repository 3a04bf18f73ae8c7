/* quant_float: the fp16 and bf16 schemes of the `quantize` step, and the
 * weight selection (ops, exclude) that quant_dynamic and quant_kmeans share.
 *
 * Weights only (default): each selected Gemm/MatMul/Conv float32 weight W
 * becomes a FLOAT16 (BFLOAT16) initializer W_fp16 (W_bf16) and a Cast(to
 * FLOAT) node, prepended to the graph, whose output keeps the name W: the
 * graph still computes in float32 and every consumer is untouched. bf16
 * needs Cast-13: the opset is raised to 13 when lower. Weights whose values
 * exceed float16's range (|w| >= 65520 rounds to infinity) or are not finite
 * are refused, naming the weight.
 *
 * Whole graph (`graph: true`, fp16 only): every node whose op is in the
 * module's float16 list (ops whose ONNX type constraint includes float16 and
 * that ONNX Runtime's CPU provider loads in float16) and that `exclude` does
 * not name computes in float16: its float32 T inputs/outputs, the
 * initializers and Constants only such inputs read (a float16 copy when
 * float32 readers remain) and its Cast(to FLOAT) become float16. Integer
 * inputs (shapes, indices, axes, pads) and non-T float inputs (Dropout's
 * ratio) are untouched. Every other node stays float32, with one Cast per
 * value and direction where producer and reader disagree; `kept_float` in
 * the metrics names each with its reason. `keep_io_types` (default true)
 * keeps float32 graph inputs/outputs, with Casts at entry and exit; false
 * makes them float16. Value types come from a probe compile of the model by
 * the executor. The artifact is run by the executor as ONNX Runtime runs it
 * (exec_f16.h). Finite values beyond float16's range are refused, naming the
 * tensor. bf16 whole graph is refused (QUANT_FLOAT_BF16_GRAPH_REFUSAL).
 * Rounding is to nearest even (ops_float16.h). Formats and measured
 * agreement with ONNX Runtime: docs/internals/quantized-formats.md.
 * Thread rules as quant.h: one model, one thread. */
#ifndef NNCD_QUANT_FLOAT_H
#define NNCD_QUANT_FLOAT_H

#include <stdbool.h>

#include <jansson.h>

#include "err.h"
#include "onnx_io.h"
#include "quant.h"
#include "step.h"

/* Why {"scheme":"bf16","graph":true} is a 400 (spec_validate) and refused
 * here: measured with ONNX Runtime 1.30, its CPU provider has no bfloat16
 * kernels for Gemm, MatMul, Relu, Sigmoid (and no Conv/MaxPool bfloat16 at
 * all), and unlike float16 it inserts no Casts for them: such a model does
 * not load. */
#define QUANT_FLOAT_BF16_GRAPH_REFUSAL                                                        \
	"whole-graph bf16 is not available: ONNX Runtime's CPU provider has no bfloat16 "     \
	"kernels for Gemm, MatMul, Conv, Relu and most other operators (and inserts no Casts " \
	"for bfloat16), so the model would not load; use scheme fp16 with graph, or bf16 "    \
	"weights only (omit \"graph\")"

/* p->scheme is QUANT_FP16 or QUANT_BF16. Metrics as quant_run's; the whole
 * graph adds keep_io_types, converted_tensors, converted_nodes and
 * casts_inserted, and its layers are every converted tensor (name, kind
 * initializer / initializer_copy / constant, shape, mse, max_abs_error,
 * bytes). */
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
