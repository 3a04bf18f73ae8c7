/* quant_static: static QDQ quantization (see quant_static.h). */
#include "quant_static.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "calib.h"
#include "eval.h"
#include "exec.h"
#include "tensor.h"

struct tap {
	char *name;
	bool is_input;   /* a graph input: observed from the calibration rows */
	size_t out;      /* its output index in the probe model */
	struct calib_stats st;
	double lo, hi;   /* chosen range */
	float scale;
	int32_t zp;
	bool inserted;
	Onnx__NodeProto *qnode, *dqnode;
};

struct taps {
	struct tap *v;
	size_t n, cap;
};

static enum nn_status oom(struct nn_err *e)
{
	return err_set(e, NN_ENOMEM, "out_of_memory", "", "out of memory in static quantization");
}

static void taps_free(struct taps *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->v[i].name);
		calib_free(&t->v[i].st);
	}
	free(t->v);
	t->v = NULL;
	t->n = t->cap = 0;
}

static enum nn_status taps_add(struct taps *t, const char *name, struct nn_err *e)
{
	for (size_t i = 0; i < t->n; i++)
		if (!strcmp(t->v[i].name, name))
			return NN_OK;
	if (t->n == t->cap) {
		size_t nc = t->cap ? t->cap * 2 : 16;
		struct tap *nv = realloc(t->v, nc * sizeof *nv);
		if (!nv)
			return oom(e);
		t->v = nv;
		t->cap = nc;
	}
	struct tap *tp = &t->v[t->n];
	memset(tp, 0, sizeof *tp);
	if (!(tp->name = strdup(name)))
		return oom(e);
	calib_init(&tp->st);
	t->n++;
	return NN_OK;
}

static struct tap *taps_find(const struct taps *t, const char *name)
{
	for (size_t i = 0; name && i < t->n; i++)
		if (!strcmp(t->v[i].name, name))
			return &t->v[i];
	return NULL;
}

/* exclude names the node or its op type (quant.h). */
static bool excluded(const struct quant_params *p, const Onnx__NodeProto *n)
{
	return quant_node_excluded(p, n->name, n->op_type);
}

/* A node whose activations the scheme quantizes. */
static bool selected(const struct quant_params *p, const Onnx__NodeProto *n)
{
	if (n->domain && n->domain[0] && strcmp(n->domain, "ai.onnx"))
		return false;
	const char *op = n->op_type ? n->op_type : "";
	unsigned bit = !strcmp(op, "Gemm")     ? QUANT_OP_GEMM
		       : !strcmp(op, "MatMul") ? QUANT_OP_MATMUL
		       : !strcmp(op, "Conv")   ? QUANT_OP_CONV
					       : 0;
	return bit && (p->ops & bit) && !excluded(p, n);
}

static enum nn_status collect_taps(const struct onnx_model *m, const struct quant_params *p,
				   struct taps *t, struct nn_err *e)
{
	const Onnx__GraphProto *g = m->proto->graph;
	enum nn_status st = NN_OK;
	for (size_t i = 0; i < g->n_node && st == NN_OK; i++) {
		const Onnx__NodeProto *n = g->node[i];
		if (!selected(p, n))
			continue;
		/* Conv: X only (W, B are weights); Gemm/MatMul: both operands when
		 * they are activations (C, the bias, stays float). */
		size_t nin = !strcmp(n->op_type, "Conv") ? 1 : 2;
		for (size_t k = 0; k < nin && k < n->n_input && st == NN_OK; k++) {
			const char *x = n->input[k];
			if (x && x[0] && !onnx_find_initializer(m, x))
				st = taps_add(t, x, e);
		}
		if (st == NN_OK && n->n_output >= 1 && n->output[0] && n->output[0][0])
			st = taps_add(t, n->output[0], e);
	}
	return st;
}

