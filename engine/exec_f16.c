/* exec_f16: float16 graphs compiled as float32 (see exec_f16.h). */
#include "exec_f16.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "exec_op.h"
#include "onnx_wire.h"
#include "ops_float16.h"

/* ---- analysis: which values are float16, who produces and reads them ---- */

struct f16_graph {
	const Onnx__GraphProto *g;
	struct nameset map; /* value name -> index + 1 */
	size_t nv, cap;
	bool *f16;          /* value holds float16 */
	int *prod;          /* producing node, -1 for inputs, initializers, unknown */
	bool *gout;         /* value is a graph output */
};

static void fg_free(struct f16_graph *a)
{
	wire_nameset_free(&a->map);
	free(a->f16);
	free(a->prod);
	free(a->gout);
}

static bool default_domain(const char *d)
{
	return !d || !d[0] || !strcmp(d, "ai.onnx");
}

static bool op_is(const Onnx__NodeProto *n, const char *op)
{
	return default_domain(n->domain) && n->op_type && !strcmp(n->op_type, op);
}

static int64_t cast_to(const Onnx__NodeProto *n)
{
	return onnx_node_int_attr(n, "to", 0);
}

/* Index of value `name`, added when new; -1 for "" (absent) or no memory. */
static int fg_value(struct f16_graph *a, const char *name)
{
	if (!name || !name[0])
		return -1;
	void *v = wire_nameset_get(&a->map, name);
	if (v)
		return (int)((uintptr_t)v - 1);
	if (a->nv >= a->cap || !wire_nameset_put(&a->map, name, (void *)(uintptr_t)(a->nv + 1)))
		return -1;
	a->f16[a->nv] = false;
	a->prod[a->nv] = -1;
	a->gout[a->nv] = false;
	return (int)a->nv++;
}

static int fg_find(const struct f16_graph *a, const char *name)
{
	void *v = name && name[0] ? wire_nameset_get(&a->map, name) : NULL;
	return v ? (int)((uintptr_t)v - 1) : -1;
}

/* Ops whose outputs are never of the input's float type (indices, masks,
 * shapes, booleans): a float16 input does not make them float16. */
static bool non_float_outputs(const Onnx__NodeProto *n)
{
	static const char *const ops[] = {
		"Shape", "Size", "ArgMax", "ArgMin", "Equal", "Less", "Greater", "LessOrEqual",
		"GreaterOrEqual", "IsNaN", "IsInf", "Not", "And", "Or", "Xor", "NonZero",
		"NonMaxSuppression"};
	if (!default_domain(n->domain) || !n->op_type)
		return false;
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
		if (!strcmp(n->op_type, ops[i]))
			return true;
	return false;
}

/* Output `slot` of n carries n's float type (output 1 of MaxPool, Dropout,
 * TopK, Unique are indices or masks). */
static bool float_output(const Onnx__NodeProto *n, size_t slot)
{
	if (non_float_outputs(n))
		return false;
	if (slot > 0 && (op_is(n, "MaxPool") || op_is(n, "Dropout") || op_is(n, "TopK") ||
			 op_is(n, "Unique")))
		return false;
	return true;
}

static bool const_f16(const Onnx__NodeProto *n)
{
	const Onnx__AttributeProto *v = onnx_find_attr(n, "value", NULL);
	return v && v->t && v->t->data_type == DT_FLOAT16;
}

