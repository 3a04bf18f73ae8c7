/* quant_float: fp16 / bf16 weights (see quant_float.h). */
#include "quant_float.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "exec.h"
#include "onnx_wire.h"
#include "ops_float16.h"

bool quant_float_selected(const struct quant_params *p, const Onnx__NodeProto *node)
{
	const char *op = node && node->op_type ? node->op_type : "";
	unsigned bit = !strcmp(op, "Gemm")     ? QUANT_OP_GEMM
		       : !strcmp(op, "MatMul") ? QUANT_OP_MATMUL
		       : !strcmp(op, "Conv")   ? QUANT_OP_CONV
		       : !strcmp(op, "Gather") ? QUANT_OP_GATHER
					       : 0;
	return (p->ops & bit) && !quant_node_excluded(p, node ? node->name : NULL, op);
}

void quant_wrefs_free(struct quant_wref *w, size_t count)
{
	for (size_t i = 0; w && i < count; i++) {
		free(w[i].name);
		free(w[i].op);
		free(w[i].node);
	}
	free(w);
}

enum nn_status quant_wrefs_new(const struct onnx_model *m, const struct quant_params *p,
			       json_t *kept_float, struct quant_wref **out, size_t *count,
			       struct nn_err *e)
{
	struct onnx_weight_ref *refs = NULL;
	size_t nref = 0, k = 0;
	struct quant_wref *ws = NULL;
	*out = NULL;
	*count = 0;
	enum nn_status st = quant_select_weights(m, p, &refs, &nref, kept_float, e);
	if (st != NN_OK)
		return st;
	if (nref == 0) {
		st = err_set(e, NN_EINVAL, "invalid_spec", "",
			     "model has no %s float weights to quantize%s",
			     p->ops & QUANT_OP_CONV ? "Gemm/MatMul/Conv" : "Gemm/MatMul",
			     kept_float && json_array_size(kept_float)
				     ? " (all left float by ops/exclude)"
				     : "");
		goto fail;
	}
	if (!(ws = calloc(nref, sizeof *ws))) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for %zu weights", nref);
		goto fail;
	}
	for (size_t i = 0; i < nref; i++, k++) {
		const Onnx__NodeProto *nd = refs[i].node;
		ws[k].name = strdup(refs[i].init->name ? refs[i].init->name : "");
		ws[k].op = strdup(nd && nd->op_type ? nd->op_type : "");
		ws[k].node = strdup(nd && nd->name ? nd->name : "");
		ws[k].channel_axis = refs[i].channel_axis;
		if (!ws[k].name || !ws[k].op || !ws[k].node) {
			k++;
			st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for names");
			goto fail;
		}
	}
	free(refs);
	*out = ws;
	*count = k;
	return NN_OK;
fail:
	free(refs);
	quant_wrefs_free(ws, k);
	return st;
}

char *quant_float_name(const struct onnx_model *m, const char *base, const char *suffix)
{
	size_t len = strlen(base) + strlen(suffix) + 1;
	char *buf = malloc(len);
	if (!buf)
		return NULL;
	snprintf(buf, len, "%s%s", base, suffix);
	char *name = onnx_unique_name(m, buf);
	free(buf);
	return name;
}

