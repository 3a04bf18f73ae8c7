/* quant_static: static QDQ quantization with calibrated activations.
 * Usage: test_quant_static CASE FIXTURES_DIR MNIST_DIR [NODE MODULES ORT_SCRIPT EVAL_JS] */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "eval.h"
#include "quant.h"
#include "quant_static.h"
#include "spec.h"
#include "structured_util.h"

static const char *fixtures = ".", *mnist_dir = ".";

/* n MNIST images (train or test set) as floats in [0, 1]; NULL when absent. */
static float *mnist(const char *set, int64_t n, int64_t **labels)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", mnist_dir, set);
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	unsigned char hdr[16];
	unsigned char *px = malloc((size_t)n * 784);
	float *x = malloc((size_t)n * 784 * sizeof *x);
	bool ok = px && x && fread(hdr, 1, 16, f) == 16 &&
		  fread(px, 1, (size_t)n * 784, f) == (size_t)n * 784;
	fclose(f);
	for (int64_t i = 0; ok && i < n * 784; i++)
		x[i] = (float)px[i] / 255.0f;
	free(px);
	if (ok && labels) {
		snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", mnist_dir, set);
		f = fopen(path, "rb");
		unsigned char *lb = malloc((size_t)n);
		*labels = malloc((size_t)n * sizeof **labels);
		ok = f && lb && *labels && fread(hdr, 1, 8, f) == 8 &&
		     fread(lb, 1, (size_t)n, f) == (size_t)n;
		if (f)
			fclose(f);
		for (int64_t i = 0; ok && i < n; i++)
			(*labels)[i] = lb[i];
		free(lb);
	}
	if (!ok) {
		free(x);
		return NULL;
	}
	return x;
}

static struct onnx_model *fixture(const char *name)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", fixtures, name);
	return load_model(path);
}

/* Runs the static scheme described by spec_json on m with calibration x. */
static enum nn_status run_static(struct onnx_model *m, const char *spec_json, float *x,
				 int64_t n, const int64_t *in_shape, int in_ndim, json_t **metrics,
				 struct nn_err *e)
{
	json_t *j = json_loads(spec_json, 0, NULL);
	struct quant_params p;
	enum nn_status st = quant_params_parse(j, 0, &p, e);
	if (st != NN_OK) {
		json_decref(j);
		return st;
	}
	struct tensor in = {0};
	int64_t shape[8];
	shape[0] = n;
	for (int d = 1; d < in_ndim; d++)
		shape[d] = in_shape[d];
	tensor_view(&in, DT_FLOAT, in_ndim, shape, x);
	struct eval_data cal = {&in, NULL};
	struct step_ctx ctx = {0};
	ctx.calib = &cal;
	st = quant_run(m, &p, &ctx, metrics, e);
	json_decref(j); /* p.exclude borrowed it: used only inside quant_run */
	return st;
}

static int count_op(const struct onnx_model *m, const char *op)
{
	int c = 0;
	const Onnx__GraphProto *g = m->proto->graph;
	for (size_t i = 0; i < g->n_node; i++)
		c += !strcmp(g->node[i]->op_type, op);
	return c;
}

static const Onnx__NodeProto *producer(const struct onnx_model *m, const char *name)
{
	const Onnx__GraphProto *g = m->proto->graph;
	for (size_t i = 0; i < g->n_node; i++)
		for (size_t o = 0; o < g->node[i]->n_output; o++)
			if (!strcmp(g->node[i]->output[o], name))
				return g->node[i];
	return NULL;
}

/* Top-1 accuracy of m on x (n rows), with our executor. */
static double accuracy(const struct onnx_model *m, const float *x, const int64_t *labels,
		       int64_t n)
{
	int64_t width;
	float *y = run_model(m, x, n, &width);
	if (!y)
		return -1;
	int64_t ok = 0;
	for (int64_t i = 0; i < n; i++) {
		int64_t best = 0;
		for (int64_t k = 1; k < width; k++)
			if (y[i * width + k] > y[i * width + best])
				best = k;
		ok += best == labels[i];
	}
	free(y);
	return 100.0 * (double)ok / (double)n;
}