static enum nn_status fg_build(struct f16_graph *a, const Onnx__GraphProto *g, struct nn_err *e)
{
	memset(a, 0, sizeof *a);
	a->g = g;
	a->map.owns = true; /* lower edits the names the keys came from */
	size_t cap = g->n_input + g->n_initializer + g->n_output;
	for (size_t i = 0; i < g->n_node; i++) {
		if (!g->node[i])
			return err_set(e, NN_EINVAL, "invalid_model", "", "graph has an empty node");
		cap += g->node[i]->n_input + g->node[i]->n_output;
	}
	a->cap = cap;
	a->f16 = calloc(cap ? cap : 1, sizeof *a->f16);
	a->prod = calloc(cap ? cap : 1, sizeof *a->prod);
	a->gout = calloc(cap ? cap : 1, sizeof *a->gout);
	if (!a->f16 || !a->prod || !a->gout)
		goto oom;
	for (size_t i = 0; i < g->n_initializer; i++) {
		int v = fg_value(a, g->initializer[i]->name);
		if (v < 0 && g->initializer[i]->name && g->initializer[i]->name[0])
			goto oom;
		if (v >= 0)
			a->f16[v] = g->initializer[i]->data_type == DT_FLOAT16;
	}
	for (size_t i = 0; i < g->n_input; i++) {
		const Onnx__ValueInfoProto *vi = g->input[i];
		int v = fg_value(a, vi->name);
		if (v < 0 && vi->name && vi->name[0])
			goto oom;
		if (v >= 0 && vi->type && vi->type->tensor_type &&
		    vi->type->tensor_type->elem_type == DT_FLOAT16)
			a->f16[v] = true;
	}
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		for (size_t j = 0; j < n->n_input; j++)
			if (fg_value(a, n->input[j]) < 0 && n->input[j] && n->input[j][0])
				goto oom;
		for (size_t j = 0; j < n->n_output; j++) {
			int v = fg_value(a, n->output[j]);
			if (v < 0 && n->output[j] && n->output[j][0])
				goto oom;
			if (v >= 0)
				a->prod[v] = (int)i;
		}
	}
	for (size_t i = 0; i < g->n_output; i++) {
		int v = fg_value(a, g->output[i]->name);
		if (v < 0 && g->output[i]->name && g->output[i]->name[0])
			goto oom;
		if (v >= 0)
			a->gout[v] = true;
	}
	/* Float16-ness flows forward; graphs are normally in topological order
	 * (one pass), a pass more settles any node listed before its inputs. */
	for (size_t pass = 0; pass <= g->n_node; pass++) {
		bool changed = false;
		for (size_t i = 0; i < g->n_node; i++) {
			const Onnx__NodeProto *n = g->node[i];
			bool out16;
			if (op_is(n, "Cast")) {
				out16 = cast_to(n) == DT_FLOAT16;
			} else if (op_is(n, "Constant")) {
				out16 = const_f16(n);
			} else {
				out16 = false;
				for (size_t j = 0; j < n->n_input && !out16; j++) {
					int v = fg_find(a, n->input[j]);
					out16 = v >= 0 && a->f16[v];
				}
			}
			for (size_t j = 0; j < n->n_output; j++) {
				int v = fg_find(a, n->output[j]);
				bool want = out16 && (op_is(n, "Cast") || op_is(n, "Constant") ||
						      float_output(n, j));
				if (v >= 0 && want && !a->f16[v]) {
					a->f16[v] = true;
					changed = true;
				}
			}
		}
		if (!changed)
			break;
	}
	return NN_OK;
oom:
	fg_free(a);
	return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory to analyse the graph");
}

/* A node other than Cast reading a float16 value. */
static bool fg_computes(const struct f16_graph *a)
{
	const Onnx__GraphProto *g = a->g;
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		if (op_is(n, "Cast"))
			continue;
		for (size_t j = 0; j < n->n_input; j++) {
			int v = fg_find(a, n->input[j]);
			if (v >= 0 && a->f16[v])
				return true;
		}
	}
	return false;
}

bool exec_f16_computes(const struct onnx_model *m)
{
	if (!m || !m->proto || !m->proto->graph)
		return false;
	struct f16_graph a;
	if (fg_build(&a, m->proto->graph, NULL) != NN_OK)
		return false; /* out of memory: exec_f16_lower will say so */
	bool r = fg_computes(&a);
	fg_free(&a);
	return r;
}

/* ---- which nodes ONNX Runtime runs in float16 ---- */

/* The ops ORT 1.30's CPU provider has float16 kernels for (measured with
 * one-node float16 models: every other op the executor supports gets
 * Casts to float32). All move or select values, except Round. */
static bool ort_f16_kernel(const Onnx__NodeProto *n)
{
	static const char *const ops[] = {"Clip",  "Concat",  "Flatten",   "Gather",
					  "Identity", "Max", "Min",     "Reshape",
					  "Round", "Squeeze", "Transpose", "Unsqueeze"};
	if (!default_domain(n->domain) || !n->op_type)
		return false;
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
		if (!strcmp(n->op_type, ops[i]))
			return true;
	return false;
}

