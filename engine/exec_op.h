/* exec_op: the interface through which operator modules plug into the
 * executor (exec.c). Internal to engine/; the public contract is exec.h.
 *
 * An operator module (ops_math.c, ops_shape.c, ops_gemm.c, ops_quant.c,
 * ops_conv.c, ...) exports one table of struct exec_op:
 *     extern const struct exec_op exec_ops_math[];
 *     extern const size_t exec_ops_math_count;
 * and exec.c's registry lists the tables. Lookup is by (domain, op_type),
 * where domain "" stands for the default domain (also matched by "ai.onnx").
 *
 * Life of a node:
 *   check (exec_check_support, no shapes): can the op run this node's
 *     attributes / opset at all? NN_EUNSUPPORTED with a message otherwise.
 *   infer (exec_compile, once per plan): from the inputs' dtypes and shapes
 *     (and their data when an input is a compile-time constant) set every
 *     output's dtype, ndim and shape; may declare scratch bytes and attach
 *     op-private state (parsed attributes, packed weights) that run gets back
 *     (its size in priv_bytes when large, so the plan's memory counts it).
 *   run (exec_run, and at compile time when every input is constant, to fold
 *     the node): compute outputs into buffers the executor planned. Never
 *     allocates; must not fail for inputs matching what infer accepted.
 *
 * Errors: infer/check fill e with exec_node_err (message "node 'NAME' (Op):
 * reason"); NN_EINVAL (code "invalid_model") for a model that violates the
 * ONNX spec, NN_EUNSUPPORTED (code "unsupported_operator") for valid input
 * the executor cannot run.
 * Threading: tables are const and shared; callbacks keep no global state. */
#ifndef NNCD_EXEC_OP_H
#define NNCD_EXEC_OP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "onnx.pb-c.h"
#include "tensor.h"

/* What infer sees and fills. in[i] has dtype, ndim and shape of input i;
 * in[i].data is non-NULL iff that input is a compile-time constant
 * (initializer, Constant, or folded). An absent optional input ("" name)
 * has dtype DT_UNDEFINED, ndim 0 and data NULL; inputs past n_in are absent
 * too (ops check n_in before reading in[i]).
 * out[i]: infer sets dtype, ndim and shape (data stays NULL). Outputs the
 * node does not list (or lists as "") are still present in out[] and may be
 * ignored by the executor. */
struct exec_infer_ctx {
	const Onnx__NodeProto *node;
	int64_t opset;        /* version of the op's domain in the model */
	const struct tensor *in;
	size_t n_in;          /* == node->n_input */
	struct tensor *out;
	size_t n_out;         /* == node->n_output */
	size_t scratch_bytes; /* set by infer: bytes of scratch run needs (64-byte aligned) */
	void *priv;           /* set by infer: malloc'd op-private state, or NULL */
	size_t priv_bytes;    /* set by infer: bytes priv holds worth reporting (packed
	                       * weights), added to exec_plan_bytes */
};

/* What run gets. in[i].data/out[i].data point to the values (absent optional
 * inputs have data NULL and dtype DT_UNDEFINED). out[i] shapes are those infer
 * set. scratch has scratch_bytes bytes, 64-byte aligned (NULL when 0). */
struct exec_run_ctx {
	const Onnx__NodeProto *node;
	int64_t opset;
	const void *priv;
	const struct tensor *in;
	size_t n_in;
	struct tensor *out;
	size_t n_out;
	void *scratch;
	size_t scratch_bytes;
};

struct exec_op {
	const char *domain;  /* "" = default ONNX domain; e.g. "com.microsoft" */
	const char *op_type; /* e.g. "Gemm" */
	/* Optional (NULL = every node of this type is supported). Checks
	 * attributes / opset only; dtypes are checked by infer. */
	enum nn_status (*check)(const Onnx__NodeProto *node, int64_t opset, struct nn_err *e);
	enum nn_status (*infer)(struct exec_infer_ctx *c, struct nn_err *e);
	enum nn_status (*run)(const struct exec_run_ctx *c, struct nn_err *e);
	/* Frees what infer put in priv (NULL = free()). */
	void (*free_priv)(void *priv);
};

/* The registered tables (each module defines its own pair). */
extern const struct exec_op exec_ops_math[];
extern const size_t exec_ops_math_count;
extern const struct exec_op exec_ops_shape[];
extern const size_t exec_ops_shape_count;
extern const struct exec_op exec_ops_gemm[];
extern const size_t exec_ops_gemm_count;
extern const struct exec_op exec_ops_quant[];
extern const size_t exec_ops_quant_count;
extern const struct exec_op exec_ops_conv[];
extern const size_t exec_ops_conv_count;
extern const struct exec_op exec_ops_float16[];
extern const size_t exec_ops_float16_count;

/* Registry lookup (exec.c): the op for (domain, op_type) or NULL. */
const struct exec_op *exec_op_find(const char *domain, const char *op_type);

/* ---- helpers for op modules (exec.c) ---- */

/* err_set with message "node 'NAME' (OpType): " + fmt. Code is
 * "unsupported_operator" for NN_EUNSUPPORTED, "invalid_model" for NN_EINVAL,
 * "out_of_memory" for NN_ENOMEM, "internal" otherwise. Returns status. */
enum nn_status exec_node_err(struct nn_err *e, enum nn_status status, const Onnx__NodeProto *node,
			     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Attribute readers: value of attribute `name`, or fallback when absent. A
 * present attribute of the wrong type also yields the fallback; use
 * exec_attr_find to tell the cases apart. */
const Onnx__AttributeProto *exec_attr_find(const Onnx__NodeProto *node, const char *name);
int64_t exec_attr_int(const Onnx__NodeProto *node, const char *name, int64_t fallback);
float exec_attr_float(const Onnx__NodeProto *node, const char *name, float fallback);
/* Ints list: *vals borrows from the node, *n its length; false when absent. */
bool exec_attr_ints(const Onnx__NodeProto *node, const char *name, const int64_t **vals,
		    size_t *n);
/* String attribute copied NUL-terminated into buf (truncated to cap-1);
 * false (buf = fallback) when absent. */
bool exec_attr_string(const Onnx__NodeProto *node, const char *name, char *buf, size_t cap,
		      const char *fallback);

/* A tensor's value from a TensorProto (initializer or Constant attribute):
 * dtype, shape and data, borrowed from raw_data / the typed field when it has
 * the element width and alignment (out->owned false), else a malloc'd copy
 * (out->owned true: tensor_free releases it). `what` names the tensor in
 * messages. NN_EUNSUPPORTED for external data, strings, 4-bit types. */
enum nn_status exec_tensor_proto(const Onnx__TensorProto *tp, const char *what,
				 struct tensor *out, struct nn_err *e);

/* Element count of a tensor whose shape infer validated (no overflow check). */
int64_t exec_numel(const struct tensor *t);

#endif
