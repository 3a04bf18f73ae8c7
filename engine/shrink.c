/* shrink: channel groups and the surgery that removes channels (shrink.h).
 * Not thread-safe per model/plan; no global state. */
#include "shrink.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor.h"

static int step_json_set_(json_t *o, const char *key, json_t *v)
{
	if (!v)
		return 1;
	return json_object_set_new(o, key, v) != 0;
}

static bool streq(const char *a, const char *b)
{
	return a && b && !strcmp(a, b);
}

static enum nn_status oom(struct nn_err *e)
{
	return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for channel surgery");
}

/* ---- name index: producer and consumers of every value ---- */

struct use {
	const char *name;
	size_t node;
	size_t slot;
};

static int cmp_use(const void *a, const void *b)
{
	const struct use *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	if (c)
		return c;
	return x->node < y->node ? -1 : x->node > y->node ? 1 : (x->slot > y->slot) - (x->slot < y->slot);
}

struct index {
	const Onnx__GraphProto *g;
	struct use *cons; /* node inputs, sorted by name */
	size_t n_cons;
	struct use *prod; /* node outputs, sorted by name */
	size_t n_prod;
};

static void index_free(struct index *x)
{
	free(x->cons);
	free(x->prod);
}

static enum nn_status index_build(const Onnx__GraphProto *g, struct index *x, struct nn_err *e)
{
	memset(x, 0, sizeof *x);
	x->g = g;
	size_t nc = 0, np = 0;
	for (size_t i = 0; i < g->n_node; i++) {
		nc += g->node[i]->n_input;
		np += g->node[i]->n_output;
	}
	x->cons = malloc((nc ? nc : 1) * sizeof *x->cons);
	x->prod = malloc((np ? np : 1) * sizeof *x->prod);
	if (!x->cons || !x->prod) {
		index_free(x);
		return oom(e);
	}
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		for (size_t j = 0; j < n->n_input; j++)
			if (n->input[j] && *n->input[j])
				x->cons[x->n_cons++] = (struct use){n->input[j], i, j};
		for (size_t j = 0; j < n->n_output; j++)
			if (n->output[j] && *n->output[j])
				x->prod[x->n_prod++] = (struct use){n->output[j], i, j};
	}
	qsort(x->cons, x->n_cons, sizeof *x->cons, cmp_use);
	qsort(x->prod, x->n_prod, sizeof *x->prod, cmp_use);
	return NN_OK;
}

/* First entry named `name` in a sorted use array and the count of them. */
static const struct use *uses_of(const struct use *a, size_t n, const char *name, size_t *count)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(a[mid].name, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	size_t k = lo;
	while (k < n && !strcmp(a[k].name, name))
		k++;
	*count = k - lo;
	return a + lo;
}

static Onnx__NodeProto *producer(const struct index *x, const char *name, size_t *node_idx)
{
	size_t c;
	const struct use *u = uses_of(x->prod, x->n_prod, name, &c);
	if (!c)
		return NULL;
	if (node_idx)
		*node_idx = u->node;
	return x->g->node[u->node];
}

static Onnx__TensorProto *find_init(const Onnx__GraphProto *g, const char *name)
{
	for (size_t i = 0; name && i < g->n_initializer; i++)
		if (streq(g->initializer[i]->name, name))
			return g->initializer[i];
	return NULL;
}

static bool is_graph_output(const Onnx__GraphProto *g, const char *name)
{
	for (size_t i = 0; i < g->n_output; i++)
		if (streq(g->output[i]->name, name))
			return true;
	return false;
}

static bool default_domain(const Onnx__NodeProto *n)
{
	return !n->domain || !*n->domain || streq(n->domain, "ai.onnx");
}

/* A constant operand: an initializer (possibly through one Identity), or a
 * Constant node's tensor (not sliceable). */
struct konst {
	Onnx__TensorProto *init;        /* sliceable initializer, or NULL */
	const Onnx__TensorProto *value; /* dims source */
	size_t via_identity;            /* node index of a forwarding Identity, or SIZE_MAX */
};

static bool resolve_const(const struct index *x, const char *name, struct konst *k)
{
	const Onnx__GraphProto *g = x->g;
	k->init = NULL;
	k->value = NULL;
	k->via_identity = SIZE_MAX;
	if (!name || !*name)
		return false;
	Onnx__TensorProto *t = find_init(g, name);
	if (t) {
		if (onnx_is_graph_input(g, name))
			return false; /* overridable at run time: not a constant */
		k->init = t;
		k->value = t;
		return true;
	}
	size_t ni;
	Onnx__NodeProto *p = producer(x, name, &ni);
	if (!p || !default_domain(p))
		return false;
	if (streq(p->op_type, "Identity") && p->n_input == 1 && (t = find_init(g, p->input[0])) &&
	    !onnx_is_graph_input(g, p->input[0])) {
		k->init = t;
		k->value = t;
		k->via_identity = ni;
		return true;
	}
	if (streq(p->op_type, "Constant")) {
		Onnx__AttributeProto *a = onnx_find_attr(p, "value", NULL);
		if (a && a->t) {
			k->value = a->t;
			return true;
		}
	}
	return false;
}

static int64_t dims_numel(const Onnx__TensorProto *t)
{
	int64_t n = 1;
	for (size_t d = 0; d < t->n_dims; d++)
		if (t->dims[d] < 0 || __builtin_mul_overflow(n, t->dims[d], &n))
			return -1;
	return n;
}

/* ---- groups under construction ---- */

enum item_kind {
	IT_SOURCE,   /* a layer producing the channels */
	IT_PARAM,    /* a per-channel constant operand (BN entries, bias Add, ...) */
	IT_CONSUMER, /* a layer reading the channels as its input */
	IT_DW,       /* depthwise Conv: W axis 0, bias, group attribute */
	IT_CONCAT,   /* the group's channels are input `slot` of a Concat */
};

struct item {
	enum item_kind kind;
	size_t node;
	size_t slot;
	struct konst k;     /* IT_PARAM: the constant; IT_SOURCE/CONSUMER/DW: weight */
	int pos;            /* IT_PARAM: axis of the constant aligned with the channels */
	const char *tensor; /* IT_CONSUMER/CONCAT: the input tensor (tap) */
	int from_end;
	bool flat;
};

struct tinfo {
	const char *name;
	int ndim;     /* 0 = unknown */
	int from_end; /* channel axis counted from the end */
	bool flat;    /* after a Flatten: channels span blocks of the feature axis */
};

/* A slice to make at apply time. */
struct slice {
	Onnx__TensorProto *init;
	int axis;
	int64_t block;
};

struct shrink_internal {
	struct tinfo *tensors;
	size_t n_tensors, cap_tensors;
	struct item *items;
	size_t n_items, cap_items;
	size_t *nodes; /* nodes that belong to the group (for sharing checks) */
	size_t n_nodes, cap_nodes;
	struct slice *slices;
	size_t n_slices;
	size_t *dw_nodes;
	size_t n_dw;
	size_t concat_node; /* derived: the Concat; SIZE_MAX otherwise */
	long *concat_inputs; /* derived: group of each Concat input */
	size_t n_concat_inputs;
};