/* A node with a float16 kernel whose float data is float16. */
static bool f16_candidate(const struct f16_graph *a, const Onnx__NodeProto *n)
{
	if (!ort_f16_kernel(n))
		return false;
	bool any = op_is(n, "Concat") || op_is(n, "Max") || op_is(n, "Min");
	for (size_t j = 0; j < (any ? n->n_input : (n->n_input ? 1 : 0)); j++) {
		int v = fg_find(a, n->input[j]);
		if (v >= 0 && a->f16[v])
			return true;
	}
	return false;
}

/* run16[i]: ORT runs node i in float16 (a candidate that is not isolated). */
static enum nn_status fg_run16(const struct f16_graph *a, bool **out, struct nn_err *e)
{
	const Onnx__GraphProto *g = a->g;
	size_t nn = g->n_node;
	bool *cand = calloc(nn ? nn : 1, sizeof *cand);
	bool *edge_in = calloc(nn ? nn : 1, sizeof *edge_in);
	bool *near16 = calloc(nn ? nn : 1, sizeof *near16);
	bool *writes_out = calloc(nn ? nn : 1, sizeof *writes_out);
	bool *run = calloc(nn ? nn : 1, sizeof *run);
	if (!cand || !edge_in || !near16 || !writes_out || !run) {
		free(cand);
		free(edge_in);
		free(near16);
		free(writes_out);
		free(run);
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory to analyse the graph");
	}
	for (size_t i = 0; i < nn; i++)
		cand[i] = f16_candidate(a, g->node[i]);
	for (size_t i = 0; i < nn; i++) {
		const Onnx__NodeProto *n = g->node[i];
		for (size_t j = 0; j < n->n_output; j++) {
			int v = fg_find(a, n->output[j]);
			if (v >= 0 && a->gout[v])
				writes_out[i] = true;
		}
		for (size_t j = 0; j < n->n_input; j++) {
			int v = fg_find(a, n->input[j]);
			if (v < 0 || a->prod[v] < 0)
				continue;
			size_t p = (size_t)a->prod[v];
			edge_in[i] = true;
			if (!a->f16[v])
				continue;
			/* float16 edge p -> i: each end sees a float16 neighbour when
			 * the other end runs float16 kernels (or is a Cast) */
			if (cand[p] || op_is(g->node[p], "Cast"))
				near16[i] = true;
			if (cand[i] || op_is(n, "Cast"))
				near16[p] = true;
		}
	}
	for (size_t i = 0; i < nn; i++)
		run[i] = cand[i] && !(edge_in[i] && !writes_out[i] && !near16[i]);
	free(cand);
	free(edge_in);
	free(near16);
	free(writes_out);
	*out = run;
	return NN_OK;
}

/* ---- the float32 copy ---- */

static enum nn_status widen_tensor(Onnx__TensorProto *tp, const char *what, struct nn_err *e)
{
	struct tensor h = {0}, f = {0};
	enum nn_status st = exec_tensor_proto(tp, what, &h, e);
	if (st != NN_OK)
		return st;
	if (h.dtype != DT_FLOAT16) {
		tensor_free(&h);
		return err_set(e, NN_EINTERNAL, "internal", "", "%s is not float16", what);
	}
	if ((st = tensor_alloc(&f, DT_FLOAT, h.ndim, h.shape, e)) == NN_OK) {
		int64_t n = tensor_numel(&h);
		const uint16_t *src = h.data;
		float *dst = f.data;
		for (int64_t i = 0; i < n; i++)
			dst[i] = f16_to_float(src[i]);
		tensor_free(&h); /* h may view tp's raw_data, which set replaces */
		st = onnx_initializer_set(tp, &f, e);
	}
	tensor_free(&h);
	tensor_free(&f);
	return st;
}

static void set_elem(Onnx__ValueInfoProto *vi, int32_t from, int32_t to)
{
	if (vi && vi->type && vi->type->tensor_type && vi->type->tensor_type->elem_type == from)
		vi->type->tensor_type->elem_type = to;
}

