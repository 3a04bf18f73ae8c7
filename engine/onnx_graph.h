/* onnx_graph: helpers with which engine passes read and edit the graph of a
 * loaded model in place: the default-domain opset version, initializers
 * (find, view, set, take, add, remove), prepending a node, int attributes,
 * unique value names, and the prunable float32 weights with their channel
 * axes (the same rules the summary applies).
 *
 * Owns nothing of its own: every edit lives in the model's proto and is
 * malloc'd with the generated __init functions, so onnx_free releases it
 * (onnx_io.h). Arrays and names returned to the caller are the caller's to
 * free(), as each function says; views borrow from the model.
 * Threading: not thread-safe per model; distinct models are independent; no
 * global state. */
#ifndef NNCD_ONNX_GRAPH_H
#define NNCD_ONNX_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "onnx.pb-c.h"
#include "tensor.h"

struct onnx_model;

/* Version of the default ("" or "ai.onnx") domain opset, 0 if absent. */
int64_t onnx_opset(const struct onnx_model *m);

Onnx__TensorProto *onnx_find_initializer(const struct onnx_model *m, const char *name);
/* Float32 weights that a Gemm (B), MatMul (an initializer operand) or Conv (W)
 * consumes, decided from the graph. Each entry names the consuming node and
 * the axis of output channels in the weight (for per-channel schemes). An
 * initializer consumed by several such nodes appears once (first consumer).
 * channel_axis: Conv W [M,C/g,k..] -> 0; Gemm B -> 1, or 0 if transB=1;
 * MatMul initializer input 1 [..,K,N] -> ndim-1, else input 0 [..,M,K] ->
 * ndim-2. *out is malloc'd (NULL when count is 0): free() it. */
struct onnx_weight_ref {
	Onnx__TensorProto *init;
	Onnx__NodeProto *node;
	int channel_axis;
};
enum nn_status onnx_prunable_weights(const struct onnx_model *m, struct onnx_weight_ref **out,
				     size_t *count, struct nn_err *e);

/* A float32 view of an initializer's data. If the data lives in raw_data it is
 * borrowed; if in float_data it is borrowed from that array. Fails for other
 * dtypes or external data. */
enum nn_status onnx_initializer_view(const Onnx__TensorProto *init, struct tensor *out,
				     struct nn_err *e);
/* Replaces an initializer's payload with t's data (copied into raw_data),
 * clearing typed fields; sets dtype and dims from t. */
enum nn_status onnx_initializer_set(Onnx__TensorProto *init, const struct tensor *t,
				    struct nn_err *e);
/* Appends a new initializer (data copied). */
enum nn_status onnx_add_initializer(struct onnx_model *m, const char *name,
				    const struct tensor *t, struct nn_err *e);
/* The same two without a copy: t's data (malloc'd, t->owned) becomes the
 * initializer's raw_data. On NN_OK t is emptied (data NULL, owned false); on
 * failure t keeps its data. An unowned t with data is refused (NN_EINTERNAL):
 * protobuf-c would free what it does not own. */
enum nn_status onnx_initializer_take(Onnx__TensorProto *init, struct tensor *t,
				     struct nn_err *e);
enum nn_status onnx_add_initializer_take(struct onnx_model *m, const char *name,
					 struct tensor *t, struct nn_err *e);
/* Removes an initializer (and a graph input of the same name, as IR < 4
 * models list initializers among inputs). */
void onnx_remove_initializer(struct onnx_model *m, const char *name);
/* Inserts a node before all existing nodes (a weight producer must precede its
 * consumers in topological order). Strings are copied. */
enum nn_status onnx_prepend_node(struct onnx_model *m, const char *op_type, const char *name,
				 const char *const *inputs, size_t n_inputs,
				 const char *const *outputs, size_t n_outputs,
				 Onnx__NodeProto **out, struct nn_err *e);
enum nn_status onnx_node_set_int_attr(Onnx__NodeProto *node, const char *name, int64_t value,
				      struct nn_err *e);
/* Returns an int attribute or `fallback` when absent. */
int64_t onnx_node_int_attr(const Onnx__NodeProto *node, const char *name, int64_t fallback);
/* Appends a graph output named `name` with no type (the executor infers
 * it): how probes read intermediate tensors. */
enum nn_status onnx_add_graph_output(Onnx__GraphProto *g, const char *name, struct nn_err *e);
/* True when `name` is one of the graph's inputs. */
bool onnx_is_graph_input(const Onnx__GraphProto *g, const char *name);
/* How many node inputs of the main graph read `name` (subgraphs not searched). */
size_t onnx_count_readers(const Onnx__GraphProto *g, const char *name);
/* A name not used by any value in the graph, derived from base. Caller frees. */
char *onnx_unique_name(const struct onnx_model *m, const char *base);

/* ---- shared with onnx_opset.c and onnx_summary.c, not for engine passes ---- */

struct nameset;

/* Output-channel axis of a weight feeding input `slot` of a default-domain
 * node, or -1 when that slot/shape is not a prunable weight (rules in
 * onnx_prunable_weights' comment). */
int onnx_weight_channel_axis(const char *op, int slot, size_t ndim, int64_t trans_b);
/* Conv, Gemm or MatMul. */
bool onnx_is_weight_op(const char *op);
/* The attribute `name` of n (its index in *idx when idx is not NULL). */
Onnx__AttributeProto *onnx_find_attr(const Onnx__NodeProto *n, const char *name, size_t *idx);
void onnx_remove_attr(Onnx__NodeProto *n, const char *name);
/* Replaces (or appends) attribute `a` under its name; takes ownership. */
enum nn_status onnx_put_attr(Onnx__NodeProto *node, Onnx__AttributeProto *a, struct nn_err *e);
/* Adds every name of g and its subgraphs to ns; false when out of memory. */
bool onnx_collect_graph_names(const Onnx__GraphProto *g, struct nameset *ns, int depth);
/* onnx_add_initializer without the duplicate check (for names known new). */
enum nn_status onnx_append_initializer(struct onnx_model *m, const char *name,
				       const struct tensor *t, struct nn_err *e);

#endif
