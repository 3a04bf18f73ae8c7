/* Unit tests for engine/replace_act (the replace_activation step): every pair
 * on the tiny models of data/make_replace_act_models.py and the GELU MLP
 * fixture, the `nodes` filter, refusals with field paths (parse, submit
 * against the model summary, run time), no constant or value_info left
 * behind, and the step inside pipeline_run followed by int8 quantization.
 * The `write` case saves replaced models, an input and the executor's
 * outputs for replace_act_check.py, which compares them with numpy
 * references and ONNX Runtime and runs python3-onnx's checker.
 * Usage: test_replace_act CASE DATA_DIR FIXTURES_DIR [OUT_DIR] */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "exec.h"
#include "onnx_io.h"
#include "pipeline.h"
#include "replace_act.h"
#include "spec.h"

static const char *data_dir = ".", *fixtures_dir = ".";

static struct onnx_model *load_from(const char *dir, const char *name)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	struct onnx_model *m = NULL;
	struct nn_err e = {0};
	if (onnx_load_file(path, &m, &e) != NN_OK)
		fprintf(stderr, "loading %s: %s\n", path, e.message);
	return m;
}

static struct onnx_model *load(const char *name)
{
	return load_from(strncmp(name, "ract_", 5) ? fixtures_dir : data_dir, name);
}

static json_t *parse(const char *text)
{
	json_error_t je;
	json_t *j = json_loads(text, 0, &je);
	if (!j)
		fprintf(stderr, "bad test JSON %s: %s\n", text, je.text);
	return j;
}

static size_t count_op(const struct onnx_model *m, const char *op)
{
	size_t n = 0;
	const Onnx__GraphProto *g = m->proto->graph;
	for (size_t i = 0; i < g->n_node; i++)
		n += !strcmp(g->node[i]->op_type, op);
	return n;
}

static const Onnx__NodeProto *find_node(const struct onnx_model *m, const char *name)
{
	const Onnx__GraphProto *g = m->proto->graph;
	for (size_t i = 0; i < g->n_node; i++)
		if (g->node[i]->name && !strcmp(g->node[i]->name, name))
			return g->node[i];
	return NULL;
}

static double float_attr(const Onnx__NodeProto *n, const char *name)
{
	const Onnx__AttributeProto *a = onnx_find_attr(n, name, NULL);
	return a && a->has_f ? a->f : NAN;
}

/* Every node input is a graph input, an initializer or an earlier node's
 * output; every initializer and Constant output is read; every value_info
 * names a value that exists. */
static int graph_sound(const struct onnx_model *m)
{
	const Onnx__GraphProto *g = m->proto->graph;
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		for (size_t j = 0; j < n->n_input; j++) {
			const char *s = n->input[j];
			bool ok = !*s || onnx_find_initializer(m, s);
			for (size_t k = 0; !ok && k < g->n_input; k++)
				ok = !strcmp(g->input[k]->name, s);
			for (size_t k = 0; !ok && k < i; k++)
				for (size_t o = 0; o < g->node[k]->n_output; o++)
					ok |= !strcmp(g->node[k]->output[o], s);
			CHECK(ok, "node %s reads '%s', which nothing defines before it", n->name, s);
		}
	}
	for (size_t i = 0; i < g->n_initializer + g->n_node; i++) {
		const char *v;
		if (i < g->n_initializer) {
			v = g->initializer[i]->name;
		} else {
			const Onnx__NodeProto *c = g->node[i - g->n_initializer];
			if (strcmp(c->op_type, "Constant"))
				continue;
			v = c->output[0];
		}
		bool read = false;
		for (size_t k = 0; !read && k < g->n_node; k++)
			for (size_t j = 0; j < g->node[k]->n_input; j++)
				read |= !strcmp(g->node[k]->input[j], v);
		CHECK(read, "constant '%s' is read by no node", v);
	}
	for (size_t i = 0; i < g->n_value_info; i++) {
		const char *v = g->value_info[i]->name;
		bool found = false;
		for (size_t k = 0; !found && k < g->n_node; k++)
			for (size_t o = 0; o < g->node[k]->n_output; o++)
				found |= !strcmp(g->node[k]->output[o], v);
		CHECK(found, "value_info '%s' describes a value no node writes", v);
	}
	return 0;
}

static int params_count(const struct onnx_model *m, int64_t *out)
{
	*out = 0;
	const Onnx__GraphProto *g = m->proto->graph;
	for (size_t i = 0; i < g->n_initializer; i++) {
		int64_t n = 1;
		for (size_t d = 0; d < g->initializer[i]->n_dims; d++)
			n *= g->initializer[i]->dims[d];
		*out += n;
	}
	return 0;
}

/* Runs the step given as JSON on m; NN status, *metrics, err. */
static enum nn_status run_step(struct onnx_model *m, const char *step_json, json_t **metrics,
			       struct nn_err *e)
{
	json_t *step = parse(step_json);
	if (!step)
		return NN_EINTERNAL;
	struct ract_params p;
	enum nn_status st = ract_params_parse(step, 0, &p, e);
	*metrics = NULL;
	if (st == NN_OK)
		st = ract_run(m, &p, NULL, metrics, e);
	json_decref(step);
	return st;
}

