/* exec: compiles an ONNX graph into a plan (topological order, static shapes,
 * folded constants, fused steps, one arena laid out by value lifetimes) and
 * runs it. Fusions (fuse_steps: GELU's Erf pattern, BatchNormalization into
 * Conv, Relu into Conv) change only the plan, never the model.
 *
 * Owns the plan: its value table, steps, op-private state, folded constants
 * (including the weights BatchNormalization folding computes) and the arena. Initializers are borrowed from the model (copied only when
 * stored in a typed field of another width, or misaligned). Operators live in
 * op modules (exec_op.h) listed in the registry below. A model computing in
 * float16 is compiled from a float32 copy the plan owns (exec_f16.h).
 * Threading: a plan is used by one thread at a time; no global state. */
#include "exec.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec_f16.h"
#include "exec_op.h"
#include "ops_quant.h"

#define EXEC_ALIGN 64
#define EXEC_MAX_VALUES ((size_t)1 << 24)

/* ---- registry ---- */

struct exec_table {
	const struct exec_op *ops;
	const size_t *count;
};

static const struct exec_table exec_tables[] = {
	{exec_ops_float16, &exec_ops_float16_count}, /* before math: its Cast takes 16-bit floats */
	{exec_ops_math, &exec_ops_math_count},
	{exec_ops_shape, &exec_ops_shape_count},
	{exec_ops_gemm, &exec_ops_gemm_count},
	{exec_ops_quant, &exec_ops_quant_count},
	{exec_ops_conv, &exec_ops_conv_count},
};

static bool default_domain(const char *d)
{
	return d == NULL || d[0] == '\0' || strcmp(d, "ai.onnx") == 0;
}

const struct exec_op *exec_op_find(const char *domain, const char *op_type)
{
	if (op_type == NULL)
		return NULL;
	bool def = default_domain(domain);
	for (size_t t = 0; t < sizeof exec_tables / sizeof exec_tables[0]; t++) {
		for (size_t i = 0; i < *exec_tables[t].count; i++) {
			const struct exec_op *op = &exec_tables[t].ops[i];
			bool same = def ? default_domain(op->domain)
					: (!default_domain(op->domain) &&
					   strcmp(op->domain, domain) == 0);
			if (same && strcmp(op->op_type, op_type) == 0)
				return op;
		}
	}
	return NULL;
}

/* ---- helpers for op modules ---- */

enum nn_status exec_node_err(struct nn_err *e, enum nn_status status, const Onnx__NodeProto *node,
			     const char *fmt, ...)
{
	char msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	const char *code = status == NN_EUNSUPPORTED ? "unsupported_operator"
			   : status == NN_EINVAL     ? "invalid_model"
			   : status == NN_ENOMEM     ? "out_of_memory"
						     : "internal";
	return err_set(e, status, code, "", "node '%.100s' (%.60s): %s",
		       node && node->name ? node->name : "",
		       node && node->op_type ? node->op_type : "?", msg);
}

const Onnx__AttributeProto *exec_attr_find(const Onnx__NodeProto *node, const char *name)
{
	for (size_t i = 0; i < node->n_attribute; i++) {
		const Onnx__AttributeProto *a = node->attribute[i];
		if (a && a->name && strcmp(a->name, name) == 0)
			return a;
	}
	return NULL;
}

int64_t exec_attr_int(const Onnx__NodeProto *node, const char *name, int64_t fallback)
{
	const Onnx__AttributeProto *a = exec_attr_find(node, name);
	if (!a)
		return fallback;
	if (a->has_type && a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT)
		return fallback;
	return a->i;
}

float exec_attr_float(const Onnx__NodeProto *node, const char *name, float fallback)
{
	const Onnx__AttributeProto *a = exec_attr_find(node, name);
	if (!a)
		return fallback;
	if (a->has_type && a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT)
		return fallback;
	return a->f;
}

bool exec_attr_ints(const Onnx__NodeProto *node, const char *name, const int64_t **vals,
		    size_t *n)
{
	const Onnx__AttributeProto *a = exec_attr_find(node, name);
	if (!a || (a->has_type && a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS)) {
		*vals = NULL;
		*n = 0;
		return false;
	}
	*vals = a->ints;
	*n = a->n_ints;
	return true;
}

bool exec_attr_string(const Onnx__NodeProto *node, const char *name, char *buf, size_t cap,
		      const char *fallback)
{
	const Onnx__AttributeProto *a = exec_attr_find(node, name);
	if (!a || (a->has_type && a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING)) {
		snprintf(buf, cap, "%s", fallback ? fallback : "");
		return false;
	}
	size_t n = a->s.len < cap - 1 ? a->s.len : cap - 1;
	if (n)
		memcpy(buf, a->s.data, n);
	buf[n] = '\0';
	return true;
}

int64_t exec_numel(const struct tensor *t)
{
	int64_t n = 1;
	for (int d = 0; d < t->ndim; d++)
		n *= t->shape[d];
	return n;
}

/* ---- plan ---- */

struct exec_value {
	const char *name;  /* borrowed from the model; "" for an unnamed output */
	struct tensor t;   /* dtype + shape; data for constants and, after planning, buffers */
	bool is_const;
	bool const_owned;  /* t.data malloc'd by the plan */
	bool defined;
	int def;           /* producing step, -1 for graph inputs and constants */
	int last;          /* last reading step (n_steps for graph outputs) */
	size_t bytes;
	size_t offset;
	bool direct;       /* graph input read in place from the caller's tensor */
	int alias;         /* value whose buffer this one shares (alias_in0 ops), or -1 */
	bool dead;         /* an intermediate a fused step no longer produces: no buffer */
};

struct exec_step {
	const struct exec_op *op;
	const Onnx__NodeProto *node;
	int64_t opset;
	void *priv;
	size_t n_in, n_out;
	int *in;  /* value index, -1 absent */
	int *out;
	struct tensor *in_t, *out_t;
	size_t scratch_bytes, scratch_off;
	bool folded;       /* computed at compile (or fused into another step): never run */
	size_t priv_bytes; /* what infer reported in const_bytes for priv */
};

struct exec_plan {
	struct exec_value *values;
	size_t n_values, cap_values;
	uint32_t *slots; /* hash of names -> value index + 1 */
	size_t n_slots;
	struct exec_step *steps;
	size_t n_steps;
	int *inputs, *outputs;
	size_t n_inputs, n_outputs;
	struct tensor *in_specs, *out_specs;
	unsigned char *arena;
	size_t arena_bytes, const_bytes;
	/* per graph input: the step input tensors exec_run points at the
	 * caller's data (direct inputs), so inputs are not copied */
	struct tensor ***in_refs;
	size_t *n_in_refs;
	/* exec_compile_threads with more than one slice: the plan above is
	 * shapes-only (full batch, for the queries) and par runs the slices */
	struct exec_par *par;
	/* A model computing in float16 is compiled from this float32 copy
	 * (exec_f16.h), which the plan owns: values borrow its names and
	 * initializers, so it is freed last. NULL for every other model. */
	struct onnx_model *lowered;
};

static uint32_t name_hash(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static int value_find(const struct exec_plan *p, const char *name)
{
	size_t mask = p->n_slots - 1;
	for (size_t i = name_hash(name) & mask;; i = (i + 1) & mask) {
		uint32_t s = p->slots[i];
		if (s == 0)
			return -1;
		if (strcmp(p->values[s - 1].name, name) == 0)
			return (int)(s - 1);
	}
}

/* Adds a value (names must be unique unless empty); returns its index or -1. */
static int value_add(struct exec_plan *p, const char *name, struct nn_err *e)
{
	if (p->n_values >= p->cap_values) {
		err_set(e, NN_EINTERNAL, "internal", "", "value table overflow");
		return -1;
	}
	int idx = (int)p->n_values++;
	struct exec_value *v = &p->values[idx];
	memset(v, 0, sizeof *v);
	v->name = name ? name : "";
	v->def = -1;
	v->last = -1;
	if (v->name[0]) {
		size_t mask = p->n_slots - 1;
		size_t i = name_hash(v->name) & mask;
		while (p->slots[i] != 0)
			i = (i + 1) & mask;
		p->slots[i] = (uint32_t)idx + 1;
	}
	return idx;
}

static int64_t model_opset_for(const struct onnx_model *m, const char *domain)
{
	if (default_domain(domain))
		return onnx_opset(m);
	for (size_t i = 0; i < m->proto->n_opset_import; i++) {
		const Onnx__OperatorSetIdProto *o = m->proto->opset_import[i];
		if (o && o->domain && strcmp(o->domain, domain) == 0)
			return o->version;
	}
	return 0;
}

static enum nn_status graph_of(const struct onnx_model *m, const Onnx__GraphProto **g,
			       struct nn_err *e)
{
	if (!m || !m->proto || !m->proto->graph)
		return err_set(e, NN_EINVAL, "invalid_model", "", "model has no graph");
	*g = m->proto->graph;
	return NN_OK;
}

enum nn_status exec_check_support(const struct onnx_model *m, struct nn_err *e)
{
	const Onnx__GraphProto *g = NULL;
	enum nn_status st = graph_of(m, &g, e);
	if (st != NN_OK)
		return st;
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		const struct exec_op *op = exec_op_find(n->domain, n->op_type);
		if (!op) {
			if (default_domain(n->domain))
				return exec_node_err(e, NN_EUNSUPPORTED, n,
						     "operator %.60s is not supported",
						     n->op_type ? n->op_type : "?");
			return exec_node_err(e, NN_EUNSUPPORTED, n,
					     "operator %.60s of domain %.60s is not supported",
					     n->op_type ? n->op_type : "?", n->domain);
		}
		if (op->check &&
		    (st = op->check(n, model_opset_for(m, n->domain), e)) != NN_OK)
			return st;
	}
	return NN_OK;
}

