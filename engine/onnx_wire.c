/* onnx_wire: wire-format reader, schema walk and the checks shared by the
 * onnx_* modules (see onnx_wire.h). No global state. */
#include "onnx_wire.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "tensor.h"

static const char *const wt_names[8] = {
	"varint", "64-bit", "length-delimited", "group start", "group end", "32-bit",
	"invalid (6)", "invalid (7)",
};

/* ------------------------------------------------------------------ */
/* string set/map (struct nameset)                                     */

static uint64_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

void wire_nameset_free(struct nameset *ns)
{
	for (size_t i = 0; ns->owns && i < ns->cap; i++)
		free((char *)ns->keys[i]);
	free(ns->keys);
	free(ns->vals);
	memset(ns, 0, sizeof *ns);
}

static void **nameset_slot(const struct nameset *ns, const char *key)
{
	if (!ns->cap)
		return NULL;
	size_t i = (size_t)name_hash(key) & (ns->cap - 1);
	while (ns->keys[i]) {
		if (strcmp(ns->keys[i], key) == 0)
			return &ns->vals[i];
		i = (i + 1) & (ns->cap - 1);
	}
	return NULL;
}

bool wire_nameset_has(const struct nameset *ns, const char *key)
{
	return key && nameset_slot(ns, key) != NULL;
}

void *wire_nameset_get(const struct nameset *ns, const char *key)
{
	void **v = key ? nameset_slot(ns, key) : NULL;
	return v ? *v : NULL;
}

/* Inserts key (borrowed) unless present; an existing value is kept, which
 * gives "first consumer wins" semantics for free. */
bool wire_nameset_put(struct nameset *ns, const char *key, void *val)
{
	if (!key)
		return true;
	if ((ns->n + 1) * 2 > ns->cap) {
		size_t ncap = ns->cap ? ns->cap * 2 : 64;
		const char **nk = calloc(ncap, sizeof *nk);
		void **nv = calloc(ncap, sizeof *nv);
		if (!nk || !nv) {
			free(nk);
			free(nv);
			return false;
		}
		for (size_t i = 0; i < ns->cap; i++) {
			if (!ns->keys[i])
				continue;
			size_t j = (size_t)name_hash(ns->keys[i]) & (ncap - 1);
			while (nk[j])
				j = (j + 1) & (ncap - 1);
			nk[j] = ns->keys[i];
			nv[j] = ns->vals[i];
		}
		free(ns->keys);
		free(ns->vals);
		ns->keys = nk;
		ns->vals = nv;
		ns->cap = ncap;
	}
	size_t i = (size_t)name_hash(key) & (ns->cap - 1);
	while (ns->keys[i]) {
		if (strcmp(ns->keys[i], key) == 0)
			return true;
		i = (i + 1) & (ns->cap - 1);
	}
	if (ns->owns && !(key = xstrdup(key)))
		return false;
	ns->keys[i] = key;
	ns->vals[i] = val;
	ns->n++;
	return true;
}

/* ------------------------------------------------------------------ */
/* wire-format reader over memory or a file descriptor                 */

static enum nn_status rd_io_error(struct nn_err *e, uint64_t off, int err)
{
	return err_set(e, NN_EIO, "io_error", NULL, "reading the model at byte %llu failed: %s",
		       (unsigned long long)off, err ? strerror(err) : "file shrank while reading");
}

