/* eval: measured figures of a model on data (see eval.h).
 *
 * One plan at the evaluation batch runs every sample once (a short last
 * batch is padded into a staging buffer, so one plan serves all); its full
 * batches also time the throughput, topped up with repeats until the time
 * budget is spent. A second plan at batch 1 times the per-sample latency.
 * Size is measured by streaming the serialized model through a byte counter
 * and a zstd compressor, never holding the bytes. */
#include "eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zstd.h>

#include "dataset.h"
#include "exec.h"
#include "prune.h"

#define EVAL_DEFAULT_BATCH 64
#define EVAL_DEFAULT_BUDGET 0.3   /* seconds per timing */
#define EVAL_MAX_TIMING_RUNS 2000
#define EVAL_MIN_LATENCY_RUNS 5
#define EVAL_ZSTD_LEVEL 3 /* zstd's default: what `zstd FILE` gives a user */

static const char *const metric_names[] = {"accuracy", "fidelity", "size", "latency", NULL};

enum nn_status eval_parse_metrics(const json_t *list, const char *field, unsigned *out,
				  struct nn_err *e)
{
	char got[96], list_text[128];
	if (!list) {
		*out = EVAL_ALL;
		return NN_OK;
	}
	if (!json_is_array(list) || json_array_size(list) == 0)
		return err_set(e, NN_EINVAL, "invalid_spec", field,
			       "metrics must be a non-empty array of names; supported: %s (got %s)",
			       step_join(metric_names, list_text, sizeof list_text),
			       step_describe_json(list, got, sizeof got));
	unsigned bits = 0;
	for (size_t i = 0; i < json_array_size(list); i++) {
		const json_t *v = json_array_get(list, i);
		const char *name = json_string_value(v);
		size_t k = 0;
		while (name && metric_names[k] && strcmp(metric_names[k], name))
			k++;
		if (!name || !metric_names[k])
			return err_set(e, NN_EINVAL, "invalid_spec", field,
				       "unknown metric %s; supported: %s",
				       step_describe_json(v, got, sizeof got),
				       step_join(metric_names, list_text, sizeof list_text));
		bits |= 1u << k;
	}
	*out = bits;
	return NN_OK;
}

void eval_outputs_free(struct eval_outputs *o)
{
	if (!o)
		return;
	free(o->values);
	o->values = NULL;
	o->n = o->width = 0;
}

/* Read from the graph itself: compiling a plan just for the input's shape
 * would pack every weight (eval_model compiles the plans it runs). */
enum nn_status eval_model_input(const struct onnx_model *m, const char **name, struct tensor *shape,
				struct nn_err *e)
{
	const Onnx__GraphProto *g = m->proto->graph;
	const Onnx__ValueInfoProto *in = NULL;
	size_t count = 0;
	for (size_t i = 0; i < g->n_input; i++) {
		if (g->input[i]->name && onnx_find_initializer(m, g->input[i]->name))
			continue; /* IR < 4 lists initializers among the inputs */
		in = g->input[i];
		count++;
	}
	if (count != 1)
		return err_set(e, NN_EINVAL, "invalid_spec", "eval",
			       "evaluation needs a model with exactly one graph input; this one has %zu",
			       count);
	const char *nm = in->name ? in->name : "";
	const Onnx__TypeProto *tp = in->type;
	const Onnx__TypeProto__Tensor *tt =
		tp && tp->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ? tp->tensor_type : NULL;
	if (!tt || tt->elem_type != DT_FLOAT)
		return err_set(e, NN_EUNSUPPORTED, "unsupported_dtype", "eval",
			       "evaluation feeds float32 inputs; graph input '%.100s' is %s", nm,
			       tt ? dtype_name((enum dtype)tt->elem_type) : "not a tensor");
	if (!tt->shape || tt->shape->n_dim < 1 || tt->shape->n_dim > TENSOR_MAX_DIMS)
		return err_set(e, NN_EUNSUPPORTED, "unsupported_operator", "eval",
			       "graph input '%.100s' needs a known rank of 1 to %d", nm,
			       TENSOR_MAX_DIMS);
	memset(shape, 0, sizeof *shape);
	shape->dtype = DT_FLOAT;
	shape->ndim = (int)tt->shape->n_dim;
	shape->shape[0] = -1;
	for (size_t d = 1; d < tt->shape->n_dim; d++) {
		const Onnx__TensorShapeProto__Dimension *dim = tt->shape->dim[d];
		if (!dim || dim->value_case != ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE ||
		    dim->dim_value < 0)
			return err_set(e, NN_EUNSUPPORTED, "unsupported_operator", "eval",
				       "graph input '%.100s' has a symbolic dimension %zu (only the "
				       "first, batch, dimension may be symbolic)",
				       nm, d);
		shape->shape[d] = dim->dim_value;
	}
	*name = nm;
	return NN_OK;
}

