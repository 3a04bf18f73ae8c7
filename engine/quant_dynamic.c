/* quant_dynamic: dynamic int8 quantization of Gemm/MatMul (see quant_dynamic.h). */
#include "quant_dynamic.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quant_float.h"

/* Why a Gemm/MatMul cannot take the dynamic form, or NULL when it can. */
static const char *unsuitable(const struct onnx_model *m, const Onnx__NodeProto *n,
			      const Onnx__TensorProto **w)
{
	*w = NULL;
	bool gemm = !strcmp(n->op_type, "Gemm");
	if (n->n_input < 2 || n->n_output < 1)
		return "too few inputs";
	if (onnx_find_initializer(m, n->input[0]))
		return "input A is a constant";
	const Onnx__TensorProto *t = onnx_find_initializer(m, n->input[1]);
	if (!t)
		return "input B is not an initializer";
	if (t->data_type != DT_FLOAT || t->n_dims != 2)
		return "input B is not a rank-2 float32 initializer";
	if (gemm) {
		if (onnx_node_int_attr(n, "transA", 0) != 0)
			return "transA is 1";
		const Onnx__AttributeProto *beta = onnx_find_attr(n, "beta", NULL);
		if (n->n_input >= 3 && n->input[2][0] && beta && beta->f != 1.0f)
			return "beta is not 1";
	}
	*w = t;
	return NULL;
}

/* Takes the node just prepended at index 0 off the front of the graph. */
static Onnx__NodeProto *pop_front(Onnx__GraphProto *g)
{
	Onnx__NodeProto *n = g->node[0];
	memmove(g->node, g->node + 1, (g->n_node - 1) * sizeof *g->node);
	g->n_node--;
	return n;
}

static enum nn_status new_node(struct onnx_model *m, const char *op, const char *name,
			       const char *const *ins, size_t nin, const char *const *outs,
			       size_t nout, Onnx__NodeProto **made, size_t *nmade, struct nn_err *e)
{
	Onnx__NodeProto *n = NULL;
	enum nn_status st = onnx_prepend_node(m, op, name, ins, nin, outs, nout, &n, e);
	if (st != NN_OK)
		return st;
	made[(*nmade)++] = pop_front(m->proto->graph);
	return NN_OK;
}