static const char *jstr(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "(none)";
}

static json_int_t jint(const json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

/* metrics["nodes"][i] is {name, pattern}. */
static int check_replaced(const json_t *metrics, size_t i, const char *name, const char *pattern)
{
	const json_t *n = json_array_get(json_object_get(metrics, "nodes"), i);
	CHECK(n, "metrics.nodes[%zu] missing", i);
	CHECK(!strcmp(jstr(n, "name"), name), "nodes[%zu].name %s, want %s", i, jstr(n, "name"),
	      name);
	CHECK(!strcmp(jstr(n, "pattern"), pattern), "nodes[%zu].pattern %s, want %s", i,
	      jstr(n, "pattern"), pattern);
	return 0;
}

/* ---- parsing and submit-time checks ---- */

/* spec_validate on {"steps": [STEP]} fails on `field` with a message holding `needle`. */
static int refused(const char *step, const json_t *summary, const char *field, const char *needle)
{
	char text[1024];
	snprintf(text, sizeof text, "{\"steps\":[%s]}", step);
	json_t *spec = parse(text);
	CHECK(spec, "json");
	struct nn_err e = {0};
	enum nn_status st = spec_validate(spec, summary, &e);
	json_decref(spec);
	CHECK(st == NN_EINVAL, "%s: status %d, want EINVAL (%s)", step, st, e.message);
	CHECK(!strcmp(e.field, field), "%s: field '%s', want '%s' (%s)", step, e.field, field,
	      e.message);
	CHECK(strstr(e.message, needle), "%s: message '%s' lacks '%s'", step, e.message, needle);
	return 0;
}

static int accepted(const char *steps, const json_t *summary)
{
	char text[2048];
	snprintf(text, sizeof text, "{\"steps\":[%s]}", steps);
	json_t *spec = parse(text);
	CHECK(spec, "json");
	struct nn_err e = {0};
	enum nn_status st = spec_validate(spec, summary, &e);
	json_decref(spec);
	CHECK(st == NN_OK, "%s refused: %s (%s)", steps, e.message, e.field);
	return 0;
}

static int test_params_parse(void)
{
	const char *pairs = "supported pairs: Gelu -> Relu";
	if (refused("{\"op\":\"replace_activation\",\"from\":\"Gelu\",\"to\":\"HardSwish\"}", NULL,
		    "steps[0].to", "1.702") ||
	    refused("{\"op\":\"replace_activation\",\"from\":\"Gelu\",\"to\":\"Tanh\"}", NULL,
		    "steps[0].to", pairs) ||
	    refused("{\"op\":\"replace_activation\",\"from\":\"Softmax\",\"to\":\"Relu\"}", NULL,
		    "steps[0].from", pairs) ||
	    refused("{\"op\":\"replace_activation\",\"to\":\"Relu\"}", NULL, "steps[0].from",
		    "missing required field 'from'") ||
	    refused("{\"op\":\"replace_activation\",\"from\":\"Tanh\"}", NULL, "steps[0].to",
		    "missing required field 'to'") ||
	    refused("{\"op\":\"replace_activation\",\"from\":\"Gelu\",\"to\":\"Relu\",\"alpha\":0.1}",
		    NULL, "steps[0].alpha", "LeakyRelu") ||
	    refused("{\"op\":\"replace_activation\",\"from\":\"Relu\",\"to\":\"LeakyRelu\","
		    "\"alpha\":1.5}",
		    NULL, "steps[0].alpha", "(0, 1)") ||
	    refused("{\"op\":\"replace_activation\",\"from\":\"Gelu\",\"to\":\"Relu\",\"nodes\":[]}",
		    NULL, "steps[0].nodes", "empty") ||
	    refused("{\"op\":\"replace_activation\",\"from\":\"Gelu\",\"to\":\"Relu\",\"nodes\":\"a\"}",
		    NULL, "steps[0].nodes", "array") ||
	    refused("{\"op\":\"replace_activation\",\"from\":\"Gelu\",\"to\":\"Relu\","
		    "\"nodes\":[\"a\",3]}",
		    NULL, "steps[0].nodes[1]", "node name") ||
	    refused("{\"op\":\"replace_activation\",\"from\":\"Gelu\",\"to\":\"Relu\","
		    "\"nodes\":[\"a\",\"b\",\"a\"]}",
		    NULL, "steps[0].nodes[2]", "twice") ||
	    refused("{\"op\":\"replace_activation\",\"from\":\"Gelu\",\"to\":\"Relu\",\"x\":1}", NULL,
		    "steps[0].x", "unknown field") ||
	    refused("{\"op\":\"replace_activations\"}", NULL, "steps[0].op", "replace_activation"))
		return 1;
	if (accepted("{\"op\":\"replace_activation\",\"from\":\"SiLU\",\"to\":\"HardSwish\"},"
		     "{\"op\":\"replace_activation\",\"from\":\"Tanh\",\"to\":\"Clip\"},"
		     "{\"op\":\"replace_activation\",\"from\":\"Sigmoid\",\"to\":\"HardSigmoid\"},"
		     "{\"op\":\"replace_activation\",\"from\":\"Relu\",\"to\":\"LeakyRelu\","
		     "\"alpha\":0.2,\"nodes\":[\"r1\"]}",
		     NULL))
		return 1;
	json_t *step = parse("{\"op\":\"replace_activation\",\"from\":\"Relu\",\"to\":\"LeakyRelu\"}");
	struct ract_params p;
	struct nn_err e = {0};
	CHECK(ract_params_parse(step, 3, &p, &e) == NN_OK, "%s", e.message);
	CHECK(p.alpha == 0.01 && p.index == 3 && !p.nodes, "defaults: alpha %g", p.alpha);
	json_decref(step);
	return 0;
}

static json_t *summary_of(const char *dir, const char *name)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return NULL;
	json_t *s = NULL;
	struct nn_err e = {0};
	if (onnx_summarize_fd(fd, &s, &e) != NN_OK)
		fprintf(stderr, "summary of %s: %s\n", path, e.message);
	close(fd);
	return s;
}