static enum nn_status replace_str(char **slot, const char *s, struct nn_err *e)
{
	char *c = strdup(s);
	if (!c)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for a name");
	free(*slot);
	*slot = c;
	return NN_OK;
}

/* Every node input named `from` now reads `to`. */
static enum nn_status rename_reads(Onnx__GraphProto *g, const char *from, const char *to,
				   struct nn_err *e)
{
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		for (size_t j = 0; j < n->n_input; j++) {
			if (!n->input[j] || strcmp(n->input[j], from))
				continue;
			enum nn_status st = replace_str(&n->input[j], to, e);
			if (st != NN_OK)
				return st;
		}
	}
	return NN_OK;
}

static enum nn_status add_node(struct onnx_model *m, const char *op, const char *domain,
			       const char *in, const char *out, int64_t to, struct nn_err *e)
{
	Onnx__NodeProto *n = NULL;
	char *name = onnx_unique_name(m, out);
	if (!name)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for a name");
	const char *ins[1] = {in}, *outs[1] = {out};
	enum nn_status st = onnx_prepend_node(m, op, name, ins, 1, outs, 1, &n, e);
	free(name);
	if (st == NN_OK && domain) {
		char *d = strdup(domain);
		if (!d)
			return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for a domain");
		n->domain = d; /* the proto's default "" is static: nothing to free */
	}
	if (st == NN_OK && to)
		st = onnx_node_set_int_attr(n, "to", to, e);
	return st;
}

/* ---- ORT's Conv + BatchNormalization fusion, in float16 ----
 * At its default and 'basic' optimisation levels ORT folds a BatchNormalization
 * whose only input from a node is a Conv's sole output into the Conv's weight
 * and bias (ConvBNFusion) before it inserts any Cast: with float16
 * initializers it computes in float16, rounding after every operation:
 *   s = h(scale / h(sqrt(h(var + eps))));  W' = h(W * s[channel]);
 *   B' = h(h(h(B - mean) * s) + bias)  or, without a Conv bias,
 *   B' = h(bias - h(mean * s)).
 * The copy does the same, so its Conv reads the weights ORT's does. */

struct conv_bn {
	Onnx__NodeProto *conv, *bn;
	const char *param[4]; /* the BN's initializers (through Identity), borrowed */
};

/* The initializer a value is, directly or through Identity nodes, which
 * ORT's constant folding (run before ConvBNFusion) replaces by their input. */
static const char *resolve_init(const struct onnx_model *m, const struct f16_graph *a,
				const char *name)
{
	for (int hop = 0; name && name[0] && hop < 16; hop++) {
		if (onnx_find_initializer(m, name))
			return name;
		int v = fg_find(a, name);
		if (v < 0 || a->prod[v] < 0)
			return NULL;
		const Onnx__NodeProto *n = m->proto->graph->node[a->prod[v]];
		if (!op_is(n, "Identity") || n->n_input != 1)
			return NULL;
		name = n->input[0];
	}
	return NULL;
}

static bool init_f16_1d(const struct onnx_model *m, const char *name, int64_t len)
{
	const Onnx__TensorProto *t = name && name[0] ? onnx_find_initializer(m, name) : NULL;
	return t && t->data_type == DT_FLOAT16 && t->n_dims == 1 && t->dims[0] == len;
}

/* Conv -> BatchNormalization pairs ORT fuses (its SatisfyCondition and the
 * initializer checks of ConvBNFusion::Apply). */