void eval_set_free(struct eval_set *s)
{
	if (!s)
		return;
	tensor_free(&s->inputs);
	free(s->labels);
	s->labels = NULL;
}

enum nn_status eval_load_set(const struct onnx_model *m, int inputs_fd, int labels_fd,
			     double scale, double holdout, enum eval_part part,
			     struct eval_set *out, struct nn_err *e)
{
	memset(out, 0, sizeof *out);
	const char *name;
	struct tensor shape;
	int64_t *perm = NULL, n_labels = 0, n_kept = 0;
	enum nn_status st = eval_model_input(m, &name, &shape, e);
	if (st != NN_OK)
		return st;
	if ((st = dataset_load_inputs(inputs_fd, shape.shape + 1, shape.ndim - 1, scale, &out->inputs,
				      e)) != NN_OK)
		goto fail;
	int64_t n = out->inputs.shape[0];
	if (labels_fd >= 0) {
		if ((st = dataset_load_labels(labels_fd, &out->labels, &n_labels, e)) != NN_OK)
			goto fail;
		if (n_labels != n) {
			st = err_set(e, NN_EINVAL, "invalid_dataset", "",
				     "mismatched N: the inputs have %lld samples, the labels %lld",
				     (long long)n, (long long)n_labels);
			goto fail;
		}
	}
	if (holdout > 0) {
		if ((st = dataset_holdout(n, holdout, EVAL_HOLDOUT_SEED, &perm, &n_kept, e)) != NN_OK)
			goto fail;
		struct tensor rows;
		int64_t *labels = NULL;
		const int64_t *idx = part == EVAL_PART_KEPT ? perm : perm + n_kept;
		int64_t count = part == EVAL_PART_KEPT ? n_kept : n - n_kept;
		if ((st = dataset_take_rows(&out->inputs, idx, count, &rows, e)) != NN_OK)
			goto fail;
		if (out->labels &&
		    (st = dataset_take_labels(out->labels, idx, count, &labels, e)) != NN_OK) {
			tensor_free(&rows);
			goto fail;
		}
		tensor_free(&out->inputs);
		out->inputs = rows;
		if (out->labels) {
			free(out->labels);
			out->labels = labels;
		}
		free(perm);
	}
	return NN_OK;
fail:
	free(perm);
	eval_set_free(out);
	return st;
}

/* ---- size ---- */

struct size_sink {
	ZSTD_CCtx *z;
	uint64_t bytes, zbytes;
	unsigned char buf[1 << 16];
};

static enum nn_status compress_chunk(struct size_sink *s, const void *data, size_t len,
				     ZSTD_EndDirective mode, struct nn_err *e)
{
	ZSTD_inBuffer in = {data, len, 0};
	size_t left;
	do {
		ZSTD_outBuffer out = {s->buf, sizeof s->buf, 0};
		left = ZSTD_compressStream2(s->z, &out, &in, mode);
		if (ZSTD_isError(left))
			return err_set(e, NN_EINTERNAL, "internal", "", "zstd: %s",
				       ZSTD_getErrorName(left));
		s->zbytes += out.pos;
	} while (mode == ZSTD_e_end ? left != 0 : in.pos < in.size);
	return NN_OK;
}