static json_t *shape_json(const struct tensor *t)
{
	json_t *a = json_array();
	for (int d = 0; a && d < t->ndim; d++) {
		if (json_array_append_new(a, json_integer(t->shape[d]))) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

/* Converts one weight and rewires the graph; appends its metrics. */
static enum nn_status convert_one(struct onnx_model *m, const struct quant_wref *r, bool bf16,
				  json_t *layers, uint64_t *params, struct nn_err *e)
{
	enum nn_status st;
	struct tensor w = {0}, h = {0};
	char *hname = NULL, *cname = NULL;
	Onnx__TensorProto *init = onnx_find_initializer(m, r->name);
	if (!init)
		return err_set(e, NN_EINTERNAL, "internal", "", "weight '%s' vanished", r->name);
	if ((st = onnx_initializer_view(init, &w, e)) != NN_OK) {
		err_prefix(e, "weight '%s'", r->name);
		return st;
	}
	int64_t n = tensor_numel(&w);
	if (n < 0) {
		st = err_set(e, NN_EINVAL, "invalid_model", "", "weight '%s' has an invalid shape",
			     r->name);
		goto fail;
	}
	if ((st = tensor_alloc(&h, bf16 ? DT_BFLOAT16 : DT_FLOAT16, w.ndim, w.shape, e)) != NN_OK)
		goto fail;
	const float *x = w.data;
	uint16_t *y = h.data;
	double sq = 0, maxerr = 0;
	for (int64_t i = 0; i < n; i++) {
		if (!isfinite(x[i])) {
			st = err_set(e, NN_EINVAL, "invalid_model", "",
				     "weight '%s' holds a NaN or infinite value", r->name);
			goto fail;
		}
		y[i] = bf16 ? bf16_from_float(x[i]) : f16_from_float(x[i]);
		float back = bf16 ? bf16_to_float(y[i]) : f16_to_float(y[i]);
		if (!isfinite(back)) {
			st = err_set(e, NN_EINVAL, "invalid_model", "",
				     "weight '%s' holds %g, beyond float16's range (65504): exclude "
				     "the layer or use bf16",
				     r->name, (double)x[i]);
			goto fail;
		}
		double d = fabs((double)back - (double)x[i]);
		sq += d * d;
		maxerr = d > maxerr ? d : maxerr;
	}
	hname = quant_float_name(m, r->name, bf16 ? "_bf16" : "_fp16");
	cname = quant_float_name(m, r->name, "_Cast");
	if (!hname || !cname) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for names");
		goto fail;
	}
	json_t *shape = shape_json(&w);
	tensor_free(&w);
	if ((st = onnx_add_initializer_take(m, hname, &h, e)) != NN_OK) {
		json_decref(shape);
		goto fail;
	}
	const char *ins[1] = {hname}, *outs[1] = {r->name};
	Onnx__NodeProto *node = NULL;
	if ((st = onnx_prepend_node(m, "Cast", cname, ins, 1, outs, 1, &node, e)) != NN_OK ||
	    (st = onnx_node_set_int_attr(node, "to", DT_FLOAT, e)) != NN_OK) {
		json_decref(shape);
		goto fail;
	}
	onnx_remove_initializer(m, r->name);
	*params += (uint64_t)n;
	json_t *l = json_object();
	int bad = !l || json_array_append_new(layers, l);
	if (!bad) {
		bad |= step_json_set(l, "name", json_string(r->name));
		bad |= step_json_set(l, "op", json_string(r->op));
		bad |= step_json_set(l, "node", json_string(r->node));
		bad |= step_json_set(l, "shape", shape);
		bad |= step_json_set(l, "scheme", json_string(bf16 ? "bf16" : "fp16"));
		bad |= step_json_set(l, "dtype", json_string(bf16 ? "bfloat16" : "float16"));
		bad |= step_json_set(l, "bits", json_integer(16));
		bad |= step_json_set(l, "scale_min", json_null()); /* no scale: a plain cast */
		bad |= step_json_set(l, "scale_max", json_null());
		bad |= step_json_set(l, "mse", step_json_real(n ? sq / (double)n : 0.0));
		bad |= step_json_set(l, "max_abs_error", step_json_real(maxerr));
		bad |= step_json_set(l, "bytes", json_integer((json_int_t)n * 2));
	} else {
		json_decref(shape);
	}
	if (bad)
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for quantize metrics");
fail:
	tensor_free(&w);
	tensor_free(&h);
	free(hname);
	free(cname);
	return st;
}

/* ---- whole graph (fp16, "graph": true) ----
 * Every node nncd can convert (an op of graph_op_ok's list, default domain,
 * not excluded) computes in float16: the float32 values of its T inputs and
 * outputs become float16. Float32 initializers and Constants read only by
 * converted T slots are stored as float16 (a float16 copy when float32
 * readers remain); Cast(to float) of a converted node casts to float16. A
 * value whose producer and reader disagree gets one Cast per direction. Graph
 * inputs and outputs stay float32 with keep_io_types (Casts at entry and
 * exit), else become float16. Value types come from the executor (a probe
 * compile with every node output made a graph output): integer values
 * (shapes, indices, axes) are never touched. */

enum want { WANT_ANY, WANT_F32, WANT_F16 };

/* Ops whose ONNX type constraint T includes float16 in every opset the
 * executor runs, and which ONNX Runtime's CPU provider loads in float16
 * (natively or with the Casts it inserts; measured with ORT 1.30). */
static bool graph_op_ok(const char *op)
{
	static const char *const ops[] = {
		"Add", "Sub", "Mul", "Div", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Erf", "Exp",
		"Log", "Round", "HardSigmoid", "HardSwish", "Softmax", "LogSoftmax", "Identity",
		"Flatten", "Dropout", "MaxPool", "AveragePool", "GlobalAveragePool",
		"GlobalMaxPool", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "Transpose",
		"Concat", "MatMul", "Gemm", "Conv", "BatchNormalization", "Clip", "Reshape",
		"Unsqueeze", "Squeeze", "Gather", "Pad", "Gelu", "Max", "Min", "Shape", "Cast",
		"Constant"};
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
		if (!strcmp(op, ops[i]))
			return true;
	return false;
}

/* What input `slot` of a converted `op` node wants: its T inputs float16;
 * shapes, axes, indices, Dropout's ratio keep their type (float32 if they
 * are float); Cast and Shape read any type. */
static enum want slot_want(const char *op, size_t slot)
{
	if (!strcmp(op, "Cast") || !strcmp(op, "Shape"))
		return WANT_ANY;
	if (!strcmp(op, "Dropout") || !strcmp(op, "Reshape") || !strcmp(op, "Unsqueeze") ||
	    !strcmp(op, "Squeeze") || !strncmp(op, "Reduce", 6) || !strcmp(op, "Gather"))
		return slot == 0 ? WANT_F16 : WANT_F32;
	if (!strcmp(op, "Pad")) /* data and constant_value; pads and axes are int64 */
		return slot == 0 || slot == 2 ? WANT_F16 : WANT_F32;
	return WANT_F16;
}

/* Output `slot` of a converted node has type T (MaxPool's indices and
 * Dropout's mask do not). */
static bool out_is_t(const char *op, size_t slot)
{
	return !((!strcmp(op, "MaxPool") || !strcmp(op, "Dropout")) && slot > 0);
}

struct gconv {
	struct onnx_model *m;
	Onnx__GraphProto *g;
	bool keep_io;
	struct nameset idx; /* value name -> index + 1 (keys owned) */
	size_t nv, cap;
	int *dtype;         /* original dtype of each value (0 unknown) */
	int *prod;          /* producing node (original index), -1 none */
	int *pslot;         /* its output slot */
	bool *is_init, *is_gin, *want16, *want32, *f16;
	char **c16, **c32;  /* Cast (or float16 copy) names created per value */
	size_t n_node;      /* original node count */
	Onnx__NodeProto **orig;
	bool *conv;         /* per original node: converted */
	bool *const16;      /* per original node: a Constant stored as float16 */
	Onnx__NodeProto **pre;  /* Casts placed before their first reader */
	size_t n_pre;
	Onnx__NodeProto **post; /* Casts placed at the end (graph outputs) */
	size_t n_post;
	size_t casts, tensors;
	uint64_t params;
};

static void gconv_free(struct gconv *c)
{
	wire_nameset_free(&c->idx);
	for (size_t i = 0; i < c->nv; i++) {
		if (c->c16)
			free(c->c16[i]);
		if (c->c32)
			free(c->c32[i]);
	}
	free(c->c16);
	free(c->c32);
	free(c->dtype);
	free(c->prod);
	free(c->pslot);
	free(c->is_init);
	free(c->is_gin);
	free(c->want16);
	free(c->want32);
	free(c->f16);
	free(c->orig);
	free(c->conv);
	free(c->const16);
	free(c->pre);
	free(c->post);
}

static int gv_find(const struct gconv *c, const char *name)
{
	void *v = name && name[0] ? wire_nameset_get(&c->idx, name) : NULL;
	return v ? (int)((uintptr_t)v - 1) : -1;
}

static int gv_add(struct gconv *c, const char *name)
{
	int v = gv_find(c, name);
	if (v >= 0 || !name || !name[0])
		return v;
	if (c->nv >= c->cap || !wire_nameset_put(&c->idx, name, (void *)(uintptr_t)(c->nv + 1)))
		return -2;
	c->prod[c->nv] = -1;
	return (int)c->nv++;
}

static enum nn_status g_oom(struct nn_err *e)
{
	return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for the float16 graph");
}

/* Original dtype of every value: graph inputs and initializers from the
 * model, node outputs from a probe compile at batch 1. */
static enum nn_status probe_types(struct gconv *c, struct nn_err *e)
{
	struct onnx_model *pm = NULL;
	struct exec_plan *plan = NULL;
	enum nn_status st = onnx_clone(c->m, &pm, e);
	if (st != NN_OK)
		return st;
	Onnx__GraphProto *pg = pm->proto->graph;
	size_t n_out0 = pg->n_output;
	for (size_t i = 0; i < pg->n_node && st == NN_OK; i++) {
		const Onnx__NodeProto *n = pg->node[i];
		for (size_t j = 0; j < n->n_output && st == NN_OK; j++) {
			const char *o = n->output[j];
			int v = gv_find(c, o);
			if (!o || !o[0] || (v >= 0 && c->dtype[v]))
				continue;
			bool listed = false;
			for (size_t k = 0; k < n_out0 && !listed; k++)
				listed = !strcmp(pg->output[k]->name, o);
			if (!listed)
				st = onnx_add_graph_output(pg, o, e);
		}
	}
	if (st == NN_OK)
		st = exec_compile(pm, 1, &plan, e);
	if (st != NN_OK) {
		err_prefix(e, "finding the value types of the graph");
		onnx_free(pm);
		return st;
	}
	for (size_t i = 0; i < exec_output_count(plan); i++) {
		int v = gv_find(c, exec_output_name(plan, i));
		if (v >= 0 && !c->dtype[v])
			c->dtype[v] = (int)exec_output_spec(plan, i)->dtype;
	}
	exec_free(plan);
	onnx_free(pm);
	return NN_OK;
}

static enum nn_status gconv_build(struct gconv *c, struct nn_err *e)
{
	Onnx__GraphProto *g = c->g;
	size_t cap = g->n_input + g->n_initializer + g->n_output;
	for (size_t i = 0; i < g->n_node; i++)
		cap += g->node[i]->n_input + g->node[i]->n_output;
	c->cap = cap;
	c->idx.owns = true;
	c->n_node = g->n_node;
	size_t nc = cap ? cap : 1, nn = g->n_node ? g->n_node : 1;
	c->dtype = calloc(nc, sizeof *c->dtype);
	c->prod = calloc(nc, sizeof *c->prod);
	c->pslot = calloc(nc, sizeof *c->pslot);
	c->is_init = calloc(nc, sizeof *c->is_init);
	c->is_gin = calloc(nc, sizeof *c->is_gin);
	c->want16 = calloc(nc, sizeof *c->want16);
	c->want32 = calloc(nc, sizeof *c->want32);
	c->f16 = calloc(nc, sizeof *c->f16);
	c->c16 = calloc(nc, sizeof *c->c16);
	c->c32 = calloc(nc, sizeof *c->c32);
	c->orig = calloc(nn, sizeof *c->orig);
	c->conv = calloc(nn, sizeof *c->conv);
	c->const16 = calloc(nn, sizeof *c->const16);
	c->pre = calloc(2 * nc, sizeof *c->pre); /* at most one Cast each way per value */
	c->post = calloc(g->n_output ? g->n_output : 1, sizeof *c->post);
	if (!c->dtype || !c->prod || !c->pslot || !c->is_init || !c->is_gin || !c->want16 ||
	    !c->want32 || !c->f16 || !c->c16 || !c->c32 || !c->orig || !c->conv || !c->const16 ||
	    !c->pre || !c->post)
		return g_oom(e);
	for (size_t i = 0; i < g->n_initializer; i++) {
		int v = gv_add(c, g->initializer[i]->name);
		if (v == -2)
			return g_oom(e);
		if (v >= 0) {
			c->is_init[v] = true;
			c->dtype[v] = g->initializer[i]->data_type;
		}
	}
	for (size_t i = 0; i < g->n_input; i++) {
		const Onnx__ValueInfoProto *vi = g->input[i];
		int v = gv_add(c, vi->name);
		if (v == -2)
			return g_oom(e);
		if (v >= 0 && !c->is_init[v]) {
			c->is_gin[v] = true;
			if (vi->type && vi->type->tensor_type)
				c->dtype[v] = vi->type->tensor_type->elem_type;
		}
	}
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		c->orig[i] = n;
		for (size_t j = 0; j < n->n_input; j++)
			if (gv_add(c, n->input[j]) == -2)
				return g_oom(e);
		for (size_t j = 0; j < n->n_output; j++) {
			int v = gv_add(c, n->output[j]);
			if (v == -2)
				return g_oom(e);
			if (v >= 0) {
				c->prod[v] = (int)i;
				c->pslot[v] = (int)j;
			}
		}
	}
	for (size_t i = 0; i < g->n_output; i++)
		if (gv_add(c, g->output[i]->name) == -2)
			return g_oom(e);
	return probe_types(c, e);
}

