/* ops_quant: the executor's quantization operators (DequantizeLinear,
 * QuantizeLinear, DynamicQuantizeLinear, MatMulInteger) with ONNX semantics:
 * per-tensor and per-axis scales, int8/uint8 (and int32 for dequantization)
 * values, saturation and round-half-to-even. nncd's own quantized artifacts
 * (int8 weights with per-channel DequantizeLinear feeding Gemm/MatMul/Conv)
 * run through these; with constant weights the executor folds the
 * dequantization at compile time.
 * DequantizeLinear of opset 21 also runs with block_size (int8/uint8, and
 * INT4/UINT4 initializers, which exec_tensor_proto unpacks to a byte per
 * element through ops_quant_unpack4), and com.microsoft MatMulNBits (bits 4)
 * dequantizes its weight once at compile and runs sgemm (exact float
 * numerics, ONNX Runtime's accuracy_level 1). Layouts:
 * docs/internals/quantized-formats.md.
 * The op table (exec_ops_quant) is declared in exec_op.h.
 * Owns nothing; stateless kernels, any thread. */
#ifndef NNCD_OPS_QUANT_H
#define NNCD_OPS_QUANT_H

#include <stdint.h>

#include "err.h"
#include "onnx.pb-c.h"
#include "tensor.h"

/* round(x) half to even, saturated to [lo, hi]: the ONNX quantizer rule. */
int32_t ops_quant_round_sat(float x, int32_t lo, int32_t hi);

/* For exec_tensor_proto: an INT4/UINT4 TensorProto (raw_data packed two
 * per byte, low nibble first, as ONNX defines it; or int32_data one value per
 * entry) unpacked to one byte per element: t becomes an owned DT_INT8 (INT4,
 * sign-extended) or DT_UINT8 (UINT4) tensor of the same shape, values
 * unchanged, so the int8 kernels (DequantizeLinear with block_size) run it.
 * NN_EINVAL when the payload does not match the shape. */
enum nn_status ops_quant_unpack4(const Onnx__TensorProto *tp, const char *what, struct tensor *t,
				 struct nn_err *e);

#endif
