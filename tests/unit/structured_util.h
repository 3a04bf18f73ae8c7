/* Helpers shared by test_structured.c and test_dead.c: load a model, run it
 * with the executor, count parameters, find a layer in a step's metrics, and
 * the ONNX Runtime / onnx.checker check of written artifacts. */
#ifndef NNCD_TEST_STRUCTURED_UTIL_H
#define NNCD_TEST_STRUCTURED_UTIL_H

#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "exec.h"
#include "onnx_io.h"
#include "prune.h"

extern char **environ;

static struct onnx_model *load_model(const char *path)
{
	struct onnx_model *m = NULL;
	struct nn_err e = {0};
	if (onnx_load_file(path, &m, &e) != NN_OK) {
		fprintf(stderr, "load %s: %s\n", path, e.message);
		return NULL;
	}
	return m;
}

/* Deterministic inputs in [0, 1) (image-like). */
static float *make_input(int64_t n, uint32_t seed)
{
	float *x = malloc((size_t)n * sizeof *x);
	uint32_t s = seed;
	for (int64_t i = 0; x && i < n; i++) {
		s = s * 1664525u + 1013904223u;
		x[i] = (float)(s >> 8) / 16777216.0f;
	}
	return x;
}

/* Runs m on x ([batch, sample...] with the model's own input dims) and
 * returns the first output (malloc'd, *width per sample). */
static float *run_model(const struct onnx_model *m, const float *x, int64_t batch, int64_t *width)
{
	struct exec_plan *p = NULL;
	struct nn_err e = {0};
	if (exec_compile(m, batch, &p, &e) != NN_OK) {
		fprintf(stderr, "compile: %s\n", e.message);
		return NULL;
	}
	struct tensor in = *exec_input_spec(p, 0);
	in.data = (void *)x;
	size_t no = exec_output_count(p);
	struct tensor *outs = calloc(no, sizeof *outs);
	float *y = NULL;
	if (outs && exec_run(p, &in, 1, outs, no, &e) == NN_OK) {
		int64_t n = tensor_numel(&outs[0]);
		*width = n / batch;
		y = malloc((size_t)n * sizeof *y);
		if (y)
			memcpy(y, outs[0].data, (size_t)n * sizeof *y);
	} else {
		fprintf(stderr, "run: %s\n", e.message);
	}
	free(outs);
	exec_free(p);
	return y;
}

static int64_t input_numel(const struct onnx_model *m, int64_t batch, int64_t shape[8], int *ndim)
{
	struct exec_plan *p = NULL;
	struct nn_err e = {0};
	if (exec_compile(m, batch, &p, &e) != NN_OK)
		return -1;
	const struct tensor *t = exec_input_spec(p, 0);
	*ndim = t->ndim;
	memcpy(shape, t->shape, (size_t)t->ndim * sizeof *shape);
	int64_t n = tensor_numel(t);
	exec_free(p);
	return n;
}

static json_t *find_layer(json_t *metrics, const char *name)
{
	json_t *layers = json_object_get(metrics, "layers"), *l;
	size_t i;
	json_array_foreach(layers, i, l) {
		if (!strcmp(json_string_value(json_object_get(l, "name")), name))
			return l;
	}
	return NULL;
}

static int64_t jint(json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

static int spawn_wait(char *const argv[])
{
	pid_t pid;
	if (posix_spawn(&pid, argv[0], NULL, NULL, argv, environ) != 0)
		return -1;
	int status;
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

static int write_f32(const char *path, const float *v, int64_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return 1;
	size_t w = fwrite(v, sizeof *v, (size_t)n, f);
	return fclose(f) != 0 || w != (size_t)n;
}

#define PYTHON "/usr/bin/python3"
#define CHECKER_PY                                                                   \
	"import sys\n"                                                               \
	"try:\n"                                                                     \
	"    import onnx\n"                                                          \
	"except ImportError:\n"                                                      \
	"    sys.exit(77)\n"                                                         \
	"for p in sys.argv[1:]:\n"                                                   \
	"    onnx.checker.check_model(onnx.load(p))\n"                               \
	"    print('onnx.checker ok:', p.rsplit('/', 1)[-1])\n"

/* Artifacts written to check with ONNX Runtime and onnx.checker. */
struct ort_case {
	char model[256], input[256], ours[256], dims[64];
};

/* Saves m with its input x and our outputs on it into dir as case c. */
static int ort_case_write(const struct onnx_model *m, const char *dir, const char *name,
			  int64_t batch, struct ort_case *c)
{
	int64_t shape[8];
	int nd;
	int64_t n = input_numel(m, batch, shape, &nd);
	CHECK(n > 0, "%s: input shape", name);
	float *x = make_input(n, 77);
	int64_t width;
	float *y = run_model(m, x, batch, &width);
	CHECK(y, "%s: our executor runs it", name);
	snprintf(c->model, sizeof c->model, "%s/%s.onnx", dir, name);
	snprintf(c->input, sizeof c->input, "%s/%s.in.f32", dir, name);
	snprintf(c->ours, sizeof c->ours, "%s/%s.out.f32", dir, name);
	size_t at = 0;
	for (int d = 0; d < nd; d++)
		at += (size_t)snprintf(c->dims + at, sizeof c->dims - at, "%s%lld", d ? "x" : "",
				       (long long)shape[d]);
	struct nn_err e = {0};
	CHECK(onnx_save_file(m, c->model, &e) == NN_OK, "save: %s", e.message);
	CHECK(!write_f32(c->input, x, n) && !write_f32(c->ours, y, width * batch), "write");
	free(x);
	free(y);
	return 0;
}

/* Runs the node script on every case and python3-onnx's checker on every
 * model. 0 when both pass, 77 when neither tool is available. */
static int ort_cases_check(const char *node, const char *modules, const char *script,
			   struct ort_case *cs, size_t n)
{
	char probe[1024];
	struct stat sb;
	snprintf(probe, sizeof probe, "%s/onnxruntime-node", modules);
	bool have_ort = node && node[0] && access(node, X_OK) == 0 && stat(probe, &sb) == 0;
	bool have_py = access(PYTHON, X_OK) == 0;
	if (!have_ort && !have_py)
		return 77;
	int ort_rc = 77, py_rc = 77;
	char specs[16][700];
	if (have_ort) {
		char *argv[20] = {(char *)node, (char *)script, (char *)modules};
		for (size_t i = 0; i < n && i < 16; i++) {
			snprintf(specs[i], sizeof specs[i], "%s:%s:%s:%s", cs[i].model, cs[i].input,
				 cs[i].ours, cs[i].dims);
			argv[3 + i] = specs[i];
		}
		ort_rc = spawn_wait(argv);
	}
	if (have_py) {
		char *argv[20] = {PYTHON, "-c", CHECKER_PY};
		for (size_t i = 0; i < n && i < 16; i++)
			argv[3 + i] = cs[i].model;
		py_rc = spawn_wait(argv);
	}
	CHECK(ort_rc == 0 || ort_rc == 77, "ONNX Runtime disagrees or cannot load (exit %d)", ort_rc);
	CHECK(py_rc == 0 || py_rc == 77, "onnx.checker rejected a model (exit %d)", py_rc);
	return ort_rc == 0 || py_rc == 0 ? 0 : 77;
}

#endif