static bool node_default(const Onnx__NodeProto *n)
{
	return !n->domain || !n->domain[0] || !strcmp(n->domain, "ai.onnx");
}

/* Why node n stays float32 (NULL: it is converted). */
static const char *keep_reason(const struct quant_params *p, const Onnx__NodeProto *n)
{
	const char *op = n->op_type ? n->op_type : "";
	if (quant_node_excluded(p, n->name, op))
		return "excluded";
	if (!node_default(n))
		return "operator of another domain than ONNX's";
	if (!graph_op_ok(op))
		return "operator not in nncd's float16 list (it keeps float32 with Casts)";
	for (size_t j = 0; j < n->n_attribute; j++)
		if (n->attribute[j]->g || n->attribute[j]->n_graphs)
			return "node with a subgraph";
	return NULL;
}

/* The float32 -> float16 values of a float tensor proto (view), with the
 * conversion error; NN_EINVAL for a finite value beyond float16's range. */
static enum nn_status half_of(const Onnx__TensorProto *tp, const char *what, struct tensor *h,
			      double *mse, double *maxerr, struct nn_err *e)
{
	struct tensor w = {0};
	enum nn_status st = onnx_initializer_view(tp, &w, e);
	if (st != NN_OK) {
		err_prefix(e, "%s", what);
		return st;
	}
	int64_t n = tensor_numel(&w);
	if (n < 0) {
		tensor_free(&w);
		return err_set(e, NN_EINVAL, "invalid_model", "", "%s has an invalid shape", what);
	}
	if ((st = tensor_alloc(h, DT_FLOAT16, w.ndim, w.shape, e)) != NN_OK) {
		tensor_free(&w);
		return st;
	}
	const float *x = w.data;
	uint16_t *y = h->data;
	double sq = 0, mx = 0;
	for (int64_t i = 0; i < n; i++) {
		y[i] = f16_from_float(x[i]);
		float back = f16_to_float(y[i]);
		if (isfinite(x[i]) && !isfinite(back)) {
			st = err_set(e, NN_EINVAL, "invalid_model", "",
				     "%s holds %g, beyond float16's range (65504): exclude the "
				     "nodes reading it",
				     what, (double)x[i]);
			tensor_free(&w);
			tensor_free(h);
			return st;
		}
		if (isfinite(x[i])) {
			double d = fabs((double)back - (double)x[i]);
			sq += d * d;
			mx = d > mx ? d : mx;
		}
	}
	*mse = n ? sq / (double)n : 0;
	*maxerr = mx;
	tensor_free(&w);
	return NN_OK;
}