/* ---- constants from initializers ---- */

static bool aligned_for(const void *p, size_t a)
{
	return a <= 1 || ((uintptr_t)p % a) == 0;
}

/* Every dimension >= 0 and the product of the nonzero ones at most 2^40:
 * then any product of a tensor's dimensions fits in int64, so operators may
 * multiply dimensions of one tensor without overflow checks. */
static bool shape_sane(const struct tensor *t)
{
	int64_t prod = 1;
	if (t->ndim < 0 || t->ndim > TENSOR_MAX_DIMS)
		return false;
	for (int d = 0; d < t->ndim; d++) {
		if (t->shape[d] < 0 || t->shape[d] > ((int64_t)1 << 40))
			return false;
		if (t->shape[d] > 0 && (__builtin_mul_overflow(prod, t->shape[d], &prod) ||
					prod > ((int64_t)1 << 40)))
			return false;
	}
	return true;
}

enum nn_status exec_tensor_proto(const Onnx__TensorProto *init, const char *nm,
				 struct tensor *t, struct nn_err *e)
{
	memset(t, 0, sizeof *t);
	if (init->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
		return err_set(e, NN_EUNSUPPORTED, "unsupported_external_data", "",
			       "tensor '%.100s' uses external data", nm);
	if (init->n_dims > TENSOR_MAX_DIMS)
		return err_set(e, NN_EUNSUPPORTED, "unsupported_operator", "",
			       "tensor '%.100s' has %zu dimensions (at most %d)", nm,
			       init->n_dims, TENSOR_MAX_DIMS);
	enum dtype dt = (enum dtype)init->data_type;
	if (dt == DT_INT4 || dt == DT_UINT4) /* unpacked to a byte per element */
		return ops_quant_unpack4(init, nm, t, e);
	size_t es = dtype_size(dt);
	if (es == 0 || dt == DT_STRING)
		return err_set(e, NN_EUNSUPPORTED, "unsupported_dtype", "",
			       "tensor '%.100s' has dtype %s", nm, dtype_name(dt));
	t->dtype = dt;
	t->ndim = (int)init->n_dims;
	for (size_t d = 0; d < init->n_dims; d++)
		t->shape[d] = init->dims[d];
	int64_t numel = tensor_numel(t);
	size_t bytes;
	if (numel < 0 || !shape_sane(t) || __builtin_mul_overflow((size_t)numel, es, &bytes))
		return err_set(e, NN_EINVAL, "invalid_model", "",
			       "tensor '%.100s' has a bad shape", nm);
	const void *src = NULL;
	size_t have = 0, src_es = es;
	if (init->has_raw_data && init->raw_data.len > 0) {
		src = init->raw_data.data;
		have = init->raw_data.len;
	} else {
		switch (dt) {
		case DT_FLOAT:
			src = init->float_data, have = init->n_float_data * 4;
			break;
		case DT_INT64:
			src = init->int64_data, have = init->n_int64_data * 8;
			break;
		case DT_DOUBLE:
			src = init->double_data, have = init->n_double_data * 8;
			break;
		case DT_UINT32:
		case DT_UINT64:
			src = init->uint64_data, have = init->n_uint64_data * 8, src_es = 8;
			break;
		default: /* int32_data holds int32 and every narrower integer type */
			src = init->int32_data, have = init->n_int32_data * 4, src_es = 4;
			break;
		}
		have = have / src_es * es; /* element count * target width */
	}
	if (have != bytes)
		return err_set(e, NN_EINVAL, "invalid_model", "",
			       "tensor '%.100s' holds %zu bytes, its shape needs %zu", nm, have,
			       bytes);
	/* An empty tensor still gets a data pointer: ops tell constants by it. */
	if (src && src_es == es && aligned_for(src, es)) {
		t->data = (void *)src;
		return NN_OK;
	}
	void *buf = malloc(bytes ? bytes : 1);
	if (!buf)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "copying tensor '%.100s'", nm);
	if (src_es == es) {
		if (bytes)
			memcpy(buf, src, bytes);
	} else {
		for (int64_t i = 0; i < numel; i++) {
			const unsigned char *s = (const unsigned char *)src + (size_t)i * src_es;
			unsigned char *d = (unsigned char *)buf + (size_t)i * es;
			if (src_es == 8) {
				uint64_t x;
				memcpy(&x, s, 8);
				if (es == 4) {
					uint32_t y = (uint32_t)x;
					memcpy(d, &y, 4);
				} else {
					memcpy(d, &x, es);
				}
			} else {
				int32_t x;
				memcpy(&x, s, 4);
				if (es == 1) {
					uint8_t y = (uint8_t)x;
					memcpy(d, &y, 1);
				} else if (es == 2) {
					uint16_t y = (uint16_t)x;
					memcpy(d, &y, 2);
				} else {
					memcpy(d, &x, 4);
				}
			}
		}
	}
	t->data = buf;
	t->owned = true;
	return NN_OK;
}

/* An initializer as a constant value (a copy is counted in const_bytes). */
static enum nn_status init_const(struct exec_plan *p, struct exec_value *v,
				 const Onnx__TensorProto *init, struct nn_err *e)
{
	enum nn_status st = exec_tensor_proto(init, init->name ? init->name : "", &v->t, e);
	if (st != NN_OK)
		return st;
	if (v->t.owned) {
		v->const_owned = true;
		v->t.owned = false;
		size_t b = 0;
		tensor_nbytes(&v->t, &b, NULL);
		p->const_bytes += b;
	}
	return NN_OK;
}

/* ---- compile ---- */

static size_t align_up(size_t n)
{
	return (n + EXEC_ALIGN - 1) & ~(size_t)(EXEC_ALIGN - 1);
}

static void par_free(struct exec_par *par);

void exec_free(struct exec_plan *p)
{
	if (!p)
		return;
	par_free(p->par);
	for (size_t i = 0; i < p->n_steps; i++) {
		struct exec_step *s = &p->steps[i];
		if (s->priv) {
			if (s->op && s->op->free_priv)
				s->op->free_priv(s->priv);
			else
				free(s->priv);
		}
		free(s->in);
		free(s->out);
		free(s->in_t);
		free(s->out_t);
	}
	free(p->steps);
	for (size_t i = 0; i < p->n_values; i++)
		if (p->values[i].const_owned)
			free(p->values[i].t.data);
	free(p->values);
	free(p->slots);
	free(p->inputs);
	free(p->outputs);
	free(p->in_specs);
	for (size_t i = 0; p->in_refs && i < p->n_inputs; i++)
		free(p->in_refs[i]);
	free(p->in_refs);
	free(p->n_in_refs);
	free(p->out_specs);
	free(p->arena);
	onnx_free(p->lowered);
	free(p);
}

static enum nn_status input_shape(const Onnx__ValueInfoProto *vi, int64_t batch, struct tensor *t,
				  struct nn_err *e)
{
	const char *nm = vi->name ? vi->name : "";
	const Onnx__TypeProto *tp = vi->type;
	if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
		return err_set(e, NN_EUNSUPPORTED, "unsupported_operator", "",
			       "graph input '%.100s' is not a tensor", nm);
	const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
	t->dtype = (enum dtype)tt->elem_type;
	if (dtype_size(t->dtype) == 0 || t->dtype == DT_STRING)
		return err_set(e, NN_EUNSUPPORTED, "unsupported_dtype", "",
			       "graph input '%.100s' has dtype %s", nm, dtype_name(t->dtype));
	if (!tt->shape)
		return err_set(e, NN_EUNSUPPORTED, "unsupported_operator", "",
			       "graph input '%.100s' has no shape", nm);
	if (tt->shape->n_dim > TENSOR_MAX_DIMS)
		return err_set(e, NN_EUNSUPPORTED, "unsupported_operator", "",
			       "graph input '%.100s' has %zu dimensions (at most %d)", nm,
			       tt->shape->n_dim, TENSOR_MAX_DIMS);
	t->ndim = (int)tt->shape->n_dim;
	for (size_t d = 0; d < tt->shape->n_dim; d++) {
		const Onnx__TensorShapeProto__Dimension *dim = tt->shape->dim[d];
		if (dim && dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE &&
		    dim->dim_value >= 0) {
			t->shape[d] = dim->dim_value;
		} else if (d == 0) {
			t->shape[d] = batch;
		} else {
			return err_set(e, NN_EUNSUPPORTED, "unsupported_operator", "",
				       "graph input '%.100s' has a symbolic dimension %zu (only the "
				       "first, batch, dimension may be symbolic)",
				       nm, d);
		}
	}
	return NN_OK;
}

/* Output bytes of a value; NN_EINVAL on overflow or unsized dtype. */

