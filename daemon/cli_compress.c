/* cli_compress: `nncd compress` (see cli_compress.h). */
#include "cli_compress.h"

#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli_data.h"
#include "config.h"
#include "eval.h"
#include "job_data.h"
#include "onnx_io.h"
#include "onnx_summary.h"
#include "pipeline.h"
#include "spec.h"

#define CLI_MAX_MAPPINGS 32

/* An id of the spec mapped to a local file. */
struct cli_mapping {
	const char *id, *path;
};

struct cli_compress_opts {
	const char *in, *spec, *out;
	struct cli_mapping datasets[CLI_MAX_MAPPINGS], models[CLI_MAX_MAPPINGS];
	size_t n_datasets, n_models;
	unsigned threads;
};

static void usage(void)
{
	fprintf(stderr, "usage: nncd compress IN.onnx --spec SPEC.json -o OUT.onnx\n"
			"                     [--dataset ID=DATA.npz|X.npy]... "
			"[--model ID=MODEL.onnx]... [--threads N]\n");
}

/* "ID=PATH" into m; 2 on a malformed or surplus mapping. */
static int add_mapping(const char *flag, char *arg, struct cli_mapping *list, size_t *n)
{
	char *eq = strchr(arg, '=');
	if (!eq || eq == arg || !eq[1]) {
		fprintf(stderr, "nncd compress: %s needs ID=PATH, got '%s'\n", flag, arg);
		return 2;
	}
	if (*n == CLI_MAX_MAPPINGS) {
		fprintf(stderr, "nncd compress: at most %d %s mappings\n", CLI_MAX_MAPPINGS, flag);
		return 2;
	}
	*eq = '\0';
	list[(*n)++] = (struct cli_mapping){arg, eq + 1};
	return 0;
}

static int parse_args(int argc, char **argv, struct cli_compress_opts *o)
{
	memset(o, 0, sizeof *o);
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	o->threads = cores > 0 ? (unsigned)cores : 1;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		char *v = i + 1 < argc ? argv[i + 1] : NULL, *end = NULL;
		int rc = 0;
		if ((!strcmp(a, "--spec") || !strcmp(a, "-s")) && v) {
			o->spec = argv[++i];
		} else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && v) {
			o->out = argv[++i];
		} else if (!strcmp(a, "--dataset") && v) {
			rc = add_mapping(a, argv[++i], o->datasets, &o->n_datasets);
		} else if (!strcmp(a, "--model") && v) {
			rc = add_mapping(a, argv[++i], o->models, &o->n_models);
		} else if (!strcmp(a, "--threads") && v) {
			long t = strtol(argv[++i], &end, 10);
			if (*end || t < 1 || t > 256) {
				fprintf(stderr, "nncd compress: --threads must be in [1, 256]\n");
				rc = 2;
			}
			o->threads = (unsigned)t;
		} else if (a[0] != '-' && !o->in) {
			o->in = a;
		} else {
			fprintf(stderr, "nncd compress: unexpected argument '%s'\n", a);
			rc = 2;
		}
		if (rc)
			return rc;
	}
	if (!o->in || !o->spec || !o->out) {
		fprintf(stderr, "nncd compress: need IN.onnx, --spec SPEC.json and -o OUT.onnx\n");
		return 2;
	}
	return 0;
}

static const char *mapped(const struct cli_mapping *list, size_t n, const char *id)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(list[i].id, id))
			return list[i].path;
	return NULL;
}

static enum nn_status cli_dataset(void *ud, const char *id, struct job_arrays *out,
				  struct nn_err *e)
{
	const struct cli_compress_opts *o = ud;
	const char *path = mapped(o->datasets, o->n_datasets, id);
	if (!path)
		return err_set(e, NN_ENOTFOUND, "unknown_dataset", "",
			       "dataset %s is not mapped to a file: add --dataset %s=DATA.npz", id,
			       id);
	return cli_data_open(path, out, e);
}

static enum nn_status cli_model(void *ud, const char *id, struct onnx_model **out,
				struct nn_err *e)
{
	const struct cli_compress_opts *o = ud;
	const char *path = mapped(o->models, o->n_models, id);
	if (!path)
		return err_set(e, NN_ENOTFOUND, "unknown_model", "",
			       "model %s is not mapped to a file: add --model %s=MODEL.onnx", id, id);
	return onnx_load_file(path, out, e);
}

static void on_step(void *ud, size_t index, const char *op, const char *state,
		    const json_t *metrics)
{
	json_t *steps = ud;
	fprintf(stderr, "step %zu (%s): %s\n", index, op, state);
	if (metrics)
		json_array_append_new(steps, json_pack("{s:s, s:s, s:O}", "op", op, "state", state,
						       "metrics", metrics));
}

