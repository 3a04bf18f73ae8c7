/* onnx_io: ONNX models from and to protobuf bytes (see onnx_io.h).
 *
 * Owns: the Onnx__ModelProto of each struct onnx_model (decoded by protobuf-c
 * with its default malloc allocator, so everything attached by the helpers
 * below is malloc'd and released by onnx__model_proto__free_unpacked).
 *
 * Three readers of the protobuf wire format live here:
 *  - wire_check: a schema-aware, non-recursive validator driven by protobuf-c's
 *    descriptors. It runs before protobuf-c unpacks anything, so malformed or
 *    hostile bytes get a precise message ("truncated at byte N") and nesting is
 *    capped before protobuf-c's recursive decoder sees it.
 *  - onnx_load: wire_check + protobuf-c unpack + semantic checks.
 *  - onnx_summarize_fd: a streaming scan with pread through a small window,
 *    decoding only the small parts and skipping weight payloads by length.
 * Not thread-safe per model; no global state. */
#include "onnx_io.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ONNX_MAX_DIMS 32            /* dims accepted in a TensorProto */
#define WIRE_MAX_DEPTH 64           /* nesting of submessages */
#define SUM_MAX_SUBMSG (64u << 20)  /* a submessage decoded whole by the summary */
#define SUM_WINDOW (256u << 10)     /* pread window of the summary scanner */
#define SAVE_CHUNK (1u << 20)       /* write coalescing of onnx_save */
#define ONNX_MAX_OPSET 21           /* highest opset onnx_raise_opset targets */

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_SGROUP = 3, WT_EGROUP = 4, WT_I32 = 5 };

static const char *const wt_names[8] = {
	"varint", "64-bit", "length-delimited", "group start", "group end", "32-bit",
	"invalid (6)", "invalid (7)",
};

/* ------------------------------------------------------------------ */
/* small utilities                                                     */

static char *xstrdup(const char *s)
{
	if (!s)
		s = "";
	size_t n = strlen(s) + 1;
	char *p = malloc(n);
	if (p)
		memcpy(p, s, n);
	return p;
}

static bool is_default_domain(const char *d)
{
	return !d || !*d || strcmp(d, "ai.onnx") == 0;
}