static int layer_json(json_t *layers, const char *name, const char *kind, const struct tensor *h,
		      double mse, double maxerr)
{
	json_t *l = json_object();
	if (!l || json_array_append_new(layers, l))
		return 1;
	int bad = 0;
	bad |= step_json_set(l, "name", json_string(name));
	bad |= step_json_set(l, "kind", json_string(kind));
	bad |= step_json_set(l, "shape", shape_json(h));
	bad |= step_json_set(l, "scheme", json_string("fp16"));
	bad |= step_json_set(l, "dtype", json_string("float16"));
	bad |= step_json_set(l, "bits", json_integer(16));
	bad |= step_json_set(l, "scale_min", json_null());
	bad |= step_json_set(l, "scale_max", json_null());
	bad |= step_json_set(l, "mse", step_json_real(mse));
	bad |= step_json_set(l, "max_abs_error", step_json_real(maxerr));
	bad |= step_json_set(l, "bytes", json_integer((json_int_t)tensor_numel(h) * 2));
	return bad;
}

/* Casts value v (name `src`) to float16 or float32 once; *name gets the
 * cast's output. `at_end`: a graph-output Cast (placed last). */
static enum nn_status add_cast(struct gconv *c, const char *src, const char *out_name,
			       int to, bool at_end, struct nn_err *e)
{
	Onnx__NodeProto *node = NULL;
	char *nname = quant_float_name(c->m, out_name, "_Cast");
	if (!nname)
		return g_oom(e);
	const char *ins[1] = {src}, *outs[1] = {out_name};
	enum nn_status st = onnx_prepend_node(c->m, "Cast", nname, ins, 1, outs, 1, &node, e);
	free(nname);
	if (st == NN_OK)
		st = onnx_node_set_int_attr(node, "to", to, e);
	if (st != NN_OK)
		return st;
	if (at_end)
		c->post[c->n_post++] = node;
	else
		c->pre[c->n_pre++] = node;
	c->casts++;
	return NN_OK;
}

