/* Unit tests for engine/shrink + engine/structured: parameter counts after
 * structured pruning of the fixtures, residual groups, Concat remapping,
 * MatMul/GELU and depthwise chains, layers feeding a graph output left alone,
 * global scope / overrides / keep_first_last / L2 ranking, parameter parsing,
 * and ONNX Runtime + onnx.checker on the results.
 * Usage: test_structured CASE FIXTURES_DIR DATA_DIR [NODE MODULES SCRIPT] */
#include <jansson.h>

#include "structured.h"
#include "structured_util.h"

static const char *fixtures = ".", *data_dir = ".";

static json_t *run_structured(struct onnx_model *m, const char *spec_json, int *rc)
{
	json_error_t je;
	json_t *spec = json_loads(spec_json, 0, &je);
	struct prune_params p;
	struct nn_err e = {0};
	json_t *metrics = NULL;
	*rc = 1;
	if (!spec || prune_params_parse(spec, 0, &p, &e) != NN_OK) {
		fprintf(stderr, "parse %s: %s\n", spec_json, e.message);
		json_decref(spec);
		return NULL;
	}
	if (prune_run(m, &p, NULL, &metrics, &e) != NN_OK) {
		fprintf(stderr, "prune_run %s: %s (%s)\n", spec_json, e.message, e.code);
		json_decref(spec);
		return NULL;
	}
	json_decref(spec);
	*rc = 0;
	return metrics;
}

static struct onnx_model *fixture(const char *name)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", fixtures, name);
	return load_model(path);
}

static struct onnx_model *data_model(const char *name)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", data_dir, name);
	return load_model(path);
}

static int64_t dim(const struct onnx_model *m, const char *init, int d)
{
	Onnx__TensorProto *t = onnx_find_initializer(m, init);
	return t && d < (int)t->n_dims ? t->dims[d] : -1;
}

/* LeNet-300-100 at ratio 0.5: fc1 300 -> 150, fc2 100 -> 50, fc3 feeds the
 * output and keeps its 10. Dense parameters 266,610 -> 125,810. */
static int test_lenet300_half(void)
{
	struct onnx_model *m = fixture("lenet300.onnx");
	CHECK(m, "fixture");
	int rc;
	json_t *mt = run_structured(m, "{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":0.5}", &rc);
	CHECK(mt, "structured ran");
	CHECK(jint(mt, "parameters_before") == 266610, "before %lld", (long long)jint(mt, "parameters_before"));
	CHECK(jint(mt, "parameters_after") == 125810, "after %lld", (long long)jint(mt, "parameters_after"));
	CHECK(jint(mt, "bytes_after") < jint(mt, "bytes_before") / 2 + 1000, "bytes shrink");
	CHECK(dim(m, "fc1.weight", 0) == 150 && dim(m, "fc1.weight", 1) == 784, "fc1 [150,784]");
	CHECK(dim(m, "fc1.bias", 0) == 150, "fc1 bias");
	CHECK(dim(m, "fc2.weight", 0) == 50 && dim(m, "fc2.weight", 1) == 150, "fc2 [50,150]");
	CHECK(dim(m, "fc3.weight", 0) == 10 && dim(m, "fc3.weight", 1) == 50, "fc3 [10,50]");
	json_t *l3 = find_layer(mt, "fc3.weight"), *l1 = find_layer(mt, "fc1.weight");
	CHECK(l1 && !strcmp(json_string_value(json_object_get(l1, "status")), "pruned"), "fc1 pruned");
	CHECK(jint(l1, "channels_before") == 300 && jint(l1, "channels_after") == 150, "fc1 channels");
	CHECK(jint(l1, "parameters_before") == 235500 && jint(l1, "parameters_after") == 117750,
	      "fc1 parameters %lld", (long long)jint(l1, "parameters_after"));
	CHECK(l3 && !strcmp(json_string_value(json_object_get(l3, "status")), "skipped") &&
		      strstr(json_string_value(json_object_get(l3, "reason")), "graph output"),
	      "fc3 skipped because it feeds the graph output");
	/* the kept neurons of fc2 are its 50 largest L1 rows (of the weights
	 * before fc1's pruning sliced its inputs) */
	json_decref(mt);
	onnx_free(m);
	return 0;
}

