#include "quant_verify.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "exec.h"
#include "onnx_graph.h"
#include "step.h"
#include "tensor.h"

/* Subgraph nesting followed when listing contrib operators (If/Loop bodies);
 * deeper graphs are not looked into (a model that deep is refused elsewhere). */
#define MAX_DEPTH 16

static bool is_default_domain(const char *d)
{
	return !d || !d[0] || !strcmp(d, "ai.onnx");
}

static bool array_has_string(const json_t *a, const char *s)
{
	for (size_t i = 0; i < json_array_size(a); i++)
		if (!strcmp(json_string_value(json_array_get(a, i)), s))
			return true;
	return false;
}

/* Appends "domain.Op" for each non-default-domain node of g and its subgraphs
 * (once each). Returns false when out of memory. */
static bool collect_contrib(const Onnx__GraphProto *g, json_t *ops, int depth)
{
	if (!g || depth > MAX_DEPTH)
		return true;
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		if (!is_default_domain(n->domain)) {
			size_t len = strlen(n->domain) + strlen(n->op_type ? n->op_type : "") + 2;
			char *s = malloc(len);
			if (!s)
				return false;
			snprintf(s, len, "%s.%s", n->domain, n->op_type ? n->op_type : "");
			bool bad = !array_has_string(ops, s) && json_array_append_new(ops, json_string(s));
			free(s);
			if (bad)
				return false;
		}
		for (size_t a = 0; a < n->n_attribute; a++) {
			const Onnx__AttributeProto *at = n->attribute[a];
			if (!collect_contrib(at->g, ops, depth + 1))
				return false;
			for (size_t k = 0; k < at->n_graphs; k++)
				if (!collect_contrib(at->graphs[k], ops, depth + 1))
					return false;
		}
	}
	return true;
}

enum nn_status quant_verify_describe(const struct onnx_model *m, json_t **out, struct nn_err *e)
{
	*out = NULL;
	const Onnx__ModelProto *p = m->proto;
	json_t *o = json_object(), *opsets = json_array(), *contrib = json_array();
	int bad = !o || !opsets || !contrib;
	for (size_t i = 0; !bad && i < p->n_opset_import; i++) {
		const Onnx__OperatorSetIdProto *id = p->opset_import[i];
		bad |= json_array_append_new(opsets,
					     json_pack("{s:s, s:I}", "domain", id->domain ? id->domain : "",
						       "version", (json_int_t)id->version)) != 0;
	}
	bad |= !bad && !collect_contrib(p->graph, contrib, 0);
	if (!bad) {
		bad |= step_json_set(o, "ir_version", json_integer((json_int_t)p->ir_version));
		bad |= step_json_set(o, "opset", json_integer((json_int_t)onnx_opset(m)));
		bad |= step_json_set(o, "opsets", opsets);
		opsets = NULL;
		bad |= step_json_set(o, "contrib_ops", contrib);
		contrib = NULL;
	}
	json_decref(opsets);
	json_decref(contrib);
	if (bad) {
		json_decref(o);
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for the artifact report");
	}
	*out = o;
	return NN_OK;
}

/* Elements per sample of an input spec compiled at batch `batch`, or -1. */
static int64_t per_sample(const struct tensor *spec, int64_t batch)
{
	int64_t n = tensor_numel(spec);
	if (n < 0 || spec->ndim < 1 || spec->shape[0] != batch || batch <= 0)
		return -1;
	return n / batch;
}

enum nn_status quant_verify_run(const struct onnx_model *m, const struct eval_data *data,
				const char *data_kind, json_t **out, struct nn_err *e)
{
	enum nn_status st;
	struct exec_plan *plan = NULL;
	struct tensor *ins = NULL, *outs = NULL;
	json_t *o = NULL;
	size_t nin = 0, nout = 0;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	*out = NULL;
	if (!m || !m->proto)
		return err_set(e, NN_EINTERNAL, "internal", "", "quant_verify_run: no model");
	if ((st = quant_verify_describe(m, &o, e)) != NN_OK)
		return st;

	int64_t batch = 1;
	const struct tensor *din = data && data->inputs && data->inputs->data ? data->inputs : NULL;
	if (din && din->ndim >= 1 && din->shape[0] > 0)
		batch = din->shape[0] < QUANT_VERIFY_SAMPLES ? din->shape[0] : QUANT_VERIFY_SAMPLES;
	else
		din = NULL;
	if ((st = exec_check_support(m, e)) != NN_OK ||
	    (st = exec_compile(m, batch, &plan, e)) != NN_OK)
		goto fail;
	nin = exec_input_count(plan);
	nout = exec_output_count(plan);
	/* The data feeds a single-input model whose compiled input is [batch, ...]
	 * with the data's per-sample size; anything else runs on zeros (a model
	 * with a fixed batch of 1, several inputs, or integer inputs). */
	if (din) {
		const struct tensor *s0 = nin == 1 ? exec_input_spec(plan, 0) : NULL;
		int64_t per = s0 ? per_sample(s0, batch) : -1;
		int64_t dn = tensor_numel(din);
		if (!s0 || s0->dtype != DT_FLOAT || din->dtype != DT_FLOAT || per < 0 || dn < 0 ||
		    dn / din->shape[0] != per) {
			din = NULL;
			if (batch != 1) {
				exec_free(plan);
				plan = NULL;
				batch = 1;
				if ((st = exec_compile(m, batch, &plan, e)) != NN_OK)
					goto fail;
			}
		}
	}
	ins = calloc(nin ? nin : 1, sizeof *ins);
	outs = calloc(nout ? nout : 1, sizeof *outs);
	if (!ins || !outs) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for the verification run");
		goto fail;
	}
	for (size_t i = 0; i < nin; i++) {
		const struct tensor *s = exec_input_spec(plan, i);
		if (din) {
			tensor_view(&ins[i], DT_FLOAT, s->ndim, s->shape, din->data);
		} else if ((st = tensor_alloc(&ins[i], s->dtype, s->ndim, s->shape, e)) != NN_OK) {
			err_prefix(e, "input '%s' of the verification run", exec_input_name(plan, i));
			goto fail; /* tensor_alloc zero-fills */
		}
	}
	if ((st = exec_run(plan, ins, nin, outs, nout, e)) != NN_OK)
		goto fail;
	bool finite = true;
	for (size_t i = 0; i < nout && finite; i++) {
		if (outs[i].dtype != DT_FLOAT || !outs[i].data)
			continue;
		int64_t n = tensor_numel(&outs[i]);
		const float *v = outs[i].data;
		for (int64_t k = 0; k < n; k++) {
			if (!isfinite(v[k])) {
				finite = false;
				break;
			}
		}
	}
	double ms = step_seconds_since(&t0) * 1e3;
	json_t *ver = json_pack("{s:s, s:s, s:I, s:b, s:f}", "runtime", "nncd", "inputs",
				din ? (data_kind ? data_kind : "data") : "zeros", "samples",
				(json_int_t)batch, "outputs_finite", finite, "ms", ms);
	if (!ver || json_object_set_new(o, "verified", ver)) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for the artifact report");
		goto fail;
	}
	*out = o;
	o = NULL;
	st = NN_OK;
fail:
	if (st != NN_OK && st != NN_ENOMEM)
		err_prefix(e, "the artifact does not run in nncd's executor");
	for (size_t i = 0; ins && i < nin; i++)
		tensor_free(&ins[i]);
	free(ins);
	free(outs);
	exec_free(plan);
	json_decref(o);
	return st;
}
