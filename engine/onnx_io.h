/* onnx_io: ONNX models in memory, from and to protobuf bytes.
 *
 * A struct onnx_model owns one Onnx__ModelProto decoded by protobuf-c from
 * onnx.proto (compiled at build time from Debian's libonnx-dev copy). Load ->
 * save of an unmodified model is lossless: protobuf-c keeps unknown fields and
 * this module never rewrites what it was not asked to change.
 * Engine passes mutate the proto in place through the helpers of onnx_graph.h
 * and onnx_opset.h; anything they attach must be allocated with malloc so
 * onnx_free can release it.
 * The other ONNX modules: onnx_summary.h (a bounded-memory summary of a model
 * file), onnx_graph.h (graph helpers for engine passes), onnx_opset.h (raising
 * the opset). This header includes them, so "onnx_io.h" gives the whole API.
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

#include "onnx_graph.h"
#include "onnx_opset.h"
#include "onnx_summary.h"

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
/* A deep copy of m (through its serialization, so the copy owns every byte
 * and may be edited freely): engine passes that run a probe of the model
 * with extra outputs use it. */
enum nn_status onnx_clone(const struct onnx_model *m, struct onnx_model **out, struct nn_err *e);
/* Writes to path via path.tmp + fsync + rename. */
enum nn_status onnx_save_file(const struct onnx_model *m, const char *path, struct nn_err *e);

#endif