static int test_submit_checks(void)
{
	json_t *lenet = summary_of(fixtures_dir, "lenet300.onnx");
	json_t *gelu = summary_of(fixtures_dir, "gelu_mlp.onnx");
	json_t *mix = summary_of(data_dir, "ract_mix.onnx");
	CHECK(lenet && gelu && mix, "summaries");
	int rc = 1;
	const char *g2r = "{\"op\":\"replace_activation\",\"from\":\"Gelu\",\"to\":\"Relu\"}";
	const char *r2l = "{\"op\":\"replace_activation\",\"from\":\"Relu\",\"to\":\"LeakyRelu\"}";
	const char *quant = "{\"op\":\"quantize\",\"scheme\":\"int8\"}";
	char two[512];
	if (refused(g2r, lenet, "steps[0].from", "no Gelu activation"))
		goto out;
	if (refused(r2l, gelu, "steps[0].from", "no Relu node"))
		goto out;
	if (refused("{\"op\":\"replace_activation\",\"from\":\"Swish\",\"to\":\"HardSwish\"}",
		    gelu, "steps[0].from", "Sigmoid"))
		goto out;
	/* HardSwish needs opset 14, and this model cannot be raised past 13 */
	json_t *stuck = summary_of(data_dir, "opset_reject_softmax_11.onnx");
	CHECK(stuck, "summary");
	int bad = refused("{\"op\":\"replace_activation\",\"from\":\"Swish\",\"to\":"
			  "\"HardSwish\"}",
			  stuck, "steps[0].to", "HardSwish needs opset 14");
	json_decref(stuck);
	if (bad)
		goto out;
	/* a Relu written by an earlier step is not in the summary: accepted */
	snprintf(two, sizeof two, "%s,%s", g2r, r2l);
	if (accepted(two, gelu))
		goto out;
	/* activations only: after quantize, and before it */
	snprintf(two, sizeof two, "%s,%s", quant, g2r);
	if (accepted(two, gelu))
		goto out;
	snprintf(two, sizeof two, "%s,%s", g2r, quant);
	if (accepted(two, gelu))
		goto out;
	const char *all[] = {
		g2r, r2l, "{\"op\":\"replace_activation\",\"from\":\"Swish\",\"to\":\"HardSwish\"}",
		"{\"op\":\"replace_activation\",\"from\":\"Tanh\",\"to\":\"HardTanh\"}",
		"{\"op\":\"replace_activation\",\"from\":\"Sigmoid\",\"to\":\"HardSigmoid\"}"};
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
		if (accepted(all[i], mix))
			goto out;
	rc = 0;
out:
	json_decref(lenet);
	json_decref(gelu);
	json_decref(mix);
	return rc;
}

/* ---- each pair ---- */

