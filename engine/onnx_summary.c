/* onnx_summary: the streaming summary of a model file (see onnx_summary.h).
 *
 * A scan with pread through a small window (onnx_wire's struct rd),
 * decoding only the small parts, skipping weight payloads by length and
 * validating every other field with wire_check; it applies the same tensor
 * and model checks as onnx_load. Memory is the window plus per-initializer
 * names and dims, and the weightless skeleton of the graph kept for the
 * opset_upgrade verdict. No global state. */
#include "onnx_summary.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "onnx_io.h"
#include "onnx_wire.h"

#define SUM_MAX_SUBMSG (64u << 20)  /* a submessage decoded whole by the summary */

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
	enum nn_status st = wire_rd_copy(&s->r, f->off, (size_t)f->len, p, e);
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
	enum nn_status st = wire_rd_copy(&s->r, f->off, (size_t)f->len, buf, e);
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
		enum nn_status st = wire_rd_get(&s->r, pos, k, &p, e);
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

/* Dims past ONNX_MAX_DIMS are counted, not stored: wire_check_tensor_facts
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
		if ((st = wire_rd_field(&s->r, &pos, end, "TensorProto", &f, e)) != NN_OK)
			break;
		switch (f.num) {
		case 1: /* dims */
			if ((st = wire_expect_wt(D, &f, e)) != NN_OK)
				break;
			if (f.wt == WT_VARINT) {
				push_dim(t, f.v);
			} else {
				uint64_t p = f.off, pend = f.off + f.len, v;
				while (p < pend && st == NN_OK) {
					st = wire_rd_varint(&s->r, &p, pend, &v, "TensorProto.dims", e);
					if (st == NN_OK)
						push_dim(t, v);
				}
			}
			break;
		case 2:
			if ((st = wire_expect_wt(D, &f, e)) == NN_OK) {
				t->has_dt = true;
				t->dt = (int32_t)f.v;
			}
			break;
		case 3:
			t->segment = true;
			st = wire_check_other_field(&s->r, D, &f, depth, e);
			break;
		case 4:
			if ((st = wire_expect_wt(D, &f, e)) == NN_OK)
				t->n[TF_FLOAT] += f.wt == WT_LEN ? f.len / 4 : 1;
			break;
		case 10:
			if ((st = wire_expect_wt(D, &f, e)) == NN_OK)
				t->n[TF_DOUBLE] += f.wt == WT_LEN ? f.len / 8 : 1;
			break;
		case 5:
		case 7:
		case 11: {
			enum typed_field tf = f.num == 5 ? TF_INT32 : f.num == 7 ? TF_INT64 : TF_UINT64;
			if ((st = wire_expect_wt(D, &f, e)) != NN_OK)
				break;
			if (f.wt == WT_LEN)
				st = count_varints(s, &f, &t->n[tf], e);
			else
				t->n[tf]++;
			break;
		}
		case 6:
			if ((st = wire_expect_wt(D, &f, e)) == NN_OK)
				t->n[TF_STRING]++;
			break;
		case 8:
			if ((st = wire_expect_wt(D, &f, e)) == NN_OK)
				st = sum_string(s, &f, name, e);
			break;
		case 9:
			if ((st = wire_expect_wt(D, &f, e)) == NN_OK) {
				t->has_raw = true;
				t->raw_len = f.len;
			}
			break;
		case 14:
			if ((st = wire_expect_wt(D, &f, e)) == NN_OK)
				t->external = f.v == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
			break;
		default:
			st = wire_check_other_field(&s->r, D, &f, depth, e);
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
	if (wire_check_tensor_facts(&t, &numel, &te) != NN_OK)
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
		if ((st = wire_rd_field(&s->r, &pos, end, "AttributeProto", &f, e)) != NN_OK)
			break;
		switch (f.num) {
		case 1:
			if ((st = wire_expect_wt(D, &f, e)) == NN_OK)
				st = sum_string(s, &f, name, e);
			break;
		case 3:
			if ((st = wire_expect_wt(D, &f, e)) == NN_OK) {
				*has_i = true;
				*iv = (int64_t)f.v;
			}
			break;
		case 5:
		case 10:
			if ((st = wire_expect_wt(D, &f, e)) == NN_OK)
				st = scan_check_tensor(s, &f, "tensor attribute", depth + 1, NULL, e);
			break;
		default:
			st = wire_check_other_field(&s->r, D, &f, depth, e);
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
		if ((st = wire_rd_field(&s->r, &pos, end, "NodeProto", &f, e)) != NN_OK)
			break;
		switch (f.num) {
		case 1:
			if ((st = wire_expect_wt(D, &f, e)) == NN_OK && n.n_in < 2)
				st = sum_string(s, &f, &n.in[n.n_in], e);
			n.n_in++;
			break;
		case 3:
			if ((st = wire_expect_wt(D, &f, e)) == NN_OK)
				st = sum_string(s, &f, &n.name, e);
			break;
		case 4:
			if ((st = wire_expect_wt(D, &f, e)) == NN_OK)
				st = sum_string(s, &f, &n.op, e);
			break;
		case 7:
			if ((st = wire_expect_wt(D, &f, e)) == NN_OK)
				st = sum_string(s, &f, &domain, e);
			break;
		case 5: {
			bool has_i = false;
			int64_t iv = 0;
			if ((st = wire_expect_wt(D, &f, e)) != NN_OK)
				break;
			st = scan_attr(s, &f, depth + 1, &attr_name, &has_i, &iv, e);
			if (st == NN_OK && has_i && streq(attr_name, "transB"))
				n.trans_b = iv;
			free(attr_name);
			attr_name = NULL;
			break;
		}
		default:
			st = wire_check_other_field(&s->r, D, &f, depth, e);
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
	if (is_default_domain(domain) && onnx_is_weight_op(n.op)) {
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
		if ((st = wire_rd_field(&s->r, &pos, end, "AttributeProto", &f, e)) != NN_OK)
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
			st = wire_rd_copy(&s->r, f.off, k, a->s.data, e);
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
		if ((st = wire_rd_field(&s->r, &pos, end, "NodeProto", &f, e)) != NN_OK)
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
		if ((st = wire_rd_field(&s->r, &pos, end, "GraphProto", &f, e)) != NN_OK)
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

/* graph.value_info (already validated by wire_check_other_field): decoded whole
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
		if ((st = wire_rd_field(&s->r, &pos, end, "SparseTensorProto", &f, e)) != NN_OK)
			break;
		if ((f.num == 1 || f.num == 2 || f.num == 3) && (st = wire_expect_wt(D, &f, e)) != NN_OK)
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
				    (st = wire_rd_varint(&s->r, &p, pend, &v, "SparseTensorProto.dims",
						    e)) != NN_OK)
					break;
				if ((int64_t)v < 0 ||
				    __builtin_mul_overflow(numel, (int64_t)v, &numel))
					overflow = true;
			} while (f.wt == WT_LEN && p < pend);
		} else {
			st = wire_check_other_field(&s->r, D, &f, depth, e);
		}
	}
	if (st == NN_OK && overflow) {
		struct nn_err te = { 0 };
		wire_sparse_dims_error(name, &te);
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
	if (wire_check_tensor_facts(&t, &numel, &te) != NN_OK) {
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
		if ((st = wire_rd_field(&s->r, &pos, end, "GraphProto", &f, e)) != NN_OK)
			break;
		const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(D, f.num);
		if (fd && (f.num == 1 || f.num == 2 || f.num == 5 || f.num == 11 || f.num == 12 ||
			   f.num == 15) && (st = wire_check_wire_type(D, fd, &f, e)) != NN_OK)
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
			if ((st = wire_check_other_field(&s->r, D, &f, depth, e)) == NN_OK)
				st = skel_value_info(s, &f, depth, e);
			break;
		case 15: st = scan_sparse(s, &f, depth + 1, e); break;
		default: st = wire_check_other_field(&s->r, D, &f, depth, e);
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
		if ((st = wire_rd_field(&s->r, &pos, end, "ModelProto", &f, e)) != NN_OK)
			break;
		const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(D, f.num);
		if (fd && (f.num == 1 || f.num == 2 || f.num == 3 || f.num == 7 || f.num == 8) &&
		    (st = wire_check_wire_type(D, fd, &f, e)) != NN_OK)
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
		default: st = wire_check_other_field(&s->r, D, &f, 0, e);
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
		if (skip && wire_nameset_has(skip, v[i].name))
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
		if (!wire_nameset_put(&inits, s->inits[i].name, &s->inits[i]))
			goto nomem;
	for (size_t i = 0; i < s->n_sparse; i++)
		if (!wire_nameset_put(&inits, s->sparse_names[i], NULL))
			goto nomem;
	for (size_t i = 0; i < s->n_cands; i++) {
		const struct sum_node *n = &s->cands[i];
		int slots[2] = { 1, streq(n->op, "MatMul") ? 0 : -1 };
		for (int k = 0; k < 2; k++) {
			int slot = slots[k];
			if (slot < 0 || (size_t)slot >= n->n_in || !n->in[slot])
				continue;
			const struct sum_tensor *w = wire_nameset_get(&inits, n->in[slot]);
			if (!w || w->dt != DT_FLOAT)
				continue;
			int axis = onnx_weight_channel_axis(n->op, slot, w->ndim, n->trans_b);
			if (axis < 0)
				continue;
			if (!wire_nameset_has(&used, w->name)) {
				if (!wire_nameset_put(&used, w->name, NULL))
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
	wire_nameset_free(&inits);
	wire_nameset_free(&used);
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
	st = wire_check_model_shape(s.has_graph, s.n_nodes, s.n_outs, s.has_ir, s.ir, s.n_opsets, e);
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
/* summary: can the model be raised to the opsets engine steps need?   */

/* Opsets engine steps raise models to (quantize: 13, for DequantizeLinear's
 * axis; int4: 21, for its block_size). Each becomes a key of the summary's
 * "opset_upgrade". */
static const int64_t upgrade_targets[] = { 13, 21 };

/* The verdict of onnx_raise_opset's dry pass for one target on the skeleton `p`:
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
	const Onnx__NodeProto *n = NULL;
	const char *why = NULL;
	struct nn_err re = { 0 };
	enum nn_status st = onnx_raise_opset_dry(&m, s->def_opset, to, &n, &why, &re);
	if (st == NN_OK) {
		*out = json_null();
	} else if (st == NN_EUNSUPPORTED || st == NN_EINVAL) {
		json_t *o = json_object();
		if (o) {
			json_object_set_new(o, "node", n && n->name && *n->name ? jstr(n->name)
										: json_null());
			json_object_set_new(o, "op", n ? jstr(n->op_type) : json_null());
			json_object_set_new(o, "message", jstr(why ? why : re.message));
			if (json_object_size(o) != 3) {
				json_decref(o);
				o = NULL;
			}
		}
		*out = o;
	} else {
		if (e)
			*e = re;
		return st;
	}
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