/* Bytes of a value (graph input when n is NULL, else an output of n);
 * refuses unsized dtypes and shapes shape_sane rejects or over 1 TiB. */
static enum nn_status value_bytes(const struct exec_value *v, const Onnx__NodeProto *n,
				  size_t *out, struct nn_err *e)
{
	size_t es = dtype_size(v->t.dtype);
	const char *what = n ? "output" : "graph input";
	if (es == 0 || v->t.dtype == DT_STRING) {
		if (n)
			return exec_node_err(e, NN_EUNSUPPORTED, n, "output '%.100s' has dtype %s",
					     v->name, dtype_name(v->t.dtype));
		return err_set(e, NN_EUNSUPPORTED, "unsupported_dtype", "",
			       "graph input '%.100s' has dtype %s", v->name, dtype_name(v->t.dtype));
	}
	size_t cnt = 1;
	bool ok = shape_sane(&v->t);
	for (int d = 0; ok && d < v->t.ndim; d++)
		ok = !__builtin_mul_overflow(cnt, (size_t)v->t.shape[d], &cnt);
	if (ok)
		ok = !__builtin_mul_overflow(cnt, es, out) && *out <= ((size_t)1 << 40);
	if (!ok) {
		if (n)
			return exec_node_err(e, NN_EINVAL, n, "output '%.100s' has a bad or too "
					     "large shape", v->name);
		return err_set(e, NN_EINVAL, "invalid_model", "",
			       "%s '%.100s' has a bad or too large shape", what, v->name);
	}
	return NN_OK;
}

/* Runs a step whose inputs are all constant at compile time; its outputs
 * become plan-owned constants. */
static enum nn_status fold_step(struct exec_plan *p, struct exec_step *s, struct nn_err *e)
{
	void *scratch = NULL;
	enum nn_status st = NN_OK;
	for (size_t j = 0; j < s->n_out; j++) {
		struct exec_value *v = &p->values[s->out[j]];
		size_t bytes;
		if ((st = value_bytes(v, s->node, &bytes, e)) != NN_OK)
			return st;
		v->t.data = calloc(1, bytes ? bytes : 1);
		if (!v->t.data)
			return exec_node_err(e, NN_ENOMEM, s->node, "folding constant output");
		v->const_owned = true;
		v->is_const = true;
		p->const_bytes += bytes;
		s->out_t[j] = v->t;
	}
	if (s->scratch_bytes) {
		scratch = aligned_alloc(EXEC_ALIGN, align_up(s->scratch_bytes));
		if (!scratch)
			return exec_node_err(e, NN_ENOMEM, s->node, "folding scratch");
	}
	struct exec_run_ctx c = {
		.node = s->node, .opset = s->opset, .priv = s->priv,
		.in = s->in_t, .n_in = s->n_in, .out = s->out_t, .n_out = s->n_out,
		.scratch = scratch, .scratch_bytes = s->scratch_bytes,
	};
	st = s->op->run(&c, e);
	free(scratch);
	s->folded = true;
	return st;
}

/* Default-domain ops whose output 0 is input 0's bytes unchanged: the
 * planner gives both one buffer and their kernels (run_copy) then skip the
 * copy because out[0].data == in[0].data. */
static bool aliases_in0(const Onnx__NodeProto *n)
{
	static const char *const ops[] = {"Reshape", "Flatten", "Squeeze", "Unsqueeze",
					  "Identity", "Dropout"};
	if (!default_domain(n->domain) || !n->op_type)
		return false;
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
		if (strcmp(n->op_type, ops[i]) == 0)
			return true;
	return false;
}

struct interval {
	size_t bytes;
	int start, end;
	size_t *offset;
};

static int interval_cmp(const void *a, const void *b)
{
	const struct interval *x = a, *y = b;
	if (x->bytes != y->bytes)
		return x->bytes < y->bytes ? 1 : -1;
	return x->start - y->start;
}

/* Greedy by size, best-fit gap: biggest buffers first, each at the smallest
 * gap among already placed buffers whose lifetimes overlap it. */
static enum nn_status plan_offsets(struct interval *iv, size_t n, size_t *total, struct nn_err *e)
{
	qsort(iv, n, sizeof *iv, interval_cmp);
	struct interval **placed = malloc((n ? n : 1) * sizeof *placed);
	struct interval **live = malloc((n ? n : 1) * sizeof *live);
	if (!placed || !live) {
		free(placed);
		free(live);
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "planning buffers");
	}
	size_t n_placed = 0;
	*total = 0;
	for (size_t i = 0; i < n; i++) {
		struct interval *c = &iv[i];
		size_t n_live = 0;
		/* placed[] is kept sorted by offset, so live[] is too */
		for (size_t k = 0; k < n_placed; k++)
			if (placed[k]->start <= c->end && c->start <= placed[k]->end)
				live[n_live++] = placed[k];
		size_t best = SIZE_MAX, best_gap = SIZE_MAX, cur = 0;
		for (size_t k = 0; k < n_live; k++) {
			size_t off = *live[k]->offset;
			if (off > cur && off - cur >= c->bytes && off - cur < best_gap) {
				best_gap = off - cur;
				best = cur;
			}
			size_t end = off + live[k]->bytes;
			if (end > cur)
				cur = end;
		}
		if (best == SIZE_MAX)
			best = cur;
		*c->offset = best;
		if (best + c->bytes > *total)
			*total = best + c->bytes;
		size_t pos = n_placed;
		while (pos > 0 && *placed[pos - 1]->offset > best) {
			placed[pos] = placed[pos - 1];
			pos--;
		}
		placed[pos] = c;
		n_placed++;
	}
	free(placed);
	free(live);
	return NN_OK;
}

/* ---- compile-time fusion ----
 *
 * Run after shape inference and constant folding, on the plan only (the
 * model is never changed). A fused step takes over the pattern's first node
 * and writes the pattern's last value; the other steps are marked folded
 * (never run) and the intermediates dead (no buffer). Patterns fire only
 * when every intermediate has exactly one reader and is no graph output, so
 * what the graph computes is unchanged up to float rounding. */

static bool op_is(const struct exec_step *s, const char *op)
{
	return !s->folded && default_domain(s->node->domain) && s->node->op_type &&
	       strcmp(s->node->op_type, op) == 0;
}

/* The one step reading value v (and where), or -1 when v is a graph
 * output, unread, or read more than once (also twice by one step). */
static int sole_reader(const struct exec_plan *p, int v, size_t *slot)
{
	if (v < 0 || p->values[v].last >= (int)p->n_steps)
		return -1;
	int found = -1;
	for (size_t si = 0; si < p->n_steps; si++) {
		const struct exec_step *s = &p->steps[si];
		if (s->folded)
			continue;
		for (size_t k = 0; k < s->n_in; k++) {
			if (s->in[k] != v)
				continue;
			if (found >= 0)
				return -1;
			found = (int)si;
			if (slot)
				*slot = k;
		}
	}
	return found;
}

/* Value v is a float32 constant holding one element; *f is it. */
static bool const_scalar(const struct exec_plan *p, int v, float *f)
{
	if (v < 0)
		return false;
	const struct exec_value *x = &p->values[v];
	if (!x->is_const || x->t.dtype != DT_FLOAT || !x->t.data || exec_numel(&x->t) != 1)
		return false;
	memcpy(f, x->t.data, sizeof *f);
	return true;
}

static bool near(float a, double b)
{
	return fabs((double)a - b) <= 1e-6 * fabs(b);
}

/* For a two-input step: the other input than `slot`, when it is a float
 * scalar constant close to want. */
static bool other_is(const struct exec_plan *p, const struct exec_step *s, size_t slot,
		     double want)
{
	float f;
	return s->n_in == 2 && slot < 2 && const_scalar(p, s->in[1 - slot], &f) && near(f, want);
}

static bool same_shape(const struct tensor *a, const struct tensor *b)
{
	if (a->dtype != b->dtype || a->ndim != b->ndim)
		return false;
	for (int d = 0; d < a->ndim; d++)
		if (a->shape[d] != b->shape[d])
			return false;
	return true;
}

static void drop_priv(struct exec_plan *p, struct exec_step *s)
{
	if (s->priv) {
		if (s->op && s->op->free_priv)
			s->op->free_priv(s->priv);
		else
			free(s->priv);
	}
	s->priv = NULL;
	p->const_bytes -= s->priv_bytes;
	s->priv_bytes = 0;
}

/* Runs op's infer again on step s (same node, s's current inputs) and, when
 * it succeeds, makes op and its new private state the step's: after a fusion
 * changed the step's constant inputs (packed weights must follow) or its op. */
static enum nn_status reinfer(struct exec_plan *p, struct exec_step *s, const struct exec_op *op,
			      struct nn_err *e)
{
	struct tensor out = s->out_t[0];
	struct exec_infer_ctx ic = {
		.node = s->node, .opset = s->opset, .in = s->in_t, .n_in = s->n_in,
		.out = &out, .n_out = 1,
	};
	enum nn_status st = op->infer(&ic, e);
	if (st != NN_OK) {
		if (ic.priv)
			free(ic.priv);
		return st;
	}
	drop_priv(p, s);
	s->op = op;
	s->priv = ic.priv;
	s->priv_bytes = ic.priv_bytes;
	p->const_bytes += ic.priv_bytes;
	s->scratch_bytes = ic.scratch_bytes;
	return NN_OK;
}