static enum nn_status size_write(void *ud, const void *data, size_t len, struct nn_err *e)
{
	struct size_sink *s = ud;
	s->bytes += len;
	return compress_chunk(s, data, len, ZSTD_e_continue, e);
}

static enum nn_status measure_size(const struct onnx_model *m, json_t *out, struct nn_err *e)
{
	struct size_sink *s = malloc(sizeof *s);
	if (!s)
		return err_set(e, NN_ENOMEM, NULL, NULL, "out of memory measuring size");
	s->bytes = s->zbytes = 0;
	s->z = ZSTD_createCCtx();
	enum nn_status st = NN_OK;
	if (!s->z) {
		st = err_set(e, NN_ENOMEM, NULL, NULL, "out of memory for zstd");
		goto done;
	}
	ZSTD_CCtx_setParameter(s->z, ZSTD_c_compressionLevel, EVAL_ZSTD_LEVEL);
	if ((st = onnx_save(m, size_write, s, e)) != NN_OK)
		goto done;
	if ((st = compress_chunk(s, NULL, 0, ZSTD_e_end, e)) != NN_OK)
		goto done;
	uint64_t params, nonzeros;
	prune_model_counts(m, &params, &nonzeros);
	int bad = step_json_set(out, "parameters", json_integer((json_int_t)params));
	bad |= step_json_set(out, "nonzeros", json_integer((json_int_t)nonzeros));
	bad |= step_json_set(out, "bytes", json_integer((json_int_t)s->bytes));
	bad |= step_json_set(out, "bytes_zstd", json_integer((json_int_t)s->zbytes));
	if (bad)
		st = err_set(e, NN_ENOMEM, NULL, NULL, "out of memory");
done:
	ZSTD_freeCCtx(s->z);
	free(s);
	return st;
}

/* ---- runs ---- */