/* The CNN at ratio 0.5: conv1 8 -> 4, conv2 16 -> 8 (fc1 loses 16 inputs per
 * channel through the Flatten), fc1 64 -> 32: 20,522 -> 5,370 parameters. */
static int test_cnn_half(void)
{
	struct onnx_model *m = fixture("cnn.onnx");
	CHECK(m, "fixture");
	int rc;
	json_t *mt = run_structured(m, "{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":0.5}", &rc);
	CHECK(mt, "structured ran");
	CHECK(jint(mt, "parameters_before") == 20522, "before %lld", (long long)jint(mt, "parameters_before"));
	CHECK(jint(mt, "parameters_after") == 5370, "after %lld", (long long)jint(mt, "parameters_after"));
	CHECK(dim(m, "conv1.weight", 0) == 4 && dim(m, "conv2.weight", 1) == 4, "conv1 -> conv2");
	CHECK(dim(m, "conv2.weight", 0) == 8 && dim(m, "fc1.weight", 1) == 128, "conv2 -> flatten -> fc1");
	CHECK(dim(m, "fc1.weight", 0) == 32 && dim(m, "fc2.weight", 1) == 32, "fc1 -> fc2");
	json_decref(mt);
	onnx_free(m);
	return 0;
}

/* Flatten mapping checked numerically: pruning with every removed channel
 * made exactly zero first (weights and bias) must not change any output. */
static int test_flatten_mapping_exact(void)
{
	struct onnx_model *m = fixture("cnn.onnx"), *ref = fixture("cnn.onnx");
	CHECK(m && ref, "fixture");
	int rc;
	json_t *mt = run_structured(m, "{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":0.5,"
				       "\"layers\":{\"conv1.weight\":0,\"fc1.weight\":0}}", &rc);
	CHECK(mt, "structured ran");
	/* conv2 kept 8 channels; in ref, zero the removed ones' filters and bias:
	 * ReLU(0) = 0, MaxPool(0) = 0, so they contributed nothing */
	Onnx__TensorProto *w2 = onnx_find_initializer(m, "conv2.weight");
	CHECK(w2->dims[0] == 8, "conv2 kept 8");
	struct tensor wr, wp, br;
	struct nn_err e = {0};
	CHECK(onnx_initializer_view(onnx_find_initializer(ref, "conv2.weight"), &wr, &e) == NN_OK, "view");
	CHECK(onnx_initializer_view(w2, &wp, &e) == NN_OK, "view");
	CHECK(onnx_initializer_view(onnx_find_initializer(ref, "conv2.bias"), &br, &e) == NN_OK, "view");
	float *r = wr.data, *q = wp.data, *b = br.data;
	int kept = 0;
	for (int c = 0; c < 16; c++) {
		bool found = kept < 8 && !memcmp(r + c * 200, q + kept * 200, 200 * sizeof(float));
		if (found) {
			kept++;
			continue;
		}
		memset(r + c * 200, 0, 200 * sizeof(float));
		b[c] = -1e30f; /* ReLU gives exactly 0 */
	}
	CHECK(kept == 8, "kept filters are the original ones, in order (%d)", kept);
	float *x = make_input(16 * 784, 5);
	int64_t w1, w2n;
	float *y1 = run_model(ref, x, 16, &w1), *y2 = run_model(m, x, 16, &w2n);
	CHECK(y1 && y2 && w1 == w2n && w1 == 10, "both run");
	for (int i = 0; i < 160; i++)
		CHECK(fabsf(y1[i] - y2[i]) <= 1e-5f * (1 + fabsf(y1[i])), "output %d: %g vs %g", i, y1[i], y2[i]);
	free(x);
	free(y1);
	free(y2);
	json_decref(mt);
	onnx_free(m);
	onnx_free(ref);
	return 0;
}

static bool groups_mention(json_t *mt, const char *needle)
{
	json_t *g;
	size_t i;
	json_array_foreach(json_object_get(mt, "groups"), i, g) {
		const char *a = json_string_value(json_object_get(g, "action"));
		if (a && strstr(a, needle))
			return true;
	}
	return false;
}

