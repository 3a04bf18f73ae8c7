/* cli_eval: offline evaluation of a model file on a local .npz/.npy (see
 * cli_eval.h; the files are read by cli_data). */
#include "cli_eval.h"

#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <jansson.h>

#include "cli_data.h"
#include "dataset.h"
#include "eval.h"
#include "npz.h"
#include "onnx_io.h"

struct cli_opts {
	const char *model, *data, *labels, *reference, *metrics;
	double scale, holdout;
	unsigned threads;
};

static void usage(void)
{
	fprintf(stderr,
		"usage: nncd eval MODEL.onnx --data DATA.npz|X.npy [--labels Y.npy] [--scale S]\n"
		"                 [--holdout F] [--metrics accuracy,fidelity,size,latency]\n"
		"                 [--reference ORIGINAL.onnx] [--threads N]\n");
}

static int parse_args(int argc, char **argv, struct cli_opts *o)
{
	memset(o, 0, sizeof *o);
	o->scale = 1.0;
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	o->threads = cores > 0 ? (unsigned)cores : 1;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		char *end = NULL;
		if (!strcmp(a, "--data") && v)
			o->data = argv[++i];
		else if (!strcmp(a, "--labels") && v)
			o->labels = argv[++i];
		else if (!strcmp(a, "--reference") && v)
			o->reference = argv[++i];
		else if (!strcmp(a, "--metrics") && v)
			o->metrics = argv[++i];
		else if (!strcmp(a, "--scale") && v) {
			o->scale = strtod(argv[++i], &end);
			if (*end || !(o->scale > 0))
				return fprintf(stderr, "nncd eval: --scale must be a number > 0\n"), 2;
		} else if (!strcmp(a, "--holdout") && v) {
			o->holdout = strtod(argv[++i], &end);
			if (*end || !(o->holdout > 0 && o->holdout < 1))
				return fprintf(stderr, "nncd eval: --holdout must be in (0, 1)\n"), 2;
		} else if (!strcmp(a, "--threads") && v) {
			long t = strtol(argv[++i], &end, 10);
			if (*end || t < 1 || t > 256)
				return fprintf(stderr, "nncd eval: --threads must be in [1, 256]\n"), 2;
			o->threads = (unsigned)t;
		} else if (a[0] != '-' && !o->model)
			o->model = a;
		else
			return fprintf(stderr, "nncd eval: unexpected argument '%s'\n", a), 2;
	}
	if (!o->model || !o->data) {
		fprintf(stderr, "nncd eval: need MODEL.onnx and --data DATA.npz\n");
		return 2;
	}
	return 0;
}

static enum nn_status load_set(const struct cli_opts *o, const struct onnx_model *m,
			       struct eval_set *set, struct nn_err *e)
{
	struct job_arrays arrays = {0}, labels = {0};
	size_t xi = 0;
	long yi = -1;
	int labels_fd = -1;
	const char *names[NPZ_MAX_MEMBERS];
	const char *input_name;
	struct tensor shape;
	enum nn_status st = eval_model_input(m, &input_name, &shape, e);
	if (st == NN_OK)
		st = cli_data_open(o->data, &arrays, e);
	for (size_t i = 0; i < arrays.n; i++)
		names[i] = arrays.names[i];
	if (st == NN_OK)
		st = dataset_pick_arrays(names, arrays.n, input_name, &xi, &yi, e);
	if (st == NN_OK && o->labels) {
		st = cli_data_open(o->labels, &labels, e);
		labels_fd = st == NN_OK ? labels.fds[0] : -1;
	} else if (st == NN_OK && yi >= 0) {
		labels_fd = arrays.fds[yi];
	}
	if (st == NN_OK)
		st = eval_load_set(m, arrays.fds[xi], labels_fd, o->scale, o->holdout,
				   EVAL_PART_HELD_OUT, set, e);
	job_arrays_close(&arrays);
	job_arrays_close(&labels);
	return st;
}

static int fail(const struct nn_err *e)
{
	fprintf(stderr, "nncd eval: %s\n", e->message);
	return 1;
}

int cli_eval_main(int argc, char **argv)
{
	struct cli_opts o;
	int rc = parse_args(argc, argv, &o);
	if (rc) {
		usage();
		return rc;
	}
	struct nn_err e = {0};
	struct eval_opts eo = {.threads = o.threads};
	json_t *list = NULL;
	if (o.metrics) {
		list = json_array();
		char *copy = strdup(o.metrics), *save = NULL;
		for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save))
			json_array_append_new(list, json_string(t));
		free(copy);
	}
	enum nn_status st = eval_parse_metrics(list, "--metrics", &eo.metrics, &e);
	json_decref(list);
	if (st != NN_OK)
		return fail(&e);
	/* The executor splits batches over its own threads; OpenBLAS inside
	 * each slice stays single-threaded so threads never oversubscribe. */
	openblas_set_num_threads(1);

	struct onnx_model *model = NULL, *ref_model = NULL;
	struct eval_set set = {0};
	struct eval_outputs ref = {0};
	json_t *metrics = NULL, *ref_metrics = NULL;
	rc = 1;
	if ((st = onnx_load_file(o.model, &model, &e)) != NN_OK)
		goto done;
	if ((st = load_set(&o, model, &set, &e)) != NN_OK)
		goto done;
	struct eval_data data = {&set.inputs, set.labels};
	if (o.reference) {
		if ((st = onnx_load_file(o.reference, &ref_model, &e)) != NN_OK)
			goto done;
		if ((st = eval_model(ref_model, &data, &eo, NULL, &ref, NULL, &ref_metrics, &e)) !=
		    NN_OK) {
			err_prefix(&e, "reference %s", o.reference);
			goto done;
		}
	}
	if ((st = eval_model(model, &data, &eo, o.reference ? &ref : NULL, NULL, NULL, &metrics,
			     &e)) != NN_OK)
		goto done;
	json_t *report = json_pack("{s:s, s:s, s:O}", "model", o.model, "data", o.data, "metrics",
				   metrics);
	if (report && ref_metrics)
		json_object_set(report, "reference_metrics", ref_metrics);
	if (!report || json_dumpf(report, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
							  JSON_REAL_PRECISION(15))) {
		json_decref(report);
		st = err_set(&e, NN_EIO, "io_error", "", "cannot write the report");
		goto done;
	}
	fputc('\n', stdout);
	json_decref(report);
	rc = 0;
done:
	if (rc && st != NN_OK)
		fail(&e);
	json_decref(metrics);
	json_decref(ref_metrics);
	eval_outputs_free(&ref);
	eval_set_free(&set);
	onnx_free(model);
	onnx_free(ref_model);
	return rc;
}
