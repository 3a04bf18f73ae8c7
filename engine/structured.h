/* structured: the `prune` step with method "structured" — removes whole
 * neurons (Gemm/MatMul output features) and Conv output channels, ranked by
 * the L1 or L2 norm of the weights that produce them, so the model gets
 * smaller dense tensors (engine/shrink.h does the surgery and decides which
 * layers can be shrunk: residual groups are ranked and pruned together,
 * Concat inputs are remapped by offset, layers feeding a graph output are
 * left alone).
 *
 * Scope "layer" removes round(ratio * n) channels of every eligible group;
 * scope "global" ranks all eligible groups' channels by their norm divided by
 * the group's mean norm and removes the lowest round(ratio * total) overall.
 * "layers" overrides give a group its own ratio (0 leaves it alone); a group
 * always keeps at least one channel. Runs on the caller's thread, no global
 * state; one model must not be touched by two threads. */
#ifndef NNCD_STRUCTURED_H
#define NNCD_STRUCTURED_H

#include <jansson.h>

#include "err.h"
#include "onnx_io.h"
#include "prune.h"
#include "step.h"

/* Prunes m in place. *metrics (caller owns): method, ratio, criterion, scope,
 * parameters_before/after, bytes_before/after, layers [{name, op, node,
 * channels_before, channels_after, parameters_before, parameters_after,
 * status, reason}], groups (shrink_groups_json), seconds. */
enum nn_status structured_run(struct onnx_model *m, const struct prune_params *p,
			      const struct step_ctx *ctx, json_t **metrics, struct nn_err *e);

#endif