/* ResNet block: stem+block1 (identity skips) form one group, block2 conv2 and
 * its projection another (pruned together), the rest alone. */
static int test_resnet_residual_groups(void)
{
	struct onnx_model *m = fixture("resnet_block.onnx");
	CHECK(m, "fixture");
	int rc;
	json_t *mt = run_structured(m, "{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":0.5}", &rc);
	CHECK(mt, "structured ran");
	char *s = json_dumps(json_object_get(mt, "groups"), JSON_INDENT(1));
	fprintf(stderr, "groups: %s\n", s);
	free(s);
	CHECK(groups_mention(mt, "pruned together"), "a residual group pruned together");
	CHECK(dim(m, "block2.conv2.weight", 0) == 16 && dim(m, "block2.proj.0.weight", 0) == 16,
	      "block2 conv2 and projection keep the same 16 channels");
	CHECK(dim(m, "fc.weight", 1) == 16, "fc reads 16");
	CHECK(dim(m, "stem.weight", 0) == 8 && dim(m, "block1.conv2.weight", 0) == 8 &&
		      dim(m, "block1.conv1.weight", 0) == 8 && dim(m, "block1.conv1.weight", 1) == 8,
	      "stem + block1 identity group 16 -> 8");
	CHECK(dim(m, "block2.bn2.bias", 0) == 16, "shared BN bias sliced once");
	json_t *l = find_layer(mt, "block2.proj.0.weight");
	CHECK(l && strstr(json_string_value(json_object_get(l, "status")), "residual"), "proj status");
	int64_t width;
	float *x = make_input(4 * 784, 9), *y = run_model(m, x, 4, &width);
	CHECK(y && width == 10, "runs");
	free(x);
	free(y);
	json_decref(mt);
	onnx_free(m);
	return 0;
}

/* Concat of two branches: each branch pruned, the consumer's input channels
 * remapped by offset. */
static int test_concat_remapped(void)
{
	struct onnx_model *m = data_model("struct_concat.onnx");
	CHECK(m, "model");
	int rc;
	json_t *mt = run_structured(m, "{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":0.5}", &rc);
	CHECK(mt, "structured ran");
	CHECK(dim(m, "a.w", 0) == 4 && dim(m, "b.w", 0) == 3, "branches 8 -> 4, 6 -> 3");
	CHECK(dim(m, "c.w", 1) == 7 && dim(m, "c.w", 0) == 5, "c reads 7, keeps 5");
	CHECK(dim(m, "c_bn.scale", 0) == 5 && dim(m, "fc.w", 1) == 5, "BN and fc follow");
	CHECK(groups_mention(mt, "Concat output"), "groups report the Concat");
	json_decref(mt);
	onnx_free(m);
	return 0;
}

static int test_matmul_gelu_and_depthwise(void)
{
	struct onnx_model *m = data_model("struct_matmul.onnx");
	CHECK(m, "model");
	int rc;
	json_t *mt = run_structured(m, "{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":0.25,"
				       "\"criterion\":\"l2\"}", &rc);
	CHECK(mt, "structured ran");
	CHECK(dim(m, "m1.w", 1) == 36 && dim(m, "m1.b", 0) == 36 && dim(m, "m2.w", 0) == 36,
	      "MatMul 48 -> 36 through the bias Add and the Erf GELU");
	CHECK(dim(m, "m2.w", 1) == 18 && dim(m, "m2.b", 0) == 18 && dim(m, "m3.w", 0) == 18, "m2 24 -> 18");
	json_decref(mt);
	onnx_free(m);

	m = data_model("struct_dw.onnx");
	CHECK(m, "model");
	mt = run_structured(m, "{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":0.5}", &rc);
	CHECK(mt, "structured ran");
	CHECK(dim(m, "c1.w", 0) == 4 && dim(m, "dw.w", 0) == 4 && dim(m, "dw.b", 0) == 4 &&
		      dim(m, "c2.w", 1) == 4, "depthwise follows c1");
	Onnx__NodeProto *dw = NULL;
	for (size_t i = 0; i < m->proto->graph->n_node; i++)
		if (!strcmp(m->proto->graph->node[i]->name, "dw"))
			dw = m->proto->graph->node[i];
	CHECK(dw && onnx_node_int_attr(dw, "group", 0) == 4, "group attribute 4");
	CHECK(dim(m, "c2.w", 0) == 3 && dim(m, "fc.w", 1) == 3, "c2 6 -> 3");
	json_decref(mt);
	onnx_free(m);
	return 0;
}

