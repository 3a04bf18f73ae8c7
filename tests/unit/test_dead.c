/* Unit tests for engine/dead (prune method "dead"): planted dead neurons and
 * channels (ReLU after zero weights and a negative bias, and BatchNormalization
 * + ReLU) are removed and nothing else changes: outputs on the calibration
 * data identical within 1e-5, argmax identical, checked here by running both
 * models, not only from the step's own figures; the same on trained fixtures
 * with real MNIST digits; the step refuses to run without data; ONNX Runtime
 * runs the results.
 * Usage: test_dead CASE FIXTURES_DIR DATA_DIR MNIST_DIR [NODE MODULES SCRIPT] */
#include <jansson.h>

#include "eval.h"
#include "dead.h"
#include "structured_util.h"

static const char *fixtures = ".", *data_dir = ".", *mnist_dir = ".";

/* n MNIST test images as floats in [0, 1] ([n, 784]); NULL when absent. */
static float *mnist(int64_t n)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte", mnist_dir);
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	unsigned char hdr[16];
	unsigned char *px = malloc((size_t)n * 784);
	float *x = malloc((size_t)n * 784 * sizeof *x);
	bool ok = px && x && fread(hdr, 1, 16, f) == 16 && fread(px, 1, (size_t)n * 784, f) == (size_t)n * 784;
	fclose(f);
	for (int64_t i = 0; ok && i < n * 784; i++)
		x[i] = (float)px[i] / 255.0f;
	free(px);
	if (!ok) {
		free(x);
		return NULL;
	}
	return x;
}

/* Runs the dead step on m with calibration inputs x ([n, model input]),
 * checking the step's metrics and, independently, that the outputs of the
 * pruned model equal the original's within 1e-5 with identical argmax. */
static int dead_exact(struct onnx_model *m, const float *x, int64_t n, json_t **metrics)
{
	int64_t shape[8];
	int nd;
	CHECK(input_numel(m, n, shape, &nd) > 0, "input shape");
	struct tensor in;
	tensor_view(&in, DT_FLOAT, nd, shape, (void *)x);
	struct eval_data data = {&in, NULL};
	struct step_ctx ctx = {.calib = &data, .threads = 2};
	struct prune_params p = {.method = PRUNE_DEAD, .threshold = 0};
	int64_t w0, w1;
	float *before = run_model(m, x, n, &w0);
	CHECK(before, "original runs");
	struct nn_err e = {0};
	CHECK(prune_run(m, &p, &ctx, metrics, &e) == NN_OK, "dead: %s", e.message);
	float *after = run_model(m, x, n, &w1);
	CHECK(after && w1 == w0, "pruned runs with the same output width");
	int64_t agree = 0;
	double md = 0;
	for (int64_t s = 0; s < n; s++) {
		int64_t a = 0, b = 0;
		for (int64_t j = 0; j < w0; j++) {
			double d = fabs((double)before[s * w0 + j] - (double)after[s * w0 + j]);
			md = d > md ? d : md;
			a = before[s * w0 + j] > before[s * w0 + a] ? j : a;
			b = after[s * w0 + j] > after[s * w0 + b] ? j : b;
		}
		agree += a == b;
	}
	CHECK(md <= 1e-5, "max |output change| %g", md);
	CHECK(agree == n, "argmax agreement %lld of %lld", (long long)agree, (long long)n);
	CHECK(json_real_value(json_object_get(*metrics, "max_abs_diff")) <= 1e-5 &&
		      json_real_value(json_object_get(*metrics, "argmax_agreement")) == 1.0,
	      "the step reports it too");
	CHECK(jint(*metrics, "samples") == n, "samples used");
	free(before);
	free(after);
	return 0;
}

static struct onnx_model *model_at(const char *dir, const char *name)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	return load_model(path);
}

/* Whether row r of a [rows, k] weight still exists (found verbatim). */
static bool has_row(const struct onnx_model *m, const char *init, const float *row, int64_t k)
{
	struct tensor w;
	struct nn_err e = {0};
	if (onnx_initializer_view(onnx_find_initializer(m, init), &w, &e) != NN_OK)
		return false;
	bool found = false;
	for (int64_t r = 0; r < w.shape[0] && !found; r++)
		found = !memcmp((const float *)w.data + r * k, row, (size_t)k * sizeof *row);
	tensor_free(&w);
	return found;
}

static int test_planted_mlp(void)
{
	struct onnx_model *m = model_at(data_dir, "dead_mlp.onnx");
	CHECK(m, "model");
	float *x = make_input(200 * 784, 3);
	json_t *mt = NULL;
	if (dead_exact(m, x, 200, &mt))
		return 1;
	json_t *l1 = find_layer(mt, "fc1.w"), *l2 = find_layer(mt, "fc2.w");
	CHECK(l1 && jint(l1, "removed") >= 4 && jint(l1, "dead") == jint(l1, "removed"),
	      "fc1: the 4 planted neurons (at least) removed");
	CHECK(l2 && jint(l2, "removed") >= 2, "fc2: the 2 planted neurons removed");
	Onnx__TensorProto *w1 = onnx_find_initializer(m, "fc1.w");
	CHECK(w1->dims[0] == 64 - jint(l1, "removed"), "fc1 rows");
	/* no all-zero row is left: the planted ones are gone */
	float zeros[784] = {0};
	CHECK(!has_row(m, "fc1.w", zeros, 784), "planted fc1 rows gone");
	CHECK(!has_row(m, "fc2.w", zeros, w1->dims[0]), "planted fc2 rows gone");
	CHECK(onnx_find_initializer(m, "fc2.w")->dims[1] == w1->dims[0], "fc2 inputs follow");
	CHECK(jint(mt, "parameters_after") < jint(mt, "parameters_before"), "smaller");
	json_decref(mt);
	free(x);
	onnx_free(m);
	return 0;
}