static bool streq(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

static enum nn_status oom(struct nn_err *e)
{
	return err_set(e, NN_ENOMEM, "out_of_memory", NULL, "out of memory");
}

/* Grows a malloc'd array of pointers by one slot (protobuf-c frees it). */
static bool push_ptr(void ***arr, size_t *n, void *item)
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

/* Open-addressing string set/map (FNV-1a). Keys are borrowed, or copied
 * when `owns` is set (for maps that outlive edits of the strings). */
struct nameset {
	const char **keys;
	void **vals;
	size_t cap, n;
	bool owns;
};

static uint64_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static void nameset_free(struct nameset *ns)
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

static bool nameset_has(const struct nameset *ns, const char *key)
{
	return key && nameset_slot(ns, key) != NULL;
}

static void *nameset_get(const struct nameset *ns, const char *key)
{
	void **v = key ? nameset_slot(ns, key) : NULL;
	return v ? *v : NULL;
}

/* Inserts key (borrowed) unless present; an existing value is kept, which
 * gives "first consumer wins" semantics for free. */
static bool nameset_put(struct nameset *ns, const char *key, void *val)
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

struct rd {
	int fd;             /* -1: memory mode */
	const uint8_t *mem;
	uint64_t size;
	uint8_t *win;       /* fd mode: cached window of the file */
	uint64_t win_off;
	size_t win_len;
};

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
static enum nn_status rd_get(struct rd *r, uint64_t off, size_t len, const uint8_t **p,
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

static enum nn_status rd_copy(struct rd *r, uint64_t off, size_t len, void *dst, struct nn_err *e)
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

static enum nn_status rd_varint(struct rd *r, uint64_t *pos, uint64_t end, uint64_t *v,
				const char *what, struct nn_err *e)
{
	uint64_t at = *pos;
	if (at >= end)
		return truncated(r, at, end, what, e);
	size_t avail = end - at < 10 ? (size_t)(end - at) : 10;
	const uint8_t *p;
	enum nn_status st = rd_get(r, at, avail, &p, e);
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

struct fld {
	uint32_t num;
	int wt;
	uint64_t start; /* offset of the tag */
	uint64_t v;     /* varint / fixed value */
	uint64_t off;   /* WT_LEN: payload offset */
	uint64_t len;   /* WT_LEN: payload length */
};

/* Reads one field of message `msg` and moves *pos past it; checks every
 * length against `end` (the enclosing message's end). */
static enum nn_status rd_field(struct rd *r, uint64_t *pos, uint64_t end, const char *msg,
			       struct fld *f, struct nn_err *e)
{
	char what[96];
	memset(f, 0, sizeof *f);
	f->start = *pos;
	uint64_t tag;
	snprintf(what, sizeof what, "a field tag of %s", msg);
	enum nn_status st = rd_varint(r, pos, end, &tag, what, e);
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
		return rd_varint(r, pos, end, &f->v, what, e);
	case WT_I64:
	case WT_I32: {
		size_t w = f->wt == WT_I64 ? 8 : 4;
		if (end - *pos < w)
			return truncated(r, f->start, end, what, e);
		const uint8_t *p;
		st = rd_get(r, *pos, w, &p, e);
		if (st != NN_OK)
			return st;
		for (size_t i = 0; i < w; i++)
			f->v |= (uint64_t)p[i] << (8 * i);
		*pos += w;
		return NN_OK;
	}
	case WT_LEN:
		st = rd_varint(r, pos, end, &f->len, what, e);
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
static enum nn_status check_wire_type(const ProtobufCMessageDescriptor *d,
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
static enum nn_status wire_check(struct rd *r, uint64_t off, uint64_t end,
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
		enum nn_status st = rd_field(r, &fr->pos, fr->end, fr->d->short_name, &f, e);
		if (st != NN_OK)
			return st;
		const ProtobufCFieldDescriptor *fd =
			protobuf_c_message_descriptor_get_field(fr->d, f.num);
		if (!fd)
			continue; /* unknown field: kept verbatim by protobuf-c */
		st = check_wire_type(fr->d, fd, &f, e);
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
static enum nn_status check_other_field(struct rd *r, const ProtobufCMessageDescriptor *d,
					const struct fld *f, int depth, struct nn_err *e)
{
	const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(d, f->num);
	if (!fd)
		return NN_OK;
	enum nn_status st = check_wire_type(d, fd, f, e);
	if (st != NN_OK)
		return st;
	if (fd->type == PROTOBUF_C_TYPE_MESSAGE)
		return wire_check(r, f->off, f->off + f->len, fd->descriptor, depth + 1, e);
	return NN_OK;
}

static enum nn_status expect_wt(const ProtobufCMessageDescriptor *d, const struct fld *f,
				struct nn_err *e)
{
	const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(d, f->num);
	return fd ? check_wire_type(d, fd, f, e) : NN_OK;
}

/* ------------------------------------------------------------------ */
/* tensor payload checks, shared by onnx_load and the summary scanner   */

enum typed_field { TF_NONE = -1, TF_FLOAT, TF_INT32, TF_STRING, TF_INT64, TF_DOUBLE, TF_UINT64,
		   TF_COUNT };
static const char *const typed_names[TF_COUNT] = {
	"float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data",
};

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
static enum nn_status check_tensor_facts(const struct tensor_facts *t, int64_t *numel_out,
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

static void facts_from_proto(const Onnx__TensorProto *tp, const char *kind,
			     struct tensor_facts *t)
{
	memset(t, 0, sizeof *t);
	t->kind = kind;
	t->name = tp->name;
	t->has_dt = tp->has_data_type;
	t->dt = tp->data_type;
	t->ndim = tp->n_dims;
	for (size_t i = 0; i < tp->n_dims && i < ONNX_MAX_DIMS; i++)
		t->dims[i] = tp->dims[i];
	t->external = tp->has_data_location &&
		      tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
	t->segment = tp->segment != NULL;
	t->has_raw = tp->has_raw_data;
	t->raw_len = tp->raw_data.len;
	t->n[TF_FLOAT] = tp->n_float_data;
	t->n[TF_INT32] = tp->n_int32_data;
	t->n[TF_STRING] = tp->n_string_data;
	t->n[TF_INT64] = tp->n_int64_data;
	t->n[TF_DOUBLE] = tp->n_double_data;
	t->n[TF_UINT64] = tp->n_uint64_data;
}

static enum nn_status check_tensor_proto(const Onnx__TensorProto *tp, const char *kind,
					 int64_t *numel, struct nn_err *e)
{
	struct tensor_facts t;
	facts_from_proto(tp, kind, &t);
	return check_tensor_facts(&t, numel, e);
}

/* ------------------------------------------------------------------ */
/* load                                                                */

static enum nn_status check_graph_tensors(const Onnx__GraphProto *g, struct nn_err *e);

static enum nn_status check_attr_tensors(const Onnx__AttributeProto *a, struct nn_err *e)
{
	int64_t numel;
	enum nn_status st;
	if (a->t && (st = check_tensor_proto(a->t, "tensor attribute", &numel, e)) != NN_OK)
		return st;
	for (size_t i = 0; i < a->n_tensors; i++)
		if ((st = check_tensor_proto(a->tensors[i], "tensor attribute", &numel, e)) != NN_OK)
			return st;
	if (a->sparse_tensor) {
		if (a->sparse_tensor->values &&
		    (st = check_tensor_proto(a->sparse_tensor->values, "sparse tensor attribute",
					     &numel, e)) != NN_OK)
			return st;
		if (a->sparse_tensor->indices &&
		    (st = check_tensor_proto(a->sparse_tensor->indices, "sparse tensor attribute",
					     &numel, e)) != NN_OK)
			return st;
	}
	for (size_t i = 0; i < a->n_sparse_tensors; i++) {
		const Onnx__SparseTensorProto *sp = a->sparse_tensors[i];
		if (sp->values && (st = check_tensor_proto(sp->values, "sparse tensor attribute",
							   &numel, e)) != NN_OK)
			return st;
		if (sp->indices && (st = check_tensor_proto(sp->indices, "sparse tensor attribute",
							    &numel, e)) != NN_OK)
			return st;
	}
	if (a->g && (st = check_graph_tensors(a->g, e)) != NN_OK)
		return st;
	for (size_t i = 0; i < a->n_graphs; i++)
		if ((st = check_graph_tensors(a->graphs[i], e)) != NN_OK)
			return st;
	return NN_OK;
}

static enum nn_status check_nodes_tensors(Onnx__NodeProto *const *nodes, size_t n,
					  struct nn_err *e)
{
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < nodes[i]->n_attribute; j++) {
			enum nn_status st = check_attr_tensors(nodes[i]->attribute[j], e);
			if (st != NN_OK)
				return st;
		}
	return NN_OK;
}

static enum nn_status sparse_dims_error(const char *name, struct nn_err *e)
{
	return err_set(e, NN_EINVAL, "invalid_model", NULL,
		       "sparse initializer '%s' has negative or overflowing dims", name ? name : "");
}

static enum nn_status check_sparse_dims(const Onnx__SparseTensorProto *sp, struct nn_err *e)
{
	int64_t numel = 1;
	for (size_t i = 0; i < sp->n_dims; i++)
		if (sp->dims[i] < 0 || __builtin_mul_overflow(numel, sp->dims[i], &numel))
			return sparse_dims_error(sp->values ? sp->values->name : NULL, e);
	return NN_OK;
}

/* Every tensor reachable from g (recursion depth is bounded by wire_check's
 * nesting cap, which ran before protobuf-c built this tree). */
static enum nn_status check_graph_tensors(const Onnx__GraphProto *g, struct nn_err *e)
{
	int64_t numel;
	enum nn_status st;
	for (size_t i = 0; i < g->n_initializer; i++)
		if ((st = check_tensor_proto(g->initializer[i], "initializer", &numel, e)) != NN_OK)
			return st;
	for (size_t i = 0; i < g->n_sparse_initializer; i++) {
		const Onnx__SparseTensorProto *sp = g->sparse_initializer[i];
		if (sp->values && (st = check_tensor_proto(sp->values, "sparse initializer", &numel,
							   e)) != NN_OK)
			return st;
		if (sp->indices && (st = check_tensor_proto(sp->indices, "sparse initializer",
							    &numel, e)) != NN_OK)
			return st;
		if ((st = check_sparse_dims(sp, e)) != NN_OK)
			return st;
	}
	return check_nodes_tensors(g->node, g->n_node, e);
}

/* The model-level checks, in the order onnx_summarize_fd applies them too. */
static enum nn_status check_model_shape(bool has_graph, size_t n_nodes, size_t n_outputs,
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

static enum nn_status check_model(const Onnx__ModelProto *p, struct nn_err *e)
{
	const Onnx__GraphProto *g = p->graph;
	enum nn_status st = check_model_shape(g != NULL, g ? g->n_node : 0, g ? g->n_output : 0,
					      p->has_ir_version, p->ir_version, p->n_opset_import,
					      e);
	if (st != NN_OK)
		return st;
	if ((st = check_graph_tensors(g, e)) != NN_OK)
		return st;
	for (size_t i = 0; i < p->n_functions; i++)
		if ((st = check_nodes_tensors(p->functions[i]->node, p->functions[i]->n_node, e)) !=
		    NN_OK)
			return st;
	for (size_t i = 0; i < p->n_training_info; i++) {
		const Onnx__TrainingInfoProto *ti = p->training_info[i];
		if (ti->initialization && (st = check_graph_tensors(ti->initialization, e)) != NN_OK)
			return st;
		if (ti->algorithm && (st = check_graph_tensors(ti->algorithm, e)) != NN_OK)
			return st;
	}
	return NN_OK;
}

enum nn_status onnx_load(const void *bytes, size_t len, struct onnx_model **out, struct nn_err *e)
{
	*out = NULL;
	if (len == 0)
		return err_set(e, NN_EINVAL, "invalid_model", NULL,
			       "empty input: an ONNX model cannot be 0 bytes");
	if (len > ONNX_MAX_MODEL_BYTES)
		return err_set(e, NN_ETOOBIG, "model_too_large", NULL,
			       "model is %zu bytes; at most %zu are accepted", len,
			       (size_t)ONNX_MAX_MODEL_BYTES);
	struct rd r = { .fd = -1, .mem = bytes, .size = len };
	enum nn_status st = wire_check(&r, 0, len, &onnx__model_proto__descriptor, 0, e);
	if (st != NN_OK)
		return st;
	Onnx__ModelProto *p = onnx__model_proto__unpack(NULL, len, bytes);
	if (!p)
		/* wire_check accepted the structure, so this is protobuf-c running
		 * out of memory or rejecting a detail it checks on its own. */
		return err_set(e, NN_EINVAL, "invalid_model", NULL,
			       "not a valid ONNX protobuf: protobuf-c could not decode the %zu bytes "
			       "(or ran out of memory)", len);
	st = check_model(p, e);
	if (st != NN_OK) {
		onnx__model_proto__free_unpacked(p, NULL);
		return st;
	}
	struct onnx_model *m = malloc(sizeof *m);
	if (!m) {
		onnx__model_proto__free_unpacked(p, NULL);
		return oom(e);
	}
	m->proto = p;
	*out = m;
	return NN_OK;
}

enum nn_status onnx_load_file(const char *path, struct onnx_model **out, struct nn_err *e)
{
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(e, errno == ENOENT ? NN_ENOTFOUND : NN_EIO,
			       errno == ENOENT ? "not_found" : "io_error", NULL,
			       "cannot open model file '%s': %s", path, strerror(errno));
	enum nn_status st;
	struct stat sb;
	if (fstat(fd, &sb) != 0) {
		st = err_set(e, NN_EIO, "io_error", NULL, "cannot stat '%s': %s", path,
			     strerror(errno));
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		st = err_set(e, NN_EINVAL, "invalid_model", NULL, "'%s' is not a regular file",
			     path);
		goto out;
	}
	if (sb.st_size == 0) {
		st = onnx_load("", 0, out, e);
		goto out;
	}
	if ((uint64_t)sb.st_size > ONNX_MAX_MODEL_BYTES) {
		st = err_set(e, NN_ETOOBIG, "model_too_large", NULL,
			     "model file is %lld bytes; at most %zu are accepted",
			     (long long)sb.st_size, (size_t)ONNX_MAX_MODEL_BYTES);
		goto out;
	}
	size_t len = (size_t)sb.st_size;
	/* Mapped, not read: the decoded proto holds its own copy of every
	 * payload, so the mapping is only needed during unpacking. */
	void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		st = err_set(e, NN_EIO, "io_error", NULL, "cannot map '%s': %s", path,
			     strerror(errno));
		goto out;
	}
	madvise(map, len, MADV_SEQUENTIAL);
	st = onnx_load(map, len, out, e);
	munmap(map, len);
out:
	close(fd);
	return st;
}

void onnx_free(struct onnx_model *m)
{
	if (!m)
		return;
	if (m->proto)
		onnx__model_proto__free_unpacked(m->proto, NULL);
	free(m);
}

/* ------------------------------------------------------------------ */
/* save                                                                */

size_t onnx_packed_size(const struct onnx_model *m)
{
	return onnx__model_proto__get_packed_size(m->proto);
}

/* A ProtobufCBuffer whose append hands bytes to write_fn, coalescing the
 * many small appends (tags, varints) into ~1 MiB writes and passing big
 * payloads straight through, so the model is never serialized whole. */
struct save_sink {
	ProtobufCBuffer base; /* first: protobuf-c passes &base back to us */
	onnx_write_fn fn;
	void *ud;
	struct nn_err *e;
	enum nn_status st;
	uint8_t *buf;
	size_t used;
};

static void sink_flush(struct save_sink *s)
{
	if (s->st == NN_OK && s->used)
		s->st = s->fn(s->ud, s->buf, s->used, s->e);
	s->used = 0;
}

static void sink_append(ProtobufCBuffer *b, size_t len, const uint8_t *data)
{
	struct save_sink *s = (struct save_sink *)b;
	if (s->st != NN_OK || len == 0)
		return;
	if (len >= SAVE_CHUNK) {
		sink_flush(s);
		if (s->st == NN_OK)
			s->st = s->fn(s->ud, data, len, s->e);
		return;
	}
	if (s->used + len > SAVE_CHUNK)
		sink_flush(s);
	if (s->st != NN_OK)
		return;
	memcpy(s->buf + s->used, data, len);
	s->used += len;
}

enum nn_status onnx_save(const struct onnx_model *m, onnx_write_fn write_fn, void *ud,
			 struct nn_err *e)
{
	struct save_sink s = { .base = { .append = sink_append }, .fn = write_fn, .ud = ud, .e = e,
			       .st = NN_OK };
	s.buf = malloc(SAVE_CHUNK);
	if (!s.buf)
		return oom(e);
	onnx__model_proto__pack_to_buffer(m->proto, &s.base);
	sink_flush(&s);
	free(s.buf);
	if (s.st != NN_OK && e && e->status == NN_OK)
		err_set(e, s.st, NULL, NULL, "writing the model failed");
	return s.st;
}

static enum nn_status fd_write(void *ud, const void *data, size_t len, struct nn_err *e)
{
	int fd = *(int *)ud;
	const uint8_t *p = data;
	while (len) {
		ssize_t k = write(fd, p, len);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			int er = errno;
			return err_set(e, er == ENOSPC || er == EDQUOT ? NN_ENOSPC : NN_EIO,
				       er == ENOSPC || er == EDQUOT ? "no_space" : "io_error", NULL,
				       "writing the model failed: %s", strerror(er));
		}
		p += k;
		len -= (size_t)k;
	}
	return NN_OK;
}

enum nn_status onnx_save_file(const struct onnx_model *m, const char *path, struct nn_err *e)
{
	enum nn_status st;
	size_t plen = strlen(path);
	char *tmp = malloc(plen + 16);
	char *dir = malloc(plen + 2);
	int fd = -1;
	if (!tmp || !dir) {
		st = oom(e);
		goto fail;
	}
	/* A unique temp name, so two saves to one path cannot interleave. */
	snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		st = err_set(e, errno == ENOSPC ? NN_ENOSPC : NN_EIO, NULL, NULL,
			     "cannot create '%s': %s", tmp, strerror(errno));
		tmp[0] = '\0';
		goto fail;
	}
	if (fchmod(fd, 0644) != 0) {
		st = err_set(e, NN_EIO, "io_error", NULL, "chmod '%s': %s", tmp, strerror(errno));
		goto fail;
	}
	st = onnx_save(m, fd_write, &fd, e);
	if (st != NN_OK)
		goto fail;
	if (fsync(fd) != 0) {
		st = err_set(e, errno == ENOSPC ? NN_ENOSPC : NN_EIO, NULL, NULL, "fsync '%s': %s",
			     tmp, strerror(errno));
		goto fail;
	}
	int rc = close(fd);
	fd = -1;
	if (rc != 0) {
		st = err_set(e, NN_EIO, "io_error", NULL, "close '%s': %s", tmp, strerror(errno));
		goto fail;
	}
	if (rename(tmp, path) != 0) {
		st = err_set(e, NN_EIO, "io_error", NULL, "rename '%s' to '%s': %s", tmp, path,
			     strerror(errno));
		goto fail;
	}
	tmp[0] = '\0';
	/* Make the rename itself durable. */
	memcpy(dir, path, plen + 1);
	char *slash = strrchr(dir, '/');
	if (!slash)
		strcpy(dir, ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) != 0) {
		st = err_set(e, NN_EIO, "io_error", NULL, "fsync directory '%s': %s", dir,
			     strerror(errno));
		if (dfd >= 0)
			close(dfd);
		goto fail;
	}
	close(dfd);
	free(tmp);
	free(dir);
	return NN_OK;
fail:
	if (fd >= 0)
		close(fd);
	if (tmp && tmp[0])
		unlink(tmp);
	free(tmp);
	free(dir);
	return st;
}

/* ------------------------------------------------------------------ */
/* which initializers are prunable weights (shared by summary + passes) */

/* Output-channel axis of a weight feeding input `slot` of a default-domain
 * node, or -1 when that slot/shape is not a prunable weight:
 *  Conv   W [M, C/g, k...]            -> 0 (M output channels)
 *  Gemm   B [K, N] (transB=0)         -> 1;  B [N, K] (transB=1) -> 0
 *  MatMul B [..., K, N] (input 1)     -> ndim-1 (columns give output features)
 *  MatMul A [..., M, K] (input 0)     -> ndim-2 (rows give output rows)
 * 1-D MatMul operands and Gemm inputs other than B are not weights here. */
static int weight_channel_axis(const char *op, int slot, size_t ndim, int64_t trans_b)
{
	if (streq(op, "Conv"))
		return slot == 1 && ndim >= 3 ? 0 : -1;
	if (streq(op, "Gemm"))
		return slot == 1 && ndim == 2 ? (trans_b ? 0 : 1) : -1;
	if (streq(op, "MatMul") && ndim >= 2)
		return slot == 1 ? (int)ndim - 1 : slot == 0 ? (int)ndim - 2 : -1;
	return -1;
}

static bool is_weight_op(const char *op)
{
	return streq(op, "Conv") || streq(op, "Gemm") || streq(op, "MatMul");
}

/* ------------------------------------------------------------------ */
/* streaming summary                                                   */

struct sum_tensor {
	char *name;
	int32_t dt;
	size_t ndim;
	int64_t *dims;
	int64_t numel;
};

struct sum_node {
	char *name, *op;
	char *in[2];
	size_t n_in;
	int64_t trans_b;
};

struct sum_vi {
	char *name;
	bool is_tensor;
	int32_t elem;
	bool has_shape;
	size_t ndim;
	int64_t *dims; /* -1: symbolic or unknown */
};

struct summary {
	struct rd r;
	bool has_ir;
	int64_t ir;
	char *producer_name, *producer_version, *graph_name;
	bool has_graph;
	size_t n_nodes, n_opsets;
	json_t *opsets, *ops;
	struct sum_tensor *inits;
	size_t n_inits, cap_inits;
	char **sparse_names;
	size_t n_sparse, cap_sparse;
	struct sum_node *cands;
	size_t n_cands, cap_cands;
	struct sum_vi *ins, *outs;
	size_t n_ins, cap_ins, n_outs, cap_outs;
	int64_t params;
	bool has_deferred;
	struct nn_err deferred; /* first tensor problem, reported after model checks */
	/* Weightless skeleton for the opset_upgrade dry run: every node of the
	 * graph (with subgraphs), and the graph's inputs, outputs and
	 * value_info as decoded ValueInfoProtos (all owned, malloc'd). */
	bool has_def_opset;
	int64_t def_opset; /* default-domain opset as onnx_raise_opset reads it */
	Onnx__NodeProto **skel_nodes;
	size_t n_skel_nodes, cap_skel_nodes;
	Onnx__ValueInfoProto **skel_vi[3]; /* SKEL_IN, SKEL_OUT, SKEL_VI */
	size_t n_skel_vi[3], cap_skel_vi[3];
};

enum { SKEL_IN, SKEL_OUT, SKEL_VI };
#define SKEL_MAX_S 4096 /* attribute string bytes kept in the skeleton */

static bool grow(void *arrp, size_t *cap, size_t n, size_t elem)
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

/* jansson insists on UTF-8; names in a model are untrusted bytes. */
static json_t *jstr(const char *s)
{
	if (!s)
		return json_null();
	json_t *j = json_string(s);
	if (j)
		return j;
	char *c = xstrdup(s);
	if (!c)
		return NULL;
	for (char *p = c; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	j = json_string(c);
	free(c);
	return j;
}

static enum nn_status sum_string(struct summary *s, const struct fld *f, char **out,
				 struct nn_err *e)
{
	if (f->len > SUM_MAX_SUBMSG)
		return err_set(e, NN_EINVAL, "invalid_model", NULL,
			       "string field %u at byte %llu is %llu bytes, over the %u MiB limit",
			       f->num, (unsigned long long)f->start, (unsigned long long)f->len,
			       SUM_MAX_SUBMSG >> 20);
	char *p = malloc((size_t)f->len + 1);
	if (!p)
		return oom(e);
	enum nn_status st = rd_copy(&s->r, f->off, (size_t)f->len, p, e);
	if (st != NN_OK) {
		free(p);
		return st;
	}
	p[f->len] = '\0';
	free(*out);
	*out = p;
	return NN_OK;
}

/* Reads a small submessage whole, validates it and unpacks it. */
static enum nn_status sum_submsg(struct summary *s, const struct fld *f,
				 const ProtobufCMessageDescriptor *d, int depth,
				 ProtobufCMessage **out, struct nn_err *e)
{
	*out = NULL;
	if (f->len > SUM_MAX_SUBMSG)
		return err_set(e, NN_EINVAL, "invalid_model", NULL,
			       "%s at byte %llu is %llu bytes, over the %u MiB limit", d->short_name,
			       (unsigned long long)f->start, (unsigned long long)f->len,
			       SUM_MAX_SUBMSG >> 20);
	uint8_t *buf = malloc(f->len ? (size_t)f->len : 1);
	if (!buf)
		return oom(e);
	enum nn_status st = rd_copy(&s->r, f->off, (size_t)f->len, buf, e);
	if (st != NN_OK)
		goto out;
	struct rd mr = { .fd = -1, .mem = buf, .size = f->len };
	/* Offsets in messages from the small reader are relative: say where. */
	st = wire_check(&mr, 0, f->len, d, depth, e);
	if (st != NN_OK) {
		err_prefix(e, "in %s at byte %llu", d->short_name, (unsigned long long)f->start);
		goto out;
	}
	*out = protobuf_c_message_unpack(d, NULL, (size_t)f->len, buf);
	if (!*out)
		st = err_set(e, NN_EINVAL, "invalid_model", NULL,
			     "not a valid ONNX protobuf: %s at byte %llu cannot be decoded",
			     d->short_name, (unsigned long long)f->start);
out:
	free(buf);
	return st;
}

static void sum_defer(struct summary *s, const struct nn_err *e)
{
	if (!s->has_deferred) {
		s->deferred = *e;
		s->has_deferred = true;
	}
}

/* Counts the varints of a packed payload without holding it in memory. */
static enum nn_status count_varints(struct summary *s, const struct fld *f, uint64_t *n,
				    struct nn_err *e)
{
	uint64_t pos = f->off, end = f->off + f->len;
	uint8_t last = 0;
	while (pos < end) {
		size_t k = end - pos < SUM_WINDOW ? (size_t)(end - pos) : SUM_WINDOW;
		const uint8_t *p;
		enum nn_status st = rd_get(&s->r, pos, k, &p, e);
		if (st != NN_OK)
			return st;
		for (size_t i = 0; i < k; i++)
			*n += !(p[i] & 0x80);
		last = p[k - 1];
		pos += k;
	}
	if (last & 0x80)
		return err_set(e, NN_EINVAL, "invalid_model", NULL,
			       "not a valid ONNX protobuf: packed field %u at byte %llu ends inside "
			       "a varint", f->num, (unsigned long long)f->start);
	return NN_OK;
}

/* Dims past ONNX_MAX_DIMS are counted, not stored: check_tensor_facts
 * reports them like onnx_load does. */
static void push_dim(struct tensor_facts *t, uint64_t v)
{
	if (t->ndim < ONNX_MAX_DIMS)
		t->dims[t->ndim] = (int64_t)v;
	t->ndim++;
}

/* Scans a TensorProto field by field, skipping data payloads by length. */
static enum nn_status scan_tensor(struct summary *s, const struct fld *tfld, const char *kind,
				  int depth, struct tensor_facts *t, char **name,
				  struct nn_err *e)
{
	const ProtobufCMessageDescriptor *D = &onnx__tensor_proto__descriptor;
	memset(t, 0, sizeof *t);
	t->kind = kind;
	*name = NULL;
	uint64_t pos = tfld->off, end = tfld->off + tfld->len;
	enum nn_status st = NN_OK;
	if (depth + 1 >= WIRE_MAX_DEPTH)
		return wire_check(&s->r, tfld->off, end, D, depth + 1, e);
	while (pos < end && st == NN_OK) {
		struct fld f;
		if ((st = rd_field(&s->r, &pos, end, "TensorProto", &f, e)) != NN_OK)
			break;
		switch (f.num) {
		case 1: /* dims */
			if ((st = expect_wt(D, &f, e)) != NN_OK)
				break;
			if (f.wt == WT_VARINT) {
				push_dim(t, f.v);
			} else {
				uint64_t p = f.off, pend = f.off + f.len, v;
				while (p < pend && st == NN_OK) {
					st = rd_varint(&s->r, &p, pend, &v, "TensorProto.dims", e);
					if (st == NN_OK)
						push_dim(t, v);
				}
			}
			break;
		case 2:
			if ((st = expect_wt(D, &f, e)) == NN_OK) {
				t->has_dt = true;
				t->dt = (int32_t)f.v;
			}
			break;
		case 3:
			t->segment = true;
			st = check_other_field(&s->r, D, &f, depth, e);
			break;
		case 4:
			if ((st = expect_wt(D, &f, e)) == NN_OK)
				t->n[TF_FLOAT] += f.wt == WT_LEN ? f.len / 4 : 1;
			break;
		case 10:
			if ((st = expect_wt(D, &f, e)) == NN_OK)
				t->n[TF_DOUBLE] += f.wt == WT_LEN ? f.len / 8 : 1;
			break;
		case 5:
		case 7:
		case 11: {
			enum typed_field tf = f.num == 5 ? TF_INT32 : f.num == 7 ? TF_INT64 : TF_UINT64;
			if ((st = expect_wt(D, &f, e)) != NN_OK)
				break;
			if (f.wt == WT_LEN)
				st = count_varints(s, &f, &t->n[tf], e);
			else
				t->n[tf]++;
			break;
		}
		case 6:
			if ((st = expect_wt(D, &f, e)) == NN_OK)
				t->n[TF_STRING]++;
			break;
		case 8:
			if ((st = expect_wt(D, &f, e)) == NN_OK)
				st = sum_string(s, &f, name, e);
			break;
		case 9:
			if ((st = expect_wt(D, &f, e)) == NN_OK) {
				t->has_raw = true;
				t->raw_len = f.len;
			}
			break;
		case 14:
			if ((st = expect_wt(D, &f, e)) == NN_OK)
				t->external = f.v == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
			break;
		default:
			st = check_other_field(&s->r, D, &f, depth, e);
		}
	}
	t->name = *name;
	if (st != NN_OK) {
		free(*name);
		*name = NULL;
		t->name = NULL;
	}
	return st;
}

/* Scans a tensor that is only checked (attribute values, sparse parts). */
static enum nn_status scan_check_tensor(struct summary *s, const struct fld *f, const char *kind,
					int depth, char **name_out, struct nn_err *e)
{
	struct tensor_facts t;
	char *name;
	enum nn_status st = scan_tensor(s, f, kind, depth, &t, &name, e);
	if (st != NN_OK)
		return st;
	int64_t numel;
	struct nn_err te = { 0 };
	if (check_tensor_facts(&t, &numel, &te) != NN_OK)
		sum_defer(s, &te);
	if (name_out)
		*name_out = name;
	else
		free(name);
	return NN_OK;
}

static enum nn_status scan_attr(struct summary *s, const struct fld *af, int depth, char **name,
				bool *has_i, int64_t *iv, struct nn_err *e)
{
	const ProtobufCMessageDescriptor *D = &onnx__attribute_proto__descriptor;
	uint64_t pos = af->off, end = af->off + af->len;
	enum nn_status st = NN_OK;
	if (depth + 1 >= WIRE_MAX_DEPTH)
		return wire_check(&s->r, af->off, end, D, depth + 1, e);
	while (pos < end && st == NN_OK) {
		struct fld f;
		if ((st = rd_field(&s->r, &pos, end, "AttributeProto", &f, e)) != NN_OK)
			break;
		switch (f.num) {
		case 1:
			if ((st = expect_wt(D, &f, e)) == NN_OK)
				st = sum_string(s, &f, name, e);
			break;
		case 3:
			if ((st = expect_wt(D, &f, e)) == NN_OK) {
				*has_i = true;
				*iv = (int64_t)f.v;
			}
			break;
		case 5:
		case 10:
			if ((st = expect_wt(D, &f, e)) == NN_OK)
				st = scan_check_tensor(s, &f, "tensor attribute", depth + 1, NULL, e);
			break;
		default:
			st = check_other_field(&s->r, D, &f, depth, e);
		}
	}
	return st;
}

static enum nn_status scan_node(struct summary *s, const struct fld *nf, int depth,
				struct nn_err *e)
{
	const ProtobufCMessageDescriptor *D = &onnx__node_proto__descriptor;
	struct sum_node n = { 0 };
	char *domain = NULL, *attr_name = NULL, *key = NULL;
	uint64_t pos = nf->off, end = nf->off + nf->len;
	enum nn_status st = NN_OK;
	if (depth + 1 >= WIRE_MAX_DEPTH)
		return wire_check(&s->r, nf->off, end, D, depth + 1, e);
	while (pos < end && st == NN_OK) {
		struct fld f;
		if ((st = rd_field(&s->r, &pos, end, "NodeProto", &f, e)) != NN_OK)
			break;
		switch (f.num) {
		case 1:
			if ((st = expect_wt(D, &f, e)) == NN_OK && n.n_in < 2)
				st = sum_string(s, &f, &n.in[n.n_in], e);
			n.n_in++;
			break;
		case 3:
			if ((st = expect_wt(D, &f, e)) == NN_OK)
				st = sum_string(s, &f, &n.name, e);
			break;
		case 4:
			if ((st = expect_wt(D, &f, e)) == NN_OK)
				st = sum_string(s, &f, &n.op, e);
			break;
		case 7:
			if ((st = expect_wt(D, &f, e)) == NN_OK)
				st = sum_string(s, &f, &domain, e);
			break;
		case 5: {
			bool has_i = false;
			int64_t iv = 0;
			if ((st = expect_wt(D, &f, e)) != NN_OK)
				break;
			st = scan_attr(s, &f, depth + 1, &attr_name, &has_i, &iv, e);
			if (st == NN_OK && has_i && streq(attr_name, "transB"))
				n.trans_b = iv;
			free(attr_name);
			attr_name = NULL;
			break;
		}
		default:
			st = check_other_field(&s->r, D, &f, depth, e);
		}
	}
	if (st != NN_OK)
		goto out;
	s->n_nodes++;
	const char *op = n.op ? n.op : "";
	if (is_default_domain(domain)) {
		key = xstrdup(op);
	} else {
		size_t kl = strlen(domain) + strlen(op) + 2;
		if ((key = malloc(kl)))
			snprintf(key, kl, "%s:%s", domain, op);
	}
	if (!key) {
		st = oom(e);
		goto out;
	}
	for (char *p = key; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	json_t *cnt = json_object_get(s->ops, key);
	json_int_t c = cnt ? json_integer_value(cnt) : 0;
	if (json_object_set_new(s->ops, key, json_integer(c + 1)) != 0) {
		st = oom(e);
		goto out;
	}
	if (is_default_domain(domain) && is_weight_op(n.op)) {
		if (!grow(&s->cands, &s->cap_cands, s->n_cands, sizeof *s->cands)) {
			st = oom(e);
			goto out;
		}
		s->cands[s->n_cands++] = n;
		memset(&n, 0, sizeof n);
	}
out:
	free(key);
	free(domain);
	free(n.name);
	free(n.op);
	free(n.in[0]);
	free(n.in[1]);
	return st;
}

/* ---- weightless skeleton for the opset_upgrade dry run ----
 * These walks run over bytes scan_node / wire_check have already validated;
 * they only extract what raise_dry_run reads: node names, op types, domains,
 * inputs, outputs, and attributes' name/type/f/i/s and subgraphs. Tensor
 * and list payloads of attributes are not kept (the dry rules only ask
 * whether such an attribute exists). */

static enum nn_status skel_graph(struct summary *s, const struct fld *gf, int depth,
				 Onnx__GraphProto **out, struct nn_err *e);

static enum nn_status skel_too_deep(const struct fld *f, struct nn_err *e)
{
	return err_set(e, NN_EINVAL, "invalid_model", NULL,
		       "not a valid ONNX protobuf: messages nested more than %d levels deep at "
		       "byte %llu", WIRE_MAX_DEPTH, (unsigned long long)f->start);
}

/* Reads a string field into *dst, replacing a previous value (the last
 * occurrence wins, as in protobuf). */
static enum nn_status skel_str(struct summary *s, const struct fld *f, char **dst,
			       struct nn_err *e)
{
	char *str = NULL;
	enum nn_status st = sum_string(s, f, &str, e);
	if (st != NN_OK)
		return st;
	free(*dst);
	*dst = str;
	return NN_OK;
}

static enum nn_status skel_push_str(struct summary *s, const struct fld *f, char ***arr,
				   size_t *n, struct nn_err *e)
{
	char *str = NULL;
	enum nn_status st = sum_string(s, f, &str, e);
	if (st != NN_OK)
		return st;
	if (!push_ptr((void ***)arr, n, str)) {
		free(str);
		return oom(e);
	}
	return NN_OK;
}

static enum nn_status skel_attr(struct summary *s, const struct fld *af, int depth,
				Onnx__AttributeProto **out, struct nn_err *e)
{
	*out = NULL;
	if (depth >= WIRE_MAX_DEPTH)
		return skel_too_deep(af, e);
	Onnx__AttributeProto *a = malloc(sizeof *a);
	if (!a)
		return oom(e);
	onnx__attribute_proto__init(a);
	a->name = a->doc_string = a->ref_attr_name = NULL; /* owned strings only */
	uint64_t pos = af->off, end = af->off + af->len;
	enum nn_status st = NN_OK;
	while (pos < end && st == NN_OK) {
		struct fld f;
		if ((st = rd_field(&s->r, &pos, end, "AttributeProto", &f, e)) != NN_OK)
			break;
		if (f.num == 1 && f.wt == WT_LEN) {
			st = skel_str(s, &f, &a->name, e);
		} else if (f.num == 2 && f.wt == WT_I32) {
			uint32_t bits = (uint32_t)f.v;
			memcpy(&a->f, &bits, sizeof bits);
			a->has_f = 1;
		} else if (f.num == 3 && f.wt == WT_VARINT) {
			a->i = (int64_t)f.v;
			a->has_i = 1;
		} else if (f.num == 4 && f.wt == WT_LEN) {
			/* The rules compare strings with mode and type names of a
			 * few bytes: a longer string, cut, still matches none. */
			size_t k = f.len < SKEL_MAX_S ? (size_t)f.len : SKEL_MAX_S;
			free(a->s.data);
			a->s.len = 0;
			if (!(a->s.data = malloc(k ? k : 1))) {
				st = oom(e);
				break;
			}
			a->s.len = k;
			a->has_s = 1;
			st = rd_copy(&s->r, f.off, k, a->s.data, e);
		} else if (f.num == 20 && f.wt == WT_VARINT) {
			a->type = (Onnx__AttributeProto__AttributeType)f.v;
			a->has_type = 1;
		} else if ((f.num == 6 || f.num == 11) && f.wt == WT_LEN) {
			Onnx__GraphProto *g;
			if ((st = skel_graph(s, &f, depth + 1, &g, e)) != NN_OK)
				break;
			if (f.num == 6) {
				if (a->g)
					onnx__graph_proto__free_unpacked(a->g, NULL);
				a->g = g;
			} else if (!push_ptr((void ***)&a->graphs, &a->n_graphs, g)) {
				onnx__graph_proto__free_unpacked(g, NULL);
				st = oom(e);
			}
		}
	}
	if (st != NN_OK) {
		onnx__attribute_proto__free_unpacked(a, NULL);
		return st;
	}
	*out = a;
	return NN_OK;
}

static enum nn_status skel_node(struct summary *s, const struct fld *nf, int depth,
				Onnx__NodeProto **out, struct nn_err *e)
{
	*out = NULL;
	if (depth >= WIRE_MAX_DEPTH)
		return skel_too_deep(nf, e);
	Onnx__NodeProto *n = malloc(sizeof *n);
	if (!n)
		return oom(e);
	onnx__node_proto__init(n);
	n->name = n->op_type = n->domain = n->doc_string = NULL; /* owned strings only */
	uint64_t pos = nf->off, end = nf->off + nf->len;
	enum nn_status st = NN_OK;
	while (pos < end && st == NN_OK) {
		struct fld f;
		if ((st = rd_field(&s->r, &pos, end, "NodeProto", &f, e)) != NN_OK)
			break;
		if (f.wt != WT_LEN)
			continue;
		switch (f.num) {
		case 1: st = skel_push_str(s, &f, &n->input, &n->n_input, e); break;
		case 2: st = skel_push_str(s, &f, &n->output, &n->n_output, e); break;
		case 3: st = skel_str(s, &f, &n->name, e); break;
		case 4: st = skel_str(s, &f, &n->op_type, e); break;
		case 7: st = skel_str(s, &f, &n->domain, e); break;
		case 5: {
			Onnx__AttributeProto *a;
			if ((st = skel_attr(s, &f, depth + 1, &a, e)) != NN_OK)
				break;
			if (!push_ptr((void ***)&n->attribute, &n->n_attribute, a)) {
				onnx__attribute_proto__free_unpacked(a, NULL);
				st = oom(e);
			}
			break;
		}
		default: break;
		}
	}
	if (st != NN_OK) {
		onnx__node_proto__free_unpacked(n, NULL);
		return st;
	}
	*out = n;
	return NN_OK;
}

/* A subgraph's skeleton: its nodes only (the dry rules never read a
 * subgraph's own inputs or initializers; ranks come from the top graph). */
static enum nn_status skel_graph(struct summary *s, const struct fld *gf, int depth,
				 Onnx__GraphProto **out, struct nn_err *e)
{
	*out = NULL;
	if (depth >= WIRE_MAX_DEPTH)
		return skel_too_deep(gf, e);
	Onnx__GraphProto *g = malloc(sizeof *g);
	if (!g)
		return oom(e);
	onnx__graph_proto__init(g);
	g->name = g->doc_string = NULL;
	uint64_t pos = gf->off, end = gf->off + gf->len;
	enum nn_status st = NN_OK;
	while (pos < end && st == NN_OK) {
		struct fld f;
		if ((st = rd_field(&s->r, &pos, end, "GraphProto", &f, e)) != NN_OK)
			break;
		if (f.num != 1 || f.wt != WT_LEN)
			continue;
		Onnx__NodeProto *n;
		if ((st = skel_node(s, &f, depth + 1, &n, e)) != NN_OK)
			break;
		if (!push_ptr((void ***)&g->node, &g->n_node, n)) {
			onnx__node_proto__free_unpacked(n, NULL);
			st = oom(e);
		}
	}
	if (st != NN_OK) {
		onnx__graph_proto__free_unpacked(g, NULL);
		return st;
	}
	*out = g;
	return NN_OK;
}

/* Adds a top-level node's skeleton (after scan_node validated it). */
static enum nn_status skel_add_node(struct summary *s, const struct fld *nf, int depth,
				    struct nn_err *e)
{
	Onnx__NodeProto *n;
	enum nn_status st = skel_node(s, nf, depth, &n, e);
	if (st != NN_OK)
		return st;
	if (!grow(&s->skel_nodes, &s->cap_skel_nodes, s->n_skel_nodes, sizeof *s->skel_nodes)) {
		onnx__node_proto__free_unpacked(n, NULL);
		return oom(e);
	}
	s->skel_nodes[s->n_skel_nodes++] = n;
	return NN_OK;
}

static bool skel_add_vi(struct summary *s, int which, Onnx__ValueInfoProto *vi)
{
	if (!grow(&s->skel_vi[which], &s->cap_skel_vi[which], s->n_skel_vi[which],
		  sizeof *s->skel_vi[which]))
		return false;
	s->skel_vi[which][s->n_skel_vi[which]++] = vi;
	return true;
}

/* graph.value_info (already validated by check_other_field): decoded whole
 * for the ranks the dry run reads. One over the submessage cap is left out
 * (its values then count as of unknown rank, which can only make the
 * verdict stricter). */
static enum nn_status skel_value_info(struct summary *s, const struct fld *f, int depth,
				      struct nn_err *e)
{
	if (f->wt != WT_LEN || f->len > SUM_MAX_SUBMSG)
		return NN_OK;
	ProtobufCMessage *msg;
	enum nn_status st = sum_submsg(s, f, &onnx__value_info_proto__descriptor, depth + 1, &msg,
				       e);
	if (st != NN_OK)
		return st;
	if (!skel_add_vi(s, SKEL_VI, (Onnx__ValueInfoProto *)msg)) {
		protobuf_c_message_free_unpacked(msg, NULL);
		return oom(e);
	}
	return NN_OK;
}

static enum nn_status sum_value_info(struct summary *s, const struct fld *f, int depth,
				     bool is_input, struct nn_err *e)
{
	ProtobufCMessage *msg;
	enum nn_status st = sum_submsg(s, f, &onnx__value_info_proto__descriptor, depth + 1, &msg,
				       e);
	if (st != NN_OK)
		return st;
	Onnx__ValueInfoProto *vi = (Onnx__ValueInfoProto *)msg;
	struct sum_vi v = { 0 };
	v.name = xstrdup(vi->name);
	if (!v.name)
		goto nomem;
	if (vi->type && vi->type->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE &&
	    vi->type->tensor_type) {
		const Onnx__TypeProto__Tensor *tt = vi->type->tensor_type;
		v.is_tensor = true;
		v.elem = tt->has_elem_type ? tt->elem_type : 0;
		if (tt->shape) {
			v.has_shape = true;
			v.ndim = tt->shape->n_dim;
			if (v.ndim && !(v.dims = malloc(v.ndim * sizeof *v.dims)))
				goto nomem;
			for (size_t i = 0; i < v.ndim; i++) {
				const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
				v.dims[i] = d->value_case ==
						    ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE &&
					    d->dim_value >= 0 ? d->dim_value : -1;
			}
		}
	}
	struct sum_vi **arr = is_input ? &s->ins : &s->outs;
	size_t *n = is_input ? &s->n_ins : &s->n_outs;
	size_t *cap = is_input ? &s->cap_ins : &s->cap_outs;
	if (!grow(arr, cap, *n, sizeof **arr))
		goto nomem;
	(*arr)[(*n)++] = v;
	memset(&v, 0, sizeof v);
	/* The decoded message is kept for the opset_upgrade skeleton. */
	if (!skel_add_vi(s, is_input ? SKEL_IN : SKEL_OUT, vi))
		goto nomem;
	return NN_OK;
nomem:
	free(v.name);
	free(v.dims);
	protobuf_c_message_free_unpacked(msg, NULL);
	return oom(e);
}

static enum nn_status add_params(struct summary *s, int64_t numel, struct nn_err *e)
{
	if (__builtin_add_overflow(s->params, numel, &s->params))
		return err_set(e, NN_EINVAL, "invalid_model", NULL,
			       "the initializers' total element count overflows");
	return NN_OK;
}

static enum nn_status scan_sparse(struct summary *s, const struct fld *sf, int depth,
				  struct nn_err *e)
{
	const ProtobufCMessageDescriptor *D = &onnx__sparse_tensor_proto__descriptor;
	uint64_t pos = sf->off, end = sf->off + sf->len;
	char *name = NULL;
	int64_t numel = 1;
	bool overflow = false;
	enum nn_status st = NN_OK;
	while (pos < end && st == NN_OK) {
		struct fld f;
		if ((st = rd_field(&s->r, &pos, end, "SparseTensorProto", &f, e)) != NN_OK)
			break;
		if ((f.num == 1 || f.num == 2 || f.num == 3) && (st = expect_wt(D, &f, e)) != NN_OK)
			break;
		if (f.num == 1) {
			free(name);
			name = NULL;
			st = scan_check_tensor(s, &f, "sparse initializer", depth + 1, &name, e);
		} else if (f.num == 2) {
			st = scan_check_tensor(s, &f, "sparse initializer", depth + 1, NULL, e);
		} else if (f.num == 3) {
			uint64_t p = f.wt == WT_LEN ? f.off : 0, pend = f.off + f.len, v = f.v;
			do {
				if (f.wt == WT_LEN &&
				    (st = rd_varint(&s->r, &p, pend, &v, "SparseTensorProto.dims",
						    e)) != NN_OK)
					break;
				if ((int64_t)v < 0 ||
				    __builtin_mul_overflow(numel, (int64_t)v, &numel))
					overflow = true;
			} while (f.wt == WT_LEN && p < pend);
		} else {
			st = check_other_field(&s->r, D, &f, depth, e);
		}
	}
	if (st == NN_OK && overflow) {
		struct nn_err te = { 0 };
		sparse_dims_error(name, &te);
		sum_defer(s, &te);
		numel = 0;
	}
	if (st == NN_OK)
		st = add_params(s, numel, e);
	if (st == NN_OK) {
		if (grow(&s->sparse_names, &s->cap_sparse, s->n_sparse, sizeof(char *))) {
			s->sparse_names[s->n_sparse++] = name; /* NULL for a nameless one */
			name = NULL;
		} else {
			st = oom(e);
		}
	}
	free(name);
	return st;
}

static enum nn_status scan_initializer(struct summary *s, const struct fld *f, int depth,
				       struct nn_err *e)
{
	struct tensor_facts t;
	char *name;
	enum nn_status st = scan_tensor(s, f, "initializer", depth + 1, &t, &name, e);
	if (st != NN_OK)
		return st;
	int64_t numel = 0;
	struct nn_err te = { 0 };
	if (check_tensor_facts(&t, &numel, &te) != NN_OK) {
		sum_defer(s, &te); /* the summary fails; keep scanning for structure */
		numel = 0;
		t.ndim = 0;
	}
	struct sum_tensor st_ = { .name = name, .dt = t.dt, .ndim = t.ndim, .numel = numel };
	if (t.ndim && !(st_.dims = malloc(t.ndim * sizeof(int64_t))))
		goto nomem;
	if (t.ndim)
		memcpy(st_.dims, t.dims, t.ndim * sizeof(int64_t));
	if (!grow(&s->inits, &s->cap_inits, s->n_inits, sizeof *s->inits))
		goto nomem;
	s->inits[s->n_inits++] = st_;
	return add_params(s, numel, e);
nomem:
	free(st_.dims);
	free(name);
	return oom(e);
}

static enum nn_status scan_graph(struct summary *s, const struct fld *gf, int depth,
				 struct nn_err *e)
{
	const ProtobufCMessageDescriptor *D = &onnx__graph_proto__descriptor;
	uint64_t pos = gf->off, end = gf->off + gf->len;
	enum nn_status st = NN_OK;
	while (pos < end && st == NN_OK) {
		struct fld f;
		if ((st = rd_field(&s->r, &pos, end, "GraphProto", &f, e)) != NN_OK)
			break;
		const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(D, f.num);
		if (fd && (f.num == 1 || f.num == 2 || f.num == 5 || f.num == 11 || f.num == 12 ||
			   f.num == 15) && (st = check_wire_type(D, fd, &f, e)) != NN_OK)
			break;
		switch (f.num) {
		case 1:
			if ((st = scan_node(s, &f, depth + 1, e)) == NN_OK)
				st = skel_add_node(s, &f, depth + 1, e);
			break;
		case 2: st = sum_string(s, &f, &s->graph_name, e); break;
		case 5: st = scan_initializer(s, &f, depth, e); break;
		case 11: st = sum_value_info(s, &f, depth, true, e); break;
		case 12: st = sum_value_info(s, &f, depth, false, e); break;
		case 13:
			if ((st = check_other_field(&s->r, D, &f, depth, e)) == NN_OK)
				st = skel_value_info(s, &f, depth, e);
			break;
		case 15: st = scan_sparse(s, &f, depth + 1, e); break;
		default: st = check_other_field(&s->r, D, &f, depth, e);
		}
	}
	return st;
}

static enum nn_status scan_model(struct summary *s, struct nn_err *e)
{
	const ProtobufCMessageDescriptor *D = &onnx__model_proto__descriptor;
	uint64_t pos = 0, end = s->r.size;
	enum nn_status st = NN_OK;
	while (pos < end && st == NN_OK) {
		struct fld f;
		if ((st = rd_field(&s->r, &pos, end, "ModelProto", &f, e)) != NN_OK)
			break;
		const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(D, f.num);
		if (fd && (f.num == 1 || f.num == 2 || f.num == 3 || f.num == 7 || f.num == 8) &&
		    (st = check_wire_type(D, fd, &f, e)) != NN_OK)
			break;
		switch (f.num) {
		case 1:
			s->has_ir = true;
			s->ir = (int64_t)f.v;
			break;
		case 2: st = sum_string(s, &f, &s->producer_name, e); break;
		case 3: st = sum_string(s, &f, &s->producer_version, e); break;
		case 7:
			s->has_graph = true;
			st = scan_graph(s, &f, 1, e);
			break;
		case 8: {
			ProtobufCMessage *msg;
			st = sum_submsg(s, &f, &onnx__operator_set_id_proto__descriptor, 1, &msg, e);
			if (st != NN_OK)
				break;
			Onnx__OperatorSetIdProto *op = (Onnx__OperatorSetIdProto *)msg;
			/* The last default-domain import counts, version 1 when
			 * unset: what onnx_raise_opset reads. */
			if (is_default_domain(op->domain)) {
				s->has_def_opset = true;
				s->def_opset = op->has_version ? op->version : 1;
			}
			/* Both spellings of the default domain map to "" (the
			 * header's contract: {domain: version}). */
			json_t *key = jstr(is_default_domain(op->domain) ? "" : op->domain);
			if (!key || json_object_set_new(s->opsets, json_string_value(key),
							json_integer(op->version)) != 0)
				st = oom(e);
			json_decref(key);
			s->n_opsets++;
			protobuf_c_message_free_unpacked(msg, NULL);
			break;
		}
		default: st = check_other_field(&s->r, D, &f, 0, e);
		}
	}
	return st;
}

static json_t *shape_json(const int64_t *dims, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++)
		json_array_append_new(a, dims[i] >= 0 ? json_integer(dims[i]) : json_null());
	return a;
}

static json_t *vi_array(const struct sum_vi *v, size_t n, const struct nameset *skip)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++) {
		if (skip && nameset_has(skip, v[i].name))
			continue;
		json_t *o = json_object();
		json_object_set_new(o, "name", jstr(v[i].name));
		json_object_set_new(o, "dtype", v[i].is_tensor ?
					       json_string(dtype_name((enum dtype)v[i].elem)) :
					       json_null());
		json_object_set_new(o, "shape", v[i].has_shape ? shape_json(v[i].dims, v[i].ndim) :
								json_null());
		json_array_append_new(a, o);
	}
	return a;
}

static enum nn_status sum_opset_upgrade(struct summary *s, json_t **out, struct nn_err *e);

static enum nn_status sum_json(struct summary *s, json_t **out, struct nn_err *e)
{
	struct nameset inits = { 0 }, used = { 0 };
	json_t *o = json_object(), *prun = json_array();
	enum nn_status st = NN_OK;
	if (!o || !prun)
		goto nomem;
	for (size_t i = 0; i < s->n_inits; i++)
		if (!nameset_put(&inits, s->inits[i].name, &s->inits[i]))
			goto nomem;
	for (size_t i = 0; i < s->n_sparse; i++)
		if (!nameset_put(&inits, s->sparse_names[i], NULL))
			goto nomem;
	for (size_t i = 0; i < s->n_cands; i++) {
		const struct sum_node *n = &s->cands[i];
		int slots[2] = { 1, streq(n->op, "MatMul") ? 0 : -1 };
		for (int k = 0; k < 2; k++) {
			int slot = slots[k];
			if (slot < 0 || (size_t)slot >= n->n_in || !n->in[slot])
				continue;
			const struct sum_tensor *w = nameset_get(&inits, n->in[slot]);
			if (!w || w->dt != DT_FLOAT)
				continue;
			int axis = weight_channel_axis(n->op, slot, w->ndim, n->trans_b);
			if (axis < 0)
				continue;
			if (!nameset_has(&used, w->name)) {
				if (!nameset_put(&used, w->name, NULL))
					goto nomem;
				json_t *p = json_object();
				json_object_set_new(p, "name", jstr(w->name));
				json_object_set_new(p, "op", jstr(n->op));
				json_object_set_new(p, "node", jstr(n->name));
				json_object_set_new(p, "shape", shape_json(w->dims, w->ndim));
				json_object_set_new(p, "parameters", json_integer(w->numel));
				json_object_set_new(p, "channel_axis", json_integer(axis));
				json_object_set_new(p, "input_index", json_integer(slot));
				if (json_array_append_new(prun, p) != 0)
					goto nomem;
			}
			break;
		}
	}
	json_t *prod = json_object();
	json_object_set_new(prod, "name", jstr(s->producer_name));
	json_object_set_new(prod, "version", jstr(s->producer_version));
	json_object_set_new(o, "ir_version", json_integer(s->ir));
	json_object_set(o, "opset", s->opsets);
	json_object_set_new(o, "producer", prod);
	json_object_set_new(o, "graph_name", jstr(s->graph_name));
	json_object_set_new(o, "inputs", vi_array(s->ins, s->n_ins, &inits));
	json_object_set_new(o, "outputs", vi_array(s->outs, s->n_outs, NULL));
	json_object_set_new(o, "nodes", json_integer((json_int_t)s->n_nodes));
	json_object_set(o, "ops", s->ops);
	json_object_set_new(o, "parameters", json_integer(s->params));
	json_object_set_new(o, "initializers", json_integer((json_int_t)(s->n_inits + s->n_sparse)));
	json_object_set_new(o, "prunable", prun);
	prun = NULL;
	json_object_set_new(o, "external_data", json_false());
	json_t *up = NULL;
	if ((st = sum_opset_upgrade(s, &up, e)) != NN_OK)
		goto out;
	json_object_set_new(o, "opset_upgrade", up);
	if (json_object_size(o) != 13)
		goto nomem;
	*out = o;
	o = NULL;
	goto out;
nomem:
	st = oom(e);
out:
	json_decref(o);
	json_decref(prun);
	nameset_free(&inits);
	nameset_free(&used);
	return st;
}

static void sum_free(struct summary *s)
{
	free(s->r.win);
	free(s->producer_name);
	free(s->producer_version);
	free(s->graph_name);
	json_decref(s->opsets);
	json_decref(s->ops);
	for (size_t i = 0; i < s->n_inits; i++) {
		free(s->inits[i].name);
		free(s->inits[i].dims);
	}
	free(s->inits);
	for (size_t i = 0; i < s->n_sparse; i++)
		free(s->sparse_names[i]);
	free(s->sparse_names);
	for (size_t i = 0; i < s->n_cands; i++) {
		free(s->cands[i].name);
		free(s->cands[i].op);
		free(s->cands[i].in[0]);
		free(s->cands[i].in[1]);
	}
	free(s->cands);
	for (size_t i = 0; i < s->n_ins; i++) {
		free(s->ins[i].name);
		free(s->ins[i].dims);
	}
	free(s->ins);
	for (size_t i = 0; i < s->n_outs; i++) {
		free(s->outs[i].name);
		free(s->outs[i].dims);
	}
	free(s->outs);
	for (size_t i = 0; i < s->n_skel_nodes; i++)
		onnx__node_proto__free_unpacked(s->skel_nodes[i], NULL);
	free(s->skel_nodes);
	for (int k = 0; k < 3; k++) {
		for (size_t i = 0; i < s->n_skel_vi[k]; i++)
			onnx__value_info_proto__free_unpacked(s->skel_vi[k][i], NULL);
		free(s->skel_vi[k]);
	}
}

enum nn_status onnx_summarize_fd(int fd, json_t **out, struct nn_err *e)
{
	*out = NULL;
	struct stat sb;
	if (fstat(fd, &sb) != 0)
		return err_set(e, NN_EIO, "io_error", NULL, "cannot stat the model: %s",
			       strerror(errno));
	if (sb.st_size == 0)
		return err_set(e, NN_EINVAL, "invalid_model", NULL,
			       "empty input: an ONNX model cannot be 0 bytes");
	if ((uint64_t)sb.st_size > ONNX_MAX_MODEL_BYTES)
		return err_set(e, NN_ETOOBIG, "model_too_large", NULL,
			       "model is %lld bytes; at most %zu are accepted",
			       (long long)sb.st_size, (size_t)ONNX_MAX_MODEL_BYTES);
	struct summary s = { .r = { .fd = fd, .size = (uint64_t)sb.st_size } };
	enum nn_status st;
	s.r.win = malloc(SUM_WINDOW);
	s.opsets = json_object();
	s.ops = json_object();
	if (!s.r.win || !s.opsets || !s.ops) {
		st = oom(e);
		goto out;
	}
	st = scan_model(&s, e);
	if (st != NN_OK)
		goto out;
	st = check_model_shape(s.has_graph, s.n_nodes, s.n_outs, s.has_ir, s.ir, s.n_opsets, e);
	if (st != NN_OK)
		goto out;
	if (s.has_deferred) {
		if (e)
			*e = s.deferred;
		st = s.deferred.status;
		goto out;
	}
	st = sum_json(&s, out, e);
out:
	sum_free(&s);
	return st;
}

/* ------------------------------------------------------------------ */
/* graph helpers                                                       */

int64_t onnx_opset(const struct onnx_model *m)
{
	const Onnx__ModelProto *p = m->proto;
	for (size_t i = 0; i < p->n_opset_import; i++)
		if (is_default_domain(p->opset_import[i]->domain))
			return p->opset_import[i]->version;
	return 0;
}

Onnx__TensorProto *onnx_find_initializer(const struct onnx_model *m, const char *name)
{
	const Onnx__GraphProto *g = m->proto->graph;
	if (!g || !name)
		return NULL;
	for (size_t i = 0; i < g->n_initializer; i++)
		if (streq(g->initializer[i]->name, name))
			return g->initializer[i];
	return NULL;
}

enum nn_status onnx_prunable_weights(const struct onnx_model *m, struct onnx_weight_ref **out,
				     size_t *count, struct nn_err *e)
{
	*out = NULL;
	*count = 0;
	const Onnx__GraphProto *g = m->proto->graph;
	if (!g)
		return NN_OK;
	struct nameset inits = { 0 }, used = { 0 };
	struct onnx_weight_ref *refs = NULL;
	size_t n = 0, cap = 0;
	for (size_t i = 0; i < g->n_initializer; i++)
		if (!nameset_put(&inits, g->initializer[i]->name, g->initializer[i]))
			goto nomem;
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *node = g->node[i];
		if (!is_default_domain(node->domain) || !is_weight_op(node->op_type))
			continue;
		int slots[2] = { 1, streq(node->op_type, "MatMul") ? 0 : -1 };
		int64_t trans_b = onnx_node_int_attr(node, "transB", 0);
		for (int k = 0; k < 2; k++) {
			int slot = slots[k];
			if (slot < 0 || (size_t)slot >= node->n_input)
				continue;
			Onnx__TensorProto *w = nameset_get(&inits, node->input[slot]);
			if (!w || !w->has_data_type || w->data_type != DT_FLOAT)
				continue;
			int axis = weight_channel_axis(node->op_type, slot, w->n_dims, trans_b);
			if (axis < 0)
				continue;
			if (!nameset_has(&used, w->name)) {
				if (!nameset_put(&used, w->name, NULL) ||
				    !grow(&refs, &cap, n, sizeof *refs))
					goto nomem;
				refs[n++] = (struct onnx_weight_ref){ w, node, axis };
			}
			break;
		}
	}
	nameset_free(&inits);
	nameset_free(&used);
	*out = refs;
	*count = n;
	return NN_OK;
nomem:
	nameset_free(&inits);
	nameset_free(&used);
	free(refs);
	return oom(e);
}

static const char *init_name(const Onnx__TensorProto *t)
{
	return t->name ? t->name : "";
}

enum nn_status onnx_initializer_view(const Onnx__TensorProto *init, struct tensor *out,
				     struct nn_err *e)
{
	memset(out, 0, sizeof *out);
	if (init->has_data_location &&
	    init->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
		return err_set(e, NN_EUNSUPPORTED, "unsupported_external_data", NULL,
			       "initializer '%s' uses external data, which nncd does not support "
			       "yet; re-export the model with the weights embedded", init_name(init));
	if (!init->has_data_type || init->data_type != DT_FLOAT)
		return err_set(e, NN_EUNSUPPORTED, "unsupported_dtype", NULL,
			       "initializer '%s' is %s, not float32", init_name(init),
			       dtype_name((enum dtype)init->data_type));
	if (init->n_dims > TENSOR_MAX_DIMS)
		return err_set(e, NN_EUNSUPPORTED, "too_many_dims", NULL,
			       "initializer '%s' has %zu dims; at most %d are supported",
			       init_name(init), init->n_dims, TENSOR_MAX_DIMS);
	struct tensor t;
	tensor_view(&t, DT_FLOAT, (int)init->n_dims, init->dims, NULL);
	size_t bytes;
	enum nn_status st = tensor_nbytes(&t, &bytes, e);
	if (st != NN_OK) {
		err_prefix(e, "initializer '%s'", init_name(init));
		return st;
	}
	if (init->has_raw_data && (init->raw_data.len || !init->n_float_data)) {
		if (init->raw_data.len != bytes)
			return err_set(e, NN_EINVAL, "invalid_model", NULL,
				       "initializer '%s': raw_data has %zu bytes, its dims need %zu",
				       init_name(init), init->raw_data.len, bytes);
		if (bytes && ((uintptr_t)init->raw_data.data % _Alignof(float)) != 0) {
			/* protobuf-c mallocs payloads, so this only happens to data
			 * attached by hand; copy rather than read misaligned floats. */
			void *copy = malloc(bytes);
			if (!copy)
				return oom(e);
			memcpy(copy, init->raw_data.data, bytes);
			t.data = copy;
			t.owned = true;
		} else {
			t.data = init->raw_data.data;
		}
	} else if (init->n_float_data) {
		if (init->n_float_data * sizeof(float) != bytes)
			return err_set(e, NN_EINVAL, "invalid_model", NULL,
				       "initializer '%s': float_data has %zu values, its dims need %zu",
				       init_name(init), init->n_float_data, bytes / sizeof(float));
		t.data = init->float_data;
	} else if (bytes) {
		return err_set(e, NN_EINVAL, "invalid_model", NULL,
			       "initializer '%s' has no data for its %zu elements", init_name(init),
			       bytes / sizeof(float));
	}
	*out = t;
	return NN_OK;
}

static void free_typed_data(Onnx__TensorProto *init)
{
	free(init->float_data);
	init->float_data = NULL;
	init->n_float_data = 0;
	free(init->int32_data);
	init->int32_data = NULL;
	init->n_int32_data = 0;
	for (size_t i = 0; i < init->n_string_data; i++)
		free(init->string_data[i].data);
	free(init->string_data);
	init->string_data = NULL;
	init->n_string_data = 0;
	free(init->int64_data);
	init->int64_data = NULL;
	init->n_int64_data = 0;
	free(init->double_data);
	init->double_data = NULL;
	init->n_double_data = 0;
	free(init->uint64_data);
	init->uint64_data = NULL;
	init->n_uint64_data = 0;
	for (size_t i = 0; i < init->n_external_data; i++)
		onnx__string_string_entry_proto__free_unpacked(init->external_data[i], NULL);
	free(init->external_data);
	init->external_data = NULL;
	init->n_external_data = 0;
	init->has_data_location = 0;
	init->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__DEFAULT;
	if (init->segment) {
		protobuf_c_message_free_unpacked(&init->segment->base, NULL);
		init->segment = NULL;
	}
}

enum nn_status onnx_initializer_set(Onnx__TensorProto *init, const struct tensor *t,
				    struct nn_err *e)
{
	size_t bytes;
	enum nn_status st = tensor_nbytes(t, &bytes, e);
	if (st != NN_OK)
		return st;
	if (bytes && !t->data)
		return err_set(e, NN_EINTERNAL, "internal", NULL,
			       "initializer '%s': tensor has no data", init_name(init));
	int64_t *dims = NULL;
	if (t->ndim && !(dims = malloc((size_t)t->ndim * sizeof *dims)))
		return oom(e);
	if (t->ndim)
		memcpy(dims, t->shape, (size_t)t->ndim * sizeof *dims);
	/* A view of this very raw_data modified in place needs no copy. */
	bool same = init->has_raw_data && t->data == init->raw_data.data &&
		    init->raw_data.len == bytes;
	uint8_t *data = init->raw_data.data;
	if (!same) {
		data = bytes ? malloc(bytes) : NULL;
		if (bytes && !data) {
			free(dims);
			return oom(e);
		}
		if (bytes)
			memcpy(data, t->data, bytes); /* before freeing: t may view float_data */
		free(init->raw_data.data);
	}
	free_typed_data(init);
	free(init->dims);
	init->dims = dims;
	init->n_dims = (size_t)t->ndim;
	init->has_data_type = 1;
	init->data_type = (int32_t)t->dtype;
	init->has_raw_data = 1;
	init->raw_data.data = data;
	init->raw_data.len = bytes;
	return NN_OK;
}

enum nn_status onnx_initializer_take(Onnx__TensorProto *init, struct tensor *t,
				     struct nn_err *e)
{
	size_t bytes;
	enum nn_status st = tensor_nbytes(t, &bytes, e);
	if (st != NN_OK)
		return st;
	if ((bytes && !t->data) || (t->data && !t->owned))
		return err_set(e, NN_EINTERNAL, "internal", NULL,
			       "initializer '%s': tensor data to take is %s", init_name(init),
			       t->data ? "not owned" : "missing");
	int64_t *dims = NULL;
	if (t->ndim && !(dims = malloc((size_t)t->ndim * sizeof *dims)))
		return oom(e);
	if (t->ndim)
		memcpy(dims, t->shape, (size_t)t->ndim * sizeof *dims);
	if (init->raw_data.data != t->data)
		free(init->raw_data.data);
	if (init->float_data == (float *)t->data) /* taken: free_typed_data must not free it */
		init->float_data = NULL;
	free_typed_data(init);
	free(init->dims);
	init->dims = dims;
	init->n_dims = (size_t)t->ndim;
	init->has_data_type = 1;
	init->data_type = (int32_t)t->dtype;
	init->has_raw_data = 1;
	init->raw_data.data = t->data;
	init->raw_data.len = bytes;
	t->data = NULL;
	t->owned = false;
	return NN_OK;
}

/* Appends without the duplicate check (callers that know the name is new);
 * take: t's data is handed over (onnx_initializer_take) instead of copied. */
static enum nn_status append_initializer_impl(struct onnx_model *m, const char *name,
					      struct tensor *t, bool take, struct nn_err *e)
{
	Onnx__GraphProto *g = m->proto->graph;
	if (!g)
		return err_set(e, NN_EINTERNAL, "internal", NULL, "model has no graph");
	Onnx__TensorProto *init = malloc(sizeof *init);
	if (!init)
		return oom(e);
	onnx__tensor_proto__init(init);
	enum nn_status st;
	if (!(init->name = xstrdup(name))) {
		st = oom(e);
		goto fail;
	}
	if ((st = take ? onnx_initializer_take(init, t, e) : onnx_initializer_set(init, t, e)) !=
	    NN_OK)
		goto fail;
	if (!push_ptr((void ***)&g->initializer, &g->n_initializer, init)) {
		st = oom(e);
		if (take) { /* give the data back: failure leaves t as it was */
			t->data = init->raw_data.data;
			t->owned = t->data != NULL;
			init->raw_data.data = NULL;
			init->raw_data.len = 0;
		}
		goto fail;
	}
	return NN_OK;
fail:
	onnx__tensor_proto__free_unpacked(init, NULL);
	return st;
}

static enum nn_status append_initializer(struct onnx_model *m, const char *name,
					 const struct tensor *t, struct nn_err *e)
{
	/* not taking: t is only read */
	return append_initializer_impl(m, name, (struct tensor *)t, false, e);
}

enum nn_status onnx_add_initializer(struct onnx_model *m, const char *name,
				    const struct tensor *t, struct nn_err *e)
{
	if (onnx_find_initializer(m, name))
		return err_set(e, NN_EINVAL, "duplicate_initializer", NULL,
			       "initializer '%s' already exists", name);
	return append_initializer(m, name, t, e);
}

enum nn_status onnx_add_initializer_take(struct onnx_model *m, const char *name,
					 struct tensor *t, struct nn_err *e)
{
	if (onnx_find_initializer(m, name))
		return err_set(e, NN_EINVAL, "duplicate_initializer", NULL,
			       "initializer '%s' already exists", name);
	return append_initializer_impl(m, name, t, true, e);
}

void onnx_remove_initializer(struct onnx_model *m, const char *name)
{
	Onnx__GraphProto *g = m->proto->graph;
	if (!g || !name)
		return;
	for (size_t i = 0; i < g->n_initializer; i++) {
		if (!streq(g->initializer[i]->name, name))
			continue;
		onnx__tensor_proto__free_unpacked(g->initializer[i], NULL);
		memmove(&g->initializer[i], &g->initializer[i + 1],
			(g->n_initializer - i - 1) * sizeof *g->initializer);
		g->n_initializer--;
		break;
	}
	for (size_t i = 0; i < g->n_input; i++) {
		if (!streq(g->input[i]->name, name))
			continue;
		onnx__value_info_proto__free_unpacked(g->input[i], NULL);
		memmove(&g->input[i], &g->input[i + 1], (g->n_input - i - 1) * sizeof *g->input);
		g->n_input--;
		break;
	}
}

static char **copy_strv(const char *const *v, size_t n, bool *ok)
{
	*ok = true;
	if (!n)
		return NULL;
	char **out = calloc(n, sizeof *out);
	if (!out) {
		*ok = false;
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		if (!(out[i] = xstrdup(v[i] ? v[i] : ""))) {
			for (size_t j = 0; j < i; j++)
				free(out[j]);
			free(out);
			*ok = false;
			return NULL;
		}
	}
	return out;
}

enum nn_status onnx_prepend_node(struct onnx_model *m, const char *op_type, const char *name,
				 const char *const *inputs, size_t n_inputs,
				 const char *const *outputs, size_t n_outputs,
				 Onnx__NodeProto **out, struct nn_err *e)
{
	if (out)
		*out = NULL;
	Onnx__GraphProto *g = m->proto->graph;
	if (!g)
		return err_set(e, NN_EINTERNAL, "internal", NULL, "model has no graph");
	Onnx__NodeProto *n = malloc(sizeof *n);
	if (!n)
		return oom(e);
	onnx__node_proto__init(n);
	bool ok1, ok2;
	n->op_type = xstrdup(op_type);
	n->name = name ? xstrdup(name) : NULL;
	n->input = copy_strv(inputs, n_inputs, &ok1);
	n->n_input = ok1 ? n_inputs : 0;
	n->output = copy_strv(outputs, n_outputs, &ok2);
	n->n_output = ok2 ? n_outputs : 0;
	if (!n->op_type || (name && !n->name) || !ok1 || !ok2)
		goto nomem;
	Onnx__NodeProto **arr = realloc(g->node, (g->n_node + 1) * sizeof *arr);
	if (!arr)
		goto nomem;
	memmove(arr + 1, arr, g->n_node * sizeof *arr);
	arr[0] = n;
	g->node = arr;
	g->n_node++;
	if (out)
		*out = n;
	return NN_OK;
nomem:
	onnx__node_proto__free_unpacked(n, NULL);
	return oom(e);
}

static Onnx__AttributeProto *find_attr(const Onnx__NodeProto *n, const char *name, size_t *idx)
{
	for (size_t i = 0; i < n->n_attribute; i++) {
		if (streq(n->attribute[i]->name, name)) {
			if (idx)
				*idx = i;
			return n->attribute[i];
		}
	}
	return NULL;
}

static void remove_attr(Onnx__NodeProto *n, const char *name)
{
	size_t i;
	if (!find_attr(n, name, &i))
		return;
	onnx__attribute_proto__free_unpacked(n->attribute[i], NULL);
	memmove(&n->attribute[i], &n->attribute[i + 1],
		(n->n_attribute - i - 1) * sizeof *n->attribute);
	n->n_attribute--;
}

/* Replaces (or appends) attribute `a` under its name; takes ownership. */
static enum nn_status put_attr(Onnx__NodeProto *node, Onnx__AttributeProto *a, struct nn_err *e)
{
	size_t i;
	if (find_attr(node, a->name, &i)) {
		onnx__attribute_proto__free_unpacked(node->attribute[i], NULL);
		node->attribute[i] = a;
		return NN_OK;
	}
	if (!push_ptr((void ***)&node->attribute, &node->n_attribute, a)) {
		onnx__attribute_proto__free_unpacked(a, NULL);
		return oom(e);
	}
	return NN_OK;
}

enum nn_status onnx_node_set_int_attr(Onnx__NodeProto *node, const char *name, int64_t value,
				      struct nn_err *e)
{
	Onnx__AttributeProto *a = malloc(sizeof *a);
	if (!a)
		return oom(e);
	onnx__attribute_proto__init(a);
	if (!(a->name = xstrdup(name))) {
		free(a);
		return oom(e);
	}
	a->has_type = 1;
	a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
	a->has_i = 1;
	a->i = value;
	return put_attr(node, a, e);
}

int64_t onnx_node_int_attr(const Onnx__NodeProto *node, const char *name, int64_t fallback)
{
	const Onnx__AttributeProto *a = find_attr(node, name, NULL);
	if (!a || !a->has_i)
		return fallback;
	return a->i;
}

static bool collect_graph_names(const Onnx__GraphProto *g, struct nameset *ns, int depth);

static bool collect_vi(Onnx__ValueInfoProto *const *v, size_t n, struct nameset *ns)
{
	for (size_t i = 0; i < n; i++)
		if (!nameset_put(ns, v[i]->name, NULL))
			return false;
	return true;
}

/* Every name in g and its subgraphs (a subgraph sees, and must not
 * shadow, the names of its enclosing graphs). */
static bool collect_graph_names(const Onnx__GraphProto *g, struct nameset *ns, int depth)
{
	if (depth > WIRE_MAX_DEPTH)
		return true;
	if (!collect_vi(g->input, g->n_input, ns) || !collect_vi(g->output, g->n_output, ns) ||
	    !collect_vi(g->value_info, g->n_value_info, ns))
		return false;
	for (size_t i = 0; i < g->n_initializer; i++)
		if (!nameset_put(ns, g->initializer[i]->name, NULL))
			return false;
	for (size_t i = 0; i < g->n_sparse_initializer; i++)
		if (g->sparse_initializer[i]->values &&
		    !nameset_put(ns, g->sparse_initializer[i]->values->name, NULL))
			return false;
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		if (!nameset_put(ns, n->name, NULL))
			return false;
		for (size_t j = 0; j < n->n_input; j++)
			if (!nameset_put(ns, n->input[j], NULL))
				return false;
		for (size_t j = 0; j < n->n_output; j++)
			if (!nameset_put(ns, n->output[j], NULL))
				return false;
		for (size_t j = 0; j < n->n_attribute; j++) {
			const Onnx__AttributeProto *a = n->attribute[j];
			if (a->g && !collect_graph_names(a->g, ns, depth + 1))
				return false;
			for (size_t k = 0; k < a->n_graphs; k++)
				if (!collect_graph_names(a->graphs[k], ns, depth + 1))
					return false;
		}
	}
	return true;
}

char *onnx_unique_name(const struct onnx_model *m, const char *base)
{
	struct nameset ns = { 0 };
	char *out = NULL;
	if (!base || !*base)
		base = "nncd";
	if (m->proto->graph && !collect_graph_names(m->proto->graph, &ns, 0))
		goto done;
	if (!nameset_has(&ns, base)) {
		out = xstrdup(base);
		goto done;
	}
	size_t cap = strlen(base) + 24;
	out = malloc(cap);
	if (!out)
		goto done;
	for (unsigned long long k = 1;; k++) {
		snprintf(out, cap, "%s_%llu", base, k);
		if (!nameset_has(&ns, out))
			break;
	}
done:
	nameset_free(&ns);
	return out;
}

/* ------------------------------------------------------------------ */
/* opset conversion                                                    */

/* Lowest IR version that may carry a given default-domain opset. */
static int64_t ir_for_opset(int64_t opset)
{
	if (opset <= 8) return 3;
	if (opset == 9) return 4;
	if (opset == 10) return 5;
	if (opset == 11) return 6;
	if (opset <= 14) return 7;
	if (opset <= 18) return 8;
	if (opset <= 20) return 9;
	return 10;
}

struct vinfo {
	int rank;      /* -1 unknown */
	int32_t elem;  /* 0 unknown */
};

struct cvt {
	struct onnx_model *m;
	int64_t from, to;
	bool dry; /* first pass: only find nodes that must be rejected */
	struct nameset names; /* value name -> index + 1 into vi (owned keys) */
	struct nameset all;   /* every name in the graph, for new names (owned keys) */
	bool all_built;
	struct vinfo *vi;
	size_t n_vi, cap_vi;
	/* Set by reject(): the node refused and why (for the summary's
	 * opset_upgrade entry); both borrow from the model / string literals. */
	const Onnx__NodeProto *rejected;
	const char *why;
};

#define CHANGED(c, v) ((c)->from < (v) && (v) <= (c)->to)

static const struct vinfo *info_get(const struct cvt *c, const char *name)
{
	uintptr_t k = (uintptr_t)nameset_get(&c->names, name);
	return k ? &c->vi[k - 1] : NULL;
}

static bool info_put(struct cvt *c, const char *name, int rank, int32_t elem)
{
	if (!name || !*name || info_get(c, name))
		return true;
	if (!grow(&c->vi, &c->cap_vi, c->n_vi, sizeof *c->vi))
		return false;
	c->vi[c->n_vi] = (struct vinfo){ rank, elem };
	if (!nameset_put(&c->names, name, (void *)(uintptr_t)(c->n_vi + 1)))
		return false;
	c->n_vi++;
	return true;
}

static bool info_from_vi(struct cvt *c, Onnx__ValueInfoProto *const *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const Onnx__TypeProto *tp = v[i]->type;
		if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
			continue;
		const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
		if (!info_put(c, v[i]->name, tt->shape ? (int)tt->shape->n_dim : -1,
			      tt->has_elem_type ? tt->elem_type : 0))
			return false;
	}
	return true;
}

