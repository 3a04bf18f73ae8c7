/* quant: weight-only int8 quantization of a model's Gemm/MatMul/Conv weights.
 *
 * Owns the `quantize` pipeline step. Each float weight W that
 * onnx_prunable_weights finds is replaced by initializers W_quantized (int8,
 * or uint8 when asymmetric), W_scale (float, [C] per channel or a scalar per
 * tensor) and W_zero_point (same shape as the scale), plus a DequantizeLinear
 * node, prepended to the graph, whose output keeps the name W: consumers are
 * untouched. The default opset is raised to 13 first when it is lower
 * (per-axis DequantizeLinear). Formats: docs/internals/quantized-formats.md.
 *
 * Rounding is round-half-to-even everywhere (the kernels and the scalar
 * references agree bit for bit). Symmetric: scale = max|w| / 127,
 * q = clamp(round(w / scale), -127, 127), zero point 0. Asymmetric: the range
 * [min(min w, 0), max(max w, 0)] over 255 steps, zero point round(-lo / scale),
 * q = clamp(round(w / scale + zp), 0, 255). A channel whose scale would not be
 * a normal float (all zeros, or |w| < ~1e-36) gets scale 1 and q = zp, so a
 * weight that is zero stays exactly zero after dequantization.
 *
 * Kernels use caller-owned buffers (per-channel ones allocate one scratch
 * array of 16 bytes per channel per call). Weights containing NaN or Inf are
 * refused (NN_EINVAL). Thread rules as for prune: one model, one caller
 * thread; the int8 step itself spreads each weight over ctx->threads threads
 * it starts and joins (units fixed by the layout, so model bytes and metrics
 * are the same for any thread count; see q8_par in quant.c). */
#ifndef NNCD_QUANT_H
#define NNCD_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"
#include "onnx_io.h"
#include "step.h"

enum quant_granularity {
	QUANT_PER_CHANNEL,
	QUANT_PER_TENSOR,
};

enum quant_scheme {
	QUANT_INT8,    /* weight-only int8 (this module) */
	QUANT_INT4,    /* weight-only int4, block-wise */
	QUANT_FP16,    /* float16 weights (or the whole graph) */
	QUANT_BF16,    /* bfloat16 weights where the runtime accepts them */
	QUANT_DYNAMIC, /* int8 dynamic quantization of MatMul/Gemm */
	QUANT_STATIC,  /* QDQ with activation ranges from calibration data */
	QUANT_KMEANS,  /* weight sharing: per-layer codebook of 2^bits centroids */
};

enum quant_format {
	QUANT_FORMAT_ONNX,        /* standard ONNX (DequantizeLinear, opset 21 for int4) */
	QUANT_FORMAT_MATMULNBITS, /* com.microsoft.MatMulNBits (int4) */
};

enum quant_calibration {
	QUANT_CALIB_MINMAX,
	QUANT_CALIB_PERCENTILE,
	QUANT_CALIB_ENTROPY, /* KL divergence, as TensorRT and ONNX Runtime define it */
	QUANT_CALIB_MSE,
};

/* Which operators' weights a scheme quantizes (bit set). */
enum quant_ops {
	QUANT_OP_GEMM = 1u << 0,
	QUANT_OP_MATMUL = 1u << 1,
	QUANT_OP_CONV = 1u << 2,
	QUANT_OP_GATHER = 1u << 3, /* embedding tables (Gather's data input) */
};

/* A quantize step's parameters. Only the fields of `scheme` are meaningful;
 * the parser refuses keys that belong to another scheme. */
struct quant_params {
	enum quant_granularity granularity; /* default per channel (weights) */
	bool symmetric;                     /* default true */
	enum quant_scheme scheme;
	unsigned ops;              /* enum quant_ops bits; default Gemm|MatMul|Conv
				    * (int4, dynamic: Gemm|MatMul) */
	const json_t *exclude;     /* array of node names or op types kept in float,
				    * borrowed from the spec; NULL when absent */
	int block_size;            /* int4: 16, 32 (default), 64 or 128 */
	enum quant_format format;  /* int4: onnx (default) or matmulnbits */
	enum quant_calibration calibration; /* static: default minmax */
	double percentile;         /* static percentile: default 99.99, in (50, 100] */
	bool activations_int8;     /* static: int8 activations (default uint8) */
	int bits;                  /* kmeans: 2..8 (default 4) */
	bool bias_correction;      /* int8/int4: per-channel mean shift from calibration data */
	bool whole_graph;          /* fp16/bf16: convert the whole graph, not only weights */
	bool keep_io_types;        /* fp16/bf16 whole graph: float32 inputs/outputs via Cast
				    * (default true) */
	bool has_dataset;          /* the step names its own "dataset" */
	size_t index;              /* the step's place in "steps" (for error fields) */
};