/* Marks step si folded into another and its outputs dead. */
static void absorb(struct exec_plan *p, size_t si)
{
	struct exec_step *s = &p->steps[si];
	drop_priv(p, s);
	s->folded = true;
	s->scratch_bytes = 0;
	for (size_t k = 0; k < s->n_out; k++)
		p->values[s->out[k]].dead = true;
}

/* GELU as PyTorch exports it (approximate="none"):
 *   d = x / sqrt(2) (or x * 1/sqrt(2)); e = Erf(d); a = e + 1;
 *   then m = x * a; y = m * 0.5      (torch.nn.functional.gelu)
 *   or   h = x * 0.5; y = h * a      (the other association torch emits)
 * with the operands of Add/Mul in either order. Becomes one Gelu step (the
 * Gelu operator's kernel, run on the Div node, which has no "approximate"
 * attribute and so means the exact form). */
static bool fuse_gelu(struct exec_plan *p, size_t di, const struct exec_op *gelu)
{
	struct exec_step *d = &p->steps[di];
	bool is_div = op_is(d, "Div");
	if (!is_div && !op_is(d, "Mul"))
		return false;
	if (d->n_in != 2 || d->n_out != 1 || d->in[0] < 0 || d->in[1] < 0)
		return false;
	size_t xs; /* slot of x in d */
	if (is_div) {
		xs = 0;
		if (!other_is(p, d, 0, 1.4142135623730951))
			return false;
	} else if (other_is(p, d, 0, 0.7071067811865476)) {
		xs = 0;
	} else if (other_is(p, d, 1, 0.7071067811865476)) {
		xs = 1;
	} else {
		return false;
	}
	int x = d->in[xs];
	const struct tensor *xt = &p->values[x].t;
	if (p->values[x].is_const || xt->dtype != DT_FLOAT || !same_shape(xt, &d->out_t[0]))
		return false;
	size_t slot;
	int ei = sole_reader(p, d->out[0], &slot);
	if (ei < 0 || !op_is(&p->steps[ei], "Erf") || p->steps[ei].n_out != 1)
		return false;
	int ai = sole_reader(p, p->steps[ei].out[0], &slot);
	if (ai < 0 || !op_is(&p->steps[ai], "Add") || p->steps[ai].n_out != 1 ||
	    !other_is(p, &p->steps[ai], slot, 1.0) ||
	    !same_shape(xt, &p->steps[ai].out_t[0]))
		return false;
	int mi = sole_reader(p, p->steps[ai].out[0], &slot);
	if (mi < 0 || !op_is(&p->steps[mi], "Mul") || p->steps[mi].n_in != 2 ||
	    p->steps[mi].n_out != 1 || !same_shape(xt, &p->steps[mi].out_t[0]))
		return false;
	const struct exec_step *m = &p->steps[mi];
	int other = m->in[1 - slot], hi = -1, last = -1;
	if (other == x) { /* m = x * a; y = m * 0.5 */
		size_t s2;
		hi = sole_reader(p, m->out[0], &s2);
		if (hi < 0 || !op_is(&p->steps[hi], "Mul") || p->steps[hi].n_out != 1 ||
		    !other_is(p, &p->steps[hi], s2, 0.5) ||
		    !same_shape(xt, &p->steps[hi].out_t[0]))
			return false;
		last = hi;
	} else { /* h = x * 0.5 (read only here); y = h * a */
		if (other < 0 || p->values[other].def < 0)
			return false;
		hi = p->values[other].def;
		const struct exec_step *h = &p->steps[hi];
		size_t s2 = 0;
		if (!op_is(h, "Mul") || h->n_in != 2 || h->n_out != 1 ||
		    sole_reader(p, other, NULL) != mi)
			return false;
		if (h->in[0] == x)
			s2 = 0;
		else if (h->in[1] == x)
			s2 = 1;
		else
			return false;
		if (!other_is(p, h, s2, 0.5) || !same_shape(xt, &h->out_t[0]))
			return false;
		last = mi;
	}
	int y = p->steps[last].out[0];
	int chain[] = {ei, ai, mi, hi}; /* y's writer is among them */
	for (size_t k = 0; k < sizeof chain / sizeof chain[0]; k++)
		absorb(p, (size_t)chain[k]);
	p->values[y].dead = false;
	p->values[y].def = (int)di;
	drop_priv(p, d);
	p->values[d->out[0]].dead = true;
	d->op = gelu;
	d->n_in = 1;
	d->in[0] = x;
	d->in_t[0] = *xt;
	d->in_t[0].data = NULL;
	d->out[0] = y;
	d->out_t[0] = p->values[y].t;
	d->scratch_bytes = 0;
	return true;
}

/* Adds a plan-owned float32 constant of shape [n, rest...] (copying dims
 * from t); its index, or -1 (e set) when out of memory. */
static int new_const(struct exec_plan *p, const struct tensor *like, float **data,
		     struct nn_err *e)
{
	size_t bytes = 0;
	if (tensor_nbytes(like, &bytes, NULL) != NN_OK)
		return -1;
	float *d = malloc(bytes ? bytes : 1);
	if (!d) {
		err_set(e, NN_ENOMEM, "out_of_memory", "", "folding BatchNormalization");
		return -1;
	}
	int idx = value_add(p, NULL, e);
	if (idx < 0) {
		free(d);
		return -1;
	}
	struct exec_value *v = &p->values[idx];
	v->t = *like;
	v->t.owned = false;
	v->t.data = d;
	v->is_const = true;
	v->const_owned = true;
	v->defined = true;
	p->const_bytes += bytes;
	*data = d;
	return idx;
}

/* An inference BatchNormalization whose input is a Conv's output read by
 * nothing else, with constant Conv weight (and bias, if any) and constant
 * BN parameters, becomes part of the Conv: with a = scale / sqrt(var + eps)
 * per output channel, W' = W * a and B' = (B - mean) * a + bias (what ONNX
 * Runtime's ConvBNFusion computes), in new plan-owned constants. */
static enum nn_status fuse_conv_bn(struct exec_plan *p, size_t bi, bool *done, struct nn_err *e)
{
	*done = false;
	struct exec_step *b = &p->steps[bi];
	if (!op_is(b, "BatchNormalization") || b->n_in != 5 || b->n_out < 1 || b->in[0] < 0)
		return NN_OK;
	const float *prm[4];
	for (size_t k = 1; k < 5; k++) {
		const struct exec_value *v = b->in[k] >= 0 ? &p->values[b->in[k]] : NULL;
		if (!v || !v->is_const || v->t.dtype != DT_FLOAT || !v->t.data)
			return NN_OK;
		prm[k - 1] = v->t.data;
	}
	int cv = b->in[0], ci = p->values[cv].def;
	if (ci < 0 || sole_reader(p, cv, NULL) != (int)bi)
		return NN_OK;
	struct exec_step *c = &p->steps[ci];
	if (!op_is(c, "Conv") || c->n_out != 1 || c->n_in < 2 || c->in[1] < 0)
		return NN_OK;
	const struct exec_value *wv = &p->values[c->in[1]];
	const struct exec_value *cb = c->n_in > 2 && c->in[2] >= 0 ? &p->values[c->in[2]] : NULL;
	if (!wv->is_const || wv->t.dtype != DT_FLOAT || !wv->t.data || wv->t.ndim < 1 ||
	    (cb && (!cb->is_const || cb->t.dtype != DT_FLOAT || !cb->t.data)))
		return NN_OK;
	int64_t oc = wv->t.shape[0];
	/* bn_infer checked the parameters have [channels] = the Conv's output channels */
	if (b->in_t[0].ndim < 2 || b->in_t[0].shape[1] != oc || b->in_t[1].shape[0] != oc)
		return NN_OK;
	int64_t per = oc > 0 ? exec_numel(&wv->t) / oc : 0;
	float eps = exec_attr_float(b->node, "epsilon", 1e-5f);

	float *w2 = NULL, *b2 = NULL;
	struct tensor wt = wv->t, bt = {0};
	bt.dtype = DT_FLOAT;
	bt.ndim = 1;
	bt.shape[0] = oc;
	int wi = new_const(p, &wt, &w2, e);
	if (wi < 0)
		return e ? e->status : NN_ENOMEM;
	int bias_i = new_const(p, &bt, &b2, e);
	if (bias_i < 0)
		return e ? e->status : NN_ENOMEM;
	const float *w = wv->t.data, *bias = cb ? cb->t.data : NULL;
	for (int64_t o = 0; o < oc; o++) {
		float a = prm[0][o] / sqrtf(prm[3][o] + eps);
		for (int64_t j = 0; j < per; j++)
			w2[o * per + j] = w[o * per + j] * a;
		b2[o] = ((bias ? bias[o] : 0.0f) - prm[2][o]) * a + prm[1][o];
	}
	if (c->n_in < 3) {
		int *in = realloc(c->in, 3 * sizeof *in);
		if (!in)
			return err_set(e, NN_ENOMEM, "out_of_memory", "", "folding BatchNormalization");
		c->in = in;
		struct tensor *it = realloc(c->in_t, 3 * sizeof *it);
		if (!it)
			return err_set(e, NN_ENOMEM, "out_of_memory", "", "folding BatchNormalization");
		c->in_t = it;
		c->n_in = 3;
	}
	c->in[1] = wi;
	c->in_t[1] = p->values[wi].t;
	c->in[2] = bias_i;
	c->in_t[2] = p->values[bias_i].t;
	/* the Conv may hold its weights packed: rebuild from the folded ones */
	enum nn_status st = reinfer(p, c, c->op, e);
	if (st != NN_OK)
		return st;
	int y = b->out[0];
	absorb(p, bi);
	p->values[cv].dead = true;
	p->values[y].dead = false;
	p->values[y].def = ci;
	c->out[0] = y;
	c->out_t[0] = p->values[y].t;
	*done = true;
	return NN_OK;
}

