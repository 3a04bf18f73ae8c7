/* exec_f16: how the executor runs a graph that computes in float16.
 *
 * The executor's kernels are float32. A model in which some node other than
 * Cast reads a float16 value (what quantize {"scheme":"fp16","graph":true}
 * writes) is compiled from a float32 copy that exec_f16_lower makes, which
 * the plan owns (exec.c). The copy reproduces what ONNX Runtime 1.30's CPU
 * provider computes for the same file (measured; docs/internals/
 * quantized-formats.md, "Whole-graph fp16"):
 *   - ORT has no float16 arithmetic kernels on x86: its InsertCastTransformer
 *     wraps every such node in Casts to float32, then removes each pair made
 *     of one inserted Cast and one Cast of the model (float32 -> float16 ->
 *     float32). Intermediates are therefore NOT rounded to float16: the copy
 *     computes in float32, its float16 initializers and Constants widened
 *     (exactly), Cast(to float16) turned into Cast(to float).
 *   - ORT does run in float16 the ops it has float16 kernels for (Clip,
 *     Concat, Flatten, Gather, Identity, Max, Min, Reshape, Round, Squeeze,
 *     Transpose, Unsqueeze), unless the node is "isolated": it reads at least
 *     one node output, writes no graph output, and none of the nodes it reads
 *     from or feeds runs in float16 or is a Cast. A float16-running node
 *     reading a value computed in float32 sees it rounded: the copy inserts
 *     a rounding node (nncd.f16 RoundToFloat16, ops_float16.h) there. A Cast
 *     of the model to float16 read by another Cast of the model keeps its
 *     rounding too (ORT keeps such a pair).
 *   - A float16 graph input is widened by a Cast at entry (exact); a float16
 *     graph output is rounded by a Cast at exit, so a plan's input and output
 *     specs keep the model's float16 types.
 * bfloat16 graphs are not lowered (ORT's CPU provider cannot run them).
 * Threading: pure functions of their arguments; distinct models are
 * independent. */
#ifndef NNCD_EXEC_F16_H
#define NNCD_EXEC_F16_H

#include <stdbool.h>

#include "err.h"
#include "onnx_io.h"

/* True when some node other than Cast reads a float16 value, or a Cast to
 * float16 is read by a node: the graph computes in float16 and needs
 * exec_f16_lower. False for weight-only fp16 models (float16 initializers
 * read by Cast to float only) and for already lowered copies. */
bool exec_f16_computes(const struct onnx_model *m);

/* *out = NULL when !exec_f16_computes(m); otherwise a new float32 model (the
 * caller frees it with onnx_free) that computes what ONNX Runtime computes
 * for m, as described above. NN_EINVAL for float16 data that cannot be read;
 * NN_ENOMEM. */
enum nn_status exec_f16_lower(const struct onnx_model *m, struct onnx_model **out,
			      struct nn_err *e);

#endif
