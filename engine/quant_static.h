/* quant_static: static QDQ quantization with activation ranges calibrated
 * on data (quantize scheme "static").
 *
 * Owns the static scheme of the quantize step. On the model m:
 *  1. Taps: every activation that is an input or the output of a selected
 *     Gemm/MatMul/Conv (p->ops, minus p->exclude by node name or op type);
 *     initializers are weights, not taps.
 *  2. Calibration (calib.h): a copy of m with the taps as extra graph outputs
 *     runs on ctx->calib in batches of 64, twice when the method needs a
 *     histogram (pass 1 min/max, pass 2 histogram): memory is one batch of
 *     activations plus CALIB_BINS counters per tap, whatever the data size.
 *  3. Weights: the int8 scheme of quant.c (quant_run with scheme int8,
 *     symmetric, p->granularity, same ops/exclude): DequantizeLinear on int8
 *     weights, per channel by default.
 *  4. Biases of a selected Gemm/Conv whose activation input and weight are
 *     both quantized: int32 as ONNX Runtime's QDQ quantizer writes them
 *     (scale = activation scale x weight scale per channel, zero point 0,
 *     DequantizeLinear axis 0), which lets ORT fuse the group into
 *     QLinearConv/QGemm; others stay float.
 *  5. Activations: each tap gets QuantizeLinear -> DequantizeLinear (scalar
 *     scale, uint8 zero point, or int8 symmetric with zero point 0 when
 *     p->activations_int8) placed right after its producer, and every node
 *     reading it, except excluded ones, reads the dequantized value. Graph
 *     outputs keep their float value.
 * Opset raised to 13 first when lower. Metrics: method, samples, seconds,
 * the range table per activation, and the int8 step's per-layer weight
 * figures. One model, one thread (plus the executor's slice threads). */
#ifndef NNCD_QUANT_STATIC_H
#define NNCD_QUANT_STATIC_H

#include <jansson.h>

#include "err.h"
#include "onnx_io.h"
#include "quant.h"
#include "step.h"

/* Batch the calibration runs use. */
#define QUANT_STATIC_BATCH 64

/* Runs the static scheme on m in place (m is left half converted on
 * failure: discard it). NN_EINVAL (field "dataset") without calibration
 * data; *metrics is a new object the caller owns on NN_OK. */
enum nn_status quant_static_run(struct onnx_model *m, const struct quant_params *p,
				const struct step_ctx *ctx, json_t **metrics, struct nn_err *e);

#endif