/* Structure of lenet300's static QDQ: every Gemm reads DequantizeLinear
 * outputs for its activation and its weight, Q/DQ pairs on the input and on
 * the hidden activations, uint8 zero points, scalar scales, opset >= 13,
 * a range table row per activation; the graph runs in our executor. */
static int test_qdq_structure(bool int8)
{
	struct onnx_model *m = fixture("lenet300.onnx");
	CHECK(m, "fixture");
	float *x = mnist("train", 256, NULL);
	if (!x) {
		fprintf(stderr, "MNIST not found under %s: skipped\n", mnist_dir);
		onnx_free(m);
		return 77;
	}
	int64_t shp[2] = {0, 784};
	json_t *mt = NULL;
	struct nn_err e = {0};
	CHECK(run_static(m,
			 int8 ? "{\"op\":\"quantize\",\"scheme\":\"static\",\"activations\":\"int8\"}"
			      : "{\"op\":\"quantize\",\"scheme\":\"static\"}",
			 x, 256, shp, 2, &mt, &e) == NN_OK,
	      "static: %s", e.message);
	CHECK(onnx_opset(m) >= 13, "opset %lld", (long long)onnx_opset(m));
	int gemms = count_op(m, "Gemm");
	CHECK(gemms == 3, "gemms %d", gemms);
	CHECK(count_op(m, "QuantizeLinear") >= 3, "Q nodes %d", count_op(m, "QuantizeLinear"));
	const Onnx__GraphProto *g = m->proto->graph;
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		if (strcmp(n->op_type, "Gemm"))
			continue;
		for (size_t k = 0; k < 2; k++) {
			const Onnx__NodeProto *pr = producer(m, n->input[k]);
			CHECK(pr && !strcmp(pr->op_type, "DequantizeLinear"),
			      "Gemm %s input %zu not dequantized", n->name, k);
		}
		if (n->n_input > 2) {
			/* int32 bias, scale = activation scale x weight scale */
			const Onnx__NodeProto *bd = producer(m, n->input[2]);
			CHECK(bd && !strcmp(bd->op_type, "DequantizeLinear"), "bias dequantized");
			const Onnx__TensorProto *bq = onnx_find_initializer(m, bd->input[0]);
			const Onnx__TensorProto *bs = onnx_find_initializer(m, bd->input[1]);
			const Onnx__NodeProto *xd = producer(m, n->input[0]);
			const Onnx__NodeProto *wd = producer(m, n->input[1]);
			const Onnx__TensorProto *xs = onnx_find_initializer(m, xd->input[1]);
			const Onnx__TensorProto *wsc = onnx_find_initializer(m, wd->input[1]);
			CHECK(bq && bq->data_type == DT_INT32 && bs && xs && wsc, "int32 bias");
			struct tensor vb = {0}, vx = {0}, vw = {0};
			struct nn_err e2 = {0};
			CHECK(onnx_initializer_view(bs, &vb, &e2) == NN_OK &&
				      onnx_initializer_view(xs, &vx, &e2) == NN_OK &&
				      onnx_initializer_view(wsc, &vw, &e2) == NN_OK,
			      "views: %s", e2.message);
			int64_t nb = tensor_numel(&vb);
			CHECK(nb == tensor_numel(&vw), "bias scales per channel");
			for (int64_t c = 0; c < nb; c++)
				CHECK(((float *)vb.data)[c] ==
					      ((float *)vx.data)[0] * ((float *)vw.data)[c],
				      "bias scale %lld", (long long)c);
			tensor_free(&vb);
			tensor_free(&vx);
			tensor_free(&vw);
		}
	}
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		if (strcmp(n->op_type, "QuantizeLinear"))
			continue;
		const Onnx__TensorProto *zp = onnx_find_initializer(m, n->input[2]);
		const Onnx__TensorProto *sc = onnx_find_initializer(m, n->input[1]);
		CHECK(zp && sc && zp->n_dims == 0 && sc->n_dims == 0, "scalar qparams");
		CHECK(jint(mt, "biases_int32") == 3, "int32 biases");
		CHECK(zp->data_type == (int8 ? DT_INT8 : DT_UINT8), "zero point dtype %d",
		      zp->data_type);
		if (int8)
			CHECK(zp->raw_data.len == 1 && zp->raw_data.data[0] == 0, "int8 zp 0");
	}
	json_t *ranges = json_object_get(mt, "ranges");
	CHECK(json_array_size(ranges) >= 5, "ranges %zu", json_array_size(ranges));
	size_t i;
	json_t *r;
	json_array_foreach(ranges, i, r) {
		double mn = json_real_value(json_object_get(r, "min"));
		double mx = json_real_value(json_object_get(r, "max"));
		double lo = json_real_value(json_object_get(r, "lo"));
		double hi = json_real_value(json_object_get(r, "hi"));
		double sc = json_real_value(json_object_get(r, "scale"));
		CHECK(mn <= mx && lo == mn && hi == mx && sc > 0, "minmax row %zu", i);
	}
	CHECK(!strcmp(json_string_value(json_object_get(mt, "calibration")), "minmax"), "method");
	CHECK(jint(mt, "samples") == 256, "samples");
	CHECK(json_array_size(json_object_get(mt, "layers")) == 3, "weight layers");
	json_t *l0 = json_array_get(json_object_get(mt, "layers"), 0);
	CHECK(find_layer(mt, json_string_value(json_object_get(l0, "name"))) == l0 &&
		      json_real_value(json_object_get(l0, "mse")) > 0,
	      "weight layer figures");
	/* The graph runs, and its outputs stay close to the float model's. */
	struct onnx_model *f = fixture("lenet300.onnx");
	int64_t w1, w2;
	float *y = run_model(m, x, 64, &w1), *yf = run_model(f, x, 64, &w2);
	CHECK(y && yf && w1 == w2, "run");
	int agree = 0;
	for (int s = 0; s < 64; s++) {
		int a = 0, b = 0;
		for (int k = 1; k < w1; k++) {
			a = y[s * w1 + k] > y[s * w1 + a] ? k : a;
			b = yf[s * w1 + k] > yf[s * w1 + b] ? k : b;
		}
		agree += a == b;
	}
	CHECK(agree >= 62, "argmax agreement %d/64", agree);
	free(y);
	free(yf);
	json_decref(mt);
	onnx_free(m);
	onnx_free(f);
	free(x);
	return 0;
}

