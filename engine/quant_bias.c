#include "quant_bias.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "exec.h"
#include "onnx_graph.h"

/* Calibration rows per executor run. */
#define BIAS_BATCH 64

static enum nn_status oom(struct nn_err *e)
{
	return err_set(e, NN_ENOMEM, "out_of_memory", "", "out of memory in bias correction");
}

static bool default_domain(const char *d)
{
	return !d || !d[0] || !strcmp(d, "ai.onnx");
}

/* Input slot of the weight in a node this module corrects, or -1. MatMul is
 * corrected only with the weight on the right ([.., K] x [K, N]: channels
 * are the output's last dimension). */
static int weight_slot(const Onnx__NodeProto *n, const char *w)
{
	if (!default_domain(n->domain) || !n->op_type || n->n_input < 2 || !n->input[1] ||
	    strcmp(n->input[1], w))
		return -1;
	if (!strcmp(n->op_type, "Gemm") || !strcmp(n->op_type, "Conv") ||
	    !strcmp(n->op_type, "MatMul"))
		return 1;
	return -1;
}

static enum nn_status set_str(char **slot, const char *s, struct nn_err *e)
{
	char *c = strdup(s);
	if (!c)
		return oom(e);
	free(*slot);
	*slot = c;
	return NN_OK;
}

/* Adds `name` as a graph output unless it is one already. */
static enum nn_status add_output(Onnx__GraphProto *g, const char *name, struct nn_err *e)
{
	for (size_t i = 0; i < g->n_output; i++)
		if (!strcmp(g->output[i]->name, name))
			return NN_OK;
	return onnx_add_graph_output(g, name, e);
}

/* A deep copy of a node (through its serialization). */
static Onnx__NodeProto *node_clone(const Onnx__NodeProto *n)
{
	size_t len = onnx__node_proto__get_packed_size(n);
	uint8_t *buf = malloc(len ? len : 1);
	if (!buf)
		return NULL;
	onnx__node_proto__pack(n, buf);
	Onnx__NodeProto *c = onnx__node_proto__unpack(NULL, len, buf);
	free(buf);
	return c;
}

static enum nn_status append_node(Onnx__GraphProto *g, Onnx__NodeProto *n, struct nn_err *e)
{
	Onnx__NodeProto **v = realloc(g->node, (g->n_node + 1) * sizeof *v);
	if (!v)
		return oom(e);
	g->node = v;
	g->node[g->n_node++] = n;
	return NN_OK;
}

/* One node to correct. */
struct layer {
	size_t weight;         /* index into the caller's weights */
	Onnx__NodeProto *node; /* in the caller's model */
	char *out_f, *out_q;   /* float / quantized-twin outputs in the probe */
	int channel_dim;       /* output dimension of the channels: -1 = last */
	int64_t channels;      /* 0 until the first run tells */
	double *sum;           /* per channel: sum of (quantized - float) */
	int64_t count;         /* values summed per channel */
};

static void layers_free(struct layer *l, size_t n)
{
	for (size_t i = 0; l && i < n; i++) {
		free(l[i].out_f);
		free(l[i].out_q);
		free(l[i].sum);
	}
	free(l);
}