/* Rewrites the node at index pos; metrics into l. */
static enum nn_status rewrite(struct onnx_model *m, size_t pos, const Onnx__TensorProto *winit,
			      const struct quant_params *p, const struct step_ctx *ctx, json_t *l,
			      uint64_t *params, struct nn_err *e)
{
	enum nn_status st;
	Onnx__GraphProto *g = m->proto->graph;
	Onnx__NodeProto *node = g->node[pos];
	Onnx__NodeProto *made[6] = {0};
	size_t nmade = 0;
	struct tensor w = {0}, wt = {0}, q = {0}, sc = {0}, zp = {0};
	enum { N_AQ, N_AS, N_AZ, N_WQ, N_WS, N_WZ, N_YI, N_YF, N_S, N_YM, N_QL, N_MMI, N_CAST,
	       N_MULS, N_MUL, N_ADD, N_COUNT };
	static const char *const suffix[N_COUNT] = {
		"_quantized", "_scale", "_zero_point", "_quantized", "_scale", "_zero_point",
		"_MatMulInteger_output", "_output_float", "_scale", "_mul_output",
		"_QuantizeLinear", "_MatMulInteger", "_cast", "_scales_mul", "_mul", "_add"};
	char *nm[N_COUNT] = {0};
	bool gemm = !strcmp(node->op_type, "Gemm");
	bool has_bias = gemm && node->n_input >= 3 && node->input[2][0];
	bool trans_b = gemm && onnx_node_int_attr(node, "transB", 0) != 0;
	const Onnx__AttributeProto *alpha_a = gemm ? onnx_find_attr(node, "alpha", NULL) : NULL;
	float alpha = alpha_a ? alpha_a->f : 1.0f;
	char *wname = strdup(winit->name);
	const char *a = node->input[0], *y = node->output[0];
	const char *nbase = node->name && node->name[0] ? node->name : y;
	if (!wname) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for names");
		goto fail;
	}
	if ((st = onnx_initializer_view(winit, &w, e)) != NN_OK)
		goto fail;
	int64_t K = w.shape[trans_b ? 1 : 0], N = w.shape[trans_b ? 0 : 1];
	int64_t n = tensor_numel(&w);
	if (n < 0 || K <= 0 || N <= 0) {
		st = err_set(e, NN_EINVAL, "invalid_model", "", "weight '%s' has an invalid shape",
			     wname);
		goto fail;
	}
	int64_t kn[2] = {K, N};
	if ((st = tensor_alloc(&wt, DT_FLOAT, 2, kn, e)) != NN_OK)
		goto fail;
	const float *src = w.data;
	float *dst = wt.data;
	for (int64_t k = 0; k < K; k++) /* [K, N] as MatMulInteger wants B */
		for (int64_t j = 0; j < N; j++)
			dst[k * N + j] = trans_b ? src[j * K + k] : src[k * N + j];
	enum dtype qt = p->symmetric ? DT_INT8 : DT_UINT8;
	/* Per channel: one scale and zero point per column of B [K, N], which
	 * MatMulInteger takes as a 1-D b_zero_point [N] and the Mul broadcasts. */
	bool per_channel = p->granularity == QUANT_PER_CHANNEL;
	int64_t nch = per_channel ? N : 1;
	if ((st = tensor_alloc(&q, qt, 2, kn, e)) != NN_OK ||
	    (st = tensor_alloc(&sc, DT_FLOAT, per_channel ? 1 : 0, &N, e)) != NN_OK ||
	    (st = tensor_alloc(&zp, qt, per_channel ? 1 : 0, &N, e)) != NN_OK)
		goto fail;
	size_t outer = per_channel ? (size_t)K : 1, inner = per_channel ? 1 : (size_t)n;
	if (p->symmetric) {
		st = per_channel ? quant_int8_symmetric_per_channel(dst, outer, (size_t)N, 1, q.data,
								    sc.data, ctx, e)
				 : quant_int8_symmetric_per_tensor(dst, (size_t)n, q.data, sc.data,
								   ctx, e);
		memset(zp.data, 0, (size_t)nch);
	} else {
		st = quant_uint8_asymmetric_per_channel(dst, outer, (size_t)nch, inner, q.data,
							sc.data, zp.data, ctx, e);
	}
	if (st != NN_OK) {
		err_prefix(e, "weight '%s'", wname);
		goto fail;
	}
	float *scales = sc.data;
	float scale = scales[0], smin = scales[0], smax = scales[0];
	double sq = 0, mx = 0;
	for (int64_t i = 0; i < n; i++) {
		int64_t c = per_channel ? i % N : 0;
		int zpv = p->symmetric ? ((int8_t *)zp.data)[c] : ((uint8_t *)zp.data)[c];
		int qi = p->symmetric ? ((int8_t *)q.data)[i] : ((uint8_t *)q.data)[i];
		double d = fabs((double)((float)(qi - zpv) * scales[c]) - (double)dst[i]);
		sq += d * d;
		mx = d > mx ? d : mx;
	}
	int zpv = p->symmetric ? ((int8_t *)zp.data)[0] : ((uint8_t *)zp.data)[0];
	/* alpha scales A*B: fold it into the weight scales the Mul applies. */
	for (int64_t c = 0; c < nch; c++) {
		smin = scales[c] < smin ? scales[c] : smin;
		smax = scales[c] > smax ? scales[c] : smax;
		scales[c] *= alpha;
	}
	for (int k = 0; k < N_COUNT; k++) {
		const char *base = k <= N_AZ ? a : k <= N_WZ ? wname : k <= N_YM ? y : nbase;
		if (!(nm[k] = quant_float_name(m, base, suffix[k]))) {
			st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for names");
			goto fail;
		}
	}
	if ((st = onnx_add_initializer_take(m, nm[N_WQ], &q, e)) != NN_OK ||
	    (st = onnx_add_initializer(m, nm[N_WS], &sc, e)) != NN_OK ||
	    (st = onnx_add_initializer(m, nm[N_WZ], &zp, e)) != NN_OK)
		goto fail;
	{
		const char *i1[1] = {a}, *o1[3] = {nm[N_AQ], nm[N_AS], nm[N_AZ]};
		const char *i2[4] = {nm[N_AQ], nm[N_WQ], nm[N_AZ], nm[N_WZ]}, *o2[1] = {nm[N_YI]};
		const char *i3[1] = {nm[N_YI]}, *o3[1] = {nm[N_YF]};
		const char *i4[2] = {nm[N_AS], nm[N_WS]}, *o4[1] = {nm[N_S]};
		const char *i5[2] = {nm[N_YF], nm[N_S]}, *o5[1] = {has_bias ? nm[N_YM] : y};
		const char *i6[2] = {nm[N_YM], has_bias ? node->input[2] : ""}, *o6[1] = {y};
		if ((st = new_node(m, "DynamicQuantizeLinear", nm[N_QL], i1, 1, o1, 3, made, &nmade,
				   e)) != NN_OK ||
		    (st = new_node(m, "MatMulInteger", nm[N_MMI], i2, 4, o2, 1, made, &nmade, e)) !=
			    NN_OK ||
		    (st = new_node(m, "Cast", nm[N_CAST], i3, 1, o3, 1, made, &nmade, e)) != NN_OK ||
		    (st = onnx_node_set_int_attr(made[nmade - 1], "to", DT_FLOAT, e)) != NN_OK ||
		    (st = new_node(m, "Mul", nm[N_MULS], i4, 2, o4, 1, made, &nmade, e)) != NN_OK ||
		    (st = new_node(m, "Mul", nm[N_MUL], i5, 2, o5, 1, made, &nmade, e)) != NN_OK ||
		    (has_bias &&
		     (st = new_node(m, "Add", nm[N_ADD], i6, 2, o6, 1, made, &nmade, e)) != NN_OK))
			goto fail;
	}
	/* Splice: the new nodes take the old node's place. */
	Onnx__NodeProto **arr = realloc(g->node, (g->n_node + nmade) * sizeof *arr);
	if (!arr) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for nodes");
		goto fail;
	}
	g->node = arr;
	memmove(arr + pos + nmade, arr + pos + 1, (g->n_node - pos - 1) * sizeof *arr);
	memcpy(arr + pos, made, nmade * sizeof *arr);
	g->n_node += nmade - 1;
	onnx__node_proto__free_unpacked(node, NULL);
	*params += (uint64_t)n;
	int64_t wshape[2] = {w.shape[0], w.shape[1]};
	int bad = 0;
	bad |= step_json_set(l, "name", json_string(wname));
	bad |= step_json_set(l, "shape", json_pack("[II]", (json_int_t)wshape[0],
						   (json_int_t)wshape[1]));
	bad |= step_json_set(l, "stored_transposed", json_boolean(trans_b));
	bad |= step_json_set(l, "granularity", json_string(per_channel ? "per_channel" : "per_tensor"));
	bad |= step_json_set(l, "scheme", json_string("dynamic"));
	bad |= step_json_set(l, "dtype", json_string(p->symmetric ? "int8" : "uint8"));
	bad |= step_json_set(l, "bits", json_integer(8));
	if (!per_channel) {
		bad |= step_json_set(l, "scale", step_json_real(scale));
		bad |= step_json_set(l, "zero_point", json_integer(zpv));
	} else {
		bad |= step_json_set(l, "channels", json_integer((json_int_t)N));
	}
	bad |= step_json_set(l, "scale_min", step_json_real(smin));
	bad |= step_json_set(l, "scale_max", step_json_real(smax));
	bad |= step_json_set(l, "mse", step_json_real(n ? sq / (double)n : 0.0));
	bad |= step_json_set(l, "max_abs_error", step_json_real(mx));
	bad |= step_json_set(l, "bytes", json_integer((json_int_t)(n + nch * 5)));
	if (bad)
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for quantize metrics");
	nmade = 0;