/* A Reshape that flattens ([0, -1], or PyTorch's x.view(x.size(0), -1) as
 * Shape/Gather/Unsqueeze/Concat/Reshape) maps channels like a Flatten. */
static int test_reshape_flatten(void)
{
	struct onnx_model *m = data_model("struct_view_torch.onnx");
	CHECK(m, "model");
	int rc;
	json_t *mt = run_structured(m, "{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":0.5}", &rc);
	CHECK(mt, "structured ran");
	CHECK(dim(m, "conv.weight", 0) == 4 && dim(m, "fc1.weight", 1) == 4 * 144,
	      "conv 8 -> 4, fc1 reads 4 x 144 (%lld)", (long long)dim(m, "fc1.weight", 1));
	CHECK(dim(m, "fc1.weight", 0) == 16, "fc1 32 -> 16");
	int64_t width;
	float *x = make_input(3 * 784, 2), *y = run_model(m, x, 3, &width);
	CHECK(y && width == 10, "runs");
	free(y);
	json_decref(mt);
	onnx_free(m);

	m = data_model("struct_reshape0.onnx");
	CHECK(m, "model");
	mt = run_structured(m, "{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":0.5}", &rc);
	CHECK(mt, "structured ran");
	CHECK(dim(m, "c1.w", 0) == 3 && dim(m, "fc.w", 1) == 3 * 169, "c1 6 -> 3, fc reads 3 x 169");
	y = run_model(m, x, 3, &width);
	CHECK(y && width == 10, "runs");
	free(y);
	free(x);
	json_decref(mt);
	onnx_free(m);
	return 0;
}

static int test_graph_output_left_alone(void)
{
	struct onnx_model *m = data_model("struct_output.onnx");
	CHECK(m, "model");
	int rc;
	json_t *mt = run_structured(m, "{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":0.5}", &rc);
	CHECK(mt, "structured ran");
	json_t *l = find_layer(mt, "f1.w");
	CHECK(l && !strcmp(json_string_value(json_object_get(l, "status")), "skipped") &&
		      strstr(json_string_value(json_object_get(l, "reason")), "'hidden'"),
	      "f1 skipped: its output is the graph output 'hidden'");
	CHECK(dim(m, "f1.w", 0) == 32 && jint(mt, "parameters_after") == jint(mt, "parameters_before"),
	      "nothing changed");
	json_decref(mt);
	onnx_free(m);
	return 0;
}

/* Global scope removes round(0.5 * 400) channels over fc1 and fc2; an
 * override of 0 or keep_first_last leaves fc1 alone; L2 keeps the largest
 * L2 rows. */