/* exclude by node name keeps that Gemm's activation float (its weight too). */
static int test_exclude(void)
{
	struct onnx_model *m = fixture("lenet300.onnx");
	CHECK(m, "fixture");
	const Onnx__GraphProto *g = m->proto->graph;
	char first[256] = "";
	for (size_t i = 0; i < g->n_node && !first[0]; i++)
		if (!strcmp(g->node[i]->op_type, "Gemm"))
			snprintf(first, sizeof first, "%s", g->node[i]->name);
	CHECK(first[0], "a named Gemm");
	float *x = mnist("train", 128, NULL);
	if (!x) {
		onnx_free(m);
		return 77;
	}
	char spec[512];
	snprintf(spec, sizeof spec,
		 "{\"op\":\"quantize\",\"scheme\":\"static\",\"exclude\":[\"%s\"]}", first);
	int64_t shp[2] = {0, 784};
	json_t *mt = NULL;
	struct nn_err e = {0};
	CHECK(run_static(m, spec, x, 128, shp, 2, &mt, &e) == NN_OK, "static: %s", e.message);
	g = m->proto->graph;
	int quantized_gemms = 0;
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		if (strcmp(n->op_type, "Gemm"))
			continue;
		const Onnx__NodeProto *a = producer(m, n->input[0]);
		const Onnx__NodeProto *w = producer(m, n->input[1]);
		bool qa = a && !strcmp(a->op_type, "DequantizeLinear");
		bool qw = w && !strcmp(w->op_type, "DequantizeLinear");
		if (!strcmp(n->name, first))
			CHECK(!qa && !qw, "excluded Gemm reads quantized values");
		else
			CHECK(qa && qw, "kept Gemm %s not quantized", n->name);
		quantized_gemms += qa;
	}
	CHECK(quantized_gemms == 2, "quantized gemms %d", quantized_gemms);
	int64_t w1;
	float *y = run_model(m, x, 16, &w1);
	CHECK(y, "runs");
	free(y);
	json_decref(mt);
	onnx_free(m);
	free(x);
	return 0;
}

