/* onnx_wire: the private layer under the onnx_* modules (onnx_io, onnx_summary,
 * onnx_graph, onnx_opset). Only engine/onnx_*.c include it; it is not an API
 * for engine passes, the daemon or the tests.
 *
 * Owns:
 *  - the protobuf wire-format reader (struct rd) over memory or over a file
 *    descriptor read with pread through a SUM_WINDOW cache, and wire_check, a
 *    schema-aware, non-recursive validator driven by protobuf-c's
 *    descriptors. onnx_load runs it before protobuf-c unpacks anything (so
 *    malformed or hostile bytes get a precise message, "truncated at byte N",
 *    and nesting is capped before protobuf-c's recursive decoder sees it); the
 *    summary scanner runs it on every field it does not interpret;
 *  - the tensor and model checks that onnx_load and onnx_summarize_fd both
 *    apply, with the same messages (wire_check_tensor_facts, wire_check_model_shape,
 *    wire_sparse_dims_error);
 *  - the small helpers all four modules share (string copies, pointer arrays,
 *    the out-of-memory error, and struct nameset, a string set/map).
 * Threading: no global state. A struct rd or struct nameset is used by one
 * thread at a time; a file-descriptor reader only calls pread, so it never
 * moves the file offset. */
#ifndef NNCD_ONNX_WIRE_H
#define NNCD_ONNX_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "onnx.pb-c.h"

#define ONNX_MAX_DIMS 32            /* dims accepted in a TensorProto */
#define WIRE_MAX_DEPTH 64           /* nesting of submessages */
#define SUM_WINDOW (256u << 10)     /* pread window of the summary scanner */

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_SGROUP = 3, WT_EGROUP = 4, WT_I32 = 5 };

/* ------------------------------------------------------------------ */
/* small utilities                                                     */

static inline char *xstrdup(const char *s)
{
	if (!s)
		s = "";
	size_t n = strlen(s) + 1;
	char *p = malloc(n);
	if (p)
		memcpy(p, s, n);
	return p;
}

static inline bool is_default_domain(const char *d)
{
	return !d || !*d || strcmp(d, "ai.onnx") == 0;
}

static inline bool streq(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

static inline enum nn_status oom(struct nn_err *e)
{
	return err_set(e, NN_ENOMEM, "out_of_memory", NULL, "out of memory");
}

/* Grows a malloc'd array of pointers by one slot (protobuf-c frees it). */
static inline bool push_ptr(void ***arr, size_t *n, void *item)
{
	if (*n >= SIZE_MAX / sizeof(void *) - 1)
		return false;
	void **p = realloc(*arr, (*n + 1) * sizeof(void *));
	if (!p)
		return false;
	p[*n] = item;
	*arr = p;
	(*n)++;
	return true;
}

static inline bool grow(void *arrp, size_t *cap, size_t n, size_t elem)
{
	void **arr = arrp;
	if (n < *cap)
		return true;
	size_t ncap = *cap ? *cap * 2 : 16;
	if (ncap > SIZE_MAX / elem)
		return false;
	void *p = realloc(*arr, ncap * elem);
	if (!p)
		return false;
	*arr = p;
	*cap = ncap;
	return true;
}

/* Open-addressing string set/map (FNV-1a). Keys are borrowed, or copied
 * when `owns` is set (for maps that outlive edits of the strings). */
struct nameset {
	const char **keys;
	void **vals;
	size_t cap, n;
	bool owns;
};

/* Keys are borrowed unless ns->owns; wire_nameset_put keeps an existing value. */
void wire_nameset_free(struct nameset *ns);
bool wire_nameset_has(const struct nameset *ns, const char *key);
void *wire_nameset_get(const struct nameset *ns, const char *key);
bool wire_nameset_put(struct nameset *ns, const char *key, void *val);

/* ------------------------------------------------------------------ */
/* wire-format reader over memory or a file descriptor                 */

struct rd {
	int fd;             /* -1: memory mode */
	const uint8_t *mem;
	uint64_t size;
	uint8_t *win;       /* fd mode: cached window of the file */
	uint64_t win_off;
	size_t win_len;
};

struct fld {
	uint32_t num;
	int wt;
	uint64_t start; /* offset of the tag */
	uint64_t v;     /* varint / fixed value */
	uint64_t off;   /* WT_LEN: payload offset */
	uint64_t len;   /* WT_LEN: payload length */
};

/* Makes [off, off+len) (len <= SUM_WINDOW, inside the file) addressable. */
enum nn_status wire_rd_get(struct rd *r, uint64_t off, size_t len, const uint8_t **p,
		      struct nn_err *e);
enum nn_status wire_rd_copy(struct rd *r, uint64_t off, size_t len, void *dst, struct nn_err *e);
enum nn_status wire_rd_varint(struct rd *r, uint64_t *pos, uint64_t end, uint64_t *v,
			 const char *what, struct nn_err *e);
/* Reads one field of message `msg` and moves *pos past it; checks every
 * length against `end` (the enclosing message's end). */
enum nn_status wire_rd_field(struct rd *r, uint64_t *pos, uint64_t end, const char *msg,
			struct fld *f, struct nn_err *e);
/* A known field's wire type against onnx.proto (packed repeated scalars too). */
enum nn_status wire_check_wire_type(const ProtobufCMessageDescriptor *d,
			       const ProtobufCFieldDescriptor *fd, const struct fld *f,
			       struct nn_err *e);
/* Validates [off, end) as message d (depth0: levels the caller already used). */
enum nn_status wire_check(struct rd *r, uint64_t off, uint64_t end,
			  const ProtobufCMessageDescriptor *d, int depth0, struct nn_err *e);
/* A field a hand-written scanner does not interpret: wire type, and the whole
 * submessage if it is one. */
enum nn_status wire_check_other_field(struct rd *r, const ProtobufCMessageDescriptor *d,
				 const struct fld *f, int depth, struct nn_err *e);
enum nn_status wire_expect_wt(const ProtobufCMessageDescriptor *d, const struct fld *f,
			 struct nn_err *e);

/* ------------------------------------------------------------------ */
/* tensor and model checks, shared by onnx_load and the summary        */

enum typed_field { TF_NONE = -1, TF_FLOAT, TF_INT32, TF_STRING, TF_INT64, TF_DOUBLE, TF_UINT64,
		   TF_COUNT };

struct tensor_facts {
	const char *kind;  /* "initializer", "tensor attribute", ... */
	const char *name;
	bool has_dt;
	int32_t dt;
	size_t ndim;
	int64_t dims[ONNX_MAX_DIMS];
	bool external;
	bool segment;
	bool has_raw;
	uint64_t raw_len;
	uint64_t n[TF_COUNT];
};

/* Dims, and that the payload size matches dims x dtype; numel out. */
enum nn_status wire_check_tensor_facts(const struct tensor_facts *t, int64_t *numel_out,
				  struct nn_err *e);
enum nn_status wire_sparse_dims_error(const char *name, struct nn_err *e);
/* The model-level checks, in the order both readers apply them. */
enum nn_status wire_check_model_shape(bool has_graph, size_t n_nodes, size_t n_outputs,
				 bool has_ir, int64_t ir, size_t n_opsets, struct nn_err *e);

#endif