static int test_gelu_to_relu(void)
{
	struct onnx_model *m = load("ract_mix.onnx");
	CHECK(m, "load");
	int64_t before, after;
	params_count(m, &before);
	json_t *mt;
	struct nn_err e = {0};
	CHECK(run_step(m, "{\"op\":\"replace_activation\",\"from\":\"Gelu\",\"to\":\"Relu\"}", &mt,
		       &e) == NN_OK,
	      "%s", e.message);
	params_count(m, &after);
	CHECK(jint(mt, "replaced") == 3, "replaced %lld", (long long)jint(mt, "replaced"));
	if (check_replaced(mt, 0, "/act0/Erf", "Erf pattern") ||
	    check_replaced(mt, 1, "/act1/Erf", "Erf pattern") ||
	    check_replaced(mt, 2, "/act2/Tanh", "tanh pattern"))
		return 1;
	CHECK(!strcmp(jstr(mt, "from"), "Gelu") && !strcmp(jstr(mt, "to"), "Relu"), "from/to");
	/* act1's three initializer constants are gone; Constant nodes too */
	CHECK(jint(mt, "parameters_before") == before + 0 && before - after == 3 &&
		      jint(mt, "parameters_after") == after,
	      "parameters %lld -> %lld (metrics %lld -> %lld)", (long long)before, (long long)after,
	      (long long)jint(mt, "parameters_before"), (long long)jint(mt, "parameters_after"));
	CHECK(count_op(m, "Erf") == 0 && count_op(m, "Constant") == 0 && count_op(m, "Div") == 0,
	      "pattern nodes left");
	CHECK(count_op(m, "Relu") == 4 && count_op(m, "Tanh") == 1 && count_op(m, "Sigmoid") == 2,
	      "ops after: Relu %zu Tanh %zu Sigmoid %zu", count_op(m, "Relu"), count_op(m, "Tanh"),
	      count_op(m, "Sigmoid"));
	/* the other Muls: act5's Swish only */
	CHECK(count_op(m, "Mul") == 1, "Mul %zu", count_op(m, "Mul"));
	const Onnx__NodeProto *r = find_node(m, "/act0/Erf");
	CHECK(r && !strcmp(r->op_type, "Relu") && r->n_input == 1 &&
		      !strcmp(r->input[0], "/fc0/Gemm_output_0") &&
		      !strcmp(r->output[0], "/act0/Mul_1_output_0") && r->n_attribute == 0,
	      "act0's replacement");
	r = find_node(m, "/act1/Erf");
	CHECK(r && !strcmp(r->op_type, "Relu") && !strcmp(r->output[0], "/act1/Mul_2_output_0"),
	      "act1's replacement");
	/* the Erf output's value_info went with it; x's declared type stayed */
	const Onnx__GraphProto *g = m->proto->graph;
	CHECK(g->n_value_info == 1 && !strcmp(g->value_info[0]->name, "/fc1/Gemm_output_0"),
	      "value_info: %zu", g->n_value_info);
	int rc = graph_sound(m);
	json_decref(mt);
	onnx_free(m);
	return rc;
}

static int test_gelu_fixture(void)
{
	struct onnx_model *m = load("gelu_mlp.onnx");
	CHECK(m, "load");
	json_t *mt;
	struct nn_err e = {0};
	CHECK(run_step(m, "{\"op\":\"replace_activation\",\"from\":\"Gelu\",\"to\":\"Relu\"}", &mt,
		       &e) == NN_OK,
	      "%s", e.message);
	CHECK(jint(mt, "replaced") == 2, "replaced");
	if (check_replaced(mt, 0, "/Erf", "Erf pattern") ||
	    check_replaced(mt, 1, "/Erf_1", "Erf pattern"))
		return 1;
	CHECK(m->proto->graph->n_node == 5 && count_op(m, "Relu") == 2 && count_op(m, "Gemm") == 3,
	      "nodes %zu", m->proto->graph->n_node);
	CHECK(jint(mt, "parameters_before") == jint(mt, "parameters_after"), "parameters changed");
	int rc = graph_sound(m);
	json_decref(mt);
	onnx_free(m);
	return rc;
}

static int test_gelu_op_opset20(void)
{
	struct onnx_model *m = load("ract_gelu20.onnx");
	CHECK(m, "load");
	json_t *mt;
	struct nn_err e = {0};
	CHECK(run_step(m, "{\"op\":\"replace_activation\",\"from\":\"Gelu\",\"to\":\"Relu\"}", &mt,
		       &e) == NN_OK,
	      "%s", e.message);
	if (check_replaced(mt, 0, "/act0/Gelu", "Gelu op") ||
	    check_replaced(mt, 1, "/act1/Gelu", "Gelu op"))
		return 1;
	const Onnx__NodeProto *r = find_node(m, "/act1/Gelu");
	CHECK(r && !strcmp(r->op_type, "Relu") && r->n_attribute == 0,
	      "approximate attribute must go");
	CHECK(count_op(m, "Gelu") == 0 && jint(mt, "opset") == 20, "gelu left / opset");
	int rc = graph_sound(m);
	json_decref(mt);
	onnx_free(m);
	return rc;
}

static int test_sigmoid_to_hardsigmoid(void)
{
	struct onnx_model *m = load("ract_mix.onnx");
	CHECK(m, "load");
	json_t *mt;
	struct nn_err e = {0};
	CHECK(run_step(m,
		       "{\"op\":\"replace_activation\",\"from\":\"Sigmoid\",\"to\":\"HardSigmoid\"}",
		       &mt, &e) == NN_OK,
	      "%s", e.message);
	/* the Sigmoid inside x * Sigmoid(x) is a Sigmoid too */
	CHECK(jint(mt, "replaced") == 2, "replaced %lld", (long long)jint(mt, "replaced"));
	if (check_replaced(mt, 0, "/act3/Sigmoid", "Sigmoid op") ||
	    check_replaced(mt, 1, "/act5/Sigmoid", "Sigmoid op"))
		return 1;
	const Onnx__NodeProto *r = find_node(m, "/act3/Sigmoid");
	CHECK(r && !strcmp(r->op_type, "HardSigmoid") && r->n_attribute == 2, "node");
	CHECK(fabs(float_attr(r, "alpha") - 1.0 / 6) < 1e-7 && float_attr(r, "beta") == 0.5f,
	      "alpha %g beta %g", float_attr(r, "alpha"), float_attr(r, "beta"));
	CHECK(fabs(json_real_value(json_object_get(mt, "alpha")) - 1.0 / 6) < 1e-12, "metrics alpha");
	CHECK(count_op(m, "Sigmoid") == 0 && count_op(m, "Erf") == 2, "ops after");
	CHECK(jint(mt, "parameters_before") == jint(mt, "parameters_after"), "parameters");
	int rc = graph_sound(m);
	json_decref(mt);
	onnx_free(m);
	return rc;
}