static int test_needs_data(void)
{
	struct onnx_model *m = fixture("lenet300.onnx");
	CHECK(m, "fixture");
	json_t *j = json_loads("{\"op\":\"quantize\",\"scheme\":\"static\"}", 0, NULL);
	struct quant_params p;
	struct nn_err e = {0};
	CHECK(quant_params_parse(j, 0, &p, &e) == NN_OK, "parse");
	json_t *mt = NULL;
	CHECK(quant_run(m, &p, NULL, &mt, &e) == NN_EINVAL && !strcmp(e.field, "dataset"),
	      "refused without data: %s", e.message);
	CHECK(!mt, "no metrics");
	json_decref(j);
	onnx_free(m);
	return 0;
}

/* Acceptance 5 at submit: static without any dataset, and static on a model
 * with no Gemm/MatMul/Conv weight, are 400s naming the field; with a
 * top-level dataset and weights the spec passes. */
static int test_spec_refusals(void)
{
	static const char *const with_w =
		"{\"opset\":{\"\":13},\"ops\":{\"Gemm\":1},\"prunable\":[{\"name\":\"w\","
		"\"op\":\"Gemm\",\"node\":\"g0\",\"shape\":[4,4],\"parameters\":16}]}";
	static const char *const without_w =
		"{\"opset\":{\"\":13},\"ops\":{\"Add\":1},\"prunable\":[]}";
	static const struct {
		const char *spec, *summary, *field;
	} cases[] = {
		{"{\"model\":\"mdl_x\",\"steps\":[{\"op\":\"quantize\",\"scheme\":\"static\"}]}",
		 NULL, "steps[0].dataset"},
		{"{\"model\":\"mdl_x\",\"dataset\":\"ds_aaaaaaaaaaaaaaaaaaaaaaaaaa\",\"steps\":[{\"op\":"
		 "\"quantize\",\"scheme\":\"static\"}]}",
		 "without", "steps[0].scheme"},
		{"{\"model\":\"mdl_x\",\"steps\":[{\"op\":\"quantize\",\"scheme\":\"static\","
		 "\"calibration\":\"kl\",\"dataset\":\"ds_aaaaaaaaaaaaaaaaaaaaaaaaaa\"}]}",
		 NULL, "steps[0].calibration"},
		{"{\"model\":\"mdl_x\",\"dataset\":\"ds_aaaaaaaaaaaaaaaaaaaaaaaaaa\",\"steps\":[{\"op\":"
		 "\"quantize\",\"scheme\":\"static\",\"calibration\":\"entropy\"}]}",
		 "with", ""},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		json_t *spec = json_loads(cases[i].spec, 0, NULL);
		json_t *sum = json_loads(cases[i].summary && !strcmp(cases[i].summary, "without")
						 ? without_w
						 : with_w,
					 0, NULL);
		CHECK(spec && sum, "json %zu", i);
		struct nn_err e = {0};
		enum nn_status st = spec_validate(spec, sum, &e);
		if (cases[i].field[0])
			CHECK(st == NN_EINVAL && !strcmp(e.field, cases[i].field),
			      "case %zu: status %d field '%s' (%s)", i, st, e.field, e.message);
		else
			CHECK(st == NN_OK, "case %zu refused: %s (%s)", i, e.message, e.field);
		json_decref(spec);
		json_decref(sum);
	}
	return 0;
}

/* Acceptance 2: lenet300, entropy calibration on 1,000 training digits;
 * accuracy on the 10,000 test digits drops <= 0.5 point (our executor; the
 * ONNX Runtime figure comes from the eval.js case below and the e2e). */