/* The copy of m that outputs every tap that is not a graph input. */
static enum nn_status make_probe(const struct onnx_model *m, struct taps *t,
				 struct onnx_model **out, struct nn_err *e)
{
	enum nn_status st = onnx_clone(m, out, e);
	if (st != NN_OK)
		return st;
	Onnx__GraphProto *g = (*out)->proto->graph;
	for (size_t i = 0; i < t->n && st == NN_OK; i++) {
		struct tap *tp = &t->v[i];
		if ((tp->is_input = onnx_is_graph_input(g, tp->name)))
			continue;
		size_t o = 0;
		while (o < g->n_output && strcmp(g->output[o]->name, tp->name))
			o++;
		tp->out = o;
		if (o == g->n_output)
			st = onnx_add_graph_output((*out)->proto->graph, tp->name, e);
	}
	return st;
}

/* One pass over the calibration data: pass 0 min/max, pass 1 histograms. */
static enum nn_status run_pass(const struct onnx_model *probe, const struct tensor *x,
			       struct taps *t, int pass, const struct step_ctx *ctx,
			       double progress0, double progress_span, struct nn_err *e)
{
	enum nn_status st = NN_OK;
	struct exec_plan *xp = NULL;
	int64_t N = x->shape[0], per = 1, planned = 0;
	for (int d = 1; d < x->ndim; d++)
		per *= x->shape[d];
	size_t n_outs = probe->proto->graph->n_output;
	struct tensor *outs = calloc(n_outs ? n_outs : 1, sizeof *outs);
	if (!outs)
		return oom(e);
	for (int64_t at = 0; at < N; at += QUANT_STATIC_BATCH) {
		int64_t b = N - at < QUANT_STATIC_BATCH ? N - at : QUANT_STATIC_BATCH;
		if (b != planned) {
			exec_free(xp);
			xp = NULL;
			if ((st = exec_compile_threads(probe, b, ctx ? ctx->threads : 0, &xp, e)) !=
			    NN_OK)
				goto fail;
			planned = b;
			if (exec_output_count(xp) != n_outs) {
				st = err_set(e, NN_EINTERNAL, "internal", "", "probe output count");
				goto fail;
			}
		}
		struct tensor in = *x;
		in.shape[0] = b;
		in.data = (float *)x->data + (size_t)(at * per);
		in.owned = false;
		if ((st = exec_run(xp, &in, 1, outs, n_outs, e)) != NN_OK)
			goto fail;
		for (size_t i = 0; i < t->n; i++) {
			struct tap *tp = &t->v[i];
			const struct tensor *v = tp->is_input ? &in : &outs[tp->out];
			if (v->dtype != DT_FLOAT) {
				st = err_set(e, NN_EUNSUPPORTED, "unsupported", "",
					     "activation '%s' is %s, not float32", tp->name,
					     dtype_name(v->dtype));
				goto fail;
			}
			size_t n = (size_t)tensor_numel(v);
			if (pass == 0)
				calib_observe_minmax(&tp->st, v->data, n);
			else
				calib_observe_hist(&tp->st, v->data, n);
		}
		step_progress(ctx, progress0 + progress_span * (double)(at + b) / (double)N);
		if (step_canceled(ctx)) {
			st = err_set(e, NN_ECANCELED, "canceled", "", "canceled while calibrating");
			goto fail;
		}
	}
fail:
	exec_free(xp);
	free(outs);
	return st;
}

/* Scale and zero-point initializers plus the Q/DQ pair of one tap; the
 * nodes are prepended (reorder_nodes puts them after the producer). */