/* A Relu whose input is a plain Conv's output read by nothing else (after
 * BatchNormalization folding, Conv -> BN -> Relu qualifies) becomes part of
 * the Conv: the step is re-inferred as ops_conv's ConvRelu (same node, same
 * inputs), which applies max(y, 0) while writing its output. Nothing changes
 * when that infer fails. */
static void fuse_conv_relu(struct exec_plan *p, size_t ri, const struct exec_op *conv,
			   const struct exec_op *conv_relu)
{
	struct exec_step *r = &p->steps[ri];
	if (!op_is(r, "Relu") || r->n_in != 1 || r->n_out != 1 || r->in[0] < 0)
		return;
	int v = r->in[0], ci = p->values[v].def;
	if (ci < 0 || p->values[v].t.dtype != DT_FLOAT || sole_reader(p, v, NULL) != (int)ri)
		return;
	struct exec_step *c = &p->steps[ci];
	if (c->folded || c->op != conv || c->n_out != 1)
		return;
	struct nn_err ignored;
	err_clear(&ignored);
	if (reinfer(p, c, conv_relu, &ignored) != NN_OK)
		return;
	int y = r->out[0];
	absorb(p, ri);
	p->values[v].dead = true;
	p->values[y].dead = false;
	p->values[y].def = ci;
	c->out[0] = y;
	c->out_t[0] = p->values[y].t;
}

static enum nn_status fuse_steps(struct exec_plan *p, struct nn_err *e)
{
	const struct exec_op *gelu = exec_op_find("", "Gelu");
	const struct exec_op *conv = exec_op_find("", "Conv");
	const struct exec_op *conv_relu = exec_op_find("nncd.fused", "ConvRelu");
	for (size_t si = 0; si < p->n_steps; si++) {
		bool done = false;
		enum nn_status st = fuse_conv_bn(p, si, &done, e);
		if (st != NN_OK)
			return st;
		if (!done && gelu)
			fuse_gelu(p, si, gelu);
		if (!done && conv && conv_relu)
			fuse_conv_relu(p, si, conv, conv_relu);
	}
	return NN_OK;
}

/* shapes_only: stop once every shape is inferred and the graph outputs are
 * known (no input references, no buffer plan, no arena); such a plan only
 * answers the exec_input_* / exec_output_* queries. */