static int test_scope_overrides_criterion(void)
{
	struct onnx_model *m = fixture("lenet300.onnx");
	int rc;
	json_t *mt = run_structured(m, "{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":0.5,"
				       "\"scope\":\"global\"}", &rc);
	CHECK(mt, "global ran");
	CHECK(dim(m, "fc1.weight", 0) + dim(m, "fc2.weight", 0) == 200, "200 of 400 kept (%lld + %lld)",
	      (long long)dim(m, "fc1.weight", 0), (long long)dim(m, "fc2.weight", 0));
	CHECK(!strcmp(json_string_value(json_object_get(mt, "scope")), "global"), "scope reported");
	json_decref(mt);
	onnx_free(m);

	m = fixture("lenet300.onnx");
	mt = run_structured(m, "{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":0.5,"
			       "\"layers\":{\"fc1.weight\":0,\"fc2.weight\":0.9}}", &rc);
	CHECK(mt, "overrides ran");
	CHECK(dim(m, "fc1.weight", 0) == 300 && dim(m, "fc2.weight", 0) == 10, "fc1 alone, fc2 90%%");
	json_decref(mt);
	onnx_free(m);

	m = fixture("lenet300.onnx");
	mt = run_structured(m, "{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":0.5,"
			       "\"keep_first_last\":true}", &rc);
	CHECK(mt, "keep_first_last ran");
	CHECK(dim(m, "fc1.weight", 0) == 300 && dim(m, "fc2.weight", 0) == 50, "fc1 kept whole");
	json_t *l = find_layer(mt, "fc1.weight");
	CHECK(strstr(json_string_value(json_object_get(l, "reason")), "keep_first_last"), "reason");
	json_decref(mt);
	onnx_free(m);

	/* L2: fc2's kept rows are exactly its 50 largest L2 norms */
	struct onnx_model *ref = fixture("lenet300.onnx");
	m = fixture("lenet300.onnx");
	mt = run_structured(m, "{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":0.5,"
			       "\"criterion\":\"l2\",\"layers\":{\"fc1.weight\":0}}", &rc);
	CHECK(mt, "l2 ran");
	struct tensor w;
	struct nn_err e = {0};
	CHECK(onnx_initializer_view(onnx_find_initializer(ref, "fc2.weight"), &w, &e) == NN_OK, "view");
	double norms[100];
	const float *f = w.data;
	for (int r = 0; r < 100; r++) {
		norms[r] = 0;
		for (int k = 0; k < 300; k++)
			norms[r] += (double)f[r * 300 + k] * f[r * 300 + k];
	}
	struct tensor wp;
	CHECK(onnx_initializer_view(onnx_find_initializer(m, "fc2.weight"), &wp, &e) == NN_OK, "view");
	const float *g = wp.data;
	for (int k = 0; k < 50; k++) {
		int r = 0;
		while (r < 100 && memcmp(f + r * 300, g + k * 300, 300 * sizeof(float)))
			r++;
		CHECK(r < 100, "kept row %d is an original row", k);
		int larger = 0;
		for (int q = 0; q < 100; q++)
			larger += norms[q] > norms[r];
		CHECK(larger < 50, "kept row %d has %d larger rows", r, larger);
	}
	json_decref(mt);
	onnx_free(m);
	onnx_free(ref);

	/* an override naming no weight is refused when the step runs */
	m = fixture("lenet300.onnx");
	json_t *spec = json_loads("{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":0.5,"
				  "\"layers\":{\"nope\":0.5}}", 0, NULL);
	struct prune_params p;
	CHECK(prune_params_parse(spec, 0, &p, &e) == NN_OK, "parses");
	json_t *out = NULL;
	CHECK(prune_run(m, &p, NULL, &out, &e) == NN_EINVAL && strstr(e.message, "'nope'"),
	      "unknown layer refused: %s", e.message);
	json_decref(spec);
	onnx_free(m);
	return 0;
}