/* Parses and checks one spec step whose "op" is "quantize" ("scheme" is
 * required), filling defaults. Errors as prune_params_parse. */
enum nn_status quant_params_parse(const json_t *step, size_t index, struct quant_params *out,
				  struct nn_err *e);

/* ---- kernels ----
 * A weight is viewed as [outer][channels][inner]: channel c's elements are
 * w[(o * channels + c) * inner + i]. A Conv weight [M, C, kh, kw] with axis 0
 * is outer 1, channels M, inner C*kh*kw; a MatMul weight [K, N] with axis 1 is
 * outer K, channels N, inner 1. Per tensor is channels 1. `ctx` (may be NULL)
 * is polled for cancellation every STEP_POLL_ELEMS elements. */
enum nn_status quant_int8_symmetric_per_channel(const float *w, size_t outer, size_t channels,
						size_t inner, int8_t *q, float *scales,
						const struct step_ctx *ctx, struct nn_err *e);
enum nn_status quant_int8_symmetric_per_tensor(const float *w, size_t n, int8_t *q, float *scale,
					       const struct step_ctx *ctx, struct nn_err *e);
enum nn_status quant_uint8_asymmetric_per_channel(const float *w, size_t outer, size_t channels,
						  size_t inner, uint8_t *q, float *scales,
						  uint8_t *zero_points, const struct step_ctx *ctx,
						  struct nn_err *e);

/* Plain scalar references the kernels are tested against (same results, bit
 * for bit). Return false on non-finite input. */
bool quant_ref_int8_symmetric(const float *w, size_t outer, size_t channels, size_t inner,
			      int8_t *q, float *scales);
bool quant_ref_uint8_asymmetric(const float *w, size_t outer, size_t channels, size_t inner,
				uint8_t *q, float *scales, uint8_t *zero_points);

/* ---- weight selection shared by the schemes ---- */

/* True when `exclude` names the node (by name) or its operator type. */
bool quant_node_excluded(const struct quant_params *p, const char *name, const char *op_type);

/* The float32 weights the step quantizes under p->ops and p->exclude:
 * onnx_prunable_weights' Gemm/MatMul/Conv weights, plus (QUANT_OP_GATHER)
 * every float initializer that is a Gather's data input (channel_axis 0:
 * one scale per row of an embedding table). A weight stays float when any
 * node reading it is excluded or is a weight operator outside p->ops (the
 * quantized value replaces the weight for all its readers). skipped, when not
 * NULL, receives {"name","reason"} per weight left float. *out is malloc'd
 * (NULL when *count is 0): free() it. */
enum nn_status quant_select_weights(const struct onnx_model *m, const struct quant_params *p,
				    struct onnx_weight_ref **out, size_t *count, json_t *skipped,
				    struct nn_err *e);

/* Bias correction (int8 here, int4 may call it on its DequantizeLinear
 * weights): quant_bias_correct in quant_bias.h. */

/* Runs the quantize step on m in place. On NN_OK *metrics is a new JSON
 * object the caller owns. Each weight's int8 values are written over its own
 * float storage, which becomes the W_quantized initializer's raw_data
 * without a copy (its unused tail is released when the model is freed: the
 * step never needs more memory than the float model had). A step that fails
 * after it started writing (cancellation, or a NaN/Inf found in a weight
 * whose contiguous channels are quantized one by one as they are read)
 * leaves the model half converted: discard it, as pipeline_run's callers do. NN_EUNSUPPORTED (from
 * onnx_raise_opset) when the model's opset cannot be raised to 13. */
enum nn_status quant_run(struct onnx_model *m, const struct quant_params *p,
			 const struct step_ctx *ctx, json_t **metrics, struct nn_err *e);

#endif