static bool op_in(const char *op, const char *const *list)
{
	for (; *list; list++)
		if (streq(op, *list))
			return true;
	return false;
}

static const char *const same_shape_ops[] = {
	"Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Sigmoid", "HardSigmoid", "Tanh", "Softplus",
	"Softsign", "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round",
	"Erf", "Sin", "Cos", "Identity", "Dropout", "Clip", "Softmax", "LogSoftmax", "Hardmax",
	"BatchNormalization", "InstanceNormalization", "LRN", "Conv", "ConvTranspose", "MaxPool",
	"AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "Transpose", "Cast",
	"HardSwish", "Mish", "Gelu", "ThresholdedRelu", "Sign", "Not", "CumSum",
	"LayerNormalization", "Celu", NULL,
};
static const char *const broadcast_ops[] = {
	"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "And", "Or", "Xor",
	"Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Mod", NULL,
};

/* A conservative forward pass: ranks and element types where they follow
 * from the graph alone, for conversions whose safety depends on them. */
static bool infer_info(struct cvt *c, const Onnx__GraphProto *g)
{
	if (!info_from_vi(c, g->input, g->n_input) || !info_from_vi(c, g->output, g->n_output) ||
	    !info_from_vi(c, g->value_info, g->n_value_info))
		return false;
	for (size_t i = 0; i < g->n_initializer; i++) {
		const Onnx__TensorProto *t = g->initializer[i];
		if (!info_put(c, t->name, (int)t->n_dims, t->data_type))
			return false;
	}
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		if (!is_default_domain(n->domain) || n->n_output == 0 || n->n_input == 0)
			continue;
		const char *op = n->op_type;
		const struct vinfo *a = info_get(c, n->input[0]);
		const struct vinfo *b = n->n_input > 1 ? info_get(c, n->input[1]) : NULL;
		int rank = -1;
		int32_t elem = a ? a->elem : 0;
		if (streq(op, "Gemm") || streq(op, "Flatten")) {
			rank = 2;
		} else if (op_in(op, same_shape_ops)) {
			rank = a ? a->rank : -1;
			if (streq(op, "Cast"))
				elem = (int32_t)onnx_node_int_attr(n, "to", 0);
		} else if (op_in(op, broadcast_ops)) {
			rank = a ? a->rank : -1;
			for (size_t k = 1; k < n->n_input && rank >= 0; k++) {
				const struct vinfo *o = info_get(c, n->input[k]);
				rank = o && o->rank >= 0 ? (o->rank > rank ? o->rank : rank) : -1;
			}
			if (op_in(op, (const char *const[]){ "And", "Or", "Xor", "Equal", "Greater",
							     "Less", "GreaterOrEqual",
							     "LessOrEqual", NULL }))
				elem = DT_BOOL;
		} else if (streq(op, "MatMul") && a && b && a->rank >= 1 && b->rank >= 1) {
			if (a->rank == 1 && b->rank == 1)
				rank = 0;
			else if (a->rank == 1)
				rank = b->rank - 1;
			else if (b->rank == 1)
				rank = a->rank - 1;
			else
				rank = a->rank > b->rank ? a->rank : b->rank;
		} else if (streq(op, "Reshape") && n->n_input > 1) {
			const Onnx__TensorProto *s = onnx_find_initializer(c->m, n->input[1]);
			if (s && s->n_dims == 1 && s->dims[0] >= 0 && s->dims[0] < 64)
				rank = (int)s->dims[0];
		} else {
			elem = 0;
		}
		if ((rank >= 0 || elem) && !info_put(c, n->output[0], rank, elem))
			return false;
	}
	return true;
}