static enum nn_status compile_graph(struct exec_plan *p, const struct onnx_model *m,
				    const Onnx__GraphProto *g, int64_t batch, bool shapes_only,
				    struct nn_err *e)
{
	enum nn_status st;
	/* values: initializers, graph inputs, node outputs */
	size_t cap = g->n_initializer + g->n_input;
	for (size_t i = 0; i < g->n_node; i++) {
		if (!g->node[i])
			return err_set(e, NN_EINVAL, "invalid_model", "", "graph has an empty node");
		cap += g->node[i]->n_output;
		if (g->node[i]->op_type && strcmp(g->node[i]->op_type, "BatchNormalization") == 0)
			cap += 2; /* folded Conv weight and bias (fuse_conv_bn) */
	}
	if (cap > EXEC_MAX_VALUES)
		return err_set(e, NN_ETOOBIG, "model_too_large", "", "graph has too many values");
	p->cap_values = cap;
	p->n_slots = 16;
	while (p->n_slots < cap * 2)
		p->n_slots *= 2;
	p->values = calloc(cap ? cap : 1, sizeof *p->values);
	p->slots = calloc(p->n_slots, sizeof *p->slots);
	p->steps = calloc(g->n_node ? g->n_node : 1, sizeof *p->steps);
	p->inputs = calloc(g->n_input ? g->n_input : 1, sizeof *p->inputs);
	p->outputs = calloc(g->n_output ? g->n_output : 1, sizeof *p->outputs);
	p->in_specs = calloc(g->n_input ? g->n_input : 1, sizeof *p->in_specs);
	p->out_specs = calloc(g->n_output ? g->n_output : 1, sizeof *p->out_specs);
	if (!p->values || !p->slots || !p->steps || !p->inputs || !p->outputs || !p->in_specs ||
	    !p->out_specs)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "allocating the plan");

	for (size_t i = 0; i < g->n_initializer; i++) {
		const Onnx__TensorProto *init = g->initializer[i];
		if (!init || !init->name || !init->name[0])
			return err_set(e, NN_EINVAL, "invalid_model", "", "unnamed initializer");
		if (value_find(p, init->name) >= 0)
			return err_set(e, NN_EINVAL, "invalid_model", "",
				       "initializer '%.100s' is defined twice", init->name);
		int idx = value_add(p, init->name, e);
		if (idx < 0)
			return e ? e->status : NN_EINTERNAL;
		struct exec_value *v = &p->values[idx];
		if ((st = init_const(p, v, init, e)) != NN_OK)
			return st;
		v->is_const = true;
		v->defined = true;
	}
	for (size_t i = 0; i < g->n_input; i++) {
		const Onnx__ValueInfoProto *vi = g->input[i];
		if (!vi || !vi->name || !vi->name[0])
			return err_set(e, NN_EINVAL, "invalid_model", "", "unnamed graph input");
		if (value_find(p, vi->name) >= 0)
			continue; /* IR < 4: an initializer listed among the inputs is a constant */
		int idx = value_add(p, vi->name, e);
		if (idx < 0)
			return e ? e->status : NN_EINTERNAL;
		struct exec_value *v = &p->values[idx];
		v->defined = true;
		if ((st = input_shape(vi, batch, &v->t, e)) != NN_OK ||
		    (st = value_bytes(v, NULL, &v->bytes, e)) != NN_OK)
			return st;
		p->inputs[p->n_inputs] = idx;
		p->in_specs[p->n_inputs] = v->t;
		p->in_specs[p->n_inputs].data = NULL;
		p->n_inputs++;
	}

	/* topological order: repeated passes (one pass for graphs already in order) */
	bool *done = calloc(g->n_node ? g->n_node : 1, sizeof *done);
	if (!done)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "allocating the plan");
	size_t scheduled = 0;
	for (;;) {
		bool progress = false;
		for (size_t i = 0; i < g->n_node; i++) {
			if (done[i])
				continue;
			const Onnx__NodeProto *n = g->node[i];
			bool ready = true;
			for (size_t k = 0; k < n->n_input && ready; k++) {
				if (!n->input[k] || !n->input[k][0])
					continue;
				int vi = value_find(p, n->input[k]);
				ready = vi >= 0 && p->values[vi].defined;
			}
			if (!ready)
				continue;
			for (size_t k = 0; k < n->n_output; k++) {
				const char *on = n->output[k] ? n->output[k] : "";
				if (on[0] && value_find(p, on) >= 0) {
					free(done);
					return exec_node_err(e, NN_EINVAL, n,
							     "output '%.100s' is defined twice", on);
				}
				int vi = value_add(p, on, e);
				if (vi < 0) {
					free(done);
					return e ? e->status : NN_EINTERNAL;
				}
				p->values[vi].defined = true;
				p->values[vi].def = (int)scheduled;
			}
			p->steps[scheduled++].node = n;
			done[i] = true;
			progress = true;
		}
		if (scheduled == g->n_node || !progress)
			break;
	}
	if (scheduled < g->n_node) {
		for (size_t i = 0; i < g->n_node; i++) {
			if (done[i])
				continue;
			const Onnx__NodeProto *n = g->node[i];
			for (size_t k = 0; k < n->n_input; k++) {
				if (!n->input[k] || !n->input[k][0])
					continue;
				int vi = value_find(p, n->input[k]);
				if (vi < 0) {
					free(done);
					return exec_node_err(e, NN_EINVAL, n,
							     "input '%.100s' is not produced by any "
							     "node, input or initializer",
							     n->input[k]);
				}
			}
		}
		free(done);
		return err_set(e, NN_EINVAL, "invalid_model", "", "graph has a cycle");
	}
	free(done);
	p->n_steps = scheduled;

	/* infer shapes (and fold constants) in order */
	for (size_t si = 0; si < p->n_steps; si++) {
		struct exec_step *s = &p->steps[si];
		const Onnx__NodeProto *n = s->node;
		s->op = exec_op_find(n->domain, n->op_type);
		if (!s->op)
			return exec_node_err(e, NN_EUNSUPPORTED, n, "operator %.60s is not supported",
					     n->op_type ? n->op_type : "?");
		s->opset = model_opset_for(m, n->domain);
		if (s->op->check && (st = s->op->check(n, s->opset, e)) != NN_OK)
			return st;
		s->n_in = n->n_input;
		s->n_out = n->n_output;
		s->in = calloc(s->n_in ? s->n_in : 1, sizeof *s->in);
		s->out = calloc(s->n_out ? s->n_out : 1, sizeof *s->out);
		s->in_t = calloc(s->n_in ? s->n_in : 1, sizeof *s->in_t);
		s->out_t = calloc(s->n_out ? s->n_out : 1, sizeof *s->out_t);
		if (!s->in || !s->out || !s->in_t || !s->out_t)
			return err_set(e, NN_ENOMEM, "out_of_memory", "", "allocating the plan");
		bool all_const = true;
		for (size_t k = 0; k < s->n_in; k++) {
			if (!n->input[k] || !n->input[k][0]) {
				s->in[k] = -1;
				continue;
			}
			s->in[k] = value_find(p, n->input[k]);
			struct exec_value *v = &p->values[s->in[k]];
			s->in_t[k] = v->t;
			if (!v->is_const) {
				s->in_t[k].data = NULL;
				all_const = false;
			}
			v->last = (int)si;
		}
		for (size_t k = 0; k < s->n_out; k++) {
			const char *on = n->output[k] ? n->output[k] : "";
			/* unnamed outputs were added in scheduling order too */
			int vi = -1;
			if (on[0]) {
				vi = value_find(p, on);
			} else {
				for (size_t q = 0; q < p->n_values; q++)
					if (p->values[q].def == (int)si && !p->values[q].name[0]) {
						bool used = false;
						for (size_t r = 0; r < k; r++)
							used |= s->out[r] == (int)q;
						if (!used) {
							vi = (int)q;
							break;
						}
					}
			}
			if (vi < 0)
				return err_set(e, NN_EINTERNAL, "internal", "",
					       "lost output %zu of node '%.100s'", k,
					       n->name ? n->name : "");
			s->out[k] = vi;
		}
		struct exec_infer_ctx ic = {
			.node = n, .opset = s->opset, .in = s->in_t, .n_in = s->n_in,
			.out = s->out_t, .n_out = s->n_out,
		};
		st = s->op->infer(&ic, e);
		s->priv = ic.priv;
		s->priv_bytes = ic.priv_bytes;
		p->const_bytes += ic.priv_bytes; /* packed weights etc. */
		s->scratch_bytes = ic.scratch_bytes;
		if (st != NN_OK)
			return st;
		for (size_t k = 0; k < s->n_out; k++) {
			struct exec_value *v = &p->values[s->out[k]];
			v->t = s->out_t[k];
			v->t.data = NULL;
			v->t.owned = false;
			if ((st = value_bytes(v, n, &v->bytes, e)) != NN_OK)
				return st;
		}
		bool is_shape = default_domain(n->domain) && n->op_type &&
				strcmp(n->op_type, "Shape") == 0;
		if (all_const || is_shape) {
			if ((st = fold_step(p, s, e)) != NN_OK)
				return st;
		}
	}

	for (size_t i = 0; i < g->n_output; i++) {
		const Onnx__ValueInfoProto *vi = g->output[i];
		int idx = vi && vi->name ? value_find(p, vi->name) : -1;
		if (idx < 0)
			return err_set(e, NN_EINVAL, "invalid_model", "",
				       "graph output '%.100s' is not produced by any node",
				       vi && vi->name ? vi->name : "");
		p->values[idx].last = (int)p->n_steps;
		p->outputs[p->n_outputs] = idx;
		p->out_specs[p->n_outputs] = p->values[idx].t;
		p->out_specs[p->n_outputs].data = NULL;
		p->out_specs[p->n_outputs].owned = false;
		p->n_outputs++;
	}

	if (shapes_only)
		return NN_OK;
	if ((st = fuse_steps(p, e)) != NN_OK)
		return st;

	/* Graph inputs are read where the caller has them, unless one is also a
	 * graph output (outputs are views of plan-owned buffers). */
	p->in_refs = calloc(p->n_inputs ? p->n_inputs : 1, sizeof *p->in_refs);
	p->n_in_refs = calloc(p->n_inputs ? p->n_inputs : 1, sizeof *p->n_in_refs);
	if (!p->in_refs || !p->n_in_refs)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "allocating the plan");
	for (size_t i = 0; i < p->n_inputs; i++) {
		struct exec_value *v = &p->values[p->inputs[i]];
		bool is_out = false;
		for (size_t o = 0; o < p->n_outputs; o++)
			is_out |= p->outputs[o] == p->inputs[i];
		if (is_out)
			continue;
		size_t n = 0;
		for (size_t si = 0; si < p->n_steps; si++)
			for (size_t q = 0; q < p->steps[si].n_in; q++)
				n += p->steps[si].in[q] == p->inputs[i];
		p->in_refs[i] = calloc(n ? n : 1, sizeof **p->in_refs);
		if (!p->in_refs[i])
			return err_set(e, NN_ENOMEM, "out_of_memory", "", "allocating the plan");
		for (size_t si = 0; si < p->n_steps; si++)
			for (size_t q = 0; q < p->steps[si].n_in; q++)
				if (p->steps[si].in[q] == p->inputs[i])
					p->in_refs[i][p->n_in_refs[i]++] = &p->steps[si].in_t[q];
		v->direct = true;
	}

	/* alias_in0 ops share their input's buffer; the shared buffer lives until
	 * the last reader of either value */
	for (size_t i = 0; i < p->n_values; i++)
		p->values[i].alias = -1;
	for (size_t si = 0; si < p->n_steps; si++) {
		struct exec_step *s = &p->steps[si];
		if (s->folded || !aliases_in0(s->node) || s->n_in < 1 || s->n_out < 1 ||
		    s->in[0] < 0)
			continue;
		int root = s->in[0];
		while (p->values[root].alias >= 0)
			root = p->values[root].alias;
		struct exec_value *rv = &p->values[root], *ov = &p->values[s->out[0]];
		if (rv->is_const || rv->direct || rv->bytes != ov->bytes)
			continue;
		ov->alias = root;
		if (ov->last > rv->last)
			rv->last = ov->last;
	}

	/* buffer plan: every non-constant value and every step's scratch */
	size_t n_iv = 0;
	for (size_t i = 0; i < p->n_values; i++)
		if (!p->values[i].is_const && !p->values[i].direct && p->values[i].alias < 0 &&
		    !p->values[i].dead)
			n_iv++;
	for (size_t si = 0; si < p->n_steps; si++)
		if (!p->steps[si].folded && p->steps[si].scratch_bytes)
			n_iv++;
	struct interval *iv = calloc(n_iv ? n_iv : 1, sizeof *iv);
	if (!iv)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "planning buffers");
	size_t k = 0;
	for (size_t i = 0; i < p->n_values; i++) {
		struct exec_value *v = &p->values[i];
		if (v->is_const || v->direct || v->alias >= 0 || v->dead)
			continue;
		if (v->def < 0 && v->bytes == 0) {
			size_t b;
			if ((st = value_bytes(v, NULL, &b, e)) != NN_OK) {
				free(iv);
				return st;
			}
			v->bytes = b;
		}
		int start = v->def < 0 ? 0 : v->def;
		int end = v->last < start ? start : v->last;
		iv[k++] = (struct interval){align_up(v->bytes), start, end, &v->offset};
	}
	for (size_t si = 0; si < p->n_steps; si++) {
		struct exec_step *s = &p->steps[si];
		if (!s->folded && s->scratch_bytes)
			iv[k++] = (struct interval){align_up(s->scratch_bytes), (int)si, (int)si,
						    &s->scratch_off};
	}
	st = plan_offsets(iv, n_iv, &p->arena_bytes, e);
	free(iv);
	if (st != NN_OK)
		return st;
	if (p->arena_bytes) {
		p->arena = aligned_alloc(EXEC_ALIGN, align_up(p->arena_bytes));
		if (!p->arena)
			return err_set(e, NN_ENOMEM, "out_of_memory", "",
				       "allocating a %zu-byte arena", p->arena_bytes);
	}
	for (size_t i = 0; i < p->n_values; i++) {
		struct exec_value *v = &p->values[i];
		if (!v->is_const)
			v->t.data = p->arena && !v->direct && !v->dead ? p->arena + v->offset : NULL;
	}
	for (size_t i = 0; i < p->n_values; i++) /* roots precede their aliases' readers */
		if (p->values[i].alias >= 0)
			p->values[i].t.data = p->values[p->values[i].alias].t.data;
	for (size_t si = 0; si < p->n_steps; si++) {
		struct exec_step *s = &p->steps[si];
		for (size_t q = 0; q < s->n_in; q++)
			if (s->in[q] >= 0)
				s->in_t[q].data = p->values[s->in[q]].t.data;
		for (size_t q = 0; q < s->n_out; q++)
			s->out_t[q].data = p->values[s->out[q]].t.data;
	}
	return NN_OK;
}