/* Reads exactly len bytes at off into dst (pread loop). */
static enum nn_status rd_pread(const struct rd *r, uint64_t off, size_t len, void *dst,
			       struct nn_err *e)
{
	uint8_t *p = dst;
	while (len) {
		ssize_t k = pread(r->fd, p, len, (off_t)off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return rd_io_error(e, off, k < 0 ? errno : 0);
		p += k;
		off += (uint64_t)k;
		len -= (size_t)k;
	}
	return NN_OK;
}

/* Makes [off, off+len) (len <= SUM_WINDOW, inside the file) addressable. */
enum nn_status wire_rd_get(struct rd *r, uint64_t off, size_t len, const uint8_t **p,
		      struct nn_err *e)
{
	if (r->fd < 0) {
		*p = r->mem + off;
		return NN_OK;
	}
	if (off >= r->win_off && off + len <= r->win_off + r->win_len) {
		*p = r->win + (off - r->win_off);
		return NN_OK;
	}
	uint64_t avail = r->size - off;
	size_t want = avail < SUM_WINDOW ? (size_t)avail : SUM_WINDOW;
	enum nn_status st = rd_pread(r, off, want, r->win, e);
	if (st != NN_OK) {
		r->win_len = 0;
		return st;
	}
	r->win_off = off;
	r->win_len = want;
	*p = r->win;
	return NN_OK;
}

enum nn_status wire_rd_copy(struct rd *r, uint64_t off, size_t len, void *dst, struct nn_err *e)
{
	if (r->fd < 0) {
		memcpy(dst, r->mem + off, len);
		return NN_OK;
	}
	return rd_pread(r, off, len, dst, e);
}

static enum nn_status truncated(const struct rd *r, uint64_t at, uint64_t end, const char *what,
				struct nn_err *e)
{
	if (end >= r->size)
		return err_set(e, NN_EINVAL, "invalid_model", NULL,
			       "not a valid ONNX protobuf: truncated at byte %llu (%s runs past the "
			       "end of the %llu-byte input)",
			       (unsigned long long)at, what, (unsigned long long)r->size);
	return err_set(e, NN_EINVAL, "invalid_model", NULL,
		       "not a valid ONNX protobuf: %s at byte %llu runs past the end of its "
		       "enclosing message (byte %llu)",
		       what, (unsigned long long)at, (unsigned long long)end);
}

enum nn_status wire_rd_varint(struct rd *r, uint64_t *pos, uint64_t end, uint64_t *v,
			 const char *what, struct nn_err *e)
{
	uint64_t at = *pos;
	if (at >= end)
		return truncated(r, at, end, what, e);
	size_t avail = end - at < 10 ? (size_t)(end - at) : 10;
	const uint8_t *p;
	enum nn_status st = wire_rd_get(r, at, avail, &p, e);
	if (st != NN_OK)
		return st;
	uint64_t x = 0;
	for (size_t i = 0; i < avail; i++) {
		x |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80)) {
			*v = x;
			*pos = at + i + 1;
			return NN_OK;
		}
	}
	if (avail < 10)
		return truncated(r, at, end, what, e);
	return err_set(e, NN_EINVAL, "invalid_model", NULL,
		       "not a valid ONNX protobuf: malformed varint (%s) at byte %llu", what,
		       (unsigned long long)at);
}

/* Reads one field of message `msg` and moves *pos past it; checks every
 * length against `end` (the enclosing message's end). */
enum nn_status wire_rd_field(struct rd *r, uint64_t *pos, uint64_t end, const char *msg,
			struct fld *f, struct nn_err *e)
{
	char what[96];
	memset(f, 0, sizeof *f);
	f->start = *pos;
	uint64_t tag;
	snprintf(what, sizeof what, "a field tag of %s", msg);
	enum nn_status st = wire_rd_varint(r, pos, end, &tag, what, e);
	if (st != NN_OK)
		return st;
	f->wt = (int)(tag & 7);
	uint64_t num = tag >> 3;
	if (num == 0 || num > 536870911u)
		return err_set(e, NN_EINVAL, "invalid_model", NULL,
			       "not a valid ONNX protobuf: invalid field number %llu in %s at byte %llu",
			       (unsigned long long)num, msg, (unsigned long long)f->start);
	f->num = (uint32_t)num;
	snprintf(what, sizeof what, "field %u of %s", f->num, msg);
	switch (f->wt) {
	case WT_VARINT:
		return wire_rd_varint(r, pos, end, &f->v, what, e);
	case WT_I64:
	case WT_I32: {
		size_t w = f->wt == WT_I64 ? 8 : 4;
		if (end - *pos < w)
			return truncated(r, f->start, end, what, e);
		const uint8_t *p;
		st = wire_rd_get(r, *pos, w, &p, e);
		if (st != NN_OK)
			return st;
		for (size_t i = 0; i < w; i++)
			f->v |= (uint64_t)p[i] << (8 * i);
		*pos += w;
		return NN_OK;
	}
	case WT_LEN:
		st = wire_rd_varint(r, pos, end, &f->len, what, e);
		if (st != NN_OK)
			return st;
		if (f->len > end - *pos)
			return truncated(r, f->start, end, what, e);
		f->off = *pos;
		*pos += f->len;
		return NN_OK;
	case WT_SGROUP:
	case WT_EGROUP:
		return err_set(e, NN_EINVAL, "invalid_model", NULL,
			       "not a valid ONNX protobuf: %s at byte %llu uses the group wire "
			       "type, which ONNX never uses", what, (unsigned long long)f->start);
	default:
		return err_set(e, NN_EINVAL, "invalid_model", NULL,
			       "not a valid ONNX protobuf: %s at byte %llu has invalid wire type %d",
			       what, (unsigned long long)f->start, f->wt);
	}
}