static void node_label(const Onnx__NodeProto *n, char *buf, size_t cap)
{
	if (n->name && *n->name)
		snprintf(buf, cap, "node '%s' (%s)", n->name, n->op_type ? n->op_type : "?");
	else
		snprintf(buf, cap, "unnamed %s node producing '%s'", n->op_type ? n->op_type : "?",
			 n->n_output ? n->output[0] : "");
}

static enum nn_status reject(struct cvt *c, const Onnx__NodeProto *n, struct nn_err *e,
			     const char *why)
{
	char lab[200];
	c->rejected = n;
	c->why = why;
	node_label(n, lab, sizeof lab);
	return err_set(e, NN_EUNSUPPORTED, "unsupported_opset_conversion", NULL,
		       "cannot raise the opset from %lld to %lld: %s %s", (long long)c->from,
		       (long long)c->to, lab, why);
}

static enum nn_status set_input(Onnx__NodeProto *n, size_t idx, const char *name,
				struct nn_err *e)
{
	if (idx >= n->n_input) {
		char **arr = realloc(n->input, (idx + 1) * sizeof *arr);
		if (!arr)
			return oom(e);
		n->input = arr;
		for (size_t i = n->n_input; i <= idx; i++)
			arr[i] = NULL;
		for (size_t i = n->n_input; i < idx; i++) {
			if (!(arr[i] = xstrdup(""))) {
				n->n_input = i;
				return oom(e);
			}
		}
		n->n_input = idx;
	}
	char *copy = xstrdup(name);
	if (!copy)
		return oom(e);
	if (idx < n->n_input)
		free(n->input[idx]);
	n->input[idx] = copy;
	if (idx >= n->n_input)
		n->n_input = idx + 1;
	return NN_OK;
}