static int test_tanh_to_clip(void)
{
	struct onnx_model *m = load("ract_mix.onnx");
	CHECK(m, "load");
	json_t *mt;
	struct nn_err e = {0};
	CHECK(run_step(m, "{\"op\":\"replace_activation\",\"from\":\"Tanh\",\"to\":\"HardTanh\"}",
		       &mt, &e) == NN_OK,
	      "%s", e.message);
	CHECK(jint(mt, "replaced") == 2, "the tanh-GELU's Tanh and act4");
	if (check_replaced(mt, 0, "/act2/Tanh", "Tanh op") ||
	    check_replaced(mt, 1, "/act4/Tanh", "Tanh op"))
		return 1;
	/* one shared pair of bounds */
	CHECK(jint(mt, "parameters_after") == jint(mt, "parameters_before") + 2, "parameters");
	const Onnx__NodeProto *a = find_node(m, "/act2/Tanh"), *b = find_node(m, "/act4/Tanh");
	CHECK(a && b && !strcmp(a->op_type, "Clip") && a->n_input == 3 && b->n_input == 3 &&
		      !strcmp(a->input[1], b->input[1]) && !strcmp(a->input[2], b->input[2]),
	      "Clip inputs");
	struct tensor lo, hi;
	CHECK(onnx_initializer_view(onnx_find_initializer(m, a->input[1]), &lo, &e) == NN_OK &&
		      onnx_initializer_view(onnx_find_initializer(m, a->input[2]), &hi, &e) == NN_OK,
	      "bounds: %s", e.message);
	CHECK(lo.ndim == 0 && ((float *)lo.data)[0] == -1.0f && ((float *)hi.data)[0] == 1.0f,
	      "bounds values");
	CHECK(count_op(m, "Tanh") == 0, "Tanh left");
	int rc = graph_sound(m);
	json_decref(mt);
	onnx_free(m);
	return rc;
}

static int test_swish_to_hardswish(void)
{
	struct onnx_model *m = load("ract_mix.onnx");
	CHECK(m, "load");
	json_t *mt;
	struct nn_err e = {0};
	CHECK(run_step(m, "{\"op\":\"replace_activation\",\"from\":\"SiLU\",\"to\":\"HardSwish\"}",
		       &mt, &e) == NN_OK,
	      "%s", e.message);
	CHECK(jint(mt, "replaced") == 1 && !strcmp(jstr(mt, "from"), "Swish"), "replaced");
	if (check_replaced(mt, 0, "/act5/Sigmoid", "Swish pattern"))
		return 1;
	const Onnx__NodeProto *r = find_node(m, "/act5/Sigmoid");
	CHECK(r && !strcmp(r->op_type, "HardSwish") && r->n_input == 1 &&
		      !strcmp(r->output[0], "/act5/Mul_output_0"),
	      "node");
	CHECK(onnx_opset(m) == 14 && jint(mt, "opset") == 14, "opset %lld", (long long)onnx_opset(m));
	CHECK(count_op(m, "Sigmoid") == 1 && !find_node(m, "/act5/Mul"), "act3 stays; Mul goes");
	int rc = graph_sound(m);
	json_decref(mt);
	onnx_free(m);
	return rc;
}

static int test_relu_to_leakyrelu(void)
{
	struct onnx_model *m = load("ract_mix.onnx");
	CHECK(m, "load");
	json_t *mt;
	struct nn_err e = {0};
	CHECK(run_step(m,
		       "{\"op\":\"replace_activation\",\"from\":\"Relu\",\"to\":\"LeakyRelu\","
		       "\"alpha\":0.2}",
		       &mt, &e) == NN_OK,
	      "%s", e.message);
	if (check_replaced(mt, 0, "/act6/Relu", "Relu op"))
		return 1;
	const Onnx__NodeProto *r = find_node(m, "/act6/Relu");
	CHECK(r && !strcmp(r->op_type, "LeakyRelu") && float_attr(r, "alpha") == 0.2f, "node");
	CHECK(onnx_opset(m) == 13, "opset kept");
	int rc = graph_sound(m);
	json_decref(mt);
	onnx_free(m);
	return rc;
}