static bool conv_bn_match(const struct onnx_model *m, const struct f16_graph *a,
			  Onnx__NodeProto *bn, struct conv_bn *out)
{
	const Onnx__GraphProto *g = m->proto->graph;
	if (!op_is(bn, "BatchNormalization") || bn->n_input != 5 || bn->n_output < 1)
		return false;
	const Onnx__AttributeProto *eps = onnx_find_attr(bn, "epsilon", NULL);
	if (!eps || eps->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT)
		return false;
	for (size_t j = 0; j < bn->n_output; j++) {
		int v = fg_find(a, bn->output[j]);
		if (v >= 0 && a->gout[v])
			return false;
		if (j > 0 && bn->output[j] && bn->output[j][0])
			return false; /* training outputs */
	}
	int x = fg_find(a, bn->input[0]);
	if (x < 0 || a->prod[x] < 0 || a->gout[x])
		return false;
	Onnx__NodeProto *conv = g->node[a->prod[x]];
	if (!op_is(conv, "Conv") || conv->n_output != 1 || conv->n_input < 2 ||
	    onnx_count_readers(g, bn->input[0]) != 1)
		return false;
	const Onnx__TensorProto *w = onnx_find_initializer(m, conv->input[1]);
	if (!w || w->data_type != DT_FLOAT16 || w->n_dims <= 2)
		return false;
	int64_t ch = w->dims[0];
	for (size_t j = 1; j < 5; j++) {
		out->param[j - 1] = resolve_init(m, a, bn->input[j]);
		if (!init_f16_1d(m, out->param[j - 1], ch))
			return false;
	}
	bool has_b = conv->n_input >= 3 && conv->input[2] && conv->input[2][0];
	if (has_b && !init_f16_1d(m, conv->input[2], ch))
		return false;
	out->conv = conv;
	out->bn = bn;
	return true;
}

static float h(float x)
{
	return f16_to_float(f16_from_float(x));
}

static enum nn_status add_float_init(struct onnx_model *m, const char *base,
				     struct tensor *t, char **name, struct nn_err *e)
{
	*name = onnx_unique_name(m, base);
	if (!*name)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for a name");
	return onnx_add_initializer_take(m, *name, t, e);
}

/* Runs after the initializers were widened (exactly) to float32. */
static enum nn_status conv_bn_fold(struct onnx_model *m, const struct conv_bn *cb,
				   struct nn_err *e)
{
	Onnx__GraphProto *g = m->proto->graph;
	Onnx__NodeProto *conv = cb->conv, *bn = cb->bn;
	struct tensor w = {0}, p[4] = {{0}}, cbias = {0}, nw = {0}, nb = {0};
	char *wname = NULL, *bname = NULL;
	enum nn_status st = onnx_initializer_view(onnx_find_initializer(m, conv->input[1]), &w, e);
	for (int j = 0; j < 4 && st == NN_OK; j++)
		st = onnx_initializer_view(onnx_find_initializer(m, cb->param[j]), &p[j], e);
	bool has_b = conv->n_input >= 3 && conv->input[2] && conv->input[2][0];
	if (st == NN_OK && has_b)
		st = onnx_initializer_view(onnx_find_initializer(m, conv->input[2]), &cbias, e);
	if (st != NN_OK)
		return st;
	int64_t ch = w.shape[0], per = tensor_numel(&w) / (ch ? ch : 1);
	if ((st = tensor_alloc(&nw, DT_FLOAT, w.ndim, w.shape, e)) != NN_OK ||
	    (st = tensor_alloc(&nb, DT_FLOAT, 1, &ch, e)) != NN_OK)
		goto done;
	float eps = onnx_find_attr(bn, "epsilon", NULL)->f;
	const float *scale = p[0].data, *bias = p[1].data, *mean = p[2].data, *var = p[3].data;
	const float *wx = w.data, *cb_x = has_b ? cbias.data : NULL;
	float *wy = nw.data, *by = nb.data;
	for (int64_t c = 0; c < ch; c++) {
		float s = h(scale[c] / h(sqrtf(h(var[c] + eps))));
		for (int64_t k = 0; k < per; k++)
			wy[c * per + k] = h(wx[c * per + k] * s);
		by[c] = has_b ? h(h(h(cb_x[c] - mean[c]) * s) + bias[c]) : h(bias[c] - h(mean[c] * s));
	}
	if ((st = add_float_init(m, conv->input[1], &nw, &wname, e)) != NN_OK ||
	    (st = add_float_init(m, cb->param[1], &nb, &bname, e)) != NN_OK)
		goto done;
	if ((st = replace_str(&conv->input[1], wname, e)) != NN_OK)
		goto done;
	if (has_b) {
		st = replace_str(&conv->input[2], bname, e);
	} else {
		char **in = realloc(conv->input, 3 * sizeof *in);
		if (!in) {
			st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for an input");
			goto done;
		}
		conv->input = in;
		while (conv->n_input < 3)
			conv->input[conv->n_input++] = NULL;
		st = replace_str(&conv->input[2], bname, e);
	}
	if (st != NN_OK)
		goto done;
	/* The Conv now writes the BatchNormalization's output; the BN goes. */
	if ((st = replace_str(&conv->output[0], bn->output[0], e)) != NN_OK)
		goto done;
	for (size_t i = 0; i < g->n_node; i++) {
		if (g->node[i] != bn)
			continue;
		memmove(&g->node[i], &g->node[i + 1], (g->n_node - i - 1) * sizeof *g->node);
		g->n_node--;
		onnx__node_proto__free_unpacked(bn, NULL);
		break;
	}
done:
	tensor_free(&nw);
	tensor_free(&nb);
	free(wname);
	free(bname);
	return st;
}

