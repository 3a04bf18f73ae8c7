/* ops_quant: the executor's quantization operators (DequantizeLinear,
 * QuantizeLinear, DynamicQuantizeLinear, MatMulInteger) with ONNX semantics:
 * per-tensor and per-axis scales, int8/uint8 (and int32 for dequantization)
 * values, saturation and round-half-to-even. nncd's own quantized artifacts
 * (int8 weights with per-channel DequantizeLinear feeding Gemm/MatMul/Conv)
 * run through these; with constant weights the executor folds the
 * dequantization at compile time.
 * The op table (exec_ops_quant) is declared in exec_op.h.
 * Owns nothing; stateless kernels, any thread. */
#ifndef NNCD_OPS_QUANT_H
#define NNCD_OPS_QUANT_H

#include <stdint.h>

/* round(x) half to even, saturated to [lo, hi]: the ONNX quantizer rule. */
int32_t ops_quant_round_sat(float x, int32_t lo, int32_t hi);

#endif