static int test_old_opset(void)
{
	struct onnx_model *m = load("ract_old9.onnx");
	CHECK(m, "load");
	json_t *mt;
	struct nn_err e = {0};
	CHECK(run_step(m, "{\"op\":\"replace_activation\",\"from\":\"Tanh\",\"to\":\"Clip\"}", &mt,
		       &e) == NN_OK,
	      "%s", e.message);
	const Onnx__NodeProto *r = find_node(m, "/act0/Tanh");
	CHECK(r && !strcmp(r->op_type, "Clip") && r->n_input == 1 && float_attr(r, "min") == -1.0f &&
		      float_attr(r, "max") == 1.0f,
	      "Clip-6 takes attributes");
	CHECK(jint(mt, "parameters_after") == jint(mt, "parameters_before"), "no bounds added");
	CHECK(jint(mt, "replaced") == 2, "act0 and the tanh-GELU's Tanh");
	json_decref(mt);
	struct onnx_model *g = load("ract_old9.onnx");
	CHECK(g, "load");
	CHECK(run_step(g, "{\"op\":\"replace_activation\",\"from\":\"Gelu\",\"to\":\"Relu\"}", &mt,
		       &e) == NN_OK,
	      "%s", e.message);
	if (check_replaced(mt, 0, "/act2/Tanh", "tanh pattern"))
		return 1;
	CHECK(count_op(g, "Mul") == 1 && count_op(g, "Constant") == 0 && count_op(g, "Tanh") == 1,
	      "tanh pattern left nodes behind");
	if (graph_sound(g))
		return 1;
	json_decref(mt);
	onnx_free(g);
	CHECK(run_step(m, "{\"op\":\"replace_activation\",\"from\":\"Swish\",\"to\":\"HardSwish\"}",
		       &mt, &e) == NN_OK,
	      "%s", e.message);
	CHECK(onnx_opset(m) == 14 && count_op(m, "HardSwish") == 1 && count_op(m, "Sigmoid") == 0,
	      "opset %lld", (long long)onnx_opset(m));
	/* raising 9 -> 14 rewrote Clip-6 to Clip with bound inputs */
	r = find_node(m, "/act0/Tanh");
	CHECK(r && !strcmp(r->op_type, "Clip") && r->n_input == 3, "Clip after the raise");
	int rc = graph_sound(m);
	json_decref(mt);
	onnx_free(m);
	return rc;
}

/* ---- nodes filter and failures ---- */

static int test_nodes_filter(void)
{
	struct onnx_model *m = load("ract_mix.onnx");
	CHECK(m, "load");
	json_t *mt;
	struct nn_err e = {0};
	/* any node of a pattern names it: act1 by its Add, act2 by its Tanh */
	CHECK(run_step(m,
		       "{\"op\":\"replace_activation\",\"from\":\"Gelu\",\"to\":\"Relu\","
		       "\"nodes\":[\"/act1/Add\",\"/act2/Tanh\"]}",
		       &mt, &e) == NN_OK,
	      "%s", e.message);
	CHECK(jint(mt, "replaced") == 2, "replaced %lld", (long long)jint(mt, "replaced"));
	if (check_replaced(mt, 0, "/act1/Erf", "Erf pattern") ||
	    check_replaced(mt, 1, "/act2/Tanh", "tanh pattern"))
		return 1;
	CHECK(count_op(m, "Erf") == 1 && find_node(m, "/act0/Erf") &&
		      !strcmp(find_node(m, "/act0/Erf")->op_type, "Erf"),
	      "act0 must stay");
	CHECK(count_op(m, "Constant") == 3, "act0's Constants stay: %zu", count_op(m, "Constant"));
	if (graph_sound(m))
		return 1;
	json_decref(mt);
	onnx_free(m);

	m = load("ract_mix.onnx");
	CHECK(run_step(m,
		       "{\"op\":\"replace_activation\",\"from\":\"Gelu\",\"to\":\"Relu\","
		       "\"nodes\":[\"/act0/Mul_1\",\"/fc3/Gemm\"]}",
		       &mt, &e) == NN_EINVAL,
	      "a Gemm is no GELU");
	CHECK(!strcmp(e.field, "steps[0].nodes[1]") && strstr(e.message, "(Gemm)") &&
		      strstr(e.message, "not part of a Gelu"),
	      "%s: %s", e.field, e.message);
	CHECK(run_step(m,
		       "{\"op\":\"replace_activation\",\"from\":\"Sigmoid\",\"to\":\"HardSigmoid\","
		       "\"nodes\":[\"nope\"]}",
		       &mt, &e) == NN_EINVAL,
	      "unknown name");
	CHECK(!strcmp(e.field, "steps[0].nodes[0]") && strstr(e.message, "no node named 'nope'"),
	      "%s: %s", e.field, e.message);
	onnx_free(m);
	return 0;
}

