/* ops_float16: float16 / bfloat16 conversions and the executor's Cast for
 * them.
 *
 * Owns the scalar conversions shared by the executor and the fp16/bf16
 * quantize step (quant_float.c): float -> float16 and float -> bfloat16 round
 * to nearest, ties to even (as ONNX Runtime's Cast and numpy's astype do),
 * overflow goes to infinity, NaN stays NaN (quiet); float16 / bfloat16 ->
 * float is exact. Its table (exec_ops_float16, listed before exec_ops_math in
 * exec.c's registry) takes Cast nodes whose input or `to` type is float16 or
 * bfloat16 (from/to float, double, float16, bfloat16) and hands every other
 * Cast to ops_math's; and nncd.f16 RoundToFloat16 (float32 -> float32 rounded
 * to the nearest float16 value), which exec_f16.h's lowering of float16
 * graphs inserts where ONNX Runtime rounds. Pure functions and const tables:
 * thread-safe. */
#ifndef NNCD_OPS_FLOAT16_H
#define NNCD_OPS_FLOAT16_H

#include <stddef.h>
#include <stdint.h>

uint16_t f16_from_float(float x);
float f16_to_float(uint16_t h);
uint16_t bf16_from_float(float x);
float bf16_to_float(uint16_t h);

/* n values; dst and src must not overlap. */
void f16_from_floats(uint16_t *dst, const float *src, size_t n);
void bf16_from_floats(uint16_t *dst, const float *src, size_t n);

#endif