static enum nn_status insert_qdq(struct onnx_model *m, struct tap *tp, bool int8,
				 char **dq_name, struct nn_err *e)
{
	enum nn_status st = NN_OK;
	struct tensor sc = {0}, zp = {0};
	char *sname = NULL, *zname = NULL, *qname = NULL, *qn = NULL, *dqn = NULL, *buf = NULL;
	*dq_name = NULL;
	size_t blen = strlen(tp->name) + 32;
	if (!(buf = malloc(blen))) {
		st = oom(e);
		goto fail;
	}
	snprintf(buf, blen, "%s_scale", tp->name);
	sname = onnx_unique_name(m, buf);
	snprintf(buf, blen, "%s_zero_point", tp->name);
	zname = onnx_unique_name(m, buf);
	snprintf(buf, blen, "%s_quantized", tp->name);
	qname = onnx_unique_name(m, buf);
	snprintf(buf, blen, "%s_dequantized", tp->name);
	*dq_name = onnx_unique_name(m, buf);
	snprintf(buf, blen, "%s_QuantizeLinear", tp->name);
	qn = onnx_unique_name(m, buf);
	snprintf(buf, blen, "%s_DequantizeLinear", tp->name);
	dqn = onnx_unique_name(m, buf);
	if (!sname || !zname || !qname || !*dq_name || !qn || !dqn) {
		st = oom(e);
		goto fail;
	}
	if ((st = tensor_alloc(&sc, DT_FLOAT, 0, NULL, e)) != NN_OK ||
	    (st = tensor_alloc(&zp, int8 ? DT_INT8 : DT_UINT8, 0, NULL, e)) != NN_OK)
		goto fail;
	*(float *)sc.data = tp->scale;
	if (int8)
		*(int8_t *)zp.data = (int8_t)tp->zp;
	else
		*(uint8_t *)zp.data = (uint8_t)tp->zp;
	if ((st = onnx_add_initializer(m, sname, &sc, e)) != NN_OK ||
	    (st = onnx_add_initializer(m, zname, &zp, e)) != NN_OK)
		goto fail;
	const char *qin[3] = {tp->name, sname, zname}, *qout[1] = {qname};
	const char *dqin[3] = {qname, sname, zname}, *dqout[1] = {*dq_name};
	if ((st = onnx_prepend_node(m, "QuantizeLinear", qn, qin, 3, qout, 1, &tp->qnode, e)) !=
		    NN_OK ||
	    (st = onnx_prepend_node(m, "DequantizeLinear", dqn, dqin, 3, dqout, 1, &tp->dqnode,
				    e)) != NN_OK)
		goto fail;
	tp->inserted = true;
fail:
	if (st != NN_OK) {
		free(*dq_name);
		*dq_name = NULL;
	}
	tensor_free(&sc);
	tensor_free(&zp);
	free(sname);
	free(zname);
	free(qname);
	free(qn);
	free(dqn);
	free(buf);
	return st;
}

/* Puts each tap's Q/DQ pair right after the node producing the tap (graph
 * inputs' pairs first), keeping every other node's order: the graph stays
 * topologically sorted, as ONNX requires. */
static enum nn_status reorder_nodes(struct onnx_model *m, struct taps *t, size_t n_new,
				    struct nn_err *e)
{
	Onnx__GraphProto *g = m->proto->graph;
	Onnx__NodeProto **nv = malloc((g->n_node ? g->n_node : 1) * sizeof *nv);
	if (!nv)
		return oom(e);
	size_t k = 0;
	/* Prepended nodes that are not Q/DQ pairs (the bias DequantizeLinear
	 * nodes: initializers in, so first is fine) keep their place. */
	for (size_t i = 0; i < n_new; i++) {
		bool pair = false;
		for (size_t j = 0; j < t->n && !pair; j++)
			pair = t->v[j].inserted &&
			       (g->node[i] == t->v[j].qnode || g->node[i] == t->v[j].dqnode);
		if (!pair)
			nv[k++] = g->node[i];
	}
	for (size_t i = 0; i < t->n; i++) {
		if (t->v[i].inserted && t->v[i].is_input) {
			nv[k++] = t->v[i].qnode;
			nv[k++] = t->v[i].dqnode;
		}
	}
	for (size_t i = n_new; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		nv[k++] = n;
		for (size_t o = 0; o < n->n_output; o++) {
			struct tap *tp = taps_find(t, n->output[o]);
			if (tp && tp->inserted && !tp->is_input) {
				nv[k++] = tp->qnode;
				nv[k++] = tp->dqnode;
			}
		}
	}
	if (k != g->n_node) {
		free(nv);
		return err_set(e, NN_EINVAL, "invalid_model", "",
			       "an activation to quantize has no producer in the graph");
	}
	free(g->node);
	g->node = nv;
	return NN_OK;
}