static int test_nothing_to_replace(void)
{
	struct onnx_model *m = load("lenet300.onnx");
	CHECK(m, "load");
	json_t *mt;
	struct nn_err e = {0};
	CHECK(run_step(m, "{\"op\":\"replace_activation\",\"from\":\"Gelu\",\"to\":\"Relu\"}", &mt,
		       &e) == NN_EINVAL && !mt,
	      "no GELU in lenet300");
	CHECK(!strcmp(e.code, "nothing_to_replace") && !strcmp(e.field, "steps[0].from") &&
		      strstr(e.message, "nothing was replaced"),
	      "%s %s: %s", e.code, e.field, e.message);
	onnx_free(m);
	/* look-alikes: x/2 instead of x/sqrt(2); an Erf pattern whose Add is a graph
	 * output; a Sigmoid read besides x * s */
	m = load("ract_lookalike.onnx");
	CHECK(m, "load");
	size_t nodes = m->proto->graph->n_node;
	CHECK(run_step(m, "{\"op\":\"replace_activation\",\"from\":\"Gelu\",\"to\":\"Relu\"}", &mt,
		       &e) == NN_EINVAL,
	      "look-alike GELUs replaced");
	CHECK(run_step(m, "{\"op\":\"replace_activation\",\"from\":\"Swish\",\"to\":\"HardSwish\"}",
		       &mt, &e) == NN_EINVAL,
	      "look-alike Swish replaced");
	CHECK(strstr(e.message, "x * Sigmoid(x)"), "%s", e.message);
	CHECK(m->proto->graph->n_node == nodes && onnx_opset(m) == 13, "model changed");
	/* the Sigmoid itself is still a Sigmoid */
	CHECK(run_step(m,
		       "{\"op\":\"replace_activation\",\"from\":\"Sigmoid\",\"to\":\"HardSigmoid\"}",
		       &mt, &e) == NN_OK && jint(mt, "replaced") == 1,
	      "%s", e.message);
	json_decref(mt);
	onnx_free(m);
	return 0;
}

/* ---- through the pipeline ---- */

struct steps_seen {
	json_t *metrics[4];
};

static void on_step(void *ud, size_t index, const char *op, const char *state,
		    const json_t *metrics)
{
	struct steps_seen *s = ud;
	(void)op;
	(void)state;
	if (metrics && index < 4)
		s->metrics[index] = json_deep_copy(metrics);
}

static int test_pipeline_then_quantize(void)
{
	struct onnx_model *m = load("gelu_mlp.onnx");
	CHECK(m, "load");
	json_t *spec = parse("{\"steps\":[{\"op\":\"replace_activation\",\"from\":\"Gelu\","
			     "\"to\":\"Relu\"},{\"op\":\"quantize\",\"scheme\":\"int8\"}]}");
	struct steps_seen seen;
	memset(&seen, 0, sizeof seen);
	struct pipeline_hooks hooks = {.ud = &seen, .on_step = on_step};
	struct nn_err e = {0};
	CHECK(pipeline_run(m, spec, &hooks, &e) == NN_OK, "%s", e.message);
	CHECK(seen.metrics[0] && jint(seen.metrics[0], "replaced") == 2, "step 0 metrics");
	CHECK(seen.metrics[1] && json_object_get(seen.metrics[1], "artifact"), "verified artifact");
	CHECK(count_op(m, "Relu") == 2 && count_op(m, "Erf") == 0 &&
		      count_op(m, "DequantizeLinear") == 3,
	      "ops: Relu %zu DQ %zu", count_op(m, "Relu"), count_op(m, "DequantizeLinear"));
	for (int i = 0; i < 4; i++)
		json_decref(seen.metrics[i]);
	json_decref(spec);
	onnx_free(m);

	/* a run-time refusal keeps its field path through pipeline_run */
	m = load("gelu_mlp.onnx");
	spec = parse("{\"steps\":[{\"op\":\"quantize\",\"scheme\":\"int8\"},{\"op\":"
		     "\"replace_activation\",\"from\":\"Gelu\",\"to\":\"Relu\",\"nodes\":[\"/Add\","
		     "\"/fc2/Gemm\"]}]}");
	memset(&seen, 0, sizeof seen);
	CHECK(pipeline_run(m, spec, &hooks, &e) == NN_EINVAL, "nodes[1] is a Gemm");
	CHECK(!strcmp(e.field, "steps[1].nodes[1]") && strstr(e.message, "steps[1] (replace_activation)"),
	      "%s: %s", e.field, e.message);
	for (int i = 0; i < 4; i++)
		json_decref(seen.metrics[i]);
	json_decref(spec);
	onnx_free(m);
	return 0;
}

/* ---- outputs for replace_act_check.py ---- */

static int write_floats(const char *path, const float *x, size_t n)
{
	FILE *f = fopen(path, "wb");
	CHECK(f, "open %s", path);
	size_t w = fwrite(x, sizeof *x, n, f);
	CHECK(fclose(f) == 0 && w == n, "write %s", path);
	return 0;
}

#define WRITE_ROWS 16

/* Saves the replaced model as OUT/NAME.onnx, a deterministic input in
 * [-3, 3) as NAME.in.bin and the executor's output as NAME.out.bin. */