static int test_lenet300_entropy(const char *save_to)
{
	int64_t *labels = NULL;
	float *cal = mnist("train", 1000, NULL), *test = mnist("t10k", 10000, &labels);
	if (!cal || !test) {
		fprintf(stderr, "MNIST not found under %s: skipped\n", mnist_dir);
		return 77;
	}
	struct onnx_model *f = fixture("lenet300.onnx"), *m = fixture("lenet300.onnx");
	CHECK(f && m, "fixture");
	int64_t shp[2] = {0, 784};
	json_t *mt = NULL;
	struct nn_err e = {0};
	CHECK(run_static(m, "{\"op\":\"quantize\",\"scheme\":\"static\",\"calibration\":\"entropy\"}",
			 cal, 1000, shp, 2, &mt, &e) == NN_OK,
	      "static: %s", e.message);
	double a0 = accuracy(f, test, labels, 10000), a1 = accuracy(m, test, labels, 10000);
	printf("lenet300 static entropy: float %.2f%%, static QDQ %.2f%% (drop %.2f), %lld -> %lld "
	       "bytes, calibration %.3f s\n",
	       a0, a1, a0 - a1, (long long)jint(mt, "bytes_before"),
	       (long long)jint(mt, "bytes_after"),
	       json_real_value(json_object_get(mt, "calibration_seconds")));
	CHECK(a0 > 90 && a0 - a1 <= 0.5, "drop %.2f", a0 - a1);
	CHECK(!strcmp(json_string_value(json_object_get(mt, "calibration")), "entropy") &&
		      jint(mt, "histogram_bins") == 2048,
	      "metrics");
	if (save_to)
		CHECK(onnx_save_file(m, save_to, &e) == NN_OK, "save: %s", e.message);
	json_decref(mt);
	onnx_free(f);
	onnx_free(m);
	free(cal);
	free(test);
	free(labels);
	return 0;
}

/* Writes m's copy whose graph outputs are its first output and every
 * QuantizeLinear's output, the input, and our executor's values of those
 * outputs (float32 first output, then the quantized bytes) for
 * static_ort_check.js. */
static int write_qcase(const struct onnx_model *m, const char *dir, const char *name,
		       const float *x, int64_t batch, char *spec, size_t cap, char *model_path,
		       size_t mcap)
{
	struct nn_err e = {0};
	char path[512], in_path[512], ours_path[512];
	snprintf(path, sizeof path, "%s/%s.onnx", dir, name);
	snprintf(model_path, mcap, "%s/%s.plain.onnx", dir, name);
	CHECK(onnx_save_file(m, model_path, &e) == NN_OK, "save: %s", e.message);
	struct onnx_model *a = load_model(model_path);
	CHECK(a, "reload");
	Onnx__GraphProto *g = a->proto->graph;
	while (g->n_output > 1) /* keep the first output only */
		onnx__value_info_proto__free_unpacked(g->output[--g->n_output], NULL);
	for (size_t i = 0; i < g->n_node; i++) {
		if (strcmp(g->node[i]->op_type, "QuantizeLinear"))
			continue;
		Onnx__ValueInfoProto **v = realloc(g->output, (g->n_output + 1) * sizeof *v);
		CHECK(v, "oom");
		g->output = v;
		Onnx__ValueInfoProto *vi = malloc(sizeof *vi);
		CHECK(vi, "oom");
		onnx__value_info_proto__init(vi);
		vi->name = strdup(g->node[i]->output[0]);
		g->output[g->n_output++] = vi;
	}
	CHECK(g->n_output > 1, "%s has no QuantizeLinear", name);
	CHECK(onnx_save_file(a, path, &e) == NN_OK, "save: %s", e.message);
	struct exec_plan *pl = NULL;
	CHECK(exec_compile(a, batch, &pl, &e) == NN_OK, "compile: %s", e.message);
	struct tensor in = *exec_input_spec(pl, 0);
	in.data = (void *)x;
	size_t no = exec_output_count(pl);
	struct tensor *outs = calloc(no, sizeof *outs);
	CHECK(outs && exec_run(pl, &in, 1, outs, no, &e) == NN_OK, "run: %s", e.message);
	snprintf(in_path, sizeof in_path, "%s/%s.in.f32", dir, name);
	snprintf(ours_path, sizeof ours_path, "%s/%s.ours.bin", dir, name);
	CHECK(!write_f32(in_path, x, tensor_numel(&in)), "write input");
	FILE *f = fopen(ours_path, "wb");
	CHECK(f, "open %s", ours_path);
	for (size_t k = 0; k < no; k++) {
		CHECK(k == 0 ? outs[k].dtype == DT_FLOAT
			     : outs[k].dtype == DT_UINT8 || outs[k].dtype == DT_INT8,
		      "output %zu dtype", k);
		size_t nb = (size_t)tensor_numel(&outs[k]) * dtype_size(outs[k].dtype);
		CHECK(fwrite(outs[k].data, 1, nb, f) == nb, "write");
	}
	CHECK(fclose(f) == 0, "close");
	size_t at = (size_t)snprintf(spec, cap, "%s:%s:", path, in_path);
	for (int d = 0; d < in.ndim; d++)
		at += (size_t)snprintf(spec + at, cap - at, "%s%lld", d ? "x" : "",
				       (long long)in.shape[d]);
	snprintf(spec + at, cap - at, ":%s", ours_path);
	free(outs);
	exec_free(pl);
	onnx_free(a);
	return 0;
}

