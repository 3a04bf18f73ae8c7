/* quant_float: fp16 / bf16 weights (see quant_float.h). */
#include "quant_float.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

enum nn_status quant_float_run(struct onnx_model *m, const struct quant_params *p,
			       const struct step_ctx *ctx, json_t **metrics, struct nn_err *e)
{
	enum nn_status st;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct quant_wref *ws = NULL;
	size_t nw = 0;
	json_t *out = NULL, *layers = NULL, *kept = json_array();
	bool bf16 = p->scheme == QUANT_BF16;
	*metrics = NULL;
	if (p->scheme != QUANT_FP16 && !bf16)
		return err_set(e, NN_EINTERNAL, "internal", "", "quant_float_run: scheme %d",
			       (int)p->scheme);
	if (p->whole_graph)
		return err_set(e, NN_EUNSUPPORTED, "invalid_spec", "graph",
			       "whole-graph %s conversion is not supported: nncd converts weights "
			       "only (omit \"graph\")",
			       bf16 ? "bf16" : "fp16");
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