/* Adds an initializer named after the node, of the given tensor, and wires
 * it to input idx of n. */
static enum nn_status add_input_const(struct cvt *c, Onnx__NodeProto *n, size_t idx,
				      const char *suffix, const struct tensor *t, struct nn_err *e)
{
	char base[256];
	snprintf(base, sizeof base, "%s_%s",
		 n->name && *n->name ? n->name : (n->n_output ? n->output[0] : "nncd"), suffix);
	/* One name set for the whole conversion (onnx_unique_name would
	 * rebuild it for every new initializer). */
	if (!c->all_built) {
		if (!collect_graph_names(c->m->proto->graph, &c->all, 0))
			return oom(e);
		c->all_built = true;
	}
	size_t cap = strlen(base) + 24;
	char *name = malloc(cap);
	if (!name)
		return oom(e);
	snprintf(name, cap, "%s", base);
	for (unsigned long long k = 1; nameset_has(&c->all, name); k++)
		snprintf(name, cap, "%s_%llu", base, k);
	enum nn_status st = append_initializer(c->m, name, t, e);
	if (st == NN_OK && !nameset_put(&c->all, name, NULL))
		st = oom(e);
	if (st == NN_OK)
		st = set_input(n, idx, name, e);
	free(name);
	return st;
}

/* Moves an ints attribute into input idx as a 1-D int64 initializer. */
static enum nn_status ints_attr_to_input(struct cvt *c, Onnx__NodeProto *n, const char *attr,
					 size_t idx, struct nn_err *e)
{
	Onnx__AttributeProto *a = find_attr(n, attr, NULL);
	if (!a)
		return NN_OK;
	struct tensor t;
	int64_t dim = (int64_t)a->n_ints;
	int64_t one = 0;
	tensor_view(&t, DT_INT64, 1, &dim, a->n_ints ? (void *)a->ints : &one);
	enum nn_status st = add_input_const(c, n, idx, attr, &t, e);
	if (st == NN_OK)
		remove_attr(n, attr);
	return st;
}