/* Every method and both activation types on lenet300 and cnn: the artifacts
 * load in ONNX Runtime and agree with ours (static_ort_check.js: graph
 * optimisation 'basic', the QDQ float simulation; outputs within 1e-4 for
 * every sample whose quantized values agree, rounding-boundary flips in at
 * most 0.5% of them), and pass python3-onnx's checker. */
static int test_onnxruntime(const char *node, const char *modules, const char *script)
{
	float *x = mnist("train", 512, NULL);
	if (!x)
		return 77;
	char probe[1024];
	snprintf(probe, sizeof probe, "%s/onnxruntime-node", modules);
	if (!node[0] || access(node, X_OK) || access(probe, R_OK)) {
		free(x);
		return 77;
	}
	char dir[] = "/tmp/nncd-static-XXXXXX";
	CHECK(mkdtemp(dir), "mkdtemp");
	static const char *const specs[] = {
		"{\"op\":\"quantize\",\"scheme\":\"static\",\"calibration\":\"minmax\"}",
		"{\"op\":\"quantize\",\"scheme\":\"static\",\"calibration\":\"entropy\"}",
		"{\"op\":\"quantize\",\"scheme\":\"static\",\"calibration\":\"percentile\","
		"\"activations\":\"int8\"}",
		"{\"op\":\"quantize\",\"scheme\":\"static\",\"calibration\":\"mse\","
		"\"granularity\":\"per_tensor\"}",
	};
	static const char *const models[] = {"lenet300.onnx", "cnn.onnx"};
	char argspecs[8][1400], plain[8][512];
	char *argv[16] = {(char *)node, (char *)script, (char *)modules};
	char *cargv[16] = {PYTHON, "-c", CHECKER_PY};
	size_t nc = 0;
	float *test = mnist("t10k", 64, NULL);
	CHECK(test, "test digits");
	for (size_t mi = 0; mi < 2; mi++) {
		for (size_t si = 0; si < 4; si++) {
			struct onnx_model *m = fixture(models[mi]);
			CHECK(m, "fixture");
			int64_t shp4[4] = {0, 1, 28, 28}, shp2[2] = {0, 784};
			json_t *mt = NULL;
			struct nn_err e = {0};
			CHECK(run_static(m, specs[si], x, 512, mi ? shp4 : shp2, mi ? 4 : 2, &mt,
					 &e) == NN_OK,
			      "%s %s: %s", models[mi], specs[si], e.message);
			char name[64];
			snprintf(name, sizeof name, "static_%s_%zu", mi ? "cnn" : "lenet300", si);
			if (write_qcase(m, dir, name, test, 64, argspecs[nc], sizeof argspecs[nc],
					plain[nc], sizeof plain[nc]))
				return 1;
			argv[3 + nc] = argspecs[nc];
			cargv[3 + nc] = plain[nc];
			nc++;
			json_decref(mt);
			onnx_free(m);
		}
	}
	int rc = spawn_wait(argv);
	int py = access(PYTHON, X_OK) == 0 ? spawn_wait(cargv) : 0;
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	free(x);
	free(test);
	CHECK(rc == 0, "ONNX Runtime disagrees or cannot load (exit %d)", rc);
	CHECK(py == 0 || py == 77, "onnx.checker rejected a model (exit %d)", py);
	return 0;
}

