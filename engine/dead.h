/* dead: the `prune` step with method "dead" — removes neurons / channels
 * whose value is zero (|v| <= threshold, default exactly 0) on every sample
 * of the calibration data at every place the next layers read them, which
 * after a ReLU (or BatchNormalization + ReLU) makes the removal change no
 * output on that data.
 *
 * The values are collected by running a copy of the model, with the tensors
 * that feed each channel group's consumers added as graph outputs, through the
 * executor in batches of 64 samples (memory bounded by one batch); the channels
 * are then removed with engine/shrink.h, and both models are run on the
 * calibration data to report the largest output change and argmax agreement.
 * Runs on the caller's thread (plus executor slice threads); no global state. */
#ifndef NNCD_DEAD_H
#define NNCD_DEAD_H

#include <jansson.h>

#include "err.h"
#include "onnx_io.h"
#include "prune.h"
#include "step.h"

/* Needs ctx->calib (NN_EINVAL "invalid_spec" otherwise). *metrics (caller
 * owns): method, threshold, samples, parameters_before/after,
 * bytes_before/after, removed, layers [{name, op, node, channels_before,
 * dead, removed, channels_after, parameters_before, parameters_after, status,
 * reason}] (parameters of the layer's weight), groups, max_abs_diff,
 * argmax_agreement, seconds. */
enum nn_status dead_run(struct onnx_model *m, const struct prune_params *p,
			const struct step_ctx *ctx, json_t **metrics, struct nn_err *e);

#endif
