/* cli_eval: offline evaluation of a model file on a local .npz/.npy (see
 * cli_eval.h). An .npz's members are extracted into anonymous memory files
 * (memfd) so they are read through the same fd-based loaders the daemon uses
 * on its blobs. */
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

#include "dataset.h"
#include "eval.h"
#include "npz.h"
#include "onnx_io.h"

#define CLI_NPZ_MAX_BYTES ((uint64_t)16 << 30)

struct cli_opts {
	const char *model, *data, *labels, *reference, *metrics;
	double scale, holdout;
	unsigned threads;
};

/* An array of the data file, readable through fd. */
struct cli_array {
	char name[NPZ_NAME_CAP];
	int fd;
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

static enum nn_status write_fd(void *ud, const void *data, size_t len, struct nn_err *e)
{
	int fd = *(int *)ud;
	for (size_t done = 0; done < len;) {
		ssize_t w = write(fd, (const char *)data + done, len - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return err_set(e, NN_EIO, "io_error", "", "writing an extracted array: %s",
				       strerror(errno));
		done += (size_t)w;
	}
	return NN_OK;
}

/* The arrays of DATA: one (named "x") for an .npy, every member of an .npz. */
static enum nn_status open_arrays(const char *path, struct cli_array *arrays, size_t *count,
				  struct nn_err *e)
{
	*count = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(e, NN_EIO, "io_error", "", "%s: %s", path, strerror(errno));
	char magic[4] = {0};
	if (pread(fd, magic, sizeof magic, 0) != (ssize_t)sizeof magic || memcmp(magic, "PK", 2)) {
		snprintf(arrays[0].name, sizeof arrays[0].name, "x");
		arrays[0].fd = fd; /* an .npy, or the loader will say what it is not */
		*count = 1;
		return NN_OK;
	}
	struct npz_limits lim = {CLI_NPZ_MAX_BYTES, CLI_NPZ_MAX_BYTES};
	struct npz *z = NULL;
	enum nn_status st = npz_open(fd, &lim, &z, e);
	for (size_t i = 0; st == NN_OK && i < npz_member_count(z); i++) {
		const struct npz_member *m = npz_member_at(z, i);
		int mfd = memfd_create(m->name, MFD_CLOEXEC);
		if (mfd < 0) {
			st = err_set(e, NN_EIO, "io_error", "", "memfd_create: %s", strerror(errno));
			break;
		}
		arrays[*count].fd = mfd;
		snprintf(arrays[*count].name, sizeof arrays[*count].name, "%s", m->name);
		(*count)++;
		st = npz_extract(z, i, write_fd, &mfd, e);
	}
	npz_close(z);
	close(fd);
	if (st == NN_OK && *count == 0)
		st = err_set(e, NN_EINVAL, "invalid_dataset", "", "%s holds no arrays", path);
	if (st != NN_OK)
		err_prefix(e, "%s", path);
	return st;
}

static void close_arrays(struct cli_array *arrays, size_t count)
{
	for (size_t i = 0; i < count; i++)
		close(arrays[i].fd);
}

static enum nn_status load_set(const struct cli_opts *o, const struct onnx_model *m,
			       struct eval_set *set, struct nn_err *e)
{
	struct cli_array arrays[NPZ_MAX_MEMBERS];
	size_t count = 0, xi = 0;
	long yi = -1;
	int labels_fd = -1;
	const char *names[NPZ_MAX_MEMBERS];
	const char *input_name;
	struct tensor shape;
	enum nn_status st = eval_model_input(m, &input_name, &shape, e);
	if (st == NN_OK)
		st = open_arrays(o->data, arrays, &count, e);
	for (size_t i = 0; i < count; i++)
		names[i] = arrays[i].name;
	if (st == NN_OK)
		st = dataset_pick_arrays(names, count, input_name, &xi, &yi, e);
	if (st == NN_OK && o->labels) {
		labels_fd = open(o->labels, O_RDONLY | O_CLOEXEC);
		if (labels_fd < 0)
			st = err_set(e, NN_EIO, "io_error", "", "%s: %s", o->labels, strerror(errno));
	} else if (st == NN_OK && yi >= 0) {
		labels_fd = dup(arrays[yi].fd);
	}
	if (st == NN_OK)
		st = eval_load_set(m, arrays[xi].fd, labels_fd, o->scale, o->holdout,
				   EVAL_PART_HELD_OUT, set, e);
	if (labels_fd >= 0)
		close(labels_fd);
	close_arrays(arrays, count);
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