/* The name a reader wanting `to` uses for value v (creating the Cast). */
static enum nn_status cast_name(struct gconv *c, int v, const char *name, bool to16,
				const char **out, struct nn_err *e)
{
	char **slot = to16 ? &c->c16[v] : &c->c32[v];
	if (!*slot) {
		char *nm = quant_float_name(c->m, name, to16 ? "_fp16" : "_fp32");
		if (!nm)
			return g_oom(e);
		enum nn_status st = add_cast(c, name, nm, to16 ? DT_FLOAT16 : DT_FLOAT, false, e);
		if (st != NN_OK) {
			free(nm);
			return st;
		}
		*slot = nm;
	}
	*out = *slot;
	return NN_OK;
}

static enum nn_status set_input(Onnx__NodeProto *n, size_t j, const char *name, struct nn_err *e)
{
	char *s = strdup(name);
	if (!s)
		return g_oom(e);
	free(n->input[j]);
	n->input[j] = s;
	return NN_OK;
}

/* Puts the node array back in topological order: each Cast made for a
 * reader right before the first node reading it, output Casts last. */
static enum nn_status reorder(struct gconv *c, struct nn_err *e)
{
	Onnx__GraphProto *g = c->g;
	size_t total = g->n_node;
	Onnx__NodeProto **out = malloc((total ? total : 1) * sizeof *out);
	bool *done = calloc(c->n_pre ? c->n_pre : 1, sizeof *done);
	struct nameset by_out = {0};
	enum nn_status st = NN_OK;
	if (!out || !done) {
		st = g_oom(e);
		goto fail;
	}
	for (size_t k = 0; k < c->n_pre; k++)
		if (!wire_nameset_put(&by_out, c->pre[k]->output[0], (void *)(uintptr_t)(k + 1))) {
			st = g_oom(e);
			goto fail;
		}
	size_t at = 0;
	for (size_t i = 0; i < c->n_node; i++) {
		Onnx__NodeProto *n = c->orig[i];
		for (size_t j = 0; j < n->n_input; j++) {
			void *k = n->input[j] && n->input[j][0] ? wire_nameset_get(&by_out, n->input[j])
								   : NULL;
			if (k && !done[(uintptr_t)k - 1]) {
				done[(uintptr_t)k - 1] = true;
				out[at++] = c->pre[(uintptr_t)k - 1];
			}
		}
		out[at++] = n;
	}
	for (size_t k = 0; k < c->n_pre; k++) /* read only by graph outputs' Casts */
		if (!done[k])
			out[at++] = c->pre[k];
	for (size_t k = 0; k < c->n_post; k++)
		out[at++] = c->post[k];
	if (at != total) {
		st = err_set(e, NN_EINTERNAL, "internal", "", "float16 graph: %zu nodes placed of %zu",
			     at, total);
		goto fail;
	}
	memcpy(g->node, out, total * sizeof *out);
fail:
	wire_nameset_free(&by_out);
	free(out);
	free(done);
	return st;
}