fail:
	for (size_t i = 0; i < nmade; i++)
		onnx__node_proto__free_unpacked(made[i], NULL);
	for (int k = 0; k < N_COUNT; k++)
		free(nm[k]);
	tensor_free(&w);
	tensor_free(&wt);
	tensor_free(&q);
	tensor_free(&sc);
	tensor_free(&zp);
	free(wname);
	return st;
}

static bool name_used(const Onnx__GraphProto *g, const char *name)
{
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		for (size_t j = 0; j < n->n_input; j++)
			if (!strcmp(n->input[j], name))
				return true;
		for (size_t j = 0; j < n->n_attribute; j++) /* subgraphs may read it */
			if (n->attribute[j]->g || n->attribute[j]->n_graphs)
				return true;
	}
	for (size_t i = 0; i < g->n_output; i++)
		if (g->output[i]->name && !strcmp(g->output[i]->name, name))
			return true;
	return false;
}

enum nn_status quant_dynamic_run(struct onnx_model *m, const struct quant_params *p,
				 const struct step_ctx *ctx, json_t **metrics, struct nn_err *e)
{
	enum nn_status st = NN_OK;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	json_t *out = NULL, *layers = json_array(), *skipped = json_array();
	char **weights = NULL;
	size_t nweights = 0;
	*metrics = NULL;
	Onnx__GraphProto *g = m->proto->graph;
	if (!layers || !skipped || !g) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for metrics");
		goto fail;
	}
	size_t bytes_before = onnx_packed_size(m);
	/* Raise first: the rewrite below must not meet the converter. */
	size_t candidates = 0;
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		const Onnx__TensorProto *w;
		if (n->op_type && (!strcmp(n->op_type, "Gemm") || !strcmp(n->op_type, "MatMul")) &&
		    quant_float_selected(p, n) && !unsuitable(m, n, &w))
			candidates++;
	}
	if (candidates == 0) {
		st = err_set(e, NN_EINVAL, "invalid_spec", "",
			     "model has no Gemm/MatMul with a rank-2 float32 weight to quantize "
			     "dynamically (after 'ops' and 'exclude')");
		goto fail;
	}
	if (onnx_opset(m) < 11 && (st = onnx_raise_opset(m, 11, e)) != NN_OK)
		goto fail;
	g = m->proto->graph;
	weights = calloc(candidates, sizeof *weights);
	if (!weights) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for weights");
		goto fail;
	}
	uint64_t params = 0;
	size_t done = 0;
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		if (!n->op_type || (strcmp(n->op_type, "Gemm") && strcmp(n->op_type, "MatMul")) ||
		    !quant_float_selected(p, n))
			continue;
		const Onnx__TensorProto *w;
		const char *why = unsuitable(m, n, &w);
		if (why) {
			json_t *s = json_pack("{s:s,s:s,s:s}", "node", n->name ? n->name : "", "op",
					      n->op_type, "reason", why);
			if (!s || json_array_append_new(skipped, s)) {
				st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for metrics");
				goto fail;
			}
			continue;
		}
		if (step_canceled(ctx)) {
			st = err_set(e, NN_ECANCELED, "canceled", "", "canceled while quantizing");
			goto fail;
		}
		json_t *l = json_object();
		if (!l || json_array_append_new(layers, l) ||
		    step_json_set(l, "node", json_string(n->name ? n->name : "")) ||
		    step_json_set(l, "op", json_string(n->op_type)) ||
		    !(weights[nweights++] = strdup(w->name))) {
			st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for metrics");
			goto fail;
		}
		size_t before = g->n_node;
		if ((st = rewrite(m, i, w, p, ctx, l, &params, e)) != NN_OK)
			goto fail;
		i += g->n_node - before; /* skip the nodes just written */
		step_progress(ctx, (double)++done / (double)candidates);
	}
	for (size_t i = 0; i < nweights; i++)
		if (onnx_find_initializer(m, weights[i]) && !name_used(g, weights[i]))
			onnx_remove_initializer(m, weights[i]);
	out = json_object();
	int bad = !out;
	bad |= step_json_set(out, "scheme", json_string("dynamic"));
	bad |= step_json_set(out, "granularity",
			     json_string(p->granularity == QUANT_PER_CHANNEL ? "per_channel"
									  : "per_tensor"));
	bad |= step_json_set(out, "symmetric", json_boolean(p->symmetric));
	bad |= step_json_set(out, "activations", json_string("uint8"));
	bad |= step_json_set(out, "parameters", json_integer((json_int_t)params));
	bad |= step_json_set(out, "bytes_before", json_integer((json_int_t)bytes_before));
	bad |= step_json_set(out, "bytes_after", json_integer((json_int_t)onnx_packed_size(m)));
	bad |= step_json_set(out, "opset", json_integer((json_int_t)onnx_opset(m)));
	bad |= step_json_set(out, "layers", layers);
	layers = NULL;
	bad |= step_json_set(out, "skipped", skipped);
	skipped = NULL;
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
	json_decref(skipped);
	for (size_t i = 0; weights && i < nweights; i++)
		free(weights[i]);
	free(weights);
	return st;
}