static enum nn_status set_string_attr(Onnx__NodeProto *node, const char *name, const char *value,
				      struct nn_err *e)
{
	Onnx__AttributeProto *a = malloc(sizeof *a);
	if (!a)
		return oom(e);
	onnx__attribute_proto__init(a);
	size_t len = strlen(value);
	a->name = xstrdup(name);
	a->s.data = malloc(len ? len : 1);
	if (!a->name || !a->s.data) {
		onnx__attribute_proto__free_unpacked(a, NULL);
		return oom(e);
	}
	memcpy(a->s.data, value, len);
	a->s.len = len;
	a->has_s = 1;
	a->has_type = 1;
	a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
	return put_attr(node, a, e);
}

static bool string_attr_is(const Onnx__NodeProto *n, const char *name, const char *value,
			   bool if_absent)
{
	const Onnx__AttributeProto *a = find_attr(n, name, NULL);
	if (!a || !a->has_s)
		return if_absent;
	return a->s.len == strlen(value) && memcmp(a->s.data, value, a->s.len) == 0;
}

/* Upsample (any version) and Resize-10 -> Resize at c->to. ONNX Runtime
 * computes both with asymmetric coordinates and, for nearest, floor
 * rounding (checked bit for bit by onnx_raise_opset_outputs_match_onnxruntime). */