static enum nn_status graph_run(struct onnx_model *m, const struct quant_params *p,
				const struct step_ctx *ctx, json_t **metrics, struct nn_err *e)
{
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	size_t bytes_before = onnx_packed_size(m);
	struct gconv c = {0};
	json_t *out = NULL, *layers = json_array(), *kept = json_array();
	enum nn_status st;
	c.m = m;
	c.g = m->proto->graph;
	c.keep_io = p->keep_io_types;
	if (!layers || !kept) {
		st = g_oom(e);
		goto fail;
	}
	if (!c.g) {
		st = err_set(e, NN_EINVAL, "invalid_model", "", "model has no graph");
		goto fail;
	}
	if ((st = gconv_build(&c, e)) != NN_OK)
		goto fail;
	Onnx__GraphProto *g = c.g;

	/* Which nodes convert, and what every float32 value's readers want. */
	size_t n_conv = 0;
	for (size_t i = 0; i < c.n_node; i++) {
		const Onnx__NodeProto *n = c.orig[i];
		const char *why = keep_reason(p, n);
		c.conv[i] = why == NULL;
		n_conv += c.conv[i];
		bool touches = false;
		for (size_t j = 0; j < n->n_input && !touches; j++) {
			int v = gv_find(&c, n->input[j]);
			touches = v >= 0 && c.dtype[v] == DT_FLOAT;
		}
		for (size_t j = 0; j < n->n_output && !touches; j++) {
			int v = gv_find(&c, n->output[j]);
			touches = v >= 0 && c.dtype[v] == DT_FLOAT;
		}
		if (why && touches) {
			json_t *k = json_pack("{s:s, s:s, s:s}", "node", n->name ? n->name : "", "op",
					      n->op_type ? n->op_type : "", "reason", why);
			if (!k || json_array_append_new(kept, k)) {
				st = g_oom(e);
				goto fail;
			}
		}
		for (size_t j = 0; j < n->n_input; j++) {
			int v = gv_find(&c, n->input[j]);
			if (v < 0 || c.dtype[v] != DT_FLOAT)
				continue;
			enum want w = c.conv[i] ? slot_want(n->op_type, j) : WANT_F32;
			c.want16[v] |= w == WANT_F16;
			c.want32[v] |= w == WANT_F32;
		}
	}
	for (size_t i = 0; i < g->n_output; i++) {
		int v = gv_find(&c, g->output[i]->name);
		if (v >= 0 && c.dtype[v] == DT_FLOAT) {
			c.want16[v] |= !c.keep_io;
			c.want32[v] |= c.keep_io;
		}
	}
	if (n_conv == 0) {
		st = err_set(e, NN_EINVAL, "invalid_spec", "", "no node is left to convert to float16 %s",
			     json_array_size(kept) ? "(all excluded or not convertible)" : "");
		goto fail;
	}

	/* The float16-ness of every float32 value once converted. */
	for (size_t v = 0; v < c.nv; v++) {
		if (c.dtype[v] != DT_FLOAT)
			continue;
		if (c.is_gin[v]) {
			c.f16[v] = !c.keep_io;
		} else if (c.is_init[v]) {
			c.f16[v] = c.want16[v] && !c.want32[v];
		} else if (c.prod[v] >= 0) {
			size_t pi = (size_t)c.prod[v];
			const Onnx__NodeProto *pn = c.orig[pi];
			if (!c.conv[pi])
				c.f16[v] = false;
			else if (!strcmp(pn->op_type, "Constant"))
				c.f16[v] = c.const16[pi] = c.want16[v] && !c.want32[v];
			else
				c.f16[v] = out_is_t(pn->op_type, (size_t)c.pslot[v]);
		}
	}

	/* Tensors: initializers and Constants to float16. */
	for (size_t i = 0; i < g->n_initializer; i++) {
		if (step_canceled(ctx)) {
			st = err_set(e, NN_ECANCELED, "canceled", "", "canceled while converting");
			goto fail;
		}
		Onnx__TensorProto *t = g->initializer[i];
		int v = gv_find(&c, t->name);
		if (v < 0 || c.dtype[v] != DT_FLOAT || !c.want16[v])
			continue;
		struct tensor h = {0};
		double mse = 0, mx = 0;
		char what[200];
		snprintf(what, sizeof what, "initializer '%.150s'", t->name);
		if ((st = half_of(t, what, &h, &mse, &mx, e)) != NN_OK)
			goto fail;
		c.params += (uint64_t)tensor_numel(&h);
		c.tensors++;
		if (layer_json(layers, t->name, c.f16[v] ? "initializer" : "initializer_copy", &h,
			       mse, mx)) {
			tensor_free(&h);
			st = g_oom(e);
			goto fail;
		}
		if (c.f16[v]) {
			st = onnx_initializer_take(t, &h, e);
		} else { /* float32 readers remain: a float16 copy for the others */
			c.c16[v] = quant_float_name(m, t->name, "_fp16");
			st = c.c16[v] ? onnx_add_initializer_take(m, c.c16[v], &h, e) : g_oom(e);
			g = c.g = m->proto->graph;
		}
		tensor_free(&h);
		if (st != NN_OK)
			goto fail;
	}
	for (size_t i = 0; i < c.n_node; i++) {
		Onnx__NodeProto *n = c.orig[i];
		if (!c.const16[i])
			continue;
		Onnx__AttributeProto *a = onnx_find_attr(n, "value", NULL);
		if (!a || !a->t)
			continue; /* value_float(s): stays a float32 producer (not reached) */
		struct tensor h = {0};
		double mse = 0, mx = 0;
		char what[200];
		snprintf(what, sizeof what, "Constant '%.150s'", n->name ? n->name : "");
		if ((st = half_of(a->t, what, &h, &mse, &mx, e)) != NN_OK)
			goto fail;
		c.params += (uint64_t)tensor_numel(&h);
		c.tensors++;
		if (layer_json(layers, n->output[0], "constant", &h, mse, mx)) {
			tensor_free(&h);
			st = g_oom(e);
			goto fail;
		}
		st = onnx_initializer_take(a->t, &h, e);
		tensor_free(&h);
		if (st != NN_OK)
			goto fail;
	}
	/* Constants whose value is not a tensor cannot be stored as float16. */
	for (size_t v = 0; v < c.nv; v++)
		if (c.dtype[v] == DT_FLOAT && c.prod[v] >= 0 && c.const16[c.prod[v]] &&
		    !onnx_find_attr(c.orig[c.prod[v]], "value", NULL))
			c.f16[v] = false;

	/* Readers: Casts where producer and reader disagree. */
	for (size_t i = 0; i < c.n_node; i++) {
		Onnx__NodeProto *n = c.orig[i];
		if (c.conv[i] && !strcmp(n->op_type, "Cast") && onnx_node_int_attr(n, "to", 0) == DT_FLOAT &&
		    (st = onnx_node_set_int_attr(n, "to", DT_FLOAT16, e)) != NN_OK)
			goto fail;
		for (size_t j = 0; j < n->n_input; j++) {
			int v = gv_find(&c, n->input[j]);
			if (v < 0 || c.dtype[v] != DT_FLOAT)
				continue;
			enum want w = c.conv[i] ? slot_want(n->op_type, j) : WANT_F32;
			if (w == WANT_ANY || (w == WANT_F16) == c.f16[v])
				continue;
			const char *nm = NULL;
			if (w == WANT_F16 && c.is_init[v] && c.c16[v])
				nm = c.c16[v]; /* the float16 copy */
			else if ((st = cast_name(&c, v, n->input[j], w == WANT_F16, &nm, e)) != NN_OK)
				goto fail;
			if ((st = set_input(n, j, nm, e)) != NN_OK)
				goto fail;
		}
	}
	g = c.g = m->proto->graph;

	/* Graph inputs and outputs. */
	for (size_t i = 0; i < g->n_input; i++) {
		int v = gv_find(&c, g->input[i]->name);
		/* (an initializer listed among the inputs keeps its input's type) */
		if (v >= 0 && c.dtype[v] == DT_FLOAT && c.f16[v] && g->input[i]->type &&
		    g->input[i]->type->tensor_type)
			g->input[i]->type->tensor_type->elem_type = DT_FLOAT16;
	}
	for (size_t i = 0; i < g->n_output; i++) {
		Onnx__ValueInfoProto *vo = g->output[i];
		int v = gv_find(&c, vo->name);
		if (v < 0 || c.dtype[v] != DT_FLOAT)
			continue;
		bool want16 = !c.keep_io;
		if (vo->type && vo->type->tensor_type)
			vo->type->tensor_type->elem_type = want16 ? DT_FLOAT16 : DT_FLOAT;
		if (c.f16[v] == want16 || c.prod[v] < 0)
			continue;
		/* The producer writes an internal name; a Cast writes the output. */
		Onnx__NodeProto *pn = c.orig[c.prod[v]];
		char *inner = quant_float_name(m, vo->name, c.f16[v] ? "_fp16" : "_fp32");
		if (!inner) {
			st = g_oom(e);
			goto fail;
		}
		for (size_t k = 0; k < g->n_node && st == NN_OK; k++)
			for (size_t j = 0; j < g->node[k]->n_input && st == NN_OK; j++)
				if (g->node[k]->input[j] && !strcmp(g->node[k]->input[j], vo->name))
					st = set_input(g->node[k], j, inner, e);
		char *old = pn->output[c.pslot[v]];
		if (st == NN_OK && !(pn->output[c.pslot[v]] = strdup(inner))) {
			pn->output[c.pslot[v]] = old;
			st = g_oom(e);
		} else if (st == NN_OK) {
			free(old);
		}
		if (st == NN_OK)
			st = add_cast(&c, inner, vo->name, want16 ? DT_FLOAT16 : DT_FLOAT, true, e);
		free(inner);
		if (st != NN_OK)
			goto fail;
		g = c.g = m->proto->graph;
	}
	for (size_t i = 0; i < g->n_value_info; i++) {
		Onnx__ValueInfoProto *vi = g->value_info[i];
		int v = gv_find(&c, vi->name);
		if (v < 0 || c.dtype[v] != DT_FLOAT || !vi->type || !vi->type->tensor_type)
			continue;
		bool is_out = false; /* a graph output's name now holds the io type */
		for (size_t k = 0; k < g->n_output && !is_out; k++)
			is_out = !strcmp(g->output[k]->name, vi->name);
		bool h16 = is_out ? !c.keep_io : c.f16[v];
		vi->type->tensor_type->elem_type = h16 ? DT_FLOAT16 : DT_FLOAT;
	}
	if ((st = reorder(&c, e)) != NN_OK)
		goto fail;
	step_progress(ctx, 1.0);

	out = json_object();
	int bad = !out;
	bad |= step_json_set(out, "scheme", json_string("fp16"));
	bad |= step_json_set(out, "graph", json_boolean(true));
	bad |= step_json_set(out, "keep_io_types", json_boolean(c.keep_io));
	bad |= step_json_set(out, "parameters", json_integer((json_int_t)c.params));
	bad |= step_json_set(out, "converted_tensors", json_integer((json_int_t)c.tensors));
	bad |= step_json_set(out, "converted_nodes", json_integer((json_int_t)n_conv));
	bad |= step_json_set(out, "casts_inserted", json_integer((json_int_t)c.casts));
	bad |= step_json_set(out, "bytes_before", json_integer((json_int_t)bytes_before));
	bad |= step_json_set(out, "bytes_after", json_integer((json_int_t)onnx_packed_size(m)));
	bad |= step_json_set(out, "opset", json_integer((json_int_t)onnx_opset(m)));
	bad |= step_json_set(out, "layers", layers);
	layers = NULL;
	bad |= step_json_set(out, "kept_float", kept);
	kept = NULL;
	bad |= step_json_set(out, "seconds", json_real(step_seconds_since(&t0)));
	if (bad) {
		st = g_oom(e);
		goto fail;
	}
	*metrics = out;
	out = NULL;
fail:
	json_decref(out);
	json_decref(layers);
	json_decref(kept);
	gconv_free(&c);
	return st;
}