/* Builder state for one analyze call. */
struct builder {
	const Onnx__GraphProto *g;
	struct index x;
	long *group_of_node_pass; /* passthrough node -> group (visited), -1 */
	struct shrink_plan *plan;
	const char **queue;
	size_t q_head, q_len, q_cap;
};

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return true;
	size_t nc = *cap ? *cap * 2 : 16;
	while (nc < need)
		nc *= 2;
	void *q = realloc(*p, nc * elem);
	if (!q)
		return false;
	*p = q;
	*cap = nc;
	return true;
}

static void block(struct shrink_group *gr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void block(struct shrink_group *gr, const char *fmt, ...)
{
	if (!gr->prunable)
		return; /* keep the first reason */
	gr->prunable = false;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(gr->reason, sizeof gr->reason, fmt, ap);
	va_end(ap);
}

static const char *node_label(const Onnx__NodeProto *n)
{
	return n->name && *n->name ? n->name : (n->n_output ? n->output[0] : "?");
}

static struct tinfo *find_tensor(struct shrink_internal *in, const char *name)
{
	for (size_t i = 0; i < in->n_tensors; i++)
		if (!strcmp(in->tensors[i].name, name))
			return &in->tensors[i];
	return NULL;
}

static bool add_node(struct shrink_internal *in, size_t node)
{
	for (size_t i = 0; i < in->n_nodes; i++)
		if (in->nodes[i] == node)
			return true;
	if (!grow((void **)&in->nodes, &in->cap_nodes, in->n_nodes + 1, sizeof *in->nodes))
		return false;
	in->nodes[in->n_nodes++] = node;
	return true;
}

static bool add_item(struct shrink_internal *in, const struct item *it)
{
	if (!grow((void **)&in->items, &in->cap_items, in->n_items + 1, sizeof *in->items))
		return false;
	in->items[in->n_items++] = *it;
	if (!add_node(in, it->node))
		return false;
	if (it->k.via_identity != SIZE_MAX && !add_node(in, it->k.via_identity))
		return false;
	return true;
}

/* Adds a tensor to the group (queued for exploration) or checks that its
 * layout agrees with the one already recorded. */
static bool add_tensor(struct builder *b, struct shrink_group *gr, const char *name, int ndim,
		       int from_end, bool flat)
{
	struct shrink_internal *in = gr->in;
	struct tinfo *t = find_tensor(in, name);
	if (t) {
		if (t->from_end != from_end || t->flat != flat || (t->ndim && ndim && t->ndim != ndim))
			block(gr, "tensor '%.80s' is reached with two different channel layouts",
			      name);
		if (!t->ndim)
			t->ndim = ndim;
		return true;
	}
	for (size_t gi = 0; gi + 1 < b->plan->n_groups; gi++) {
		if (find_tensor(b->plan->groups[gi].in, name)) {
			block(gr, "tensor '%.80s' already belongs to another channel group", name);
			block(&b->plan->groups[gi],
			      "tensor '%.80s' is also reached from another channel group", name);
			return true;
		}
	}
	if (!grow((void **)&in->tensors, &in->cap_tensors, in->n_tensors + 1, sizeof *in->tensors) ||
	    !grow((void **)&b->queue, &b->q_cap, b->q_len + 1, sizeof *b->queue))
		return false;
	in->tensors[in->n_tensors++] = (struct tinfo){name, ndim, from_end, flat};
	b->queue[b->q_len++] = name;
	return true;
}

static bool is_unary_passthrough(const char *op)
{
	static const char *const ops[] = {"Relu",      "LeakyRelu", "Sigmoid",  "Tanh",    "Erf",
					  "Gelu",      "HardSwish", "HardSigmoid", "Clip", "Identity",
					  "Dropout",   "Elu",       "Selu",     "Softplus", "Neg",
					  "Abs",       "Celu",      "Mish",     "ThresholdedRelu", NULL};
	for (size_t i = 0; ops[i]; i++)
		if (!strcmp(op, ops[i]))
			return true;
	return false;
}

static bool is_binary(const char *op)
{
	return !strcmp(op, "Add") || !strcmp(op, "Sub") || !strcmp(op, "Mul") ||
	       !strcmp(op, "Div") || !strcmp(op, "PRelu") || !strcmp(op, "Max") ||
	       !strcmp(op, "Min");
}

static bool is_pool(const char *op)
{
	return !strcmp(op, "MaxPool") || !strcmp(op, "AveragePool") ||
	       !strcmp(op, "GlobalAveragePool") || !strcmp(op, "GlobalMaxPool") ||
	       !strcmp(op, "LpPool") || !strcmp(op, "GlobalLpPool");
}

/* Only output 0 of a node may be used (Dropout mask, MaxPool indices, BN
 * training outputs change meaning). */
static bool extra_outputs_used(const struct builder *b, const Onnx__NodeProto *n)
{
	for (size_t j = 1; j < n->n_output; j++) {
		size_t c;
		if (!n->output[j] || !*n->output[j])
			continue;
		uses_of(b->x.cons, b->x.n_cons, n->output[j], &c);
		if (c || is_graph_output(b->g, n->output[j]))
			return true;
	}
	return false;
}

/* Reads an int64 list from a constant (initializer or Constant node). */
static bool const_ints(const struct index *x, const char *name, int64_t *out, size_t cap,
		       size_t *n)
{
	struct konst k;
	if (!resolve_const(x, name, &k) || k.value->data_type != DT_INT64)
		return false;
	const Onnx__TensorProto *t = k.value;
	int64_t numel = dims_numel(t);
	if (numel < 0 || (size_t)numel > cap)
		return false;
	*n = (size_t)numel;
	if (t->n_int64_data == (size_t)numel) {
		memcpy(out, t->int64_data, (size_t)numel * sizeof *out);
		return true;
	}
	if (t->has_raw_data && t->raw_data.len == (size_t)numel * 8) {
		memcpy(out, t->raw_data.data, (size_t)numel * 8);
		return true;
	}
	return false;
}

/* Channel axis from the start, or -1 when the rank is unknown. */
static int axis_of(const struct tinfo *t)
{
	return t->ndim ? t->ndim - 1 - t->from_end : -1;
}

/* Whether `name` is a constant int64 equal to the scalar or 1-element v. */
static bool const_is(const struct index *x, const char *name, int64_t v)
{
	int64_t a[1];
	size_t n;
	return const_ints(x, name, a, 1, &n) && n == 1 && a[0] == v;
}

/* A Shape node that only feeds Gather(index 0, axis 0): it reads the batch
 * size, which channel removal does not change. */
static bool shape_reads_batch_only(const struct builder *b, const Onnx__NodeProto *n)
{
	if (n->n_output != 1 || onnx_node_int_attr(n, "start", 0) != 0)
		return false;
	size_t c;
	const struct use *u = uses_of(b->x.cons, b->x.n_cons, n->output[0], &c);
	for (size_t k = 0; k < c; k++) {
		const Onnx__NodeProto *gn = b->g->node[u[k].node];
		if (!streq(gn->op_type, "Gather") || u[k].slot != 0 || gn->n_input < 2 ||
		    onnx_node_int_attr(gn, "axis", 0) != 0 || !const_is(&b->x, gn->input[1], 0))
			return false;
	}
	return c > 0 && !is_graph_output(b->g, n->output[0]);
}

/* Whether a Reshape's shape input (constant, or computed the way PyTorch
 * exports x.view(x.size(0), -1)) makes it a Flatten at axis 1 of `data`:
 * [0, -1] (allowzero 0), or Concat(Unsqueeze(Gather(Shape(data), 0)), [-1]). */
static bool reshape_is_flatten(const struct builder *b, const Onnx__NodeProto *n)
{
	if (n->n_input < 2 || onnx_node_int_attr(n, "allowzero", 0) != 0)
		return false;
	int64_t sh[2];
	size_t ns;
	if (const_ints(&b->x, n->input[1], sh, 2, &ns))
		return ns == 2 && sh[0] == 0 && sh[1] == -1;
	const Onnx__NodeProto *cat = producer(&b->x, n->input[1], NULL);
	if (!cat || !streq(cat->op_type, "Concat") || cat->n_input != 2 ||
	    !const_is(&b->x, cat->input[1], -1))
		return false;
	const Onnx__NodeProto *uq = producer(&b->x, cat->input[0], NULL);
	if (!uq || !streq(uq->op_type, "Unsqueeze") || uq->n_input < 1)
		return false;
	if (uq->n_input >= 2 ? !const_is(&b->x, uq->input[1], 0) : false)
		return false;
	if (uq->n_input < 2) {
		Onnx__AttributeProto *ax = onnx_find_attr(uq, "axes", NULL);
		if (!ax || ax->n_ints != 1 || ax->ints[0] != 0)
			return false;
	}
	const Onnx__NodeProto *ga = producer(&b->x, uq->input[0], NULL);
	if (!ga || !streq(ga->op_type, "Gather") || ga->n_input < 2 ||
	    onnx_node_int_attr(ga, "axis", 0) != 0 || !const_is(&b->x, ga->input[1], 0))
		return false;
	const Onnx__NodeProto *shp = producer(&b->x, ga->input[0], NULL);
	return shp && streq(shp->op_type, "Shape") && shp->n_input == 1 &&
	       streq(shp->input[0], n->input[0]);
}

/* A channel-wise node reached from tensor t of group gr: joins its data
 * inputs and outputs to the group, records its per-channel constants. */
static bool pass_node(struct builder *b, struct shrink_group *gr, size_t ni, const struct tinfo *t0)
{
	const Onnx__NodeProto *n = b->g->node[ni];
	struct shrink_internal *in = gr->in;
	struct tinfo t = *t0;
	const char *op = n->op_type;
	if (b->group_of_node_pass[ni] >= 0)
		return true;
	b->group_of_node_pass[ni] = (long)(gr - b->plan->groups);
	if (!add_node(in, ni))
		return false;
	if (extra_outputs_used(b, n)) {
		block(gr, "%s node '%.80s' has a second output in use", op, node_label(n));
		return true;
	}
	int axis = axis_of(&t);
	if (is_unary_passthrough(op)) {
		if (!add_tensor(b, gr, n->input[0], t.ndim, t.from_end, t.flat))
			return false;
	} else if (!strcmp(op, "BatchNormalization") || is_pool(op) || !strcmp(op, "Pad")) {
		if (axis != 1 || t.flat) {
			block(gr, "%s node '%.80s' does not act on the channel axis", op, node_label(n));
			return true;
		}
		if (!add_tensor(b, gr, n->input[0], t.ndim, t.from_end, t.flat))
			return false;
		if (!strcmp(op, "BatchNormalization")) {
			for (size_t s = 1; s < n->n_input && s < 5; s++) {
				struct item it = {.kind = IT_PARAM, .node = ni, .slot = s, .pos = 0};
				if (!resolve_const(&b->x, n->input[s], &it.k) || !it.k.init ||
				    it.k.value->n_dims != 1) {
					block(gr, "BatchNormalization node '%.80s': input %zu is not a "
						  "1-D initializer", node_label(n), s);
					return true;
				}
				if (!add_item(in, &it))
					return false;
			}
		} else if (!strcmp(op, "Pad")) {
			int64_t pads[2 * TENSOR_MAX_DIMS];
			size_t np = 0;
			bool ok;
			if (n->n_input >= 2)
				ok = (n->n_input < 4 || !n->input[3] || !*n->input[3]) &&
				     const_ints(&b->x, n->input[1], pads, 2 * TENSOR_MAX_DIMS, &np);
			else {
				Onnx__AttributeProto *a = onnx_find_attr(n, "pads", NULL);
				ok = a && a->n_ints <= 2 * TENSOR_MAX_DIMS;
				if (ok) {
					np = a->n_ints;
					memcpy(pads, a->ints, np * sizeof *pads);
				}
			}
			if (!ok || np != 2 * (size_t)t.ndim || pads[1] || pads[1 + t.ndim]) {
				block(gr, "Pad node '%.80s' pads the channel axis or has pads that "
					  "are not constant", node_label(n));
				return true;
			}
		}
	} else if (!strcmp(op, "Flatten") || !strcmp(op, "Reshape")) {
		if (!strcmp(op, "Reshape") && !reshape_is_flatten(b, n)) {
			block(gr, "Reshape node '%.80s' is not a flatten of the channel axis",
			      node_label(n));
			return true;
		}
		if (axis != 1 || onnx_node_int_attr(n, "axis", 1) != 1) {
			block(gr, "%s node '%.80s' does not keep channels on axis 1", op,
			      node_label(n));
			return true;
		}
		if (!add_tensor(b, gr, n->input[0], t.ndim, t.from_end, t.flat))
			return false;
		if (n->n_output && !add_tensor(b, gr, n->output[0], 2, 0, t.flat || t.ndim > 2))
			return false;
		return true;
	} else if (is_binary(op)) {
		for (size_t s = 0; s < n->n_input; s++) {
			struct item it = {.kind = IT_PARAM, .node = ni, .slot = s};
			if (find_tensor(in, n->input[s]))
				continue;
			if (resolve_const(&b->x, n->input[s], &it.k)) {
				const Onnx__TensorProto *v = it.k.value;
				int64_t numel = dims_numel(v);
				if (numel == 1)
					continue;
				it.pos = (int)v->n_dims - 1 - t.from_end;
				if (t.ndim && (int)v->n_dims > t.ndim) {
					block(gr, "%s node '%.80s' broadcasts to a higher rank", op,
					      node_label(n));
					return true;
				}
				if (it.pos < 0 || v->dims[it.pos] == 1)
					continue;
				if (t.flat || !it.k.init) {
					block(gr, "%s node '%.80s' has a per-feature constant that cannot "
						  "be sliced", op, node_label(n));
					return true;
				}
				if (!add_item(in, &it))
					return false;
				continue;
			}
			/* another computed operand: the same channels (a join) */
			if (!add_tensor(b, gr, n->input[s], t.ndim, t.from_end, t.flat))
				return false;
		}
	} else {
		block(gr, "%s node '%.80s' is not channel-wise", op, node_label(n));
		return true;
	}
	for (size_t j = 0; j < n->n_output && j < 1; j++)
		if (!add_tensor(b, gr, n->output[j], t.ndim, t.from_end, t.flat))
			return false;
	return true;
}

/* Conv group attribute and weight when node is a Conv with an initializer W. */
static Onnx__TensorProto *conv_weight(const struct builder *b, const Onnx__NodeProto *n)
{
	if (!streq(n->op_type, "Conv") || n->n_input < 2)
		return NULL;
	return find_init(b->g, n->input[1]);
}

/* The layer kind of a node when it produces channels from its own weight:
 * the weight initializer, its output-channel axis and the output rank. */
static Onnx__TensorProto *source_weight(const struct builder *b, const Onnx__NodeProto *n,
					int *axis, int *ndim, int *from_end)
{
	Onnx__TensorProto *w;
	if (!default_domain(n) || n->n_input < 2 || n->n_output < 1)
		return NULL;
	if (streq(n->op_type, "Gemm")) {
		w = find_init(b->g, n->input[1]);
		if (!w || w->n_dims != 2)
			return NULL;
		*axis = onnx_node_int_attr(n, "transB", 0) ? 0 : 1;
		*ndim = 2;
		*from_end = 0;
		return w;
	}
	if (streq(n->op_type, "MatMul")) {
		w = find_init(b->g, n->input[1]);
		if (!w || w->n_dims != 2 || find_init(b->g, n->input[0]))
			return NULL;
		*axis = 1;
		*ndim = 0;
		*from_end = 0;
		return w;
	}
	if (streq(n->op_type, "Conv")) {
		w = conv_weight(b, n);
		if (!w || w->n_dims < 3 || onnx_node_int_attr(n, "group", 1) != 1)
			return NULL;
		*axis = 0;
		*ndim = (int)w->n_dims;
		*from_end = (int)w->n_dims - 2;
		return w;
	}
	return NULL;
}

static bool is_depthwise(const struct builder *b, const Onnx__NodeProto *n, int64_t channels)
{
	Onnx__TensorProto *w = conv_weight(b, n);
	int64_t grp = onnx_node_int_attr(n, "group", 1);
	return w && grp > 1 && w->n_dims >= 3 && w->dims[1] == 1 &&
	       (channels < 0 || (grp == channels && w->dims[0] == channels));
}

/* A depthwise Conv (group == channels, W [C,1,k..]) is channel-wise: its W
 * rows and bias follow the channels and its group attribute the count. */
static bool pass_node_dw(struct builder *b, struct shrink_group *gr, size_t ni,
			 const struct tinfo *t)
{
	const Onnx__NodeProto *n = b->g->node[ni];
	if (b->group_of_node_pass[ni] >= 0)
		return true;
	b->group_of_node_pass[ni] = (long)(gr - b->plan->groups);
	if (t->flat || axis_of(t) != 1) {
		block(gr, "depthwise Conv node '%.80s' does not act on the channel axis",
		      node_label(n));
		return true;
	}
	struct item it = {.kind = IT_DW, .node = ni, .slot = 1};
	it.k.init = conv_weight(b, n);
	it.k.value = it.k.init;
	it.k.via_identity = SIZE_MAX;
	return add_item(gr->in, &it) && add_tensor(b, gr, n->input[0], t->ndim, t->from_end, false) &&
	       add_tensor(b, gr, n->output[0], t->ndim, t->from_end, false);
}

/* Explores one tensor of the group: its producer and its consumers. */
static bool explore(struct builder *b, struct shrink_group *gr, const char *name)
{
	struct shrink_internal *in = gr->in;
	struct tinfo t = *find_tensor(in, name);
	const Onnx__GraphProto *g = b->g;
	if (is_graph_output(g, name))
		block(gr, "its output reaches the graph output '%.80s' (the model's output shape "
			  "must not change)", name);
	size_t pi;
	Onnx__NodeProto *p = producer(&b->x, name, &pi);
	if (!p) {
		block(gr, "its channels come from the graph input '%.80s'", name);
	} else if (!default_domain(p)) {
		block(gr, "produced by %s node '%.80s' of domain %s", p->op_type, node_label(p),
		      p->domain);
	} else {
		int axis, ndim, fe;
		Onnx__TensorProto *w = source_weight(b, p, &axis, &ndim, &fe);
		bool dw = streq(p->op_type, "Conv") && is_depthwise(b, p, -1);
		if (w && streq(p->output[0], name)) {
			bool have = false;
			for (size_t i = 0; i < in->n_items; i++)
				have |= in->items[i].kind == IT_SOURCE && in->items[i].node == pi;
			if (!have) {
				struct item it = {.kind = IT_SOURCE, .node = pi, .slot = 1};
				it.k.init = w;
				it.k.value = w;
				it.k.via_identity = SIZE_MAX;
				it.pos = axis;
				if (!add_item(in, &it))
					return false;
				struct tinfo *tt = find_tensor(in, name);
				if ((tt->ndim && ndim && tt->ndim != ndim) || tt->from_end != fe || tt->flat)
					block(gr, "layer '%.80s' joins with a different channel layout",
					      node_label(p));
			}
		} else if (dw) {
			if (!pass_node_dw(b, gr, pi, &t))
				return false;
		} else if (streq(p->op_type, "Concat")) {
			if (in->concat_node != pi)
				block(gr, "it joins the output of Concat node '%.80s'", node_label(p));
		} else if (is_unary_passthrough(p->op_type) || is_binary(p->op_type) ||
			   is_pool(p->op_type) || streq(p->op_type, "BatchNormalization") ||
			   streq(p->op_type, "Pad") || streq(p->op_type, "Flatten") ||
			   streq(p->op_type, "Reshape")) {
			if (streq(p->op_type, "Flatten") || streq(p->op_type, "Reshape")) {
				/* backwards through a Flatten: the input's rank is not
				 * known here; only forward Flattens are understood */
				if (b->group_of_node_pass[pi] < 0) {
					b->group_of_node_pass[pi] = (long)(gr - b->plan->groups);
					block(gr, "%s node '%.80s' is reached from its output",
					      p->op_type, node_label(p));
				}
			} else if (!pass_node(b, gr, pi, &t)) {
				return false;
			}
		} else {
			block(gr, "produced by %s node '%.80s', whose channel mapping is not "
				  "provably preserved", p->op_type, node_label(p));
		}
	}

	size_t nc;
	const struct use *u = uses_of(b->x.cons, b->x.n_cons, name, &nc);
	for (size_t k = 0; k < nc; k++) {
		size_t ci = u[k].node, slot = u[k].slot;
		Onnx__NodeProto *c = g->node[ci];
		const char *op = c->op_type;
		if (!default_domain(c)) {
			block(gr, "consumed by %s node '%.80s' of domain %s", op, node_label(c),
			      c->domain);
			continue;
		}
		struct item it = {.kind = IT_CONSUMER, .node = ci, .slot = slot, .tensor = name,
				  .from_end = t.from_end, .flat = t.flat};
		it.k.via_identity = SIZE_MAX;
		if ((streq(op, "Gemm") || streq(op, "MatMul")) && slot == 0 && c->n_input >= 2 &&
		    (it.k.init = find_init(g, c->input[1])) && it.k.init->n_dims == 2) {
			if (streq(op, "Gemm") && onnx_node_int_attr(c, "transA", 0)) {
				block(gr, "Gemm node '%.80s' reads it transposed (transA)",
				      node_label(c));
				continue;
			}
			it.k.value = it.k.init;
			it.pos = streq(op, "Gemm") && onnx_node_int_attr(c, "transB", 0) ? 1 : 0;
			if (!add_item(in, &it))
				return false;
		} else if (streq(op, "Conv") && slot == 0 && (it.k.init = conv_weight(b, c)) &&
			   it.k.init->n_dims >= 3) {
			if (is_depthwise(b, c, -1)) {
				struct tinfo tt = t;
				if (!pass_node_dw(b, gr, ci, &tt))
					return false;
				continue;
			}
			if (onnx_node_int_attr(c, "group", 1) != 1) {
				block(gr, "grouped Conv node '%.80s' consumes it", node_label(c));
				continue;
			}
			it.k.value = it.k.init;
			it.pos = 1;
			if (!add_item(in, &it))
				return false;
		} else if (streq(op, "Concat")) {
			it.kind = IT_CONCAT;
			int64_t ax = onnx_node_int_attr(c, "axis", 0);
			if (t.ndim && ax < 0)
				ax += t.ndim;
			if (t.flat || !t.ndim || ax != axis_of(&t)) {
				block(gr, "Concat node '%.80s' does not concatenate along the channel "
					  "axis", node_label(c));
				continue;
			}
			if (!add_item(in, &it))
				return false;
		} else if (streq(op, "Shape") && shape_reads_batch_only(b, c)) {
			continue; /* the batch size does not depend on channels */
		} else if (is_unary_passthrough(op) || is_binary(op) || is_pool(op) ||
			   streq(op, "BatchNormalization") || streq(op, "Pad") || streq(op, "Flatten") ||
			   streq(op, "Reshape")) {
			if (slot != 0 && !is_binary(op)) {
				block(gr, "it is a parameter of %s node '%.80s'", op, node_label(c));
				continue;
			}
			if (!pass_node(b, gr, ci, &t))
				return false;
		} else {
			block(gr, "consumed by %s node '%.80s', whose channel mapping is not provably "
				  "preserved", op, node_label(c));
		}
	}
	return true;
}

static bool run_queue(struct builder *b, size_t gi)
{
	while (b->q_head < b->q_len) {
		const char *name = b->queue[b->q_head++];
		if (!explore(b, &b->plan->groups[gi], name))
			return false;
	}
	b->q_head = b->q_len = 0;
	return true;
}

static long group_of_tensor(const struct shrink_plan *p, const char *name)
{
	for (size_t i = 0; i < p->n_groups; i++)
		if (find_tensor(p->groups[i].in, name))
			return (long)i;
	return -1;
}

static struct shrink_group *new_group(struct shrink_plan *p, size_t *cap)
{
	if (!grow((void **)&p->groups, cap, p->n_groups + 1, sizeof *p->groups))
		return NULL;
	struct shrink_group *gr = &p->groups[p->n_groups];
	memset(gr, 0, sizeof *gr);
	gr->in = calloc(1, sizeof *gr->in);
	if (!gr->in)
		return NULL;
	gr->in->concat_node = SIZE_MAX;
	gr->prunable = true;
	p->n_groups++;
	return gr;
}

static bool add_slice(struct shrink_group *gr, Onnx__TensorProto *init, int axis, int64_t blk)
{
	struct shrink_internal *in = gr->in;
	for (size_t i = 0; i < in->n_slices; i++) {
		if (in->slices[i].init == init && in->slices[i].axis == axis) {
			if (in->slices[i].block != blk)
				block(gr, "initializer '%.80s' is read with two channel layouts",
				      init->name);
			return true;
		}
	}
	struct slice *s = realloc(in->slices, (in->n_slices + 1) * sizeof *s);
	if (!s)
		return false;
	in->slices = s;
	s[in->n_slices++] = (struct slice){init, axis, blk};
	return true;
}

static bool in_nodes(const struct shrink_internal *in, size_t node)
{
	for (size_t i = 0; i < in->n_nodes; i++)
		if (in->nodes[i] == node)
			return true;
	return false;
}

/* Every node reading init (directly or through a forwarding Identity) must
 * belong to the group, or slicing it would break the other reader. */
static bool used_only_by_group(const struct builder *b, const struct shrink_internal *in,
			       const Onnx__TensorProto *init)
{
	size_t c;
	const struct use *u = uses_of(b->x.cons, b->x.n_cons, init->name, &c);
	for (size_t k = 0; k < c; k++) {
		if (!in_nodes(in, u[k].node))
			return false;
		const Onnx__NodeProto *n = b->g->node[u[k].node];
		if (streq(n->op_type, "Identity") && n->n_output == 1) {
			size_t c2;
			const struct use *u2 = uses_of(b->x.cons, b->x.n_cons, n->output[0], &c2);
			for (size_t j = 0; j < c2; j++)
				if (!in_nodes(in, u2[j].node))
					return false;
			if (is_graph_output(b->g, n->output[0]))
				return false;
		}
	}
	return !is_graph_output(b->g, init->name);
}

static bool add_tap(struct shrink_group *gr, const char *tensor, int from_end, int64_t blk)
{
	for (size_t i = 0; i < gr->n_taps; i++)
		if (!strcmp(gr->taps[i].tensor, tensor))
			return true;
	struct shrink_tap *t = realloc(gr->taps, (gr->n_taps + 1) * sizeof *t);
	if (!t)
		return false;
	gr->taps = t;
	t[gr->n_taps++] = (struct shrink_tap){tensor, from_end, blk};
	return true;
}

static bool float_init(const Onnx__TensorProto *t)
{
	return t && t->has_data_type && t->data_type == DT_FLOAT &&
	       !(t->has_data_location &&
		 t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL);
}

/* Checks every recorded item against the channel count and turns them into
 * slices, layers and taps. */
static bool finalize(struct builder *b, struct shrink_group *gr)
{
	struct shrink_internal *in = gr->in;
	const Onnx__GraphProto *g = b->g;
	int64_t n = gr->channels;
	if (!gr->derived) {
		n = -1;
		for (size_t i = 0; i < in->n_items; i++) {
			const struct item *it = &in->items[i];
			if (it->kind != IT_SOURCE)
				continue;
			int64_t c = it->k.init->dims[it->pos];
			if (n >= 0 && c != n)
				block(gr, "its layers have different channel counts (%lld and %lld)",
				      (long long)n, (long long)c);
			if (n < 0)
				n = c;
		}
		if (n < 1) {
			block(gr, "no producing layer");
			n = 0;
		}
		gr->channels = n;
	}
	for (size_t i = 0; i < in->n_items; i++) {
		const struct item *it = &in->items[i];
		const Onnx__NodeProto *node = g->node[it->node];
		Onnx__TensorProto *w = it->k.init;
		switch (it->kind) {
		case IT_SOURCE: {
			if (gr->derived) {
				block(gr, "the Concat output joins the output of layer '%.80s'",
				      node_label(node));
				break;
			}
			if (!float_init(w)) {
				block(gr, "layer '%.80s' has a weight that is not float32",
				      node_label(node));
				break;
			}
			struct shrink_layer *l = realloc(gr->layers, (gr->n_layers + 1) * sizeof *l);
			if (!l)
				return false;
			gr->layers = l;
			l[gr->n_layers] = (struct shrink_layer){(Onnx__NodeProto *)node, w, NULL, it->pos};
			if (!add_slice(gr, w, it->pos, 1))
				return false;
			if (node->n_input >= 3 && node->input[2] && *node->input[2]) {
				struct konst k;
				if (!resolve_const(&b->x, node->input[2], &k)) {
					block(gr, "layer '%.80s' has a bias that is not a constant",
					      node_label(node));
				} else if (dims_numel(k.value) != 1) {
					int pos = (int)k.value->n_dims - 1;
					if (!k.init || !float_init(k.init) || pos < 0 ||
					    (streq(node->op_type, "Conv") && k.value->n_dims != 1)) {
						block(gr, "layer '%.80s' has a bias that cannot be sliced",
						      node_label(node));
					} else if (k.value->dims[pos] == n) {
						l[gr->n_layers].bias = k.init;
						if (!add_slice(gr, k.init, pos, 1) ||
						    (k.via_identity != SIZE_MAX &&
						     !add_node(in, k.via_identity)))
							return false;
					} else if (k.value->dims[pos] != 1) {
						block(gr, "layer '%.80s' has a bias of an unexpected shape",
						      node_label(node));
					}
				}
			}
			gr->n_layers++;
			break;
		}
		case IT_PARAM:
			if (!float_init(w) || it->pos < 0 || it->pos >= (int)w->n_dims ||
			    w->dims[it->pos] != n) {
				block(gr, "%s node '%.80s': constant input %zu does not match the %lld "
					  "channels", node->op_type, node_label(node), it->slot,
				      (long long)n);
				break;
			}
			if (!add_slice(gr, w, it->pos, 1))
				return false;
			break;
		case IT_CONSUMER: {
			int64_t k = w->dims[it->pos], blk = 1;
			bool conv = streq(node->op_type, "Conv");
			if (!float_init(w)) {
				block(gr, "consumer '%.80s' has a weight that is not float32",
				      node_label(node));
				break;
			}
			if (it->from_end != (conv ? (int)w->n_dims - 2 : 0) || (conv && it->flat)) {
				block(gr, "consumer '%.80s' reads the channels on another axis",
				      node_label(node));
				break;
			}
			if (it->flat && n > 0 && k % n == 0 && k / n >= 1)
				blk = k / n;
			else if (k != n) {
				block(gr, "consumer '%.80s' has %lld inputs for %lld channels",
				      node_label(node), (long long)k, (long long)n);
				break;
			}
			if (!add_slice(gr, w, it->pos, blk) || !add_tap(gr, it->tensor, it->from_end, blk))
				return false;
			break;
		}
		case IT_DW: {
			int64_t grp = onnx_node_int_attr(node, "group", 1);
			if (!float_init(w) || w->dims[0] != n || grp != n) {
				block(gr, "depthwise Conv '%.80s' does not match the %lld channels",
				      node_label(node), (long long)n);
				break;
			}
			if (!add_slice(gr, w, 0, 1))
				return false;
			if (node->n_input >= 3 && node->input[2] && *node->input[2]) {
				Onnx__TensorProto *bias = find_init(g, node->input[2]);
				if (!float_init(bias) || bias->n_dims != 1 || bias->dims[0] != n) {
					block(gr, "depthwise Conv '%.80s' has a bias that cannot be sliced",
					      node_label(node));
					break;
				}
				if (!add_slice(gr, bias, 0, 1))
					return false;
			}
			size_t *d = realloc(in->dw_nodes, (in->n_dw + 1) * sizeof *d);
			if (!d)
				return false;
			in->dw_nodes = d;
			d[in->n_dw++] = it->node;
			break;
		}
		case IT_CONCAT:
			if (!add_tap(gr, it->tensor, it->from_end, 1))
				return false;
			break;
		}
	}
	for (size_t i = 0; i < in->n_slices; i++) {
		const Onnx__TensorProto *t = in->slices[i].init;
		if (onnx_is_graph_input(g, t->name)) {
			block(gr, "initializer '%.80s' is also a graph input", t->name);
		} else if (!used_only_by_group(b, in, t)) {
			block(gr, "initializer '%.80s' is shared with nodes outside the group",
			      t->name);
		}
	}
	gr->keep = malloc((size_t)(n > 0 ? n : 1));
	if (!gr->keep)
		return false;
	memset(gr->keep, 1, (size_t)(n > 0 ? n : 1));
	return true;
}

void shrink_plan_free(struct shrink_plan *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_groups; i++) {
		struct shrink_group *gr = &p->groups[i];
		if (gr->in) {
			free(gr->in->tensors);
			free(gr->in->items);
			free(gr->in->nodes);
			free(gr->in->slices);
			free(gr->in->dw_nodes);
			free(gr->in->concat_inputs);
			free(gr->in);
		}
		free(gr->layers);
		free(gr->taps);
		free(gr->keep);
	}
	free(p->groups);
	free(p);
}