static int field_wire_type(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_FLOAT: return WT_I32;
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE: return WT_I64;
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_BYTES:
	case PROTOBUF_C_TYPE_MESSAGE: return WT_LEN;
	default: return WT_VARINT;
	}
}

/* Checks a known field's wire type against onnx.proto (repeated scalars may
 * also come packed, as protobuf parsers accept both encodings). */
enum nn_status wire_check_wire_type(const ProtobufCMessageDescriptor *d,
			       const ProtobufCFieldDescriptor *fd, const struct fld *f,
			       struct nn_err *e)
{
	int want = field_wire_type(fd->type);
	if (f->wt == want)
		return NN_OK;
	if (fd->label == PROTOBUF_C_LABEL_REPEATED && f->wt == WT_LEN && want != WT_LEN) {
		size_t w = want == WT_I32 ? 4 : want == WT_I64 ? 8 : 0;
		if (w && f->len % w)
			return err_set(e, NN_EINVAL, "invalid_model", NULL,
				       "not a valid ONNX protobuf: packed %s.%s at byte %llu is %llu "
				       "bytes, not a multiple of %zu",
				       d->short_name, fd->name, (unsigned long long)f->start,
				       (unsigned long long)f->len, w);
		return NN_OK;
	}
	return err_set(e, NN_EINVAL, "invalid_model", NULL,
		       "not a valid ONNX protobuf: %s.%s at byte %llu has wire type %s, expected %s",
		       d->short_name, fd->name, (unsigned long long)f->start, wt_names[f->wt],
		       wt_names[want]);
}

/* Validates [off, end) as message d: tags, wire types of known fields,
 * lengths and nesting depth (depth0 = levels already used by the caller).
 * Iterative, so hostile nesting cannot exhaust the stack. Payloads of
 * strings/bytes/packed arrays are skipped by length. */
enum nn_status wire_check(struct rd *r, uint64_t off, uint64_t end,
			  const ProtobufCMessageDescriptor *d, int depth0, struct nn_err *e)
{
	struct frame {
		const ProtobufCMessageDescriptor *d;
		uint64_t pos, end;
	} stack[WIRE_MAX_DEPTH];
	if (depth0 >= WIRE_MAX_DEPTH)
		goto too_deep;
	int top = 0;
	stack[0] = (struct frame){ d, off, end };
	while (top >= 0) {
		struct frame *fr = &stack[top];
		if (fr->pos >= fr->end) {
			top--;
			continue;
		}
		struct fld f;
		enum nn_status st = wire_rd_field(r, &fr->pos, fr->end, fr->d->short_name, &f, e);
		if (st != NN_OK)
			return st;
		const ProtobufCFieldDescriptor *fd =
			protobuf_c_message_descriptor_get_field(fr->d, f.num);
		if (!fd)
			continue; /* unknown field: kept verbatim by protobuf-c */
		st = wire_check_wire_type(fr->d, fd, &f, e);
		if (st != NN_OK)
			return st;
		if (fd->type == PROTOBUF_C_TYPE_MESSAGE) {
			if (depth0 + top + 1 >= WIRE_MAX_DEPTH) {
				off = f.start;
				goto too_deep;
			}
			stack[++top] = (struct frame){ fd->descriptor, f.off, f.off + f.len };
		}
	}
	return NN_OK;
too_deep:
	return err_set(e, NN_EINVAL, "invalid_model", NULL,
		       "not a valid ONNX protobuf: messages nested more than %d levels deep at "
		       "byte %llu", WIRE_MAX_DEPTH, (unsigned long long)off);
}