enum nn_status quant_float_run(struct onnx_model *m, const struct quant_params *p,
			       const struct step_ctx *ctx, json_t **metrics, struct nn_err *e)
{
	enum nn_status st;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct quant_wref *ws = NULL;
	size_t nw = 0;
	json_t *out = NULL, *layers = NULL, *kept = NULL;
	bool bf16 = p->scheme == QUANT_BF16;
	*metrics = NULL;
	if (p->scheme != QUANT_FP16 && !bf16)
		return err_set(e, NN_EINTERNAL, "internal", "", "quant_float_run: scheme %d",
			       (int)p->scheme);
	if (p->whole_graph && bf16)
		return err_set(e, NN_EUNSUPPORTED, "invalid_spec", "graph", "%s",
			       QUANT_FLOAT_BF16_GRAPH_REFUSAL);
	if (p->whole_graph)
		return graph_run(m, p, ctx, metrics, e);
	kept = json_array();
	size_t bytes_before = onnx_packed_size(m);
	if (!kept) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for metrics");
		goto fail;
	}
	if ((st = quant_wrefs_new(m, p, kept, &ws, &nw, e)) != NN_OK)
		goto fail;
	/* Cast from bfloat16 exists from opset 13. */
	if (bf16 && onnx_opset(m) < 13 && (st = onnx_raise_opset(m, 13, e)) != NN_OK)
		goto fail;
	layers = json_array();
	if (!layers) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for metrics");
		goto fail;
	}
	uint64_t params = 0;
	for (size_t i = 0; i < nw; i++) {
		if (step_canceled(ctx)) {
			st = err_set(e, NN_ECANCELED, "canceled", "", "canceled while quantizing");
			goto fail;
		}
		if ((st = convert_one(m, &ws[i], bf16, layers, &params, e)) != NN_OK)
			goto fail;
		step_progress(ctx, (double)(i + 1) / (double)nw);
	}
	out = json_object();
	int bad = !out;
	bad |= step_json_set(out, "scheme", json_string(bf16 ? "bf16" : "fp16"));
	bad |= step_json_set(out, "graph", json_boolean(false));
	bad |= step_json_set(out, "parameters", json_integer((json_int_t)params));
	bad |= step_json_set(out, "bytes_before", json_integer((json_int_t)bytes_before));
	bad |= step_json_set(out, "bytes_after", json_integer((json_int_t)onnx_packed_size(m)));
	bad |= step_json_set(out, "opset", json_integer((json_int_t)onnx_opset(m)));
	bad |= step_json_set(out, "layers", layers);
	layers = NULL;
	bad |= step_json_set(out, "kept_float", kept);
	kept = NULL;
	bad |= step_json_set(out, "seconds", json_real(step_seconds_since(&t0)));
	if (bad) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for quantize metrics");
		goto fail;
	}
	*metrics = out;
	out = NULL;
fail:
	json_decref(out);
	json_decref(layers);
	json_decref(kept);
	quant_wrefs_free(ws, nw);
	return st;
}