enum nn_status shrink_analyze(const struct onnx_model *m, struct shrink_plan **out,
			      struct nn_err *e)
{
	enum nn_status st = NN_OK;
	*out = NULL;
	const Onnx__GraphProto *g = m && m->proto ? m->proto->graph : NULL;
	if (!g)
		return err_set(e, NN_EINVAL, "invalid_model", "", "model has no graph");
	struct builder b = {.g = g};
	size_t cap = 0;
	b.plan = calloc(1, sizeof *b.plan);
	b.group_of_node_pass = malloc((g->n_node ? g->n_node : 1) * sizeof *b.group_of_node_pass);
	if (!b.plan || !b.group_of_node_pass) {
		st = oom(e);
		goto fail;
	}
	for (size_t i = 0; i < g->n_node; i++)
		b.group_of_node_pass[i] = -1;
	if ((st = index_build(g, &b.x, e)) != NN_OK)
		goto fail;

	/* Layer groups, seeded by every producing layer in graph order. */
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		int axis, ndim, fe;
		if (!source_weight(&b, n, &axis, &ndim, &fe) || group_of_tensor(b.plan, n->output[0]) >= 0)
			continue;
		struct shrink_group *gr = new_group(b.plan, &cap);
		if (!gr || !add_tensor(&b, gr, n->output[0], ndim, fe, false) ||
		    !run_queue(&b, b.plan->n_groups - 1)) {
			st = oom(e);
			goto fail;
		}
	}
	/* Concat groups, whose channels follow their inputs' groups. */
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		if (!streq(n->op_type, "Concat") || !default_domain(n) || n->n_output < 1 ||
		    group_of_tensor(b.plan, n->output[0]) >= 0)
			continue;
		bool any = false; /* a Concat of no channel group (shape arithmetic) is not one */
		for (size_t s = 0; s < n->n_input && !any; s++)
			any = group_of_tensor(b.plan, n->input[s]) >= 0;
		if (!any)
			continue;
		long *ins = calloc(n->n_input ? n->n_input : 1, sizeof *ins);
		struct shrink_group *gr = ins ? new_group(b.plan, &cap) : NULL;
		if (!gr) {
			free(ins);
			st = oom(e);
			goto fail;
		}
		gr->derived = true;
		gr->in->concat_node = i;
		gr->in->concat_inputs = ins;
		gr->in->n_concat_inputs = n->n_input;
		gr->inputs = ins;
		gr->n_inputs = n->n_input;
		struct tinfo first = {NULL, 0, 0, false};
		int64_t total = 0;
		for (size_t s = 0; s < n->n_input; s++) {
			ins[s] = group_of_tensor(b.plan, n->input[s]);
			for (size_t r = 0; r < s; r++)
				if (ins[r] == ins[s] && ins[s] >= 0)
					block(gr, "Concat node '%.80s' reads one channel group twice",
					      node_label(n));
			if (ins[s] < 0 || (size_t)ins[s] + 1 == b.plan->n_groups) {
				block(gr, "input %zu of Concat node '%.80s' does not come from a "
					  "prunable layer", s, node_label(n));
				ins[s] = -1;
				continue;
			}
			struct shrink_group *ig = &b.plan->groups[ins[s]];
			const struct tinfo *ti = find_tensor(ig->in, n->input[s]);
			if (!first.name)
				first = *ti;
			int64_t c = -1;
			for (size_t k = 0; k < ig->in->n_items; k++)
				if (ig->in->items[k].kind == IT_SOURCE)
					c = ig->in->items[k].k.init->dims[ig->in->items[k].pos];
			if (ig->derived)
				c = ig->channels;
			if (c < 1)
				block(gr, "input %zu of Concat node '%.80s' has an unknown channel "
					  "count", s, node_label(n));
			else
				total += c;
		}
		gr->channels = total;
		if (!add_tensor(&b, gr, n->output[0], first.ndim, first.from_end, false) ||
		    !run_queue(&b, b.plan->n_groups - 1)) {
			st = oom(e);
			goto fail;
		}
	}
	for (size_t i = 0; i < b.plan->n_groups; i++) {
		if (!finalize(&b, &b.plan->groups[i])) {
			st = oom(e);
			goto fail;
		}
	}
	/* A derived group that cannot be remapped pins its inputs' channels. */
	for (bool changed = true; changed;) {
		changed = false;
		for (size_t i = 0; i < b.plan->n_groups; i++) {
			struct shrink_group *gr = &b.plan->groups[i];
			if (!gr->derived || gr->prunable)
				continue;
			for (size_t s = 0; s < gr->in->n_concat_inputs; s++) {
				long ig = gr->in->concat_inputs[s];
				if (ig < 0 || !b.plan->groups[ig].prunable)
					continue;
				block(&b.plan->groups[ig], "it feeds Concat node '%.80s', whose output "
					  "cannot be remapped: %.120s",
				      node_label(g->node[gr->in->concat_node]), gr->reason);
				changed = true;
			}
		}
	}
	*out = b.plan;
	b.plan = NULL;
