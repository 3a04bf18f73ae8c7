/* quant_int4: weight-only int4 block-wise quantization of Gemm/MatMul
 * weights (the `quantize` step's scheme "int4").
 *
 * Owns the int4 kernel (blocks of block_size elements along the weight's
 * reduction axis K, one scale per block, a zero point per block when
 * asymmetric), the nibble packing, and the two output forms:
 *   format onnx: W becomes an INT4 (symmetric) or UINT4 (asymmetric)
 *     initializer, raw_data two values per byte, low nibble first; W_scale
 *     float and W_zero_point (same 4-bit type; zeros when symmetric) have
 *     W's shape with the K axis divided by block_size (rounded up); a
 *     DequantizeLinear (axis = K axis, block_size) prepended to the graph
 *     outputs the name W. A Gemm (transA 0, alpha = beta = 1, weight used
 *     once) is written as MatMul (+ Add of C) with W^T [K, N] blocked along
 *     axis 0, the form ONNX Runtime fuses into its MatMulNBits kernel.
 *     Opset raised to 21, IR version 10.
 *   format matmulnbits: each MatMul with a 2-D initializer weight [K, N] (and
 *     each Gemm with alpha 1, transA 0, rewritten as MatMulNBits + Add of
 *     beta * C when C is present and beta is 1) becomes com.microsoft
 *     MatMulNBits: B uint8 [N, blocks, block_size/2], scales float
 *     [N * blocks], zero_points uint8 [N * ceil(blocks/2)] when asymmetric
 *     (absent when symmetric: ONNX Runtime's default zero point 8).
 * Layouts in docs/internals/quantized-formats.md.
 *
 * Numerics (round half to even throughout): symmetric scale = max|w| / 7,
 * q = clamp(round(w / scale), -7, 7) (the int8 module's convention; ONNX
 * Runtime's MLAS quantizer instead maps the largest-magnitude value to -8);
 * asymmetric: range [min(min w, 0), max(max w, 0)] over 15 steps, zero point
 * round(-lo / scale), q = clamp(round(w / scale) + zp, 0, 15). A block of
 * zeros gets scale 1 and q = zp. A ragged last block's scale is computed
 * over its real elements only. The division is a multiplication by the
 * float reciprocal, in the kernel and the reference alike.
 * Threads: one model, one calling thread (as quant). The step spreads each
 * weight over ctx->threads threads of its own (created per weight, joined
 * before it returns; 0/1 = the calling thread alone, as are weights under
 * 64K values): the weight is cut into units fixed by its layout alone (32
 * rows of K, or whole blocks of ~256K values along K), each unit's squared
 * errors one partial sum added in unit order, so bytes and metrics are
 * identical for every thread count. Cancellation is polled per unit. */
#ifndef NNCD_QUANT_INT4_H
#define NNCD_QUANT_INT4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"
#include "onnx_io.h"
#include "quant.h"
#include "step.h"

/* Error statistics of a quantize pass: (q - zp) * scale against w. */
struct quant_int4_stats {
	double sq;     /* sum of squared errors */
	float maxerr;  /* max abs error */
	float smin, smax; /* scale range over blocks holding a non-zero weight */
};

/* A weight seen as [outer][len][inner] with blocks of `block` elements along
 * len. Scales (and zero points, one byte each, or NULL when symmetric) are
 * [outer][ceil(len / block)][inner]. Element (o, l, i) is written as the
 * nibble (q + offset) & 15 at nibble index o * ostride + l * inner + i of
 * `packed` (ostride = len * inner for the ONNX layout; blocks * block for
 * MatMulNBits rows, inner 1, offset 8 for symmetric). Nibbles are written in
 * increasing order, each byte behind the floats still to be read: with
 * ostride = len * inner, packed need not be zeroed and may be w's own
 * storage (the step writes over the floats); with a larger ostride the
 * caller zeroes it (the gaps are not written). On failure packed is partly
 * written. NN_EINVAL for NaN/Inf weights, NN_ECANCELED when ctx says. */
enum nn_status quant_int4_quantize(const float *w, size_t outer, size_t len, size_t inner,
				   size_t block, bool symmetric, unsigned offset, size_t ostride,
				   uint8_t *packed, float *scales, uint8_t *zero_points,
				   struct quant_int4_stats *stats, const struct step_ctx *ctx,
				   struct nn_err *e);

/* quant_int4_quantize on up to `threads` threads (0/1: the calling one;
 * small weights always run on it). Same bytes, scales, zero points and
 * stats for any thread count, and the same as quant_int4_quantize: both
 * sum the squared errors per unit (32 rows when inner is 1, else runs of
 * whole blocks of about 256K values), the unit sums in order. packed may be
 * w's own storage as for quant_int4_quantize. */
enum nn_status quant_int4_quantize_threads(const float *w, size_t outer, size_t len,
					   size_t inner, size_t block, bool symmetric,
					   unsigned offset, size_t ostride, uint8_t *packed,
					   float *scales, uint8_t *zero_points,
					   struct quant_int4_stats *stats, unsigned threads,
					   const struct step_ctx *ctx, struct nn_err *e);

/* Instruction sets of the kernel, in increasing order. Every one gives the
 * same nibbles, scales and zero points; AVX2 and AVX-512 also give
 * bit-identical error sums (same additions in the same order), while the
 * scalar code sums each block's errors in plain order (the sums may differ
 * in the last bits). */
enum quant_int4_isa {
	QUANT_INT4_ISA_AUTO,   /* the best the CPU has (what the step uses) */
	QUANT_INT4_ISA_SCALAR, /* portable C */
	QUANT_INT4_ISA_AVX2,
	QUANT_INT4_ISA_AVX512, /* AVX-512F, chosen at run time */
};

/* The set QUANT_INT4_ISA_AUTO resolves to on this CPU. */
enum quant_int4_isa quant_int4_isa_best(void);

/* quant_int4_quantize with the instruction set forced to isa or, when the
 * CPU lacks it, the best one below it (tests compare the paths); no
 * cancellation. */
enum nn_status quant_int4_quantize_isa(const float *w, size_t outer, size_t len, size_t inner,
				       size_t block, bool symmetric, unsigned offset,
				       size_t ostride, uint8_t *packed, float *scales,
				       uint8_t *zero_points, struct quant_int4_stats *stats,
				       enum quant_int4_isa isa, struct nn_err *e);

/* Packs n 4-bit values (their low nibbles) two per byte, low nibble first;
 * an odd count leaves the last high nibble 0. out has (n + 1) / 2 bytes. */
void quant_int4_pack(const uint8_t *vals, size_t n, uint8_t *out);
/* Unpacks n nibbles; signed: sign-extended INT4 (-8..7), else 0..15. */
void quant_int4_unpack(const uint8_t *packed, size_t n, bool is_signed, int8_t *out);

/* The int4 step (p->scheme == QUANT_INT4), contract as quant_run. */
enum nn_status quant_int4_run(struct onnx_model *m, const struct quant_params *p,
			      const struct step_ctx *ctx, json_t **metrics, struct nn_err *e);

#endif
