/* onnx_io: ONNX models in memory, from and to protobuf bytes.
 *
 * A struct onnx_model owns one Onnx__ModelProto decoded by protobuf-c from
 * onnx.proto (compiled at build time from Debian's libonnx-dev copy). Load ->
 * save of an unmodified model is lossless: protobuf-c keeps unknown fields and
 * this module never rewrites what it was not asked to change.
 * Engine passes mutate the proto in place through the helpers below; anything
 * they attach must be allocated with malloc so onnx_free can release it.
 * Not thread-safe per model; distinct models are independent. */
#ifndef NNCD_ONNX_IO_H
#define NNCD_ONNX_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"
#include "onnx.pb-c.h"
#include "tensor.h"

/* Caps on untrusted input. */
#define ONNX_MAX_MODEL_BYTES ((size_t)1 << 34) /* 16 GiB (protobuf itself stops at 2 GiB) */

struct onnx_model {
	Onnx__ModelProto *proto;
};

/* Decodes bytes (copied; the buffer may be freed afterwards). NN_EINVAL with a
 * clear message for anything that is not a usable ONNX model; NN_EUNSUPPORTED
 * for external-data tensors. */
enum nn_status onnx_load(const void *bytes, size_t len, struct onnx_model **out, struct nn_err *e);
enum nn_status onnx_load_file(const char *path, struct onnx_model **out, struct nn_err *e);
void onnx_free(struct onnx_model *m);

/* Serialized size in bytes. */
size_t onnx_packed_size(const struct onnx_model *m);
/* Streams the serialized model through write_fn (which returns NN_OK or a
 * failure status it has already described in e). Nothing is buffered whole. */
typedef enum nn_status (*onnx_write_fn)(void *ud, const void *data, size_t len, struct nn_err *e);
enum nn_status onnx_save(const struct onnx_model *m, onnx_write_fn write_fn, void *ud,
			 struct nn_err *e);
/* Writes to path via path.tmp + fsync + rename. */
enum nn_status onnx_save_file(const struct onnx_model *m, const char *path, struct nn_err *e);

/* Summary of a serialized model read from fd without decoding the weights
 * (memory stays bounded whatever the model size). JSON object:
 * {"ir_version", "opset": {domain: version}, "producer": {"name","version"},
 *  "graph_name", "inputs": [{"name","dtype","shape"}], "outputs": [...],
 *  "nodes", "ops": {"Gemm": 3, ...}, "parameters", "initializers",
 *  "prunable": [{"name","op","node","shape","parameters"}], "external_data": bool,
 *  "opset_upgrade": {"13": null | {"node","op","message"}}}
 * Shapes use null for symbolic dims. NN_EINVAL for malformed models,
 * NN_EUNSUPPORTED for external data. (The default domain's opset key is "";
 * prunable entries also carry "channel_axis" and "input_index", as in
 * onnx_prunable_weights; see docs/internals/onnx_io.md.)
 * opset_upgrade maps each opset an engine step raises models to (quantize:
 * 13) to null when onnx_raise_opset(m, version) would succeed (the model is
 * already there, or can be converted), else to the node it would refuse:
 * "node" (its name, null if unnamed), "op", and "message" (why). It runs
 * onnx_raise_opset's own dry pass on a skeleton of the graph built during
 * the scan (no weights), so both always agree. */
enum nn_status onnx_summarize_fd(int fd, json_t **out, struct nn_err *e);

/* ---- graph helpers for engine passes ---- */

/* Version of the default ("" or "ai.onnx") domain opset, 0 if absent. */
int64_t onnx_opset(const struct onnx_model *m);
/* Raises the default-domain opset to at least `version` (and ir_version to
 * what that opset needs), converting nodes whose semantics changed on the way.
 * NN_EUNSUPPORTED, naming the node, when a node cannot be converted safely. */
enum nn_status onnx_raise_opset(struct onnx_model *m, int64_t version, struct nn_err *e);

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
/* A name not used by any value in the graph, derived from base. Caller frees. */
char *onnx_unique_name(const struct onnx_model *m, const char *base);

#endif