fail:
	shrink_plan_free(b.plan);
	free(b.group_of_node_pass);
	free(b.queue);
	index_free(&b.x);
	return st;
}

long shrink_group_of_weight(const struct shrink_plan *p, const Onnx__TensorProto *weight)
{
	for (size_t i = 0; p && i < p->n_groups; i++)
		for (size_t l = 0; l < p->groups[i].n_layers; l++)
			if (p->groups[i].layers[l].weight == weight)
				return (long)i;
	return -1;
}

int64_t shrink_kept(const struct shrink_group *gr)
{
	int64_t k = 0;
	for (int64_t c = 0; c < gr->channels; c++)
		k += gr->keep[c] != 0;
	return k;
}

/* Keeps positions [c*blk, (c+1)*blk) of `axis` for every kept channel c. */
static enum nn_status slice_init(Onnx__TensorProto *init, int axis, int64_t blk,
				 const uint8_t *keep, int64_t n, int64_t kept, struct nn_err *e)
{
	struct tensor v, nt;
	memset(&nt, 0, sizeof nt);
	enum nn_status st = onnx_initializer_view(init, &v, e);
	if (st != NN_OK)
		return st;
	if (axis < 0 || axis >= v.ndim || v.shape[axis] != n * blk) {
		tensor_free(&v);
		return err_set(e, NN_EINTERNAL, "internal", "",
			       "initializer '%s': axis %d has %lld entries, expected %lld", init->name,
			       axis, axis >= 0 && axis < v.ndim ? (long long)v.shape[axis] : -1LL,
			       (long long)(n * blk));
	}
	int64_t outer = 1, inner = 1, shape[TENSOR_MAX_DIMS];
	for (int d = 0; d < v.ndim; d++) {
		shape[d] = v.shape[d];
		if (d < axis)
			outer *= v.shape[d];
		else if (d > axis)
			inner *= v.shape[d];
	}
	shape[axis] = kept * blk;
	size_t run = (size_t)(blk * inner);
	if (!v.owned) {
		/* Compact in place: every kept run moves to a lower or equal
		 * offset, so memmove in order never overwrites what is still to
		 * be read, and no new memory is faulted in (a big model's
		 * weights would otherwise be copied once per sliced axis). */
		float *base = v.data, *dst = base;
		if (run == 1) {
			/* one float per channel (the input axis of a [N,K] weight):
			 * a plain forward gather, not a memmove call per element */
			int64_t *idx = malloc((size_t)kept * sizeof *idx);
			if (!idx)
				return err_set(e, NN_ENOMEM, "out_of_memory", "",
					       "no memory for channel surgery");
			int64_t k = 0;
			for (int64_t c = 0; c < n; c++)
				if (keep[c])
					idx[k++] = c;
			for (int64_t o = 0; o < outer; o++) {
				const float *row = base + (size_t)o * (size_t)n;
				for (int64_t j = 0; j < kept; j++)
					dst[j] = row[idx[j]];
				dst += kept;
			}
			free(idx);
		} else {
			for (int64_t o = 0; o < outer; o++) {
				const float *row = base + (size_t)o * (size_t)(n * blk * inner);
				for (int64_t c = 0; c < n; c++) {
					if (!keep[c])
						continue;
					if (dst != row + (size_t)c * run)
						memmove(dst, row + (size_t)c * run, run * sizeof *dst);
					dst += run;
				}
			}
		}
		size_t bytes = (size_t)(dst - base) * sizeof *dst;
		init->dims[axis] = kept * blk;
		if (init->has_raw_data && init->raw_data.data == (uint8_t *)base) {
			init->raw_data.len = bytes;
			uint8_t *shrunk = bytes ? realloc(init->raw_data.data, bytes) : NULL;
			if (shrunk)
				init->raw_data.data = shrunk;
		} else {
			init->n_float_data = bytes / sizeof(float);
		}
		return NN_OK;
	}
	if ((st = tensor_alloc(&nt, DT_FLOAT, v.ndim, shape, e)) != NN_OK) {
		tensor_free(&v);
		return st;
	}
	const float *src = v.data;
	float *dst = nt.data;
	for (int64_t o = 0; o < outer; o++) {
		const float *row = src + (size_t)o * (size_t)(n * blk * inner);
		for (int64_t c = 0; c < n; c++) {
			if (!keep[c])
				continue;
			memcpy(dst, row + (size_t)c * run, run * sizeof *dst);
			dst += run;
		}
	}
	tensor_free(&v);
	if ((st = onnx_initializer_take(init, &nt, e)) != NN_OK)
		tensor_free(&nt);
	return st;
}