static enum nn_status convert_to_resize(struct cvt *c, Onnx__NodeProto *n, struct nn_err *e)
{
	enum nn_status st;
	bool nearest = string_attr_is(n, "mode", "nearest", true);
	if (n->n_input < 2) {
		/* Upsample-7: scales attribute -> input 1 */
		Onnx__AttributeProto *a = find_attr(n, "scales", NULL);
		struct tensor t;
		int64_t dim = a ? (int64_t)a->n_floats : 0;
		tensor_view(&t, DT_FLOAT, 1, &dim, a ? (void *)a->floats : NULL);
		if ((st = add_input_const(c, n, 1, "scales", &t, e)) != NN_OK)
			return st;
		remove_attr(n, "scales");
	}
	if (!streq(n->op_type, "Resize")) {
		char *nm = xstrdup("Resize");
		if (!nm)
			return oom(e);
		free(n->op_type);
		n->op_type = nm;
	}
	if (c->to < 11)
		return NN_OK; /* Resize-10 has Upsample's inputs and meaning */
	/* Resize-11/12 require roi (ignored unless tf_crop_and_resize): an
	 * empty tensor; from 13 it may be left out. */
	char *scales = xstrdup(n->input[1]);
	if (!scales)
		return oom(e);
	if (c->to >= 13) {
		st = set_input(n, 1, "", e);
	} else {
		struct tensor roi;
		int64_t zero = 0;
		float none = 0;
		tensor_view(&roi, DT_FLOAT, 1, &zero, &none);
		st = add_input_const(c, n, 1, "roi", &roi, e);
	}
	if (st == NN_OK)
		st = set_input(n, 2, scales, e);
	free(scales);
	if (st == NN_OK)
		st = set_string_attr(n, "coordinate_transformation_mode", "asymmetric", e);
	if (st == NN_OK && nearest)
		st = set_string_attr(n, "nearest_mode", "floor", e);
	return st;
}

static enum nn_status scalar_to_input(struct cvt *c, Onnx__NodeProto *n, size_t idx,
				      const char *suffix, int32_t elem, double v, struct nn_err *e)
{
	struct tensor t;
	float f = (float)v;
	tensor_view(&t, elem == DT_DOUBLE ? DT_DOUBLE : DT_FLOAT, 0, NULL,
		    elem == DT_DOUBLE ? (void *)&v : (void *)&f);
	return add_input_const(c, n, idx, suffix, &t, e);
}

/* Removes trailing empty optional inputs. */
static void trim_inputs(Onnx__NodeProto *n)
{
	while (n->n_input && n->input[n->n_input - 1][0] == '\0') {
		free(n->input[n->n_input - 1]);
		n->n_input--;
	}
}

static int32_t cast_name_to_type(const char *s, size_t len)
{
	static const char *const names[] = { "", "FLOAT", "UINT8", "INT8", "UINT16", "INT16",
					     "INT32", "INT64", "STRING", "BOOL", "FLOAT16",
					     "DOUBLE", "UINT32", "UINT64", "COMPLEX64",
					     "COMPLEX128", "BFLOAT16" };
	for (int32_t i = 1; i < (int32_t)(sizeof names / sizeof *names); i++)
		if (strlen(names[i]) == len && strncasecmp(names[i], s, len) == 0)
			return i;
	return 0;
}

static const char *const removed_at_10[] = {
	"Affine", "Crop", "DynamicSlice", "GRUUnit", "GivenTensorFill", "ImageScaler",
	"ParametricSoftplus", "Scale", "ScaledTanh", "ATen", NULL,
};
static const char *const reduce_ops_18[] = {
	"ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
	"ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", NULL,
};

static enum nn_status convert_graph(struct cvt *c, Onnx__GraphProto *g, int depth,
				    struct nn_err *e);

/* Converts one default-domain node from opset c->from to c->to. In the dry
 * pass it only rejects; mutations happen in the second pass. */
static enum nn_status convert_node(struct cvt *c, Onnx__NodeProto *n, struct nn_err *e)
{
	const char *op = n->op_type ? n->op_type : "";
	enum nn_status st = NN_OK;
	if (!c->dry && CHANGED(c, 6))
		remove_attr(n, "consumed_inputs"); /* a legacy hint with no semantics */

