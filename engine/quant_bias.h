/* quant_bias: bias correction for weight-only quantization (int8 and int4).
 *
 * After a scheme replaced weights W by DequantizeLinear outputs named W,
 * quant_bias_correct measures, on the step's calibration data, each
 * quantized layer's output error with the inputs the float model gives it:
 * a copy of the model gets the float W back for every node and, per layer,
 * a twin of the node reading the dequantized weight, both outputs exposed;
 * the per-output-channel mean of (quantized - float) over the samples (and
 * positions, for Conv) is subtracted from the layer's bias. Gemm and Conv get
 * a new bias initializer (C / B, created when absent; Gemm's beta taken into
 * account); a MatMul gets an Add of the correction after it. Since the
 * correction is an average, outputs keep their per-sample quantization noise,
 * but its systematic part is removed.
 *
 * Owns the model copy for the call only. Threading: one model, one thread
 * (the executor may use ctx->threads slices). */
#ifndef NNCD_QUANT_BIAS_H
#define NNCD_QUANT_BIAS_H

#include <stddef.h>

#include <jansson.h>

#include "err.h"
#include "onnx_io.h"
#include "step.h"
#include "tensor.h"

/* A weight the scheme quantized: its value name (now a DequantizeLinear
 * output) and its float values before quantization (borrowed). */
struct quant_bias_weight {
	const char *name;
	const struct tensor *floats;
};

/* Corrects every Gemm (B), MatMul or Conv (W) node reading one of the
 * weights. ctx->calib must hold samples (NN_EINVAL "invalid_spec" otherwise).
 * On NN_OK *out is a new object the caller owns: {"samples", "layers":
 * [{"name","node","op","channels","mean_shift","mean_abs_shift",
 * "max_abs_shift"}]}, the shift being the mean output error per channel that
 * was subtracted from the bias (mean_abs_shift: the systematic error removed,
 * averaged over channels). Nodes whose weight is the left MatMul operand are
 * left as they are. */
enum nn_status quant_bias_correct(struct onnx_model *m, const struct quant_bias_weight *w,
				  size_t n, const struct step_ctx *ctx, json_t **out,
				  struct nn_err *e);

#endif