static void drop_value_info(Onnx__GraphProto *g, const struct shrink_internal *in)
{
	size_t w = 0;
	for (size_t i = 0; i < g->n_value_info; i++) {
		Onnx__ValueInfoProto *vi = g->value_info[i];
		bool stale = false;
		for (size_t t = 0; !stale && t < in->n_tensors; t++)
			stale = streq(vi->name, in->tensors[t].name);
		if (stale)
			onnx__value_info_proto__free_unpacked(vi, NULL);
		else
			g->value_info[w++] = vi;
	}
	g->n_value_info = w;
}

enum nn_status shrink_apply(struct onnx_model *m, struct shrink_plan *p, struct nn_err *e)
{
	enum nn_status st;
	Onnx__GraphProto *g = m->proto->graph;
	if (p->applied)
		return err_set(e, NN_EINTERNAL, "internal", "", "shrink plan applied twice");
	p->applied = true;
	/* Derived keeps first (groups are in creation order: a Concat's inputs
	 * precede it), refusing to remove every channel. */
	for (size_t i = 0; i < p->n_groups; i++) {
		struct shrink_group *gr = &p->groups[i];
		if (!gr->prunable)
			memset(gr->keep, 1, (size_t)(gr->channels > 0 ? gr->channels : 1));
		if (gr->derived && gr->prunable) {
			int64_t at = 0;
			for (size_t s = 0; s < gr->in->n_concat_inputs; s++) {
				const struct shrink_group *ig = &p->groups[gr->in->concat_inputs[s]];
				memcpy(gr->keep + at, ig->keep, (size_t)ig->channels);
				at += ig->channels;
			}
		}
		if (gr->channels > 0 && shrink_kept(gr) == 0)
			return err_set(e, NN_EINVAL, "invalid_argument", "",
				       "cannot remove all %lld channels of a layer group",
				       (long long)gr->channels);
	}
	for (size_t i = 0; i < p->n_groups; i++) {
		struct shrink_group *gr = &p->groups[i];
		int64_t kept = shrink_kept(gr);
		if (!gr->prunable || kept == gr->channels)
			continue;
		for (size_t s = 0; s < gr->in->n_slices; s++) {
			const struct slice *sl = &gr->in->slices[s];
			if ((st = slice_init(sl->init, sl->axis, sl->block, gr->keep, gr->channels,
					     kept, e)) != NN_OK)
				return st;
		}
		for (size_t d = 0; d < gr->in->n_dw; d++)
			if ((st = onnx_node_set_int_attr(g->node[gr->in->dw_nodes[d]], "group", kept,
							 e)) != NN_OK)
				return st;
		drop_value_info(g, gr->in);
	}
	return NN_OK;
}