enum nn_status exec_compile(const struct onnx_model *m, int64_t batch, struct exec_plan **out,
			    struct nn_err *e)
{
	*out = NULL;
	const Onnx__GraphProto *g = NULL;
	enum nn_status st = graph_of(m, &g, e);
	if (st != NN_OK)
		return st;
	if (batch < 0 || batch > ((int64_t)1 << 30))
		return err_set(e, NN_EINVAL, "invalid_argument", "", "batch %lld out of range",
			       (long long)batch);
	struct onnx_model *low = NULL; /* float16 graph: its float32 copy */
	if ((st = exec_f16_lower(m, &low, e)) != NN_OK)
		return st;
	if (low) {
		m = low;
		g = low->proto->graph;
	}
	struct exec_plan *p = calloc(1, sizeof *p);
	if (!p) {
		onnx_free(low);
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "allocating the plan");
	}
	p->lowered = low;
	st = compile_graph(p, m, g, batch, false, e);
	if (st != NN_OK) {
		exec_free(p);
		return st;
	}
	*out = p;
	return NN_OK;
}

size_t exec_input_count(const struct exec_plan *p)
{
	return p->n_inputs;
}

size_t exec_output_count(const struct exec_plan *p)
{
	return p->n_outputs;
}

const char *exec_input_name(const struct exec_plan *p, size_t i)
{
	return i < p->n_inputs ? p->values[p->inputs[i]].name : NULL;
}

const struct tensor *exec_input_spec(const struct exec_plan *p, size_t i)
{
	return i < p->n_inputs ? &p->in_specs[i] : NULL;
}

const char *exec_output_name(const struct exec_plan *p, size_t i)
{
	return i < p->n_outputs ? p->values[p->outputs[i]].name : NULL;
}

const struct tensor *exec_output_spec(const struct exec_plan *p, size_t i)
{
	return i < p->n_outputs ? &p->out_specs[i] : NULL;
}

static size_t par_bytes(const struct exec_par *par);

size_t exec_plan_bytes(const struct exec_plan *p)
{
	return p->arena_bytes + p->const_bytes + (p->par ? par_bytes(p->par) : 0);
}

static enum nn_status par_run(struct exec_plan *p, const struct tensor *inputs,
			      struct tensor *outputs, struct nn_err *e);

enum nn_status exec_run(struct exec_plan *p, const struct tensor *inputs, size_t n_inputs,
			struct tensor *outputs, size_t n_outputs, struct nn_err *e)
{
	if (p->par) {
		if (n_inputs != p->n_inputs || n_outputs != p->n_outputs)
			return err_set(e, NN_EINVAL, "invalid_argument", "",
				       "expected %zu inputs and %zu outputs, got %zu and %zu",
				       p->n_inputs, p->n_outputs, n_inputs, n_outputs);
		return par_run(p, inputs, outputs, e);
	}
	if (n_inputs != p->n_inputs || n_outputs != p->n_outputs)
		return err_set(e, NN_EINVAL, "invalid_argument", "",
			       "expected %zu inputs and %zu outputs, got %zu and %zu", p->n_inputs,
			       p->n_outputs, n_inputs, n_outputs);
	for (size_t i = 0; i < n_inputs; i++) {
		const struct tensor *spec = &p->in_specs[i];
		const struct tensor *in = &inputs[i];
		bool same = in->dtype == spec->dtype && in->ndim == spec->ndim;
		for (int d = 0; same && d < spec->ndim; d++)
			same = in->shape[d] == spec->shape[d];
		if (!same)
			return err_set(e, NN_EINVAL, "invalid_argument", "",
				       "input '%.100s' does not match the plan's dtype and shape",
				       exec_input_name(p, i));
		struct exec_value *v = &p->values[p->inputs[i]];
		if (v->bytes && !in->data)
			return err_set(e, NN_EINVAL, "invalid_argument", "",
				       "input '%.100s' has no data", v->name);
		if (v->direct) {
			for (size_t r = 0; r < p->n_in_refs[i]; r++)
				p->in_refs[i][r]->data = in->data; /* kernels only read inputs */
		} else if (v->bytes) {
			memcpy(v->t.data, in->data, v->bytes);
		}
	}
	for (size_t si = 0; si < p->n_steps; si++) {
		struct exec_step *s = &p->steps[si];
		if (s->folded)
			continue;
		struct exec_run_ctx c = {
			.node = s->node, .opset = s->opset, .priv = s->priv,
			.in = s->in_t, .n_in = s->n_in, .out = s->out_t, .n_out = s->n_out,
			.scratch = s->scratch_bytes ? p->arena + s->scratch_off : NULL,
			.scratch_bytes = s->scratch_bytes,
		};
		enum nn_status st = s->op->run(&c, e);
		if (st != NN_OK)
			return st;
	}
	for (size_t i = 0; i < n_outputs; i++) {
		const struct exec_value *v = &p->values[p->outputs[i]];
		tensor_view(&outputs[i], v->t.dtype, v->t.ndim, v->t.shape, v->t.data);
	}
	return NN_OK;
}

/* ---- batch-split plans (exec_compile_threads) ----
 *
 * The batch is cut into n slices, each run by its own sub-plan (a plain
 * exec_compile plan for the slice's size: own arena, own op state, so slices
 * share nothing writable). Slice 0 runs on the caller's thread, slice s > 0 on
 * worker s, created at compile and joined in exec_free. One exec_run is one
 * generation: the caller bumps gen under mu and broadcasts go; each worker
 * runs its slice, copies its rows of every output into the plan-owned output
 * buffers and decrements pending; the caller waits on done until pending is 0.
 * The mutex orders the caller's input pointers before the workers' reads and
 * the workers' output rows before the caller returns. Nothing is allocated
 * per run. */

struct exec_worker {
	struct exec_par *par;
	unsigned idx;
	enum nn_status st;
	struct nn_err err;
	pthread_t th;
	bool started;
};

struct exec_par {
	unsigned n;               /* slices (sub-plans) */
	size_t n_in, n_out;
	struct exec_plan **sub;
	int64_t *off;             /* first batch row of each slice */
	size_t *in_row, *out_row; /* bytes per batch row of each input / output */
	struct tensor *sub_in;    /* n * n_in: each slice's views of the caller's inputs */
	struct tensor *sub_out;   /* n * n_out: each sub-plan's outputs */
	unsigned char **out_buf;  /* n_out full-batch output buffers */
	size_t out_bytes;
	struct exec_worker *w;    /* n; w[0] stands for the caller */
	pthread_mutex_t mu;
	pthread_cond_t go, done;
	bool sync_ready;
	unsigned long gen;        /* generation of the current run (guarded by mu) */
	unsigned pending;         /* workers still running it (guarded by mu) */
	bool quit;                /* guarded by mu */
};

/* Runs slice s and copies its output rows into the full-batch buffers. */
static void par_slice(struct exec_par *par, unsigned s)
{
	struct exec_worker *w = &par->w[s];
	struct tensor *out = &par->sub_out[(size_t)s * par->n_out];
	w->st = exec_run(par->sub[s], &par->sub_in[(size_t)s * par->n_in], par->n_in, out,
			 par->n_out, &w->err);
	if (w->st != NN_OK)
		return;
	for (size_t o = 0; o < par->n_out; o++) {
		size_t rows = (size_t)out[o].shape[0], bytes = rows * par->out_row[o];
		if (bytes)
			memcpy(par->out_buf[o] + (size_t)par->off[s] * par->out_row[o], out[o].data,
			       bytes);
	}
}

static void *par_worker(void *arg)
{
	struct exec_worker *w = arg;
	struct exec_par *par = w->par;
	unsigned long seen = 0;
	for (;;) {
		pthread_mutex_lock(&par->mu);
		while (par->gen == seen && !par->quit)
			pthread_cond_wait(&par->go, &par->mu);
		if (par->quit) {
			pthread_mutex_unlock(&par->mu);
			return NULL;
		}
		seen = par->gen;
		pthread_mutex_unlock(&par->mu);
		par_slice(par, w->idx);
		pthread_mutex_lock(&par->mu);
		if (--par->pending == 0)
			pthread_cond_signal(&par->done);
		pthread_mutex_unlock(&par->mu);
	}
}

static void par_free(struct exec_par *par)
{
	if (!par)
		return;
	if (par->sync_ready) {
		pthread_mutex_lock(&par->mu);
		par->quit = true;
		pthread_cond_broadcast(&par->go);
		pthread_mutex_unlock(&par->mu);
		for (unsigned s = 1; par->w && s < par->n; s++)
			if (par->w[s].started)
				pthread_join(par->w[s].th, NULL);
		pthread_cond_destroy(&par->done);
		pthread_cond_destroy(&par->go);
		pthread_mutex_destroy(&par->mu);
	}
	for (unsigned s = 0; par->sub && s < par->n; s++)
		exec_free(par->sub[s]);
	for (size_t o = 0; par->out_buf && o < par->n_out; o++)
		free(par->out_buf[o]);
	free(par->out_buf);
	free(par->sub);
	free(par->off);
	free(par->in_row);
	free(par->out_row);
	free(par->sub_in);
	free(par->sub_out);
	free(par->w);
	free(par);
}

static size_t par_bytes(const struct exec_par *par)
{
	size_t b = par->out_bytes;
	for (unsigned s = 0; s < par->n; s++)
		b += exec_plan_bytes(par->sub[s]);
	return b;
}