/* Validates one field found by a hand-written scanner but not interpreted by
 * it: wire type, and the whole submessage if it is one. */
enum nn_status wire_check_other_field(struct rd *r, const ProtobufCMessageDescriptor *d,
				 const struct fld *f, int depth, struct nn_err *e)
{
	const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(d, f->num);
	if (!fd)
		return NN_OK;
	enum nn_status st = wire_check_wire_type(d, fd, f, e);
	if (st != NN_OK)
		return st;
	if (fd->type == PROTOBUF_C_TYPE_MESSAGE)
		return wire_check(r, f->off, f->off + f->len, fd->descriptor, depth + 1, e);
	return NN_OK;
}

enum nn_status wire_expect_wt(const ProtobufCMessageDescriptor *d, const struct fld *f,
			 struct nn_err *e)
{
	const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(d, f->num);
	return fd ? wire_check_wire_type(d, fd, f, e) : NN_OK;
}

/* ------------------------------------------------------------------ */
/* tensor payload checks, shared by onnx_load and the summary          */

static const char *const typed_names[TF_COUNT] = {
	"float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data",
};

/* Which typed field holds a dtype's values, how many per element (x2 for
 * complex, or packed 4-bit: half), and the byte size used in raw_data
 * (0 for strings; -1 for packed 4-bit). Returns false for unknown dtypes. */
static bool dtype_layout(int32_t dt, enum typed_field *tf, int *per, int *bytes)
{
	*per = 1;
	switch (dt) {
	case 1: *tf = TF_FLOAT; *bytes = 4; return true;
	case 14: *tf = TF_FLOAT; *per = 2; *bytes = 8; return true;
	case 2: case 3: case 9: case 17: case 18: case 19: case 20:
		*tf = TF_INT32; *bytes = 1; return true;
	case 4: case 5: case 10: case 16: *tf = TF_INT32; *bytes = 2; return true;
	case 6: *tf = TF_INT32; *bytes = 4; return true;
	case 21: case 22: case 23: *tf = TF_INT32; *per = 0; *bytes = -1; return true;
	case 8: *tf = TF_STRING; *bytes = 0; return true;
	case 7: *tf = TF_INT64; *bytes = 8; return true;
	case 11: *tf = TF_DOUBLE; *bytes = 8; return true;
	case 15: *tf = TF_DOUBLE; *per = 2; *bytes = 16; return true;
	case 12: *tf = TF_UINT64; *bytes = 4; return true;
	case 13: *tf = TF_UINT64; *bytes = 8; return true;
	default: return false;
	}
}

static void dims_str(const int64_t *dims, size_t n, char *buf, size_t cap)
{
	size_t k = (size_t)snprintf(buf, cap, "[");
	for (size_t i = 0; i < n && k < cap; i++)
		k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? "," : "", (long long)dims[i]);
	if (k < cap)
		snprintf(buf + k, cap - k, "]");
}

static enum nn_status bad_tensor(const struct tensor_facts *t, struct nn_err *e, const char *fmt,
				 ...) __attribute__((format(printf, 3, 4)));
static enum nn_status bad_tensor(const struct tensor_facts *t, struct nn_err *e, const char *fmt,
				 ...)
{
	char msg[256], dims[160];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	dims_str(t->dims, t->ndim, dims, sizeof dims);
	return err_set(e, NN_EINVAL, "invalid_model", NULL, "%s '%s' (dims %s, %s): %s", t->kind,
		       t->name ? t->name : "", dims, dtype_name((enum dtype)t->dt), msg);
}

