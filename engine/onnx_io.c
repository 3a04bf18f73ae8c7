/* onnx_io: ONNX models from and to protobuf bytes (see onnx_io.h).
 *
 * Owns: the Onnx__ModelProto of each struct onnx_model (decoded by protobuf-c
 * with its default malloc allocator, so everything attached by the helpers
 * of onnx_graph and onnx_opset is malloc'd and released by
 * onnx__model_proto__free_unpacked), and the streaming writer of onnx_save.
 *
 * onnx_load: onnx_wire's wire_check (a schema-aware, non-recursive validator
 * that runs before protobuf-c unpacks anything, so malformed or hostile bytes
 * get a precise message and nesting is capped before protobuf-c's recursive
 * decoder sees it) + protobuf-c unpack + semantic checks on every tensor.
 * Not thread-safe per model; no global state. */
#include "onnx_io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnx_wire.h"

#define SAVE_CHUNK (1u << 20)       /* write coalescing of onnx_save */

/* ------------------------------------------------------------------ */
/* tensor payload checks of a decoded model                            */

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
	return wire_check_tensor_facts(&t, numel, e);
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

static enum nn_status check_sparse_dims(const Onnx__SparseTensorProto *sp, struct nn_err *e)
{
	int64_t numel = 1;
	for (size_t i = 0; i < sp->n_dims; i++)
		if (sp->dims[i] < 0 || __builtin_mul_overflow(numel, sp->dims[i], &numel))
			return wire_sparse_dims_error(sp->values ? sp->values->name : NULL, e);
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

static enum nn_status check_model(const Onnx__ModelProto *p, struct nn_err *e)
{
	const Onnx__GraphProto *g = p->graph;
	enum nn_status st = wire_check_model_shape(g != NULL, g ? g->n_node : 0, g ? g->n_output : 0,
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

struct clone_buf {
	uint8_t *data;
	size_t len, cap;
};

static enum nn_status clone_write(void *ud, const void *data, size_t len, struct nn_err *e)
{
	struct clone_buf *b = ud;
	if (len > b->cap - b->len)
		return err_set(e, NN_EINTERNAL, "internal", "",
			       "model serialised to more bytes than its packed size");
	memcpy(b->data + b->len, data, len);
	b->len += len;
	return NN_OK;
}

enum nn_status onnx_clone(const struct onnx_model *m, struct onnx_model **out, struct nn_err *e)
{
	struct clone_buf b = {NULL, 0, onnx_packed_size(m)};
	b.data = malloc(b.cap ? b.cap : 1);
	if (!b.data)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory to copy the model");
	enum nn_status st = onnx_save(m, clone_write, &b, e);
	if (st == NN_OK)
		st = onnx_load(b.data, b.len, out, e);
	free(b.data);
	return st;
}