static int write_case(const char *out_dir, const char *name, const char *model,
		      const char *step)
{
	struct onnx_model *m = load(model);
	CHECK(m, "load %s", model);
	json_t *mt;
	struct nn_err e = {0};
	CHECK(run_step(m, step, &mt, &e) == NN_OK, "%s: %s", name, e.message);
	json_decref(mt);
	char path[1200];
	snprintf(path, sizeof path, "%s/%s.onnx", out_dir, name);
	CHECK(onnx_save_file(m, path, &e) == NN_OK, "%s", e.message);
	struct exec_plan *p = NULL;
	CHECK(exec_compile(m, WRITE_ROWS, &p, &e) == NN_OK, "%s: %s", name, e.message);
	struct tensor in = *exec_input_spec(p, 0), out;
	size_t n = (size_t)tensor_numel(&in);
	float *x = malloc(n * sizeof *x);
	CHECK(x, "oom");
	uint32_t s = 12345;
	for (size_t i = 0; i < n; i++) {
		s = s * 1103515245u + 12345u;
		x[i] = (float)((s >> 8) & 0xFFFF) / 65536.0f * 6.0f - 3.0f;
	}
	in.data = x;
	CHECK(exec_run(p, &in, 1, &out, 1, &e) == NN_OK, "%s: %s", name, e.message);
	snprintf(path, sizeof path, "%s/%s.in.bin", out_dir, name);
	int rc = write_floats(path, x, n);
	snprintf(path, sizeof path, "%s/%s.out.bin", out_dir, name);
	rc |= write_floats(path, out.data, (size_t)tensor_numel(&out));
	free(x);
	exec_free(p);
	onnx_free(m);
	return rc;
}

static int test_write(const char *out_dir)
{
	static const struct {
		const char *name, *model, *step;
	} cases[] = {
		{"mix_gelu_relu", "ract_mix.onnx", "{\"op\":\"replace_activation\",\"from\":\"Gelu\",\"to\":\"Relu\"}"},
		{"mix_sigmoid_hardsigmoid", "ract_mix.onnx", "{\"op\":\"replace_activation\",\"from\":\"Sigmoid\",\"to\":\"HardSigmoid\"}"},
		{"mix_tanh_hardtanh", "ract_mix.onnx", "{\"op\":\"replace_activation\",\"from\":\"Tanh\",\"to\":\"HardTanh\"}"},
		{"mix_swish_hardswish", "ract_mix.onnx", "{\"op\":\"replace_activation\",\"from\":\"Swish\",\"to\":\"HardSwish\"}"},
		{"mix_relu_leakyrelu", "ract_mix.onnx", "{\"op\":\"replace_activation\",\"from\":\"Relu\",\"to\":\"LeakyRelu\",\"alpha\":0.2}"},
		{"mix_gelu_relu_nodes", "ract_mix.onnx", "{\"op\":\"replace_activation\",\"from\":\"Gelu\",\"to\":\"Relu\",\"nodes\":[\"/act1/Mul_1\",\"/act2/Mul\"]}"},
		{"gelu20_gelu_relu", "ract_gelu20.onnx", "{\"op\":\"replace_activation\",\"from\":\"Gelu\",\"to\":\"Relu\"}"},
		{"old9_tanh_hardtanh", "ract_old9.onnx", "{\"op\":\"replace_activation\",\"from\":\"Tanh\",\"to\":\"HardTanh\"}"},
		{"old9_swish_hardswish", "ract_old9.onnx", "{\"op\":\"replace_activation\",\"from\":\"Swish\",\"to\":\"HardSwish\"}"},
		{"old9_gelu_relu", "ract_old9.onnx", "{\"op\":\"replace_activation\",\"from\":\"Gelu\",\"to\":\"Relu\"}"},
		{"gelu_mlp_gelu_relu", "gelu_mlp.onnx", "{\"op\":\"replace_activation\",\"from\":\"Gelu\",\"to\":\"Relu\"}"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (write_case(out_dir, cases[i].name, cases[i].model, cases[i].step))
			return 1;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s CASE DATA_DIR FIXTURES_DIR [OUT_DIR]\n", argv[0]);
		return 2;
	}
	data_dir = argv[2];
	fixtures_dir = argv[3];
	if (!strcmp(argv[1], "write"))
		return argc > 4 ? test_write(argv[4]) : 2;
	static const struct {
		const char *name;
		int (*fn)(void);
	} cases[] = {
		{"params_parse", test_params_parse},
		{"submit_checks", test_submit_checks},
		{"gelu_to_relu", test_gelu_to_relu},
		{"gelu_fixture", test_gelu_fixture},
		{"gelu_op_opset20", test_gelu_op_opset20},
		{"sigmoid_to_hardsigmoid", test_sigmoid_to_hardsigmoid},
		{"tanh_to_clip", test_tanh_to_clip},
		{"swish_to_hardswish", test_swish_to_hardswish},
		{"relu_to_leakyrelu", test_relu_to_leakyrelu},
		{"old_opset", test_old_opset},
		{"nodes_filter", test_nodes_filter},
		{"nothing_to_replace", test_nothing_to_replace},
		{"pipeline_then_quantize", test_pipeline_then_quantize},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (!strcmp(argv[1], cases[i].name))
			return cases[i].fn();
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}