/* Acceptance 2 measured by ONNX Runtime on the 10,000 test digits. */
static int test_lenet300_entropy_ort(const char *node, const char *evaljs)
{
	char path[] = "/tmp/nncd-static-lenet-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0, "mkstemp");
	close(fd);
	int rc = test_lenet300_entropy(path);
	if (rc) {
		unlink(path);
		return rc;
	}
	if (!node[0] || access(node, X_OK)) {
		unlink(path);
		return 77;
	}
	double acc[2] = {0, 0}, dflt = 0;
	const char *models[2] = {NULL, path};
	char fpath[1024];
	snprintf(fpath, sizeof fpath, "%s/lenet300.onnx", fixtures);
	models[0] = fpath;
	for (int k = 0; k < 2; k++) {
		char cmd[4096];
		snprintf(cmd, sizeof cmd, "'%s' '%s' accuracy '%s' --opt basic", node, evaljs,
			 models[k]);
		FILE *p = popen(cmd, "r");
		CHECK(p, "popen");
		char buf[4096];
		size_t n = fread(buf, 1, sizeof buf - 1, p);
		buf[n] = '\0';
		int st = pclose(p);
		CHECK(st == 0, "eval.js failed: %s", buf);
		json_t *j = json_loads(buf, 0, NULL);
		CHECK(j, "eval.js output: %s", buf);
		acc[k] = json_number_value(json_object_get(j, "accuracy"));
		if (k == 1)
			dflt = json_number_value(json_object_get(j, "accuracy_default"));
		json_decref(j);
	}
	unlink(path);
	if (acc[0] <= 1.0) { /* eval.js reports a fraction */
		acc[0] *= 100;
		acc[1] *= 100;
		dflt *= 100;
	}
	printf("ONNX Runtime: float %.2f%%, static QDQ entropy %.2f%% (basic), %.2f%% (ORT "
	       "default options); drop %.2f point\n",
	       acc[0], acc[1], dflt, acc[0] - acc[1]);
	CHECK(acc[0] - acc[1] <= 0.5, "ORT drop %.2f", acc[0] - acc[1]);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: test_quant_static CASE FIXTURES MNIST [NODE MODULES SCRIPT "
				"EVAL_JS]\n");
		return 2;
	}
	fixtures = argv[2];
	mnist_dir = argv[3];
	(void)ort_case_write; /* shared helpers this test does not need */
	(void)ort_cases_check;
	const char *c = argv[1];
	if (!strcmp(c, "qdq_structure_uint8"))
		return test_qdq_structure(false);
	if (!strcmp(c, "qdq_structure_int8"))
		return test_qdq_structure(true);
	if (!strcmp(c, "exclude"))
		return test_exclude();
	if (!strcmp(c, "spec_refusals"))
		return test_spec_refusals();
	if (!strcmp(c, "needs_data"))
		return test_needs_data();
	if (!strcmp(c, "lenet300_entropy"))
		return test_lenet300_entropy(NULL);
	if (!strcmp(c, "onnxruntime_agrees"))
		return test_onnxruntime(argc > 4 ? argv[4] : "", argc > 5 ? argv[5] : "",
					argc > 6 ? argv[6] : "");
	if (!strcmp(c, "lenet300_entropy_ort"))
		return test_lenet300_entropy_ort(argc > 4 ? argv[4] : "", argc > 7 ? argv[7] : "");
	fprintf(stderr, "unknown case %s\n", c);
	return 2;
}
