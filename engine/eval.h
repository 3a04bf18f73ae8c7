/* eval: what a model costs and computes on a user's data — top-1 accuracy,
 * fidelity to a reference model's outputs, parameters and non-zeros, bytes
 * (raw and zstd-compressed), latency per sample at batch 1 and throughput at
 * batch 64 — measured with the executor.
 *
 * The figures follow ONNX Runtime users' conventions: accuracy is the share
 * of samples whose first output's argmax (first maximum on ties) equals the
 * label; fidelity compares the first output element by element with the
 * reference run (the job's input model) on the same samples. Timings are
 * medians / rates over a bounded time budget, so a metric never takes long on
 * a big dataset. Runs on the caller's thread (plus the plan's own slice
 * threads when opts.threads > 1); no global state. */
#ifndef NNCD_EVAL_H
#define NNCD_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"
#include "onnx_io.h"
#include "step.h"
#include "tensor.h"

enum eval_metric {
	EVAL_ACCURACY = 1u << 0,
	EVAL_FIDELITY = 1u << 1,
	EVAL_SIZE = 1u << 2,
	EVAL_LATENCY = 1u << 3,
	EVAL_ALL = (1u << 4) - 1,
};
/* Metrics that run the model (and so need data and a supported graph). */
#define EVAL_NEEDS_DATA (EVAL_ACCURACY | EVAL_FIDELITY | EVAL_LATENCY)

/* Parses a spec's "metrics" list (NULL = all). field names it in errors
 * ("eval.metrics"). */
enum nn_status eval_parse_metrics(const json_t *list, const char *field, unsigned *out,
				  struct nn_err *e);

struct eval_data {
	const struct tensor *inputs; /* float32 [N, model input dims...] */
	const int64_t *labels;       /* N class indices, or NULL */
};

struct eval_opts {
	unsigned metrics;       /* EVAL_* bits */
	int64_t batch;          /* accuracy/throughput batch; 0 = 64 */
	unsigned threads;       /* executor threads for the batch runs; 0 = 1 */
	double latency_seconds; /* time budget per timing; 0 = 0.3 */
};

/* The first output of a model on every sample, flattened per sample. */
struct eval_outputs {
	float *values; /* n * width, owned */
	int64_t n, width;
};
void eval_outputs_free(struct eval_outputs *o);

/* Measures m. reference: the outputs fidelity is measured against (NULL: no
 * fidelity figures, e.g. for the reference model itself). keep: when not
 * NULL, receives this model's outputs (to serve as the reference later).
 * *out: {"samples","accuracy","correct","agreement","max_abs_error",
 * "mean_abs_error","cosine_similarity","parameters","nonzeros","bytes",
 * "bytes_zstd","latency_ms","throughput","memory_bytes","seconds"}, each only
 * when its metric was asked for and computable. NN_EUNSUPPORTED naming the
 * node when the graph cannot run; NN_ECANCELED when ctx says so. */
enum nn_status eval_model(const struct onnx_model *m, const struct eval_data *data,
			  const struct eval_opts *opts, const struct eval_outputs *reference,
			  struct eval_outputs *keep, const struct step_ctx *ctx, json_t **out,
			  struct nn_err *e);

/* Evaluation data loaded for a model: owned inputs and labels (NULL when
 * the dataset has none). */
struct eval_set {
	struct tensor inputs;
	int64_t *labels;
};
void eval_set_free(struct eval_set *s);

/* Seed of the holdout permutation: fixed, so a spec's split is the same on
 * every run and machine (docs/API.md states it). */
#define EVAL_HOLDOUT_SEED 0x6e6e6364u /* "nncd" */

/* Which part of a dataset split by a holdout fraction. */
enum eval_part {
	EVAL_PART_HELD_OUT, /* the last round(N * holdout) of the permutation: evaluation */
	EVAL_PART_KEPT,     /* the rest: calibration / training */
};

/* Loads the input array (.npy in inputs_fd) shaped for m's input, times
 * scale, and the labels (.npy in labels_fd, or -1); with holdout > 0 keeps
 * only `part` of the deterministic split. Sample counts of inputs and labels
 * must match ("mismatched N"). */
enum nn_status eval_load_set(const struct onnx_model *m, int inputs_fd, int labels_fd,
			     double scale, double holdout, enum eval_part part,
			     struct eval_set *out, struct nn_err *e);

/* The model's single float32 graph input (not an initializer): its name and
 * shape with the batch dimension as -1. NN_EINVAL when there is not exactly
 * one, NN_EUNSUPPORTED when it is not float32. */
enum nn_status eval_model_input(const struct onnx_model *m, const char **name, struct tensor *shape,
				struct nn_err *e);

#endif