/* Builds the probe: float weights back, one quantized twin per layer. */
static enum nn_status build_probe(struct onnx_model *probe, struct onnx_model *m,
				  const struct quant_bias_weight *w, size_t n, struct layer **out,
				  size_t *n_out, struct nn_err *e)
{
	enum nn_status st = NN_OK;
	Onnx__GraphProto *g = probe->proto->graph;
	size_t n_orig = g->n_node, nl = 0;
	struct layer *ls = calloc(n_orig ? n_orig : 1, sizeof *ls);
	char *qname = NULL, *buf = NULL;
	if (!ls)
		return oom(e);
	for (size_t i = 0; i < n; i++) {
		/* the DequantizeLinear producing w[i].name now produces a fresh name */
		size_t blen = strlen(w[i].name) + 32;
		free(buf);
		if (!(buf = malloc(blen))) {
			st = oom(e);
			goto fail;
		}
		snprintf(buf, blen, "%s__nncd_bias_q", w[i].name);
		free(qname);
		if (!(qname = onnx_unique_name(probe, buf))) {
			st = oom(e);
			goto fail;
		}
		bool found = false;
		for (size_t k = 0; k < n_orig && !found; k++) {
			Onnx__NodeProto *d = g->node[k];
			if (d->op_type && !strcmp(d->op_type, "DequantizeLinear") && d->n_output == 1 &&
			    !strcmp(d->output[0], w[i].name)) {
				if ((st = set_str(&d->output[0], qname, e)) != NN_OK)
					goto fail;
				found = true;
			}
		}
		if (!found) {
			st = err_set(e, NN_EINTERNAL, "internal", "",
				     "bias correction: no DequantizeLinear produces '%s'", w[i].name);
			goto fail;
		}
		if ((st = onnx_add_initializer(probe, w[i].name, w[i].floats, e)) != NN_OK)
			goto fail;
		for (size_t k = 0; k < n_orig; k++) {
			Onnx__NodeProto *nd = g->node[k];
			if (weight_slot(nd, w[i].name) < 0 || nd->n_output < 1)
				continue;
			struct layer *l = &ls[nl];
			l->weight = i;
			l->node = m->proto->graph->node[k]; /* same order in the copy */
			l->channel_dim = !strcmp(nd->op_type, "Conv") ? 1 : -1;
			snprintf(buf, blen, "%s__nncd_bias_out", w[i].name);
			if (!(l->out_f = strdup(nd->output[0])) ||
			    !(l->out_q = onnx_unique_name(probe, buf))) {
				nl++;
				st = oom(e);
				goto fail;
			}
			nl++;
			Onnx__NodeProto *twin = node_clone(nd);
			if (!twin) {
				st = oom(e);
				goto fail;
			}
			if ((st = set_str(&twin->input[1], qname, e)) != NN_OK ||
			    (st = set_str(&twin->output[0], l->out_q, e)) != NN_OK ||
			    (twin->name && (st = set_str(&twin->name, "", e)) != NN_OK) ||
			    (st = append_node(g, twin, e)) != NN_OK) {
				onnx__node_proto__free_unpacked(twin, NULL);
				goto fail;
			}
			if ((st = add_output(g, l->out_f, e)) != NN_OK ||
			    (st = add_output(g, l->out_q, e)) != NN_OK)
				goto fail;
		}
	}
	*out = ls;
	*n_out = nl;
	ls = NULL;
fail:
	layers_free(ls, nl);
	free(qname);
	free(buf);
	return st;
}

static enum nn_status accumulate(struct layer *l, const struct tensor *f, const struct tensor *q,
				 struct nn_err *e)
{
	int64_t n = tensor_numel(f);
	if (f->dtype != DT_FLOAT || q->dtype != DT_FLOAT || n != tensor_numel(q) || n <= 0 ||
	    f->ndim < 2)
		return err_set(e, NN_EINTERNAL, "internal", "",
			       "bias correction: outputs of '%s' do not match", l->out_f);
	int cd = l->channel_dim < 0 ? f->ndim - 1 : l->channel_dim;
	int64_t ch = f->shape[cd], inner = 1, outer = 1;
	for (int d = cd + 1; d < f->ndim; d++)
		inner *= f->shape[d];
	for (int d = 0; d < cd; d++)
		outer *= f->shape[d];
	if (ch <= 0)
		return NN_OK;
	if (!l->sum) {
		if (!(l->sum = calloc((size_t)ch, sizeof *l->sum)))
			return oom(e);
		l->channels = ch;
	}
	const float *a = f->data, *b = q->data;
	for (int64_t o = 0; o < outer; o++)
		for (int64_t c = 0; c < ch; c++) {
			double s = 0;
			const float *pa = a + (o * ch + c) * inner, *pb = b + (o * ch + c) * inner;
			for (int64_t i = 0; i < inner; i++)
				s += (double)pb[i] - (double)pa[i];
			l->sum[c] += s;
		}
	l->count += outer * inner;
	return NN_OK;
}

/* Runs the probe over the calibration rows (whole batches of b, then one
 * plan for the remainder) and sums the errors. */