/* Checks dims and that the payload size matches dims x dtype; numel out. */
enum nn_status wire_check_tensor_facts(const struct tensor_facts *t, int64_t *numel_out,
				  struct nn_err *e)
{
	const char *nm = t->name ? t->name : "";
	*numel_out = 0;
	if (t->external)
		return err_set(e, NN_EUNSUPPORTED, "unsupported_external_data", NULL,
			       "%s '%s' uses external data, which nncd does not support yet; "
			       "re-export the model with the weights embedded", t->kind, nm);
	if (t->ndim > ONNX_MAX_DIMS)
		return err_set(e, NN_EINVAL, "invalid_model", NULL,
			       "%s '%s' has %zu dims; at most %d are accepted", t->kind, nm,
			       t->ndim, ONNX_MAX_DIMS);
	int64_t numel = 1;
	for (size_t i = 0; i < t->ndim; i++) {
		if (t->dims[i] < 0)
			return bad_tensor(t, e, "dimension %zu is negative", i);
		if (__builtin_mul_overflow(numel, t->dims[i], &numel))
			return bad_tensor(t, e, "element count overflows");
	}
	*numel_out = numel;
	if (t->segment)
		return NN_OK; /* a segment carries part of the data: nothing to compare */
	if (!t->has_dt || t->dt == 0)
		return bad_tensor(t, e, "data_type is missing");
	enum typed_field tf;
	int per, bytes;
	if (!dtype_layout(t->dt, &tf, &per, &bytes))
		return NN_OK; /* a data type newer than nncd: passed through unchecked */
	uint64_t n_other = 0;
	int other = -1;
	for (int i = 0; i < TF_COUNT; i++) {
		if (i != (int)tf && t->n[i]) {
			n_other += t->n[i];
			other = i;
		}
	}
	if (t->has_raw && (n_other || t->n[tf]))
		return bad_tensor(t, e, "has both raw_data and %s",
				  typed_names[other >= 0 ? other : (int)tf]);
	if (other >= 0)
		return bad_tensor(t, e, "its values are in %s, which does not hold this data_type",
				  typed_names[other]);
	uint64_t un = (uint64_t)numel;
	if (t->has_raw) {
		if (bytes == 0)
			return bad_tensor(t, e, "string tensors cannot use raw_data");
		uint64_t want;
		if (bytes < 0)
			want = un / 2 + un % 2;
		else if (__builtin_mul_overflow(un, (uint64_t)bytes, &want))
			return bad_tensor(t, e, "byte size overflows");
		if (t->raw_len != want)
			return bad_tensor(t, e, "raw_data has %llu bytes, the dims need %llu",
					  (unsigned long long)t->raw_len, (unsigned long long)want);
		return NN_OK;
	}
	uint64_t want;
	if (per == 0) {
		/* 4-bit values: packed two per int32_data entry; also accept one each. */
		if (t->n[tf] == un / 2 + un % 2 || t->n[tf] == un)
			return NN_OK;
		want = un / 2 + un % 2;
	} else if (__builtin_mul_overflow(un, (uint64_t)per, &want)) {
		return bad_tensor(t, e, "element count overflows");
	}
	if (t->n[tf] != want) {
		if (t->n[tf] == 0)
			return bad_tensor(t, e, "has no data for its %llu elements",
					  (unsigned long long)un);
		return bad_tensor(t, e, "%s has %llu values, the dims need %llu", typed_names[tf],
				  (unsigned long long)t->n[tf], (unsigned long long)want);
	}
	return NN_OK;
}

/* ------------------------------------------------------------------ */
/* model checks, shared by onnx_load and the summary                   */

enum nn_status wire_sparse_dims_error(const char *name, struct nn_err *e)
{
	return err_set(e, NN_EINVAL, "invalid_model", NULL,
		       "sparse initializer '%s' has negative or overflowing dims", name ? name : "");
}

/* The model-level checks, in the order onnx_summarize_fd applies them too. */
enum nn_status wire_check_model_shape(bool has_graph, size_t n_nodes, size_t n_outputs,
				 bool has_ir, int64_t ir, size_t n_opsets, struct nn_err *e)
{
	if (!has_graph)
		return err_set(e, NN_EINVAL, "invalid_model", NULL, "not an ONNX model: no graph");
	if (n_nodes == 0 && n_outputs == 0)
		return err_set(e, NN_EINVAL, "invalid_model", NULL,
			       "not an ONNX model: the graph has no nodes and no outputs");
	if (!has_ir || ir <= 0)
		return err_set(e, NN_EINVAL, "invalid_model", NULL,
			       "not an ONNX model: ir_version is %s", has_ir ? "not positive" :
			       "missing");
	if (n_opsets == 0)
		return err_set(e, NN_EINVAL, "invalid_model", NULL,
			       "not an ONNX model: no opset_import");
	return NN_OK;
}