static json_t *group_layer_names(const struct shrink_plan *p, const struct shrink_group *gr)
{
	json_t *a = json_array();
	if (!a)
		return NULL;
	if (gr->derived) {
		for (size_t s = 0; s < gr->in->n_concat_inputs; s++) {
			long ig = gr->in->concat_inputs[s];
			json_t *sub = ig >= 0 ? group_layer_names(p, &p->groups[ig]) : NULL;
			if (sub && json_array_extend(a, sub)) {
				json_decref(sub);
				json_decref(a);
				return NULL;
			}
			json_decref(sub);
		}
		return a;
	}
	for (size_t l = 0; l < gr->n_layers; l++) {
		if (json_array_append_new(a, json_string(gr->layers[l].weight->name))) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

json_t *shrink_groups_json(const struct shrink_plan *p)
{
	json_t *arr = json_array();
	if (!arr)
		return NULL;
	for (size_t i = 0; i < p->n_groups; i++) {
		const struct shrink_group *gr = &p->groups[i];
		bool concat_in = false;
		for (size_t k = 0; k < gr->in->n_items; k++)
			concat_in |= gr->in->items[k].kind == IT_CONCAT;
		if (gr->n_layers <= 1 && !gr->derived && !concat_in)
			continue;
		char action[320];
		int64_t kept = shrink_kept(gr);
		if (!gr->prunable)
			snprintf(action, sizeof action, "left alone: %s", gr->reason);
		else if (gr->derived)
			snprintf(action, sizeof action,
				 "Concat output: channels follow its inputs by offset (%lld of %lld kept)",
				 (long long)kept, (long long)gr->channels);
		else if (kept == gr->channels)
			snprintf(action, sizeof action, "unchanged");
		else
			snprintf(action, sizeof action, "%s %lld of %lld channels",
				 gr->n_layers > 1 ? "pruned together: removed" : "removed",
				 (long long)(gr->channels - kept), (long long)gr->channels);
		json_t *o = json_object();
		int bad = !o || json_array_append_new(arr, o);
		if (!bad) {
			bad |= step_json_set_(o, "layers", group_layer_names(p, gr));
			bad |= step_json_set_(o, "channels", json_integer(gr->channels));
			bad |= step_json_set_(o, "channels_after", json_integer(kept));
			bad |= step_json_set_(o, "action", json_string(action));
		}
		if (bad) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}