static enum nn_status measure(const struct onnx_model *probe, const struct tensor *x,
			      struct layer *ls, size_t nl, const struct step_ctx *ctx,
			      struct nn_err *e)
{
	enum nn_status st = NN_OK;
	int64_t N = x->shape[0];
	int64_t per = N > 0 ? tensor_numel(x) / N : 0;
	struct exec_plan *plan = NULL;
	struct tensor *outs = NULL;
	size_t *fi = calloc(nl ? nl : 1, sizeof *fi), *qi = calloc(nl ? nl : 1, sizeof *qi);
	if (!fi || !qi) {
		st = oom(e);
		goto fail;
	}
	int64_t b = 0;
	for (int64_t at = 0; at < N; at += b) {
		int64_t want = N - at < BIAS_BATCH ? N - at : BIAS_BATCH;
		if (want != b) {
			exec_free(plan);
			plan = NULL;
			b = want;
			if ((st = exec_compile_threads(probe, b, ctx ? ctx->threads : 1, &plan, e)) !=
			    NN_OK)
				goto fail;
			size_t no = exec_output_count(plan);
			free(outs);
			if (!(outs = calloc(no, sizeof *outs))) {
				st = oom(e);
				goto fail;
			}
			for (size_t k = 0; k < nl; k++) {
				fi[k] = qi[k] = no;
				for (size_t j = 0; j < no; j++) {
					if (!strcmp(exec_output_name(plan, j), ls[k].out_f))
						fi[k] = j;
					if (!strcmp(exec_output_name(plan, j), ls[k].out_q))
						qi[k] = j;
				}
				if (fi[k] == no || qi[k] == no) {
					st = err_set(e, NN_EINTERNAL, "internal", "",
						     "bias correction: probe output missing");
					goto fail;
				}
			}
			const struct tensor *spec = exec_input_spec(plan, 0);
			if (exec_input_count(plan) != 1 || tensor_numel(spec) != b * per) {
				st = err_set(e, NN_EINVAL, "invalid_spec", "",
					     "bias correction: calibration samples do not fit the "
					     "model's input");
				goto fail;
			}
		}
		if (step_canceled(ctx)) {
			st = err_set(e, NN_ECANCELED, "canceled", "", "canceled in bias correction");
			goto fail;
		}
		const struct tensor *spec = exec_input_spec(plan, 0);
		struct tensor in;
		tensor_view(&in, DT_FLOAT, spec->ndim, spec->shape, (float *)x->data + at * per);
		if ((st = exec_run(plan, &in, 1, outs, exec_output_count(plan), e)) != NN_OK)
			goto fail;
		for (size_t k = 0; k < nl; k++)
			if ((st = accumulate(&ls[k], &outs[fi[k]], &outs[qi[k]], e)) != NN_OK)
				goto fail;
	}
fail:
	exec_free(plan);
	free(outs);
	free(fi);
	free(qi);
	return st;
}

static float attr_float(const Onnx__NodeProto *n, const char *name, float fallback)
{
	const Onnx__AttributeProto *a = onnx_find_attr(n, name, NULL);
	return a && a->has_f ? a->f : fallback;
}

static size_t node_index(const Onnx__GraphProto *g, const Onnx__NodeProto *n)
{
	size_t i = 0;
	while (i < g->n_node && g->node[i] != n)
		i++;
	return i;
}

/* True when some node other than `self` reads value `name`. */
static bool read_elsewhere(const Onnx__GraphProto *g, const Onnx__NodeProto *self,
			   const char *name)
{
	for (size_t i = 0; i < g->n_node; i++) {
		if (g->node[i] == self)
			continue;
		for (size_t k = 0; k < g->node[i]->n_input; k++)
			if (g->node[i]->input[k] && !strcmp(g->node[i]->input[k], name))
				return true;
	}
	return false;
}

/* Writes bias - shift / beta into a new initializer wired as input 2 of a
 * Gemm or Conv (the old bias is dropped when nothing else reads it). */
