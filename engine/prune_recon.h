/* prune_recon: layer-wise reconstruction after unstructured (magnitude or
 * N:M) pruning, from calibration data, without retraining.
 *
 * Pruning zeroes weights by a rule that ignores the data; each layer's output
 * then drifts. For a layer y = W x, the kept weights of each output row are
 * re-fitted so that, on the calibration inputs X the (already reconstructed)
 * upstream layers produce, W' x stays as close as possible to the original
 * W x: min ||X (W' - W)^T||^2 over W' with the pruned entries fixed at zero.
 * The solver is the Optimal Brain Surgeon update as SparseGPT applies it
 * (Frantar & Alistarh, 2023) with the mask given: H = X^T X + lambda I
 * (lambda = 1% of the mean diagonal), U the upper Cholesky factor of H^-1,
 * and for every column j in order, each row whose weight j is pruned
 * zeroes it and spreads the error w_j / U_jj over its later columns along
 * U_j. Those steps are optimal only for the damped H and the columns after
 * each one, so a row whose undamped output error would exceed the mask's
 * keeps its masked original weights (counted in the report). Layers are
 * handled in graph order, each on inputs measured from the
 * model with the layers before it already reconstructed, so errors do not
 * compound. The mask never changes: a pruned weight is exactly zero after.
 *
 * Gemm (either transB; transA too) and MatMul with a 2-D initializer as the
 * right operand use rows of their input [.., K]; Conv (1-D or 2-D, groups,
 * strides, dilations, pads) uses the im2col patches of its input per group.
 * H lives in double: K^2 * 8 bytes per group (K = the reduction length),
 * so a layer with K > RECON_MAX_K is left as pruned and the report says why,
 * as is a weight read by more than one node or as a MatMul's left operand.
 *
 * Threading: one model, one thread (the probes run the executor with
 * ctx->threads slices). Owns nothing beyond the call. */
#ifndef NNCD_PRUNE_RECON_H
#define NNCD_PRUNE_RECON_H

#include <stddef.h>

#include <jansson.h>

#include "err.h"
#include "onnx_io.h"
#include "step.h"

/* Largest reduction length reconstructed (H is K x K doubles: 512 MiB). */
#define RECON_MAX_K 8192 /* a plain number: it is stringised into a message */
/* Calibration samples used at most (the first ones of ctx->calib). */
#define RECON_MAX_SAMPLES 4096

/* A pruned weight: the initializer now holding the pruned values (zero =
 * pruned), the node that reads it, and its values before pruning (same
 * element count; borrowed). */
struct recon_weight {
	Onnx__TensorProto *init;
	const Onnx__NodeProto *node;
	const float *original;
};

/* Reconstructs every listed weight of m in place (in the order given, which
 * must be graph order). ctx->calib must hold samples (NN_EINVAL
 * "invalid_spec" otherwise). On NN_OK *out is a new object the caller owns:
 * {"method": "obs", "samples", "damping", "layers": [{"name", "node", "op",
 * "status": "reconstructed" | "skipped", "reason", "rows", "inputs",
 * "output_error_pruned", "output_error", "rows_kept_masked", "damping"}],
 * "seconds"}, the errors being
 * ||X (W' - W)^T||^2 / ||X W^T||^2 on the calibration inputs before (mask
 * alone) and after reconstruction. */
enum nn_status recon_run(struct onnx_model *m, const struct recon_weight *w, size_t n,
			 const struct step_ctx *ctx, json_t **out, struct nn_err *e);

#endif