	if (CHANGED(c, 7) && (op_in(op, broadcast_ops) || streq(op, "Gemm"))) {
		if (!streq(op, "Gemm") && onnx_node_int_attr(n, "broadcast", 0) &&
		    find_attr(n, "axis", NULL))
			return reject(c, n, e, "uses legacy broadcasting along an axis");
		if (c->dry)
			return NN_OK;
		remove_attr(n, "broadcast");
		if (!streq(op, "Gemm"))
			remove_attr(n, "axis");
		return NN_OK;
	}
	if (streq(op, "BatchNormalization")) {
		bool extra = n->n_output > 1;
		if (CHANGED(c, 7) && find_attr(n, "is_test", NULL) &&
		    !onnx_node_int_attr(n, "is_test", 0) && extra)
			return reject(c, n, e, "is in training mode (is_test=0)");
		if (CHANGED(c, 9) && find_attr(n, "spatial", NULL) &&
		    !onnx_node_int_attr(n, "spatial", 1))
			return reject(c, n, e, "uses per-activation statistics (spatial=0)");
		if (c->dry)
			return NN_OK;
		if (CHANGED(c, 7))
			remove_attr(n, "is_test");
		if (CHANGED(c, 9))
			remove_attr(n, "spatial");
		return NN_OK;
	}
	if (streq(op, "Dropout")) {
		if (CHANGED(c, 10) && n->n_output > 1 && n->output[1][0])
			return reject(c, n, e, "uses its mask output, whose type changed at opset 10");
		if (c->dry)
			return NN_OK;
		if (CHANGED(c, 7))
			remove_attr(n, "is_test");
		if (CHANGED(c, 12))
			remove_attr(n, "ratio"); /* inference: Dropout is the identity */
		return NN_OK;
	}
	if (streq(op, "Clip") && CHANGED(c, 11)) {
		Onnx__AttributeProto *mn = find_attr(n, "min", NULL), *mx = find_attr(n, "max", NULL);
		const struct vinfo *in = n->n_input ? info_get(c, n->input[0]) : NULL;
		int32_t elem = in && in->elem ? in->elem : DT_FLOAT;
		if ((mn || mx) && elem != DT_FLOAT && elem != DT_DOUBLE)
			return reject(c, n, e, "clips a tensor that is neither float32 nor float64");
		if (c->dry || n->n_input < 1)
			return NN_OK;
		if (mn && (st = scalar_to_input(c, n, 1, "min", elem, mn->f, e)) != NN_OK)
			return st;
		if (mx && (st = scalar_to_input(c, n, 2, "max", elem, mx->f, e)) != NN_OK)
			return st;
		remove_attr(n, "min");
		remove_attr(n, "max");
		trim_inputs(n);
		return NN_OK;
	}
	if (streq(op, "Slice") && CHANGED(c, 10)) {
		if (!find_attr(n, "starts", NULL) || !find_attr(n, "ends", NULL))
			return reject(c, n, e, "has no starts/ends attributes");
		if (c->dry)
			return NN_OK;
		if ((st = ints_attr_to_input(c, n, "starts", 1, e)) != NN_OK ||
		    (st = ints_attr_to_input(c, n, "ends", 2, e)) != NN_OK ||
		    (st = ints_attr_to_input(c, n, "axes", 3, e)) != NN_OK)
			return st;
		return NN_OK;
	}
	if (streq(op, "Pad") && (CHANGED(c, 2) || CHANGED(c, 11))) {
		const char *pads = find_attr(n, "pads", NULL) ? "pads" : "paddings";
		Onnx__AttributeProto *val = find_attr(n, "value", NULL);
		const struct vinfo *in = n->n_input ? info_get(c, n->input[0]) : NULL;
		int32_t elem = in && in->elem ? in->elem : DT_FLOAT;
		if (CHANGED(c, 11) && val && val->f != 0 && elem != DT_FLOAT && elem != DT_DOUBLE)
			return reject(c, n, e, "pads a tensor that is neither float32 nor float64 "
					       "with a non-zero value");
		if (CHANGED(c, 11) && !find_attr(n, pads, NULL))
			return reject(c, n, e, "has no pads attribute");
		if (c->dry)
			return NN_OK;
		if (!CHANGED(c, 11)) {
			Onnx__AttributeProto *a = find_attr(n, "paddings", NULL);
			if (a) {
				char *nm = xstrdup("pads");
				if (!nm)
					return oom(e);
				free(a->name);
				a->name = nm;
			}
			return NN_OK;
		}
		if ((st = ints_attr_to_input(c, n, pads, 1, e)) != NN_OK)
			return st;
		if (val && val->f != 0 &&
		    (st = scalar_to_input(c, n, 2, "value", elem, val->f, e)) != NN_OK)
			return st;
		remove_attr(n, "value");
		return NN_OK;
	}
	if (streq(op, "TopK") && CHANGED(c, 10)) {
		Onnx__AttributeProto *k = find_attr(n, "k", NULL);
		if (!k || !k->has_i)
			return reject(c, n, e, "has no k attribute");
		if (c->dry)
			return NN_OK;
		struct tensor t;
		int64_t one = 1;
		tensor_view(&t, DT_INT64, 1, &one, &k->i);
		if ((st = add_input_const(c, n, 1, "k", &t, e)) != NN_OK)
			return st;
		remove_attr(n, "k");
		return NN_OK;
	}
	if ((streq(op, "Upsample") && c->to >= 10) || (streq(op, "Resize") && CHANGED(c, 11))) {
		if (!string_attr_is(n, "mode", "nearest", true) &&
		    !string_attr_is(n, "mode", "linear", false))
			return reject(c, n, e, "uses a mode other than nearest or linear");
		if (n->n_input < 2 && !find_attr(n, "scales", NULL))
			return reject(c, n, e, "has no scales");
		if (c->dry)
			return NN_OK;
		return convert_to_resize(c, n, e);
	}
	if ((streq(op, "Unsqueeze") || streq(op, "Squeeze") || streq(op, "ReduceSum")) &&
	    CHANGED(c, 13)) {
		if (streq(op, "Unsqueeze") && !find_attr(n, "axes", NULL))
			return reject(c, n, e, "has no axes attribute");
		if (c->dry)
			return NN_OK;
		return ints_attr_to_input(c, n, "axes", 1, e);
	}
	if (streq(op, "Split") && CHANGED(c, 13)) {
		if (c->dry || n->n_input >= 2)
			return NN_OK;
		return ints_attr_to_input(c, n, "split", 1, e);
	}
	if (op_in(op, reduce_ops_18) && CHANGED(c, 18)) {
		if (c->dry)
			return NN_OK;
		return ints_attr_to_input(c, n, "axes", 1, e);
	}
	if ((streq(op, "Softmax") || streq(op, "LogSoftmax") || streq(op, "Hardmax")) &&
	    CHANGED(c, 13)) {
		/* Before 13 these flatten the input to 2-D around `axis` (default
		 * 1); from 13 they work along `axis` (default -1). Equal only when
		 * the axis is the last one. */
		int64_t axis = onnx_node_int_attr(n, "axis", 1);
		const struct vinfo *in = n->n_input ? info_get(c, n->input[0]) : NULL;
		int rank = in ? in->rank : -1;
		int64_t norm = axis < 0 && rank >= 0 ? axis + rank : axis;
		bool ok = rank >= 0 ? norm == rank - 1 : axis == -1;
		if (!ok)
			return reject(c, n, e, rank >= 0 ?
				      "coerces its input to 2-D around a non-last axis; opset 13 "
				      "changed that meaning" :
				      "has an input of unknown rank, so its opset-13 meaning cannot "
				      "be checked");
		if (c->dry)
			return NN_OK;
		return onnx_node_set_int_attr(n, "axis", rank >= 0 ? rank - 1 : -1, e);
	}
	if (streq(op, "Reshape") && CHANGED(c, 5)) {
		if (!find_attr(n, "shape", NULL) && n->n_input < 2)
			return reject(c, n, e, "has no shape");
		if (c->dry)
			return NN_OK;
		return ints_attr_to_input(c, n, "shape", 1, e);
	}
	if (streq(op, "Concat") && CHANGED(c, 4)) {
		if (c->dry || find_attr(n, "axis", NULL))
			return NN_OK;
		return onnx_node_set_int_attr(n, "axis", 1, e);
	}
	if (streq(op, "Cast") && CHANGED(c, 6)) {
		Onnx__AttributeProto *to = find_attr(n, "to", NULL);
		if (!to || !to->has_s)
			return NN_OK;
		int32_t dt = cast_name_to_type((const char *)to->s.data, to->s.len);
		if (!dt)
			return reject(c, n, e, "casts to an unknown type name");
		if (c->dry)
			return NN_OK;
		return onnx_node_set_int_attr(n, "to", dt, e);
	}
	if (streq(op, "Scatter") && c->to >= 11) {
		if (c->dry)
			return NN_OK;
		/* Same semantics; Scatter was renamed ScatterElements at 11. */
		char *nm = xstrdup("ScatterElements");
		if (!nm)
			return oom(e);
		free(n->op_type);
		n->op_type = nm;
		return NN_OK;
	}
	if (streq(op, "Tile") && CHANGED(c, 6))
		return reject(c, n, e, "uses the opset-1 tiles/axis inputs");
	if (streq(op, "Scan") && CHANGED(c, 9))
		return reject(c, n, e, "uses opset-8 Scan batching");
	if ((streq(op, "LpPool") || streq(op, "GlobalLpPool")) && CHANGED(c, 2))
		return reject(c, n, e, "uses the opset-1 float p attribute");
	if ((streq(op, "RNN") || streq(op, "GRU") || streq(op, "LSTM")) && CHANGED(c, 7) &&
	    find_attr(n, "output_sequence", NULL))
		return reject(c, n, e, "uses the output_sequence attribute removed at opset 7");
	if (streq(op, "MeanVarianceNormalization") && CHANGED(c, 9))
		return reject(c, n, e, "uses the opset-1 attributes changed at opset 9");
	if (op_in(op, removed_at_10) && c->to >= 10)
		return reject(c, n, e, "is an experimental op removed at opset 10");
	if (streq(op, "GroupNormalization") && CHANGED(c, 21))
		return reject(c, n, e, "changed scale/bias shapes at opset 21");
	if ((streq(op, "DFT") || streq(op, "GridSample")) && CHANGED(c, 20))
		return reject(c, n, e, "changed its attributes at opset 20");
	return NN_OK;
}

static enum nn_status convert_graph(struct cvt *c, Onnx__GraphProto *g, int depth,
				    struct nn_err *e)
{
	if (depth > WIRE_MAX_DEPTH)
		return err_set(e, NN_EINVAL, "invalid_model", NULL, "subgraphs nested too deeply");
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		/* Subgraphs share the model's opset imports. */
		for (size_t j = 0; j < n->n_attribute; j++) {
			Onnx__AttributeProto *a = n->attribute[j];
			enum nn_status st;
			if (a->g && (st = convert_graph(c, a->g, depth + 1, e)) != NN_OK)
				return st;
			for (size_t k = 0; k < a->n_graphs; k++)
				if ((st = convert_graph(c, a->graphs[k], depth + 1, e)) != NN_OK)
					return st;
		}
		if (!is_default_domain(n->domain))
			continue;
		enum nn_status st = convert_node(c, n, e);
		if (st != NN_OK)
			return st;
	}
	return NN_OK;
}

/* The dry pass of a conversion from c->from to c->to: ranks and element
 * types from the graph, then every node checked against the rules of
 * convert_node without changing anything. onnx_raise_opset runs it before
 * converting; the summary runs it on a weightless skeleton of the model
 * (names, attributes, value infos, initializer dims and types: all that
 * infer_info and the dry rules read), so both give the same verdict. */
static enum nn_status raise_dry_run(struct cvt *c, struct nn_err *e)
{
	Onnx__GraphProto *g = c->m->proto->graph;
	if (c->from >= c->to || !g)
		return NN_OK;
	if (!infer_info(c, g))
		return oom(e);
	c->dry = true;
	enum nn_status st = convert_graph(c, g, 0, e);
	c->dry = false;
	return st;
}

static void cvt_free(struct cvt *c)
{
	nameset_free(&c->names);
	nameset_free(&c->all);
	free(c->vi);
}

enum nn_status onnx_raise_opset(struct onnx_model *m, int64_t version, struct nn_err *e)
{
	Onnx__ModelProto *p = m->proto;
	if (version < 1 || version > ONNX_MAX_OPSET)
		return err_set(e, NN_EUNSUPPORTED, "unsupported_opset", NULL,
			       "cannot raise the opset to %lld: nncd converts up to opset %d",
			       (long long)version, ONNX_MAX_OPSET);
	Onnx__OperatorSetIdProto *imp = NULL;
	for (size_t i = 0; i < p->n_opset_import; i++)
		if (is_default_domain(p->opset_import[i]->domain))
			imp = p->opset_import[i];
	/* Without a default-domain import there is no old meaning to convert
	 * from: the import is added and nodes are left as they are. */
	int64_t from = imp ? (imp->has_version ? imp->version : 1) : version;
	enum nn_status st = NN_OK;
	struct cvt c = { .m = m, .from = from, .to = version, .names = { .owns = true },
			 .all = { .owns = true } };
	/* Reject before changing anything, so a refusal leaves the model as
	 * it was. */
	if ((st = raise_dry_run(&c, e)) != NN_OK)
		goto out;
	if (from < version && p->graph && (st = convert_graph(&c, p->graph, 0, e)) != NN_OK)
		goto out;
	if (!imp) {
		imp = malloc(sizeof *imp);
		if (!imp) {
			st = oom(e);
			goto out;
		}
		onnx__operator_set_id_proto__init(imp);
		if (!(imp->domain = xstrdup("")) ||
		    !push_ptr((void ***)&p->opset_import, &p->n_opset_import, imp)) {
			onnx__operator_set_id_proto__free_unpacked(imp, NULL);
			st = oom(e);
			goto out;
		}
	}
	if (from < version || !imp->has_version) {
		imp->has_version = 1;
		imp->version = version;
	}
	int64_t need = ir_for_opset(imp->version);
	if (!p->has_ir_version || p->ir_version < need) {
		p->has_ir_version = 1;
		p->ir_version = need;
	}
out:
	cvt_free(&c);
	return st;
}

/* ------------------------------------------------------------------ */
/* summary: can the model be raised to the opsets engine steps need?   */

/* Opsets engine steps raise models to (quantize: 13, for DequantizeLinear's
 * axis). Each becomes a key of the summary's "opset_upgrade". */
static const int64_t upgrade_targets[] = { 13 };

/* The verdict of raise_dry_run for one target on the skeleton graph `g`:
 * null when onnx_raise_opset would succeed, else {node, op, message}. */
static enum nn_status upgrade_verdict(const struct summary *s, Onnx__ModelProto *p,
				      int64_t to, json_t **out, struct nn_err *e)
{
	*out = NULL;
	/* Without a default-domain import onnx_raise_opset only adds one. */
	if (!s->has_def_opset || s->def_opset >= to) {
		*out = json_null();
		return *out ? NN_OK : oom(e);
	}
	struct onnx_model m = { .proto = p };
	struct cvt c = { .m = &m, .from = s->def_opset, .to = to, .names = { .owns = true },
			 .all = { .owns = true } };
	struct nn_err re = { 0 };
	enum nn_status st = raise_dry_run(&c, &re);
	if (st == NN_OK) {
		*out = json_null();
	} else if (st == NN_EUNSUPPORTED || st == NN_EINVAL) {
		const Onnx__NodeProto *n = c.rejected;
		json_t *o = json_object();
		if (o) {
			json_object_set_new(o, "node", n && n->name && *n->name ? jstr(n->name)
										: json_null());
			json_object_set_new(o, "op", n ? jstr(n->op_type) : json_null());
			json_object_set_new(o, "message", jstr(c.why ? c.why : re.message));
			if (json_object_size(o) != 3) {
				json_decref(o);
				o = NULL;
			}
		}
		*out = o;
	} else {
		if (e)
			*e = re;
		cvt_free(&c);
		return st;
	}
	cvt_free(&c);
	return *out ? NN_OK : oom(e);
}

static enum nn_status sum_opset_upgrade(struct summary *s, json_t **out, struct nn_err *e)
{
	*out = NULL;
	/* A skeleton ModelProto borrowing everything from the summary: graph
	 * nodes, value infos, and initializers as name + dims + data_type with
	 * no payload (infer_info reads no more). Only the pointer arrays
	 * built here are owned. */
	Onnx__ModelProto p;
	Onnx__GraphProto g;
	onnx__model_proto__init(&p);
	onnx__graph_proto__init(&g);
	p.graph = &g;
	g.node = s->skel_nodes;
	g.n_node = s->n_skel_nodes;
	g.input = s->skel_vi[SKEL_IN];
	g.n_input = s->n_skel_vi[SKEL_IN];
	g.output = s->skel_vi[SKEL_OUT];
	g.n_output = s->n_skel_vi[SKEL_OUT];
	g.value_info = s->skel_vi[SKEL_VI];
	g.n_value_info = s->n_skel_vi[SKEL_VI];
	Onnx__TensorProto *inits = NULL, **init_ptrs = NULL;
	json_t *o = json_object();
	enum nn_status st = NN_OK;
	if (!o)
		goto nomem;
	if (s->n_inits) {
		inits = calloc(s->n_inits, sizeof *inits);
		init_ptrs = calloc(s->n_inits, sizeof *init_ptrs);
		if (!inits || !init_ptrs)
			goto nomem;
	}
	for (size_t i = 0; i < s->n_inits; i++) {
		onnx__tensor_proto__init(&inits[i]);
		inits[i].name = s->inits[i].name;
		inits[i].has_data_type = 1;
		inits[i].data_type = s->inits[i].dt;
		inits[i].n_dims = s->inits[i].ndim;
		inits[i].dims = s->inits[i].dims;
		init_ptrs[i] = &inits[i];
	}
	g.initializer = init_ptrs;
	g.n_initializer = s->n_inits;
	for (size_t i = 0; i < sizeof upgrade_targets / sizeof *upgrade_targets; i++) {
		char key[24];
		json_t *v;
		snprintf(key, sizeof key, "%lld", (long long)upgrade_targets[i]);
		if ((st = upgrade_verdict(s, &p, upgrade_targets[i], &v, e)) != NN_OK)
			goto out;
		if (json_object_set_new(o, key, v) != 0)
			goto nomem;
	}
	*out = o;
	o = NULL;
	goto out;
nomem:
	st = oom(e);
out:
	json_decref(o);
	free(inits);
	free(init_ptrs);
	return st;
}