static const Onnx__NodeProto *producer_of(const Onnx__GraphProto *g, const char *name)
{
	for (size_t i = 0; i < g->n_node; i++)
		for (size_t o = 0; o < g->node[i]->n_output; o++)
			if (g->node[i]->output[o] && !strcmp(g->node[i]->output[o], name))
				return g->node[i];
	return NULL;
}

static size_t readers_of(const Onnx__GraphProto *g, const char *name)
{
	size_t c = 0;
	for (size_t i = 0; i < g->n_node; i++)
		for (size_t k = 0; k < g->node[i]->n_input; k++)
			c += g->node[i]->input[k] && !strcmp(g->node[i]->input[k], name);
	return c;
}

/* The bias of a selected Gemm/Conv whose activation input and weight are
 * both quantized becomes int32 as ONNX Runtime's QDQ quantizer writes it:
 * scale[c] = activation scale * weight scale[c] (float32), q = round(b /
 * scale), zero point 0, and a DequantizeLinear (axis 0) whose output keeps
 * the bias name. This is what lets ORT fuse the node group into
 * QLinearConv/QGemm; the float simulation changes by at most scale / 2 per
 * bias. A bias that is not a 1-D float initializer read by this node alone,
 * or that would not fit int32, stays float. Returns the count converted. */