static enum nn_status apply_bias_input(struct onnx_model *m, struct layer *l, const float *shift,
				       struct nn_err *e)
{
	enum nn_status st;
	Onnx__NodeProto *nd = l->node;
	bool gemm = !strcmp(nd->op_type, "Gemm");
	float beta = gemm ? attr_float(nd, "beta", 1.0f) : 1.0f;
	int64_t ch = l->channels;
	struct tensor nb = {0}, old = {0};
	char *name = NULL, *buf = NULL;
	const char *old_name = nd->n_input > 2 && nd->input[2] && nd->input[2][0] ? nd->input[2] : NULL;
	if (old_name && beta == 0.0f)
		return err_set(e, NN_EUNSUPPORTED, "unsupported", "",
			       "bias correction: Gemm '%s' has beta 0", nd->name ? nd->name : "");
	if ((st = tensor_alloc(&nb, DT_FLOAT, 1, &ch, e)) != NN_OK)
		return st;
	float *v = nb.data;
	if (old_name) {
		const Onnx__TensorProto *t = onnx_find_initializer(m, old_name);
		if (!t || (st = onnx_initializer_view(t, &old, e)) != NN_OK) {
			st = t ? st
			       : err_set(e, NN_EUNSUPPORTED, "unsupported", "",
					 "bias correction: bias '%s' of '%s' is not an initializer",
					 old_name, nd->name ? nd->name : "");
			goto fail;
		}
		int64_t on = tensor_numel(&old);
		if (on != ch && on != 1) {
			st = err_set(e, NN_EUNSUPPORTED, "unsupported", "",
				     "bias correction: bias '%s' is not per output channel", old_name);
			goto fail;
		}
		const float *ov = old.data;
		for (int64_t c = 0; c < ch; c++)
			v[c] = ov[on == 1 ? 0 : c] - shift[c] / beta;
	} else {
		for (int64_t c = 0; c < ch; c++)
			v[c] = -shift[c] / beta; /* absent bias: beta applies to the new one */
	}
	size_t blen = strlen(nd->input[1]) + 32;
	if (!(buf = malloc(blen))) {
		st = oom(e);
		goto fail;
	}
	snprintf(buf, blen, "%s_bias_corrected", nd->input[1]);
	if (!(name = onnx_unique_name(m, buf))) {
		st = oom(e);
		goto fail;
	}
	if ((st = onnx_add_initializer(m, name, &nb, e)) != NN_OK)
		goto fail;
	if (nd->n_input < 3) {
		char **in = realloc(nd->input, 3 * sizeof *in);
		if (!in) {
			st = oom(e);
			goto fail;
		}
		nd->input = in;
		nd->input[2] = NULL;
		nd->n_input = 3;
	}
	char *keep_old = old_name ? strdup(old_name) : NULL;
	if (old_name && !keep_old) {
		st = oom(e);
		goto fail;
	}
	tensor_free(&old); /* a view into the old initializer: gone before removal */
	st = set_str(&nd->input[2], name, e);
	if (st == NN_OK && keep_old && !read_elsewhere(m->proto->graph, nd, keep_old))
		onnx_remove_initializer(m, keep_old);
	free(keep_old);
fail:
	tensor_free(&nb);
	tensor_free(&old);
	free(name);
	free(buf);
	return st;
}

/* MatMul: Y = X W becomes Y' = X W; Y = Y' + (-shift), the Add right after. */
static enum nn_status apply_add(struct onnx_model *m, struct layer *l, const float *shift,
				struct nn_err *e)
{
	enum nn_status st;
	Onnx__NodeProto *nd = l->node;
	Onnx__GraphProto *g = m->proto->graph;
	int64_t ch = l->channels;
	struct tensor nb = {0};
	char *bname = NULL, *mid = NULL, *aname = NULL, *buf = NULL, *out = NULL;
	if ((st = tensor_alloc(&nb, DT_FLOAT, 1, &ch, e)) != NN_OK)
		return st;
	for (int64_t c = 0; c < ch; c++)
		((float *)nb.data)[c] = -shift[c];
	size_t blen = strlen(nd->output[0]) + strlen(nd->input[1]) + 32;
	if (!(buf = malloc(blen)) || !(out = strdup(nd->output[0]))) {
		st = oom(e);
		goto fail;
	}
	snprintf(buf, blen, "%s_bias_corrected", nd->input[1]);
	bname = onnx_unique_name(m, buf);
	snprintf(buf, blen, "%s_before_bias_correction", out);
	mid = onnx_unique_name(m, buf);
	snprintf(buf, blen, "%s_BiasCorrection", nd->name && nd->name[0] ? nd->name : out);
	aname = onnx_unique_name(m, buf);
	if (!bname || !mid || !aname) {
		st = oom(e);
		goto fail;
	}
	if ((st = onnx_add_initializer(m, bname, &nb, e)) != NN_OK ||
	    (st = set_str(&nd->output[0], mid, e)) != NN_OK)
		goto fail;
	const char *ins[2] = {mid, bname};
	const char *outs[1] = {out};
	Onnx__NodeProto *add = NULL;
	if ((st = onnx_prepend_node(m, "Add", aname, ins, 2, outs, 1, &add, e)) != NN_OK)
		goto fail;
	/* move it from the front to right after the MatMul (topological order) */
	size_t k = node_index(g, nd);
	memmove(&g->node[0], &g->node[1], k * sizeof *g->node);
	g->node[k] = add;
fail:
	tensor_free(&nb);
	free(bname);
	free(mid);
	free(aname);
	free(buf);
	free(out);
	return st;
}

