/* quant_dynamic: the dynamic scheme of the `quantize` step (int8 weights,
 * activations quantized at run time), as ONNX Runtime's quantize_dynamic
 * writes it.
 *
 * Each selected Gemm (transA 0, beta 1 or no C) or MatMul whose input B is a
 * rank-2 float32 initializer W [K, N] (a Gemm's transB=1 weight is stored
 * transposed) is replaced in place by
 *   DynamicQuantizeLinear(A) -> A_q (uint8), A_scale, A_zero_point
 *   MatMulInteger(A_q, W_quantized, A_zero_point, W_zero_point) -> int32
 *   Cast(to FLOAT); Mul(A_scale, W_scale [* alpha]); Mul -> Y (then Add C)
 * keeping the node's output name. Weights: int8 symmetric (scale
 * max|w| / 127, zero point 0) or uint8 asymmetric (`symmetric: false`), with
 * quant.c's kernels; per tensor by default (ONNX Runtime quantize_dynamic's
 * default), or per output column with `granularity: "per_channel"`
 * (W_scale and W_zero_point 1-D [N]: MatMulInteger takes a per-column
 * b_zero_point, and the scale Mul broadcasts over the rows).
 * Other Gemm/MatMul nodes stay float and are listed in the metrics as
 * skipped with the reason. DynamicQuantizeLinear needs opset 11 (raised when
 * lower). Thread rules as quant.h. */
#ifndef NNCD_QUANT_DYNAMIC_H
#define NNCD_QUANT_DYNAMIC_H

#include <jansson.h>

#include "err.h"
#include "onnx_io.h"
#include "quant.h"
#include "step.h"

/* p->scheme is QUANT_DYNAMIC. Metrics as quant_run's. */
enum nn_status quant_dynamic_run(struct onnx_model *m, const struct quant_params *p,
				 const struct step_ctx *ctx, json_t **metrics, struct nn_err *e);

#endif