static double now_seconds(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static size_t row_floats(const struct tensor *t)
{
	size_t r = 1;
	for (int d = 1; d < t->ndim; d++)
		r *= (size_t)t->shape[d];
	return r;
}

static int64_t argmax(const float *v, int64_t n)
{
	int64_t best = 0;
	for (int64_t i = 1; i < n; i++)
		if (v[i] > v[best] || (isnan(v[best]) && !isnan(v[i])))
			best = i;
	return best;
}

struct batch_run {
	struct exec_plan *plan;
	int64_t batch;
	size_t in_row;      /* floats per input sample */
	float *staging;     /* batch * in_row, for a short last batch */
	int64_t width;      /* floats per output sample */
	double timed_seconds;
	int64_t timed_samples;
};

/* Runs samples [first, first + count) (count <= batch); *outputs points into
 * the plan's output buffer (first output). Full batches are timed. */
static enum nn_status run_batch(struct batch_run *r, const struct tensor *inputs, int64_t first,
				int64_t count, const float **outputs, struct nn_err *e)
{
	const struct tensor *spec = exec_input_spec(r->plan, 0);
	struct tensor in = *spec, out[1];
	const float *src = (const float *)inputs->data + (size_t)first * r->in_row;
	if (count == r->batch) {
		in.data = (void *)src;
	} else {
		memcpy(r->staging, src, sizeof(float) * (size_t)count * r->in_row);
		memset(r->staging + (size_t)count * r->in_row, 0,
		       sizeof(float) * (size_t)(r->batch - count) * r->in_row);
		in.data = r->staging;
	}
	in.owned = false;
	double t0 = now_seconds();
	enum nn_status st = exec_run(r->plan, &in, 1, out, 1, e);
	if (st != NN_OK)
		return st;
	if (count == r->batch) {
		r->timed_seconds += now_seconds() - t0;
		r->timed_samples += count;
	}
	*outputs = out[0].data;
	return NN_OK;
}

/* One more timed run of a whole batch (padded when the model's fixed batch
 * is larger than the data: the plan still computes `batch` samples). */
static enum nn_status time_full_batch(struct batch_run *r, const struct tensor *inputs,
				      struct nn_err *e)
{
	int64_t n = inputs->shape[0];
	const float *y;
	if (n >= r->batch)
		return run_batch(r, inputs, 0, r->batch, &y, e);
	double t0 = now_seconds();
	enum nn_status st = run_batch(r, inputs, 0, n, &y, e);
	r->timed_seconds += now_seconds() - t0;
	r->timed_samples += r->batch;
	return st;
}

struct fidelity {
	double max_abs, sum_abs, dot, norm_a, norm_b;
	int64_t agree, elements;
};

static void compare_sample(struct fidelity *f, const float *a, const float *ref, int64_t width)
{
	for (int64_t j = 0; j < width; j++) {
		double d = fabs((double)a[j] - (double)ref[j]);
		if (!(d <= f->max_abs)) /* NaN propagates */
			f->max_abs = d;
		f->sum_abs += d;
		f->dot += (double)a[j] * ref[j];
		f->norm_a += (double)a[j] * a[j];
		f->norm_b += (double)ref[j] * ref[j];
	}
	f->agree += argmax(a, width) == argmax(ref, width);
	f->elements += width;
}

static enum nn_status open_batch_run(const struct onnx_model *m, const struct eval_opts *opts,
				     int64_t n, const struct tensor *inputs, struct batch_run *r,
				     struct nn_err *e)
{
	int64_t batch = opts->batch > 0 ? opts->batch : EVAL_DEFAULT_BATCH;
	if (batch > n)
		batch = n;
	enum nn_status st = exec_compile_threads(m, batch, opts->threads ? opts->threads : 1,
						 &r->plan, e);
	if (st != NN_OK)
		return st;
	const struct tensor *spec = exec_input_spec(r->plan, 0);
	if (exec_input_count(r->plan) != 1 || exec_output_count(r->plan) < 1)
		return err_set(e, NN_EINVAL, "invalid_spec", "eval",
			       "evaluation needs a model with one graph input and an output");
	if (spec->dtype != DT_FLOAT || spec->ndim != inputs->ndim || spec->shape[0] < 1)
		return err_set(e, NN_EINVAL, "invalid_dataset", "eval.dataset",
			       "the data does not fit graph input '%.100s'", exec_input_name(r->plan, 0));
	r->batch = spec->shape[0]; /* a model with a fixed batch keeps it */
	r->in_row = row_floats(spec);
	if (r->in_row != row_floats(inputs))
		return err_set(e, NN_EINVAL, "invalid_dataset", "eval.dataset",
			       "per-sample size %zu of the data does not match graph input '%.100s' "
			       "(%zu values per sample)",
			       row_floats(inputs), exec_input_name(r->plan, 0), r->in_row);
	const struct tensor *os = exec_output_spec(r->plan, 0);
	int64_t onumel = tensor_numel(os);
	if (os->dtype != DT_FLOAT || os->ndim < 1 || os->shape[0] != r->batch || onumel <= 0)
		return err_set(e, NN_EINVAL, "invalid_spec", "eval",
			       "output '%.100s' is not a float32 tensor with one row per sample",
			       exec_output_name(r->plan, 0));
	r->width = onumel / r->batch;
	r->staging = malloc(sizeof(float) * (size_t)r->batch * r->in_row);
	if (!r->staging)
		return err_set(e, NN_ENOMEM, NULL, NULL, "out of memory for an evaluation batch");
	return NN_OK;
}

/* Accuracy, fidelity and the batch throughput in one pass over the data. */
static enum nn_status pass_over_data(const struct onnx_model *m, const struct eval_data *data,
				     const struct eval_opts *opts,
				     const struct eval_outputs *reference, struct eval_outputs *keep,
				     const struct step_ctx *ctx, json_t *out, struct nn_err *e)
{
	const struct tensor *x = data->inputs;
	int64_t n = x->shape[0];
	struct batch_run r = {0};
	struct fidelity f = {0};
	int64_t correct = 0;
	float *kept = NULL;
	enum nn_status st = open_batch_run(m, opts, n, x, &r, e);
	if (st != NN_OK)
		goto done;
	bool fidelity = (opts->metrics & EVAL_FIDELITY) && reference && reference->values;
	if (fidelity && (reference->n != n || reference->width != r.width)) {
		st = err_set(e, NN_EINVAL, "invalid_spec", "eval",
			     "the output has %lld values per sample, the input model's %lld: "
			     "fidelity cannot be compared",
			     (long long)r.width, (long long)reference->width);
		goto done;
	}
	if (keep && !(kept = malloc(sizeof(float) * (size_t)n * (size_t)r.width))) {
		st = err_set(e, NN_ENOMEM, NULL, NULL, "out of memory keeping outputs");
		goto done;
	}
	for (int64_t first = 0; first < n; first += r.batch) {
		if (step_canceled(ctx)) {
			st = err_set(e, NN_ECANCELED, "canceled", "", "canceled during evaluation");
			goto done;
		}
		int64_t count = n - first < r.batch ? n - first : r.batch;
		const float *y;
		if ((st = run_batch(&r, x, first, count, &y, e)) != NN_OK)
			goto done;
		for (int64_t i = 0; i < count; i++) {
			const float *row = y + (size_t)i * (size_t)r.width;
			if (data->labels && argmax(row, r.width) == data->labels[first + i])
				correct++;
			if (fidelity)
				compare_sample(&f, row,
					       reference->values + (size_t)(first + i) * (size_t)r.width,
					       r.width);
		}
		if (kept)
			memcpy(kept + (size_t)first * (size_t)r.width, y,
			       sizeof(float) * (size_t)count * (size_t)r.width);
		step_progress(ctx, 0.8 * (double)(first + count) / (double)n);
	}
	int bad = step_json_set(out, "samples", json_integer((json_int_t)n));
	if ((opts->metrics & EVAL_ACCURACY) && data->labels) {
		bad |= step_json_set(out, "accuracy", json_real((double)correct / (double)n));
		bad |= step_json_set(out, "correct", json_integer((json_int_t)correct));
	}
	if (fidelity) {
		bad |= step_json_set(out, "agreement", json_real((double)f.agree / (double)n));
		bad |= step_json_set(out, "max_abs_error", step_json_real(f.max_abs));
		bad |= step_json_set(out, "mean_abs_error",
				     step_json_real(f.sum_abs / (double)f.elements));
		double denom = sqrt(f.norm_a) * sqrt(f.norm_b);
		bad |= step_json_set(out, "cosine_similarity",
				     step_json_real(denom > 0 ? f.dot / denom
							      : (f.norm_a == f.norm_b ? 1.0 : 0.0)));
	}
	if (opts->metrics & EVAL_LATENCY) {
		double budget = opts->latency_seconds > 0 ? opts->latency_seconds : EVAL_DEFAULT_BUDGET;
		for (int runs = 0; r.timed_seconds < budget && runs < EVAL_MAX_TIMING_RUNS; runs++) {
			if (step_canceled(ctx)) {
				st = err_set(e, NN_ECANCELED, "canceled", "", "canceled during evaluation");
				goto done;
			}
			if ((st = time_full_batch(&r, x, e)) != NN_OK)
				goto done;
		}
		bad |= step_json_set(out, "throughput",
				     step_json_real((double)r.timed_samples / r.timed_seconds));
		bad |= step_json_set(out, "throughput_batch", json_integer((json_int_t)r.batch));
		bad |= step_json_set(out, "memory_bytes",
				     json_integer((json_int_t)exec_plan_bytes(r.plan)));
	}
	if (bad) {
		st = err_set(e, NN_ENOMEM, NULL, NULL, "out of memory");
		goto done;
	}
	if (keep) {
		keep->values = kept;
		keep->n = n;
		keep->width = r.width;
		kept = NULL;
	}
done:
	free(kept);
	free(r.staging);
	exec_free(r.plan);
	return st;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Median wall time of single-sample runs over consecutive samples. */
static enum nn_status time_batch1(const struct onnx_model *m, const struct eval_data *data,
				  const struct eval_opts *opts, const struct step_ctx *ctx,
				  json_t *out, struct nn_err *e)
{
	const struct tensor *x = data->inputs;
	int64_t n = x->shape[0];
	struct exec_plan *p = NULL;
	double *times = malloc(sizeof *times * EVAL_MAX_TIMING_RUNS);
	if (!times)
		return err_set(e, NN_ENOMEM, NULL, NULL, "out of memory timing latency");
	enum nn_status st = exec_compile(m, 1, &p, e);
	if (st != NN_OK)
		goto done;
	const struct tensor *spec = exec_input_spec(p, 0);
	size_t row = row_floats(spec);
	if (spec->shape[0] != 1 || row != row_floats(x)) {
		st = err_set(e, NN_EINVAL, "invalid_spec", "eval",
			     "the model cannot run one sample at a time (graph input '%.100s' has a "
			     "fixed batch of %lld)",
			     exec_input_name(p, 0), (long long)spec->shape[0]);
		goto done;
	}
	double budget = opts->latency_seconds > 0 ? opts->latency_seconds : EVAL_DEFAULT_BUDGET;
	double spent = 0;
	int runs = 0;
	for (int i = -2; i < EVAL_MAX_TIMING_RUNS; i++) { /* two warm-up runs */
		if (i >= EVAL_MIN_LATENCY_RUNS && spent >= budget)
			break;
		if (step_canceled(ctx)) {
			st = err_set(e, NN_ECANCELED, "canceled", "", "canceled during evaluation");
			goto done;
		}
		struct tensor in = *spec, outs[1];
		int64_t sample = (i < 0 ? 0 : i) % n;
		in.data = (float *)x->data + (size_t)sample * row;
		in.owned = false;
		double t0 = now_seconds();
		if ((st = exec_run(p, &in, 1, outs, 1, e)) != NN_OK)
			goto done;
		double dt = now_seconds() - t0;
		if (i >= 0) {
			times[runs++] = dt;
			spent += dt;
		}
	}
	qsort(times, (size_t)runs, sizeof *times, cmp_double);
	double median = runs % 2 ? times[runs / 2] : 0.5 * (times[runs / 2 - 1] + times[runs / 2]);
	if (step_json_set(out, "latency_ms", json_real(median * 1e3)))
		st = err_set(e, NN_ENOMEM, NULL, NULL, "out of memory");
done:
	exec_free(p);
	free(times);
	return st;
}

enum nn_status eval_model(const struct onnx_model *m, const struct eval_data *data,
			  const struct eval_opts *opts, const struct eval_outputs *reference,
			  struct eval_outputs *keep, const struct step_ctx *ctx, json_t **out,
			  struct nn_err *e)
{
	double t0 = now_seconds();
	json_t *metrics = json_object();
	if (!metrics)
		return err_set(e, NN_ENOMEM, NULL, NULL, "out of memory");
	enum nn_status st = NN_OK;
	bool runs = (opts->metrics & EVAL_NEEDS_DATA) || keep;
	if (runs && (!data || !data->inputs || data->inputs->ndim < 1 ||
		     data->inputs->shape[0] < 1 || data->inputs->dtype != DT_FLOAT)) {
		st = err_set(e, NN_EINVAL, "invalid_spec", "eval.dataset",
			     "accuracy, fidelity and latency need a dataset with at least one sample");
		goto fail;
	}
	if (runs && (st = pass_over_data(m, data, opts, reference, keep, ctx, metrics, e)) != NN_OK)
		goto fail;
	if ((opts->metrics & EVAL_LATENCY) &&
	    (st = time_batch1(m, data, opts, ctx, metrics, e)) != NN_OK)
		goto fail;
	if ((opts->metrics & EVAL_SIZE) && (st = measure_size(m, metrics, e)) != NN_OK)
		goto fail;
	if (step_json_set(metrics, "seconds", json_real(now_seconds() - t0))) {
		st = err_set(e, NN_ENOMEM, NULL, NULL, "out of memory");
		goto fail;
	}
	step_progress(ctx, 1.0);
	*out = metrics;
	return NN_OK;
fail:
	json_decref(metrics);
	return st;
}