static int test_params_parse(void)
{
	struct {
		const char *spec;
		enum nn_status st;
		const char *field;
	} cases[] = {
		{"{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":0.5}", NN_OK, ""},
		{"{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":0.3,\"scope\":\"global\","
		 "\"criterion\":\"l2\",\"keep_first_last\":true}", NN_OK, ""},
		{"{\"op\":\"prune\",\"method\":\"structured\"}", NN_EINVAL, "steps[0].ratio"},
		{"{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":1}", NN_EINVAL, "steps[0].ratio"},
		{"{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":0.5,\"criterion\":\"l3\"}",
		 NN_EINVAL, "steps[0].criterion"},
		{"{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":0.5,\"sparsity\":0.5}", NN_EINVAL,
		 "steps[0].sparsity"},
		{"{\"op\":\"prune\",\"method\":\"dead\"}", NN_OK, ""},
		{"{\"op\":\"prune\",\"method\":\"dead\",\"threshold\":-1}", NN_EINVAL, "steps[0].threshold"},
		{"{\"op\":\"prune\",\"method\":\"dead\",\"ratio\":0.5}", NN_EINVAL, "steps[0].ratio"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		json_t *s = json_loads(cases[i].spec, 0, NULL);
		struct prune_params p;
		struct nn_err e = {0};
		enum nn_status st = prune_params_parse(s, 0, &p, &e);
		CHECK(st == cases[i].st, "%s: status %d (%s)", cases[i].spec, st, e.message);
		if (st != NN_OK)
			CHECK(!strcmp(e.field, cases[i].field), "%s: field %s", cases[i].spec, e.field);
		if (i == 0)
			CHECK(p.method == PRUNE_STRUCTURED && p.scope == PRUNE_SCOPE_LAYER &&
				      p.criterion == PRUNE_L1 && p.ratio == 0.5, "defaults");
		if (i == 6)
			CHECK(p.method == PRUNE_DEAD && p.threshold == 0, "dead default threshold");
		json_decref(s);
	}
	return 0;
}

/* Every structurally pruned model loads in ONNX Runtime, passes
 * onnx.checker and computes what our executor computes. */
static int test_onnxruntime_agrees(const char *node, const char *modules, const char *script)
{
	char dir[] = "/tmp/nncd-structured-XXXXXX";
	CHECK(mkdtemp(dir), "mkdtemp");
	struct {
		const char *file;
		bool fixture;
		const char *spec;
	} cases[] = {
		{"lenet300.onnx", true, "{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":0.5}"},
		{"cnn.onnx", true, "{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":0.5}"},
		{"resnet_block.onnx", true, "{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":0.5}"},
		{"lenet5_bn.onnx", true, "{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":0.5,"
					 "\"scope\":\"global\"}"},
		{"gelu_mlp.onnx", true, "{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":0.5}"},
		{"struct_concat.onnx", false, "{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":0.5}"},
		{"struct_matmul.onnx", false, "{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":0.5}"},
		{"struct_dw.onnx", false, "{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":0.5}"},
		{"struct_view_torch.onnx", false, "{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":0.5}"},
		{"struct_reshape0.onnx", false, "{\"op\":\"prune\",\"method\":\"structured\",\"ratio\":0.5}"},
	};
	enum { N_CASES = sizeof cases / sizeof *cases };
	struct ort_case cs[N_CASES];
	for (size_t i = 0; i < N_CASES; i++) {
		struct onnx_model *m = cases[i].fixture ? fixture(cases[i].file) : data_model(cases[i].file);
		CHECK(m, "%s", cases[i].file);
		int rc;
		json_t *mt = run_structured(m, cases[i].spec, &rc);
		CHECK(mt, "%s pruned", cases[i].file);
		CHECK(jint(mt, "parameters_after") < jint(mt, "parameters_before"), "%s shrank", cases[i].file);
		char name[64];
		snprintf(name, sizeof name, "%.40s", cases[i].file);
		*strrchr(name, '.') = '\0';
		if (ort_case_write(m, dir, name, 8, &cs[i]))
			return 1;
		json_decref(mt);
		onnx_free(m);
	}
	int rc = ort_cases_check(node, modules, script, cs, N_CASES);
	for (size_t i = 0; i < N_CASES; i++) {
		unlink(cs[i].model);
		unlink(cs[i].input);
		unlink(cs[i].ours);
	}
	rmdir(dir);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: test_structured CASE FIXTURES_DIR DATA_DIR [NODE MODULES SCRIPT]\n");
		return 2;
	}
	fixtures = argv[2];
	data_dir = argv[3];
	const char *c = argv[1];
	if (!strcmp(c, "lenet300_half"))
		return test_lenet300_half();
	if (!strcmp(c, "cnn_half"))
		return test_cnn_half();
	if (!strcmp(c, "flatten_mapping_exact"))
		return test_flatten_mapping_exact();
	if (!strcmp(c, "resnet_residual_groups"))
		return test_resnet_residual_groups();
	if (!strcmp(c, "concat_remapped"))
		return test_concat_remapped();
	if (!strcmp(c, "matmul_gelu_and_depthwise"))
		return test_matmul_gelu_and_depthwise();
	if (!strcmp(c, "reshape_flatten"))
		return test_reshape_flatten();
	if (!strcmp(c, "graph_output_left_alone"))
		return test_graph_output_left_alone();
	if (!strcmp(c, "scope_overrides_criterion"))
		return test_scope_overrides_criterion();
	if (!strcmp(c, "params_parse"))
		return test_params_parse();
	if (!strcmp(c, "onnxruntime_agrees"))
		return test_onnxruntime_agrees(argc > 4 ? argv[4] : "", argc > 5 ? argv[5] : "",
					       argc > 6 ? argv[6] : "");
	fprintf(stderr, "unknown case %s\n", c);
	return 2;
}