/* Same dtype and shape except the first dimension, which is `rows`. */
static bool same_but_batch(const struct tensor *full, const struct tensor *part, int64_t rows)
{
	if (full->dtype != part->dtype || full->ndim != part->ndim || part->ndim < 1 ||
	    part->shape[0] != rows)
		return false;
	for (int d = 1; d < full->ndim; d++)
		if (full->shape[d] != part->shape[d])
			return false;
	return true;
}

/* Row bytes of a spec whose first dimension is batch (> 0). */
static size_t row_bytes(const struct tensor *spec, int64_t batch)
{
	size_t b = 0;
	if (tensor_nbytes(spec, &b, NULL) != NN_OK)
		return 0;
	return b / (size_t)batch;
}

/* Builds p->par for n slices of batch. NN_EUNSUPPORTED (no message) when the
 * graph turns out not to be splittable: the caller falls back to one plan. */
static enum nn_status par_build(struct exec_plan *p, const struct onnx_model *m, int64_t batch,
				unsigned n, struct nn_err *e)
{
	struct exec_par *par = calloc(1, sizeof *par);
	if (!par)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "allocating the plan");
	p->par = par;
	par->n = n;
	par->n_in = p->n_inputs;
	par->n_out = p->n_outputs;
	par->sub = calloc(n, sizeof *par->sub);
	par->off = calloc(n, sizeof *par->off);
	par->in_row = calloc(par->n_in, sizeof *par->in_row);
	par->out_row = calloc(par->n_out ? par->n_out : 1, sizeof *par->out_row);
	par->sub_in = calloc((size_t)n * par->n_in, sizeof *par->sub_in);
	par->sub_out = calloc((size_t)n * (par->n_out ? par->n_out : 1), sizeof *par->sub_out);
	par->out_buf = calloc(par->n_out ? par->n_out : 1, sizeof *par->out_buf);
	par->w = calloc(n, sizeof *par->w);
	if (!par->sub || !par->off || !par->in_row || !par->out_row || !par->sub_in ||
	    !par->sub_out || !par->out_buf || !par->w)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "allocating the plan");

	int64_t at = 0;
	for (unsigned s = 0; s < n; s++) {
		int64_t rows = batch / n + ((int64_t)s < batch % n ? 1 : 0);
		par->off[s] = at;
		at += rows;
		enum nn_status st = exec_compile(m, rows, &par->sub[s], e);
		if (st == NN_ENOMEM)
			return st;
		if (st != NN_OK) /* e.g. a Reshape to a constant shape naming the batch */
			return NN_EUNSUPPORTED;
		struct exec_plan *q = par->sub[s];
		if (q->n_inputs != p->n_inputs || q->n_outputs != p->n_outputs)
			return NN_EUNSUPPORTED;
		for (size_t i = 0; i < p->n_inputs; i++) {
			if (!same_but_batch(&p->in_specs[i], &q->in_specs[i], rows))
				return NN_EUNSUPPORTED;
			par->sub_in[(size_t)s * par->n_in + i] = q->in_specs[i];
		}
		for (size_t o = 0; o < p->n_outputs; o++)
			if (!same_but_batch(&p->out_specs[o], &q->out_specs[o], rows))
				return NN_EUNSUPPORTED;
	}
	for (size_t i = 0; i < par->n_in; i++)
		par->in_row[i] = row_bytes(&p->in_specs[i], batch);
	for (size_t o = 0; o < par->n_out; o++) {
		par->out_row[o] = row_bytes(&p->out_specs[o], batch);
		size_t bytes = par->out_row[o] * (size_t)batch;
		if (bytes == 0)
			continue;
		par->out_buf[o] = aligned_alloc(EXEC_ALIGN, align_up(bytes));
		if (!par->out_buf[o])
			return err_set(e, NN_ENOMEM, "out_of_memory", "",
				       "allocating a %zu-byte output buffer", bytes);
		par->out_bytes += align_up(bytes);
	}

	if (pthread_mutex_init(&par->mu, NULL) != 0)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "creating a mutex");
	if (pthread_cond_init(&par->go, NULL) != 0) {
		pthread_mutex_destroy(&par->mu);
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "creating a condition variable");
	}
	if (pthread_cond_init(&par->done, NULL) != 0) {
		pthread_cond_destroy(&par->go);
		pthread_mutex_destroy(&par->mu);
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "creating a condition variable");
	}
	par->sync_ready = true;
	for (unsigned s = 0; s < n; s++) {
		par->w[s].par = par;
		par->w[s].idx = s;
	}
	for (unsigned s = 1; s < n; s++) {
		if (pthread_create(&par->w[s].th, NULL, par_worker, &par->w[s]) != 0)
			return err_set(e, NN_ENOMEM, "out_of_memory", "",
				       "creating executor thread %u of %u", s + 1, n);
		par->w[s].started = true;
	}
	return NN_OK;
}

enum nn_status exec_compile_threads(const struct onnx_model *m, int64_t batch, unsigned threads,
				    struct exec_plan **out, struct nn_err *e)
{
	*out = NULL;
	const Onnx__GraphProto *g = NULL;
	enum nn_status st = graph_of(m, &g, e);
	if (st != NN_OK)
		return st;
	if (batch < 0 || batch > ((int64_t)1 << 30))
		return err_set(e, NN_EINVAL, "invalid_argument", "", "batch %lld out of range",
			       (long long)batch);
	unsigned n = threads < 1 ? 1 : threads;
	if ((int64_t)n > batch)
		n = (unsigned)batch; /* every slice has at least one row */
	if (n < 2)
		return exec_compile(m, batch, out, e);

	/* A float16 graph: the plan and its slices compile the float32 copy
	 * (exec_f16.h), which the full-batch plan owns; the slices' own
	 * exec_compile finds nothing left to lower. */
	const struct onnx_model *orig = m;
	struct onnx_model *low = NULL;
	if ((st = exec_f16_lower(m, &low, e)) != NN_OK)
		return st;
	if (low) {
		m = low;
		g = low->proto->graph;
	}
	struct exec_plan *p = calloc(1, sizeof *p);
	if (!p) {
		onnx_free(low);
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "allocating the plan");
	}
	p->lowered = low;
	st = compile_graph(p, m, g, batch, true, e);
	if (st != NN_OK) {
		exec_free(p);
		return st;
	}
	/* Splittable: every graph input and output has the batch as its first
	 * dimension at the full batch and the slice's size in each slice (so no
	 * fixed dimension merely equals the batch), other dimensions unchanged. */
	bool split = p->n_inputs > 0;
	for (size_t i = 0; split && i < p->n_inputs; i++)
		split = p->in_specs[i].ndim >= 1 && p->in_specs[i].shape[0] == batch;
	for (size_t o = 0; split && o < p->n_outputs; o++)
		split = p->out_specs[o].ndim >= 1 && p->out_specs[o].shape[0] == batch;
	if (split) {
		struct nn_err pe;
		err_clear(&pe);
		st = par_build(p, m, batch, n, &pe);
		if (st == NN_OK) {
			*out = p;
			return NN_OK;
		}
		if (st != NN_EUNSUPPORTED) {
			if (e)
				*e = pe;
			exec_free(p);
			return st;
		}
	}
	exec_free(p);
	return exec_compile(orig, batch, out, e);
}

unsigned exec_threads(const struct exec_plan *p)
{
	return p->par ? p->par->n : 1;
}

static enum nn_status par_run(struct exec_plan *p, const struct tensor *inputs,
			      struct tensor *outputs, struct nn_err *e)
{
	struct exec_par *par = p->par;
	for (size_t i = 0; i < par->n_in; i++) {
		const struct tensor *spec = &p->in_specs[i], *in = &inputs[i];
		bool same = in->dtype == spec->dtype && in->ndim == spec->ndim;
		for (int d = 0; same && d < spec->ndim; d++)
			same = in->shape[d] == spec->shape[d];
		if (!same)
			return err_set(e, NN_EINVAL, "invalid_argument", "",
				       "input '%.100s' does not match the plan's dtype and shape",
				       exec_input_name(p, i));
		if (par->in_row[i] && !in->data)
			return err_set(e, NN_EINVAL, "invalid_argument", "",
				       "input '%.100s' has no data", exec_input_name(p, i));
		for (unsigned s = 0; s < par->n; s++)
			par->sub_in[(size_t)s * par->n_in + i].data =
				par->in_row[i] ? (unsigned char *)in->data +
							 (size_t)par->off[s] * par->in_row[i]
					       : in->data;
	}
	pthread_mutex_lock(&par->mu);
	par->pending = par->n - 1;
	par->gen++;
	pthread_cond_broadcast(&par->go);
	pthread_mutex_unlock(&par->mu);
	par_slice(par, 0);
	pthread_mutex_lock(&par->mu);
	while (par->pending > 0)
		pthread_cond_wait(&par->done, &par->mu);
	pthread_mutex_unlock(&par->mu);
	for (unsigned s = 0; s < par->n; s++)
		if (par->w[s].st != NN_OK) {
			if (e)
				*e = par->w[s].err;
			return par->w[s].st;
		}
	for (size_t o = 0; o < par->n_out; o++) {
		const struct tensor *spec = &p->out_specs[o];
		tensor_view(&outputs[o], spec->dtype, spec->ndim, spec->shape, par->out_buf[o]);
	}
	return NN_OK;
}