static enum nn_status quantize_biases(struct onnx_model *m, const struct quant_params *p,
				      const struct taps *t, size_t *count, struct nn_err *e)
{
	enum nn_status st = NN_OK;
	*count = 0;
	Onnx__GraphProto *g = m->proto->graph;
	size_t n_nodes = g->n_node;
	Onnx__NodeProto **nodes = malloc((n_nodes ? n_nodes : 1) * sizeof *nodes);
	if (!nodes)
		return oom(e);
	memcpy(nodes, g->node, n_nodes * sizeof *nodes);
	for (size_t i = 0; i < n_nodes && st == NN_OK; i++) {
		const Onnx__NodeProto *n = nodes[i];
		if (!selected(p, n) || n->n_input < 3 || !n->input[2] || !n->input[2][0])
			continue;
		if (strcmp(n->op_type, "Conv") && strcmp(n->op_type, "Gemm"))
			continue;
		const struct tap *tx = taps_find(t, n->input[0]);
		const Onnx__NodeProto *wdq = producer_of(g, n->input[1]);
		Onnx__TensorProto *bi = onnx_find_initializer(m, n->input[2]);
		if (!tx || !tx->inserted || !wdq || strcmp(wdq->op_type, "DequantizeLinear") ||
		    wdq->n_input < 2 || !bi || bi->n_dims != 1 || readers_of(g, n->input[2]) != 1)
			continue;
		const Onnx__TensorProto *wsi = onnx_find_initializer(m, wdq->input[1]);
		struct tensor b = {0}, ws = {0}, q = {0}, sc = {0}, zp = {0};
		char *names[4] = {NULL, NULL, NULL, NULL}, *buf = NULL;
		if (!wsi || onnx_initializer_view(bi, &b, e) != NN_OK ||
		    onnx_initializer_view(wsi, &ws, e) != NN_OK) {
			tensor_free(&b);
			tensor_free(&ws);
			err_clear(e);
			continue;
		}
		int64_t nb = tensor_numel(&b), nw = tensor_numel(&ws);
		bool ok = nb > 0 && (nw == nb || nw == 1);
		int64_t shape[1] = {nb};
		if (ok && ((st = tensor_alloc(&q, DT_INT32, 1, shape, e)) != NN_OK ||
			   (st = tensor_alloc(&sc, DT_FLOAT, 1, shape, e)) != NN_OK ||
			   (st = tensor_alloc(&zp, DT_INT32, 1, shape, e)) != NN_OK))
			ok = false;
		for (int64_t c = 0; ok && c < nb; c++) {
			float s = tx->scale * ((const float *)ws.data)[nw == 1 ? 0 : c];
			double v = s > 0 && isnormal(s) ? nearbyint((double)((const float *)b.data)[c] / s)
							: NAN;
			if (!(fabs(v) <= 2147483647.0)) {
				ok = false;
				break;
			}
			((float *)sc.data)[c] = s;
			((int32_t *)q.data)[c] = (int32_t)v;
			((int32_t *)zp.data)[c] = 0;
		}
		const char *bname = n->input[2];
		size_t blen = strlen(bname) + 32;
		if (ok && st == NN_OK && !(buf = malloc(blen)))
			st = oom(e);
		static const char *const suffix[4] = {"_quantized", "_scale", "_zero_point",
						      "_DequantizeLinear"};
		for (int k = 0; ok && st == NN_OK && k < 4; k++) {
			snprintf(buf, blen, "%s%s", bname, suffix[k]);
			if (!(names[k] = onnx_unique_name(m, buf)))
				st = oom(e);
		}
		if (ok && st == NN_OK) {
			char *keep = strdup(bname);
			Onnx__NodeProto *dq = NULL;
			if (!keep)
				st = oom(e);
			if (st == NN_OK)
				st = onnx_add_initializer(m, names[0], &q, e);
			if (st == NN_OK)
				st = onnx_add_initializer(m, names[1], &sc, e);
			if (st == NN_OK)
				st = onnx_add_initializer(m, names[2], &zp, e);
			const char *ins[3] = {names[0], names[1], names[2]}, *outs[1] = {keep};
			if (st == NN_OK)
				st = onnx_prepend_node(m, "DequantizeLinear", names[3], ins, 3, outs, 1,
						       &dq, e);
			if (st == NN_OK)
				st = onnx_node_set_int_attr(dq, "axis", 0, e);
			if (st == NN_OK) {
				tensor_free(&b); /* the view borrows the initializer removed next */
				onnx_remove_initializer(m, keep);
				(*count)++;
			}
			free(keep);
			g = m->proto->graph;
		}
		tensor_free(&b);
		tensor_free(&ws);
		tensor_free(&q);
		tensor_free(&sc);
		tensor_free(&zp);
		for (int k = 0; k < 4; k++)
			free(names[k]);
		free(buf);
	}
	free(nodes);
	return st;
}

static const char *const method_names[] = {"minmax", "percentile", "entropy", "mse"};