/* A rounding request: node `node` (a pointer: prepending shifts indices)
 * reads value `v` through slot `slot`. */
struct round_req {
	Onnx__NodeProto *node;
	size_t slot;
	int v;
};

enum nn_status exec_f16_lower(const struct onnx_model *m, struct onnx_model **out,
			      struct nn_err *e)
{
	*out = NULL;
	if (!m || !m->proto || !m->proto->graph)
		return NN_OK; /* exec_compile reports the missing graph */
	struct f16_graph a;
	enum nn_status st = fg_build(&a, m->proto->graph, e);
	if (st != NN_OK)
		return st;
	if (!fg_computes(&a)) {
		fg_free(&a);
		return NN_OK;
	}
	fg_free(&a);

	struct onnx_model *c = NULL;
	bool *run = NULL;
	struct round_req *req = NULL;
	size_t nreq = 0;
	char **rname = NULL; /* per value: the rounded copy's name */
	struct conv_bn *cbs = NULL;
	size_t ncb = 0;
	if ((st = onnx_clone(m, &c, e)) != NN_OK)
		return st;
	Onnx__GraphProto *g = c->proto->graph;
	if ((st = fg_build(&a, g, e)) != NN_OK) {
		onnx_free(c);
		return st;
	}
	if ((st = fg_run16(&a, &run, e)) != NN_OK)
		goto fail;
	ncb = 0;
	cbs = calloc(g->n_node ? g->n_node : 1, sizeof *cbs);
	if (!cbs) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory to lower the graph");
		goto fail;
	}
	for (size_t i = 0; i < g->n_node; i++)
		if (conv_bn_match(c, &a, g->node[i], &cbs[ncb]))
			ncb++;

	/* Where ORT rounds: a float16-running node reading a value computed in
	 * float32 (or by a Cast), and a Cast reading a Cast to float16. */
	size_t total = 0;
	for (size_t i = 0; i < g->n_node; i++)
		total += g->node[i]->n_input;
	req = calloc(total ? total : 1, sizeof *req);
	rname = calloc(a.nv ? a.nv : 1, sizeof *rname);
	if (!req || !rname) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory to lower the graph");
		goto fail;
	}
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		for (size_t j = 0; j < n->n_input; j++) {
			int v = fg_find(&a, n->input[j]);
			if (v < 0 || !a.f16[v] || a.prod[v] < 0)
				continue;
			const Onnx__NodeProto *p = g->node[a.prod[v]];
			bool need = run[i] ? !run[a.prod[v]]
					   : op_is(n, "Cast") && op_is(p, "Cast") &&
						     cast_to(p) == DT_FLOAT16;
			if (need)
				req[nreq++] = (struct round_req){n, j, v};
		}
	}

	/* Float16 data widened, Cast(to float16) made Cast(to float). */
	for (size_t i = 0; i < g->n_initializer; i++) {
		Onnx__TensorProto *t = g->initializer[i];
		if (t->data_type == DT_FLOAT16 && (st = widen_tensor(t, t->name, e)) != NN_OK)
			goto fail;
	}
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		if (op_is(n, "Constant") && const_f16(n)) {
			Onnx__AttributeProto *v = onnx_find_attr(n, "value", NULL);
			if ((st = widen_tensor(v->t, n->name ? n->name : "Constant", e)) != NN_OK)
				goto fail;
		}
		if (op_is(n, "Cast") && cast_to(n) == DT_FLOAT16 &&
		    (st = onnx_node_set_int_attr(n, "to", DT_FLOAT, e)) != NN_OK)
			goto fail;
	}
	for (size_t i = 0; i < g->n_value_info; i++)
		set_elem(g->value_info[i], DT_FLOAT16, DT_FLOAT);
	for (size_t i = 0; i < ncb; i++)
		if ((st = conv_bn_fold(c, &cbs[i], e)) != NN_OK)
			goto fail;

	/* Rounding nodes, one per rounded value. */
	for (size_t r = 0; r < nreq; r++) {
		int v = req[r].v;
		if (!rname[v]) {
			size_t len = strlen(req[r].node->input[req[r].slot]) + 16;
			char *base = malloc(len);
			if (!base) {
				st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for a name");
				goto fail;
			}
			snprintf(base, len, "%s/f16round", req[r].node->input[req[r].slot]);
			rname[v] = onnx_unique_name(c, base);
			free(base);
			if (!rname[v]) {
				st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for a name");
				goto fail;
			}
			if ((st = add_node(c, "RoundToFloat16", "nncd.f16",
					   req[r].node->input[req[r].slot], rname[v], 0, e)) != NN_OK)
				goto fail;
		}
		if ((st = replace_str(&req[r].node->input[req[r].slot], rname[v], e)) != NN_OK)
			goto fail;
	}

	/* Float16 graph inputs widened at entry, outputs rounded at exit. */
	for (size_t i = 0; i < g->n_input; i++) {
		const char *x = g->input[i]->name;
		int v = fg_find(&a, x);
		if (v < 0 || !a.f16[v] || onnx_find_initializer(c, x))
			continue;
		size_t len = strlen(x) + 8;
		char *base = malloc(len);
		if (!base) {
			st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for a name");
			goto fail;
		}
		snprintf(base, len, "%s_f32", x);
		char *xf = onnx_unique_name(c, base);
		free(base);
		if (!xf) {
			st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for a name");
			goto fail;
		}
		if ((st = rename_reads(g, x, xf, e)) == NN_OK)
			st = add_node(c, "Cast", NULL, x, xf, DT_FLOAT, e);
		free(xf);
		if (st != NN_OK)
			goto fail;
	}
	for (size_t i = 0; i < g->n_output; i++) {
		Onnx__ValueInfoProto *vo = g->output[i];
		if (!vo->type || !vo->type->tensor_type ||
		    vo->type->tensor_type->elem_type != DT_FLOAT16)
			continue;
		/* the producer, found again: prepending shifted the indices */
		Onnx__NodeProto *p = NULL;
		size_t slot = 0;
		for (size_t k = 0; k < g->n_node && !p; k++)
			for (size_t j = 0; j < g->node[k]->n_output; j++)
				if (g->node[k]->output[j] && !strcmp(g->node[k]->output[j], vo->name)) {
					p = g->node[k];
					slot = j;
					break;
				}
		if (!p)
			continue; /* a graph input or initializer passed through */
		size_t len = strlen(vo->name) + 8;
		char *base = malloc(len);
		if (!base) {
			st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for a name");
			goto fail;
		}
		snprintf(base, len, "%s_f32", vo->name);
		char *yf = onnx_unique_name(c, base);
		free(base);
		if (!yf) {
			st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for a name");
			goto fail;
		}
		if ((st = rename_reads(g, vo->name, yf, e)) == NN_OK &&
		    (st = replace_str(&p->output[slot], yf, e)) == NN_OK)
			st = add_node(c, "Cast", NULL, yf, vo->name, DT_FLOAT16, e);
		free(yf);
		if (st != NN_OK)
			goto fail;
	}
	*out = c;
	c = NULL;
fail:
	if (rname)
		for (size_t i = 0; i < a.nv; i++)
			free(rname[i]);
	free(rname);
	free(req);
	free(cbs);
	free(run);
	fg_free(&a);
	onnx_free(c);
	return st;
}