enum nn_status quant_bias_correct(struct onnx_model *m, const struct quant_bias_weight *w,
				  size_t n, const struct step_ctx *ctx, json_t **out,
				  struct nn_err *e)
{
	enum nn_status st;
	struct onnx_model *probe = NULL;
	struct layer *ls = NULL;
	size_t nl = 0;
	float *shift = NULL;
	json_t *res = NULL, *arr = NULL;
	*out = NULL;
	const struct eval_data *cal = ctx ? ctx->calib : NULL;
	const struct tensor *x = cal ? cal->inputs : NULL;
	if (!x || !x->data || x->ndim < 1 || x->shape[0] <= 0 || x->dtype != DT_FLOAT)
		return err_set(e, NN_EINVAL, "invalid_spec", "",
			       "bias_correction needs calibration data (a \"dataset\")");
	if ((st = onnx_clone(m, &probe, e)) != NN_OK ||
	    (st = build_probe(probe, m, w, n, &ls, &nl, e)) != NN_OK ||
	    (st = measure(probe, x, ls, nl, ctx, e)) != NN_OK)
		goto fail;
	onnx_free(probe);
	probe = NULL;
	res = json_object();
	arr = json_array();
	if (!res || !arr) {
		st = oom(e);
		goto fail;
	}
	for (size_t k = 0; k < nl; k++) {
		struct layer *l = &ls[k];
		if (!l->sum || l->count <= 0)
			continue;
		free(shift);
		if (!(shift = malloc((size_t)l->channels * sizeof *shift))) {
			st = oom(e);
			goto fail;
		}
		double msum = 0, mabs = 0, mx = 0;
		for (int64_t c = 0; c < l->channels; c++) {
			double s = l->sum[c] / (double)l->count;
			shift[c] = (float)s;
			msum += s;
			mabs += fabs(s);
			mx = fabs(s) > mx ? fabs(s) : mx;
		}
		/* names first: the edit below renames the MatMul's output */
		json_t *o = json_pack("{s:s, s:s, s:s, s:I}", "name", w[l->weight].name, "node",
				      l->node->name ? l->node->name : "", "op", l->node->op_type,
				      "channels", (json_int_t)l->channels);
		st = !strcmp(l->node->op_type, "MatMul") ? apply_add(m, l, shift, e)
							  : apply_bias_input(m, l, shift, e);
		if (st != NN_OK) {
			json_decref(o);
			err_prefix(e, "bias correction of '%s'", w[l->weight].name);
			goto fail;
		}
		double nc = (double)l->channels;
		int bad = !o;
		bad |= !bad && step_json_set(o, "mean_shift", step_json_real(msum / nc));
		bad |= !bad && step_json_set(o, "mean_abs_shift", step_json_real(mabs / nc));
		bad |= !bad && step_json_set(o, "max_abs_shift", step_json_real(mx));
		if (bad || json_array_append_new(arr, o)) {
			if (bad)
				json_decref(o);
			st = oom(e);
			goto fail;
		}
	}
	if (json_object_set_new(res, "samples", json_integer((json_int_t)x->shape[0])) ||
	    json_object_set_new(res, "layers", arr)) {
		arr = NULL;
		st = oom(e);
		goto fail;
	}
	arr = NULL;
	*out = res;
	res = NULL;
fail:
	onnx_free(probe);
	layers_free(ls, nl);
	free(shift);
	json_decref(res);
	json_decref(arr);
	return st;
}