static void on_event(void *ud, size_t index, const char *op, const char *type,
		     const json_t *data)
{
	(void)ud;
	char *text = json_dumps(data, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
	fprintf(stderr, "step %zu (%s): %s %s\n", index, op, type, text ? text : "");
	free(text);
}

/* The input model's figures when the spec asks for "eval" (and its outputs
 * as the fidelity reference), as a daemon job records them. */
static enum nn_status evaluate_input(const struct onnx_model *m, struct job_inputs *in,
				     unsigned threads, struct eval_outputs *reference,
				     struct pipeline_eval *pe, json_t **figures, struct nn_err *e)
{
	if (!in->spec.requested)
		return NN_OK;
	struct eval_opts opts = {.metrics = in->spec.metrics, .threads = threads};
	enum nn_status st = eval_model(m, in->pipeline.eval, &opts, NULL,
				       (opts.metrics & EVAL_FIDELITY) ? reference : NULL, NULL,
				       figures, e);
	if (st != NN_OK) {
		err_prefix(e, "evaluating the input model");
		return st;
	}
	if (reference->values)
		in->pipeline.reference = reference;
	*pe = (struct pipeline_eval){in->pipeline.eval, opts, in->pipeline.reference};
	return NN_OK;
}

static void print_report(const struct cli_compress_opts *o, json_t *steps, json_t *input_figures)
{
	json_t *report =
		json_pack("{s:s, s:s, s:O}", "input", o->in, "output", o->out, "steps", steps);
	if (!report)
		return;
	/* the artifact's opset/IR/contrib ops and its check in nncd's executor */
	const json_t *runtime = json_object_get(
		json_object_get(json_array_get(steps, json_array_size(steps) - 1), "metrics"),
		"artifact");
	if (runtime) {
		json_object_set(report, "artifact_runtime", (json_t *)runtime);
		fprintf(stderr, "artifact: ONNX IR %lld, opset %lld, %s; runs in nncd's executor\n",
			(long long)json_integer_value(json_object_get(runtime, "ir_version")),
			(long long)json_integer_value(json_object_get(runtime, "opset")),
			json_array_size(json_object_get(runtime, "contrib_ops"))
				? "contrib operators (see artifact_runtime.contrib_ops)"
				: "no contrib operators");
	}
	if (input_figures)
		json_object_set_new(report, "metrics", json_pack("{s:O}", "input", input_figures));
	json_dumpf(report, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
	fputc('\n', stdout);
	json_decref(report);
}

int cli_compress_main(int argc, char **argv)
{
	struct cli_compress_opts o;
	int rc = parse_args(argc, argv, &o);
	if (rc) {
		usage();
		return rc;
	}
	/* The executor splits batches over its own threads; OpenBLAS inside
	 * each slice stays single-threaded so threads never oversubscribe. */
	openblas_set_num_threads(1);
	rc = 1;
	int fd = -1;
	struct nn_err e = {0};
	json_t *spec = NULL, *summary = NULL, *steps = json_array(), *input_figures = NULL;
	struct onnx_model *model = NULL;
	struct job_inputs in = {0};
	struct eval_outputs reference = {0};
	struct pipeline_eval pe = {0};
	struct job_source src = {&o, cli_dataset, cli_model};
	json_error_t jerr;
	if (!(spec = json_load_file(o.spec, JSON_REJECT_DUPLICATES, &jerr))) {
		fprintf(stderr, "nncd compress: %s: not valid JSON: %s (line %d, column %d)\n", o.spec,
			jerr.text, jerr.line, jerr.column);
		goto done;
	}
	if ((fd = open(o.in, O_RDONLY | O_CLOEXEC)) < 0) {
		fprintf(stderr, "nncd compress: %s: %s\n", o.in, strerror(errno));
		goto done;
	}
	if (onnx_summarize_fd(fd, &summary, &e) != NN_OK ||
	    spec_validate(spec, summary, &e) != NN_OK || onnx_load_file(o.in, &model, &e) != NN_OK ||
	    job_inputs_load(&src, spec, model, o.threads, &in, &e) != NN_OK ||
	    evaluate_input(model, &in, o.threads, &reference, &pe, &input_figures, &e) != NN_OK)
		goto fail;
	struct pipeline_hooks hooks = {.ud = steps,
				       .on_step = on_step,
				       .on_event = on_event,
				       .eval = in.spec.requested ? &pe : NULL,
				       .data = &in.pipeline};
	if (pipeline_run(model, spec, &hooks, &e) != NN_OK || onnx_save_file(model, o.out, &e) != NN_OK)
		goto fail;
	print_report(&o, steps, input_figures);
	rc = 0;
	goto done;
fail:
	fprintf(stderr, "nncd compress: %s%s%s\n", e.message, e.field[0] ? " at " : "", e.field);
done:
	if (fd >= 0)
		close(fd);
	job_inputs_free(&in);
	eval_outputs_free(&reference);
	onnx_free(model);
	json_decref(summary);
	json_decref(spec);
	json_decref(steps);
	json_decref(input_figures);
	return rc;
}