enum nn_status quant_static_run(struct onnx_model *m, const struct quant_params *p,
				const struct step_ctx *ctx, json_t **metrics, struct nn_err *e)
{
	enum nn_status st = NN_OK;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct taps t = {0};
	struct onnx_model *probe = NULL;
	json_t *out = NULL, *wm = NULL, *table = NULL;
	char **dq = NULL;
	*metrics = NULL;

	const struct eval_data *cal = ctx ? ctx->calib : NULL;
	if (!cal || !cal->inputs || !cal->inputs->data || cal->inputs->ndim < 1 ||
	    cal->inputs->shape[0] < 1)
		return err_set(e, NN_EINVAL, "invalid_spec", "dataset",
			       "static quantization needs calibration data: name a dataset (the "
			       "step's \"dataset\" or the spec's top-level one)");
	if (cal->inputs->dtype != DT_FLOAT)
		return err_set(e, NN_EINVAL, "invalid_dataset", "dataset",
			       "calibration inputs must be float32");
	const struct tensor *x = cal->inputs;
	enum calib_method method = (enum calib_method)p->calibration;
	bool int8 = p->activations_int8;
	size_t bytes_before = onnx_packed_size(m);

	/* QuantizeLinear/DequantizeLinear with axis need opset 13; raised
	 * first, since raising may rewrite nodes. */
	if (onnx_opset(m) < 13 && (st = onnx_raise_opset(m, 13, e)) != NN_OK)
		goto fail;
	if ((st = collect_taps(m, p, &t, e)) != NN_OK)
		goto fail;
	if (t.n == 0) {
		st = err_set(e, NN_EINVAL, "invalid_spec", "",
			     "model has no Gemm/MatMul/Conv node left to quantize (ops/exclude)");
		goto fail;
	}

	/* Calibration on the float model. */
	struct timespec tc;
	clock_gettime(CLOCK_MONOTONIC, &tc);
	if ((st = make_probe(m, &t, &probe, e)) != NN_OK)
		goto fail;
	bool absv;
	bool two = calib_needs_hist(method, int8, &absv);
	if ((st = run_pass(probe, x, &t, 0, ctx, 0, two ? 0.4 : 0.8, e)) != NN_OK)
		goto fail;
	if (two) {
		for (size_t i = 0; i < t.n; i++) {
			if ((st = calib_hist_begin(&t.v[i].st, CALIB_BINS, absv, e)) != NN_OK) {
				err_prefix(e, "activation '%s'", t.v[i].name);
				goto fail;
			}
		}
		if ((st = run_pass(probe, x, &t, 1, ctx, 0.4, 0.4, e)) != NN_OK)
			goto fail;
	}
	onnx_free(probe);
	probe = NULL;
	for (size_t i = 0; i < t.n; i++) {
		struct tap *tp = &t.v[i];
		if ((st = calib_range(&tp->st, method, p->percentile, int8, &tp->lo, &tp->hi, e)) !=
		    NN_OK) {
			err_prefix(e, "activation '%s'", tp->name);
			goto fail;
		}
		calib_qparams(tp->lo, tp->hi, int8, &tp->scale, &tp->zp);
	}
	double calib_seconds = step_seconds_since(&tc);

	/* Weights: quant.c's int8 scheme, symmetric int8 as ORT's QDQ. */
	struct quant_params wp = *p;
	wp.scheme = QUANT_INT8;
	wp.symmetric = true;
	wp.bias_correction = false;
	struct step_ctx wctx = ctx ? *ctx : (struct step_ctx){0};
	wctx.progress = NULL;
	if ((st = quant_run(m, &wp, &wctx, &wm, e)) != NN_OK)
		goto fail;

	/* Activations: a Q/DQ pair per tap that a kept node reads. */
	Onnx__GraphProto *g = m->proto->graph;
	size_t n_orig = g->n_node;
	if (!(dq = calloc(t.n, sizeof *dq))) {
		st = oom(e);
		goto fail;
	}
	size_t n_new = 0;
	for (size_t i = 0; i < t.n; i++) {
		bool read = false;
		for (size_t j = 0; j < g->n_node && !read; j++) {
			const Onnx__NodeProto *n = g->node[j];
			if (excluded(p, n))
				continue;
			for (size_t k = 0; k < n->n_input && !read; k++)
				read = n->input[k] && !strcmp(n->input[k], t.v[i].name);
		}
		if (!read)
			continue;
		if ((st = insert_qdq(m, &t.v[i], int8, &dq[i], e)) != NN_OK)
			goto fail;
		n_new += 2;
	}
	size_t biases = 0, pairs = n_new / 2;
	if ((st = quantize_biases(m, p, &t, &biases, e)) != NN_OK)
		goto fail;
	/* The bias DequantizeLinear nodes were prepended too (inputs are all
	 * initializers: any place before their reader is topological). */
	n_new += biases;
	/* Readers (the original nodes, after the n_new prepended ones) take the
	 * dequantized value, except excluded nodes. */
	for (size_t j = n_new; j < n_new + n_orig; j++) {
		Onnx__NodeProto *n = g->node[j];
		if (excluded(p, n))
			continue;
		for (size_t k = 0; k < n->n_input; k++) {
			struct tap *tp = taps_find(&t, n->input[k]);
			if (!tp || !tp->inserted)
				continue;
			char *nm = strdup(dq[tp - t.v]);
			if (!nm) {
				st = oom(e);
				goto fail;
			}
			free(n->input[k]);
			n->input[k] = nm;
		}
	}
	if ((st = reorder_nodes(m, &t, n_new, e)) != NN_OK)
		goto fail;

	table = json_array();
	int bad = !table;
	for (size_t i = 0; !bad && i < t.n; i++) {
		const struct tap *tp = &t.v[i];
		json_t *r = json_object();
		bad |= !r || json_array_append_new(table, r);
		if (bad)
			break;
		bad |= step_json_set(r, "name", json_string(tp->name));
		bad |= step_json_set(r, "min", step_json_real(tp->st.min));
		bad |= step_json_set(r, "max", step_json_real(tp->st.max));
		bad |= step_json_set(r, "lo", step_json_real(tp->lo));
		bad |= step_json_set(r, "hi", step_json_real(tp->hi));
		bad |= step_json_set(r, "scale", step_json_real(tp->scale));
		bad |= step_json_set(r, "zero_point", json_integer(tp->zp));
		bad |= step_json_set(r, "quantized", json_boolean(tp->inserted));
		if (tp->st.nonfinite)
			bad |= step_json_set(r, "nonfinite_values",
					     json_integer((json_int_t)tp->st.nonfinite));
	}
	out = json_object();
	bad |= !out;
	if (!bad) {
		bad |= step_json_set(out, "scheme", json_string("static"));
		bad |= step_json_set(out, "format", json_string("qdq"));
		bad |= step_json_set(out, "calibration", json_string(method_names[method]));
		if (method == CALIB_PERCENTILE)
			bad |= step_json_set(out, "percentile", json_real(p->percentile));
		bad |= step_json_set(out, "activations", json_string(int8 ? "int8" : "uint8"));
		bad |= step_json_set(out, "weights", json_string("int8"));
		bad |= step_json_set(out, "granularity",
				     json_string(p->granularity == QUANT_PER_CHANNEL ? "per_channel"
										     : "per_tensor"));
		bad |= step_json_set(out, "biases_int32", json_integer((json_int_t)biases));
		bad |= step_json_set(out, "samples", json_integer((json_int_t)x->shape[0]));
		bad |= step_json_set(out, "histogram_bins", json_integer(two ? CALIB_BINS : 0));
		bad |= step_json_set(out, "calibration_seconds", json_real(calib_seconds));
		bad |= step_json_set(out, "activations_quantized", json_integer((json_int_t)pairs));
		bad |= step_json_set(out, "ranges", table);
		table = NULL;
		const json_t *v;
		if ((v = json_object_get(wm, "layers")))
			bad |= step_json_set(out, "layers", json_incref((json_t *)v));
		if ((v = json_object_get(wm, "parameters")))
			bad |= step_json_set(out, "parameters", json_incref((json_t *)v));
		if ((v = json_object_get(wm, "kept_float")))
			bad |= step_json_set(out, "kept_float", json_incref((json_t *)v));
		bad |= step_json_set(out, "bytes_before", json_integer((json_int_t)bytes_before));
		bad |= step_json_set(out, "bytes_after",
				     json_integer((json_int_t)onnx_packed_size(m)));
		bad |= step_json_set(out, "opset", json_integer((json_int_t)onnx_opset(m)));
		bad |= step_json_set(out, "seconds", json_real(step_seconds_since(&t0)));
	}
	if (bad) {
		st = oom(e);
		goto fail;
	}
	step_progress(ctx, 1.0);
	*metrics = out;
	out = NULL;
fail:
	if (dq)
		for (size_t i = 0; i < t.n; i++)
			free(dq[i]);
	free(dq);
	json_decref(out);
	json_decref(wm);
	json_decref(table);
	onnx_free(probe);
	taps_free(&t);
	return st;
}