static int test_planted_cnn(void)
{
	struct onnx_model *m = model_at(data_dir, "dead_cnn.onnx");
	CHECK(m, "model");
	float *x = make_input(100 * 784, 4);
	json_t *mt = NULL;
	if (dead_exact(m, x, 100, &mt))
		return 1;
	json_t *c1 = find_layer(mt, "conv1.w"), *c2 = find_layer(mt, "conv2.w");
	CHECK(c1 && jint(c1, "removed") >= 1, "conv1: the channel BatchNorm+ReLU kills removed");
	CHECK(c2 && jint(c2, "removed") >= 2, "conv2: the 2 planted channels removed");
	CHECK(onnx_find_initializer(m, "bn1.scale")->dims[0] == 8 - jint(c1, "removed"), "BN follows");
	CHECK(onnx_find_initializer(m, "fc.w")->dims[1] == (12 - jint(c2, "removed")) * 36,
	      "fc loses 36 inputs per channel through the Flatten");
	json_decref(mt);
	free(x);
	onnx_free(m);
	return 0;
}

/* Trained fixtures on 1,000 real digits: whatever is dead there goes, and
 * the outputs stay identical. */
static int test_trained(void)
{
	float *x = mnist(1000);
	if (!x) {
		fprintf(stderr, "MNIST not found under %s: skipped\n", mnist_dir);
		return 77;
	}
	const char *names[] = {"lenet300.onnx", "lenet5_bn.onnx", "cnn.onnx", "resnet_block.onnx"};
	int64_t removed = 0;
	for (size_t i = 0; i < 4; i++) {
		struct onnx_model *m = model_at(fixtures, names[i]);
		CHECK(m, "%s", names[i]);
		json_t *mt = NULL;
		if (dead_exact(m, x, 1000, &mt))
			return 1;
		fprintf(stderr, "%s: %lld dead channels removed, parameters %lld -> %lld\n", names[i],
			(long long)jint(mt, "removed"), (long long)jint(mt, "parameters_before"),
			(long long)jint(mt, "parameters_after"));
		removed += jint(mt, "removed");
		json_decref(mt);
		onnx_free(m);
	}
	CHECK(removed > 0, "the trained fixtures have dead neurons on real digits");
	free(x);
	return 0;
}

static int test_needs_data(void)
{
	struct onnx_model *m = model_at(data_dir, "dead_mlp.onnx");
	CHECK(m, "model");
	struct prune_params p = {.method = PRUNE_DEAD};
	struct nn_err e = {0};
	json_t *mt = NULL;
	struct step_ctx ctx = {0};
	CHECK(prune_run(m, &p, NULL, &mt, &e) == NN_EINVAL && !strcmp(e.code, "invalid_spec") &&
		      strstr(e.message, "needs calibration data: name a dataset"),
	      "no ctx: %s", e.message);
	CHECK(prune_run(m, &p, &ctx, &mt, &e) == NN_EINVAL && strstr(e.message, "\"dataset\""),
	      "no calib: %s", e.message);
	CHECK(!mt, "no metrics");
	onnx_free(m);
	return 0;
}

static int test_onnxruntime_agrees(const char *node, const char *modules, const char *script)
{
	char dir[] = "/tmp/nncd-dead-XXXXXX";
	CHECK(mkdtemp(dir), "mkdtemp");
	struct ort_case cs[2];
	const char *names[] = {"dead_mlp.onnx", "dead_cnn.onnx"};
	for (size_t i = 0; i < 2; i++) {
		struct onnx_model *m = model_at(data_dir, names[i]);
		CHECK(m, "model");
		float *x = make_input(64 * 784, 6);
		json_t *mt = NULL;
		if (dead_exact(m, x, 64, &mt))
			return 1;
		char name[64];
		snprintf(name, sizeof name, "%s", names[i]);
		*strrchr(name, '.') = '\0';
		if (ort_case_write(m, dir, name, 8, &cs[i]))
			return 1;
		json_decref(mt);
		free(x);
		onnx_free(m);
	}
	int rc = ort_cases_check(node, modules, script, cs, 2);
	for (size_t i = 0; i < 2; i++) {
		unlink(cs[i].model);
		unlink(cs[i].input);
		unlink(cs[i].ours);
	}
	rmdir(dir);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: test_dead CASE FIXTURES_DIR DATA_DIR MNIST_DIR [NODE MODULES SCRIPT]\n");
		return 2;
	}
	fixtures = argv[2];
	data_dir = argv[3];
	mnist_dir = argv[4];
	const char *c = argv[1];
	if (!strcmp(c, "planted_mlp"))
		return test_planted_mlp();
	if (!strcmp(c, "planted_cnn"))
		return test_planted_cnn();
	if (!strcmp(c, "trained"))
		return test_trained();
	if (!strcmp(c, "needs_data"))
		return test_needs_data();
	if (!strcmp(c, "onnxruntime_agrees"))
		return test_onnxruntime_agrees(argc > 5 ? argv[5] : "", argc > 6 ? argv[6] : "",
					       argc > 7 ? argv[7] : "");
	fprintf(stderr, "unknown case %s\n", c);
	return 2;
}
