/* job_data: the data a job's spec names (evaluation, calibration, models by
 * id), found through a job_source (the store: dataset ids -> array blobs; or
 * `nncd compress`'s command-line mapping of ids to files) and loaded for the
 * job's model.
 *
 * Shared by the worker and `nncd compress`; the checks that a
 * submit-time 400 needs live in the API handler on the same rules
 * (dataset_check_fit), so a dataset that passed there loads here unless it
 * was deleted in between. Thread-safe: every call uses only its arguments. */
#ifndef NNCD_JOB_DATA_H
#define NNCD_JOB_DATA_H

#include "blob.h"
#include "err.h"
#include "eval.h"
#include "npz.h"
#include "onnx_io.h"
#include "pipeline.h"
#include "spec.h"
#include "store.h"

/* The arrays of one dataset, each readable through its own fd. */
struct job_arrays {
	size_t n;
	char names[NPZ_MAX_MEMBERS][NPZ_NAME_CAP];
	int fds[NPZ_MAX_MEMBERS];
};
void job_arrays_close(struct job_arrays *a);

/* Where the ids a spec names come from: the daemon's store and blobs, or the
 * files `nncd compress` maps them to. Both callbacks return NN_ENOTFOUND for
 * an id they do not know. */
struct job_source {
	void *ud;
	/* Every array of dataset `id`, opened (closed by the caller), in stored order. */
	enum nn_status (*dataset)(void *ud, const char *id, struct job_arrays *out,
				  struct nn_err *e);
	/* Model `id`, loaded (freed by the caller). */
	enum nn_status (*model)(void *ud, const char *id, struct onnx_model **out,
				struct nn_err *e);
};

/* The store-backed source the worker uses; ud must outlive src. */
struct job_store_source {
	struct store *store;
	struct blob_store *blobs;
	const char *tenant;
};
void job_source_store(struct job_source *src, struct job_store_source *ud);

/* Everything a job's spec asks to load before its steps run. */
struct job_inputs {
	struct spec_eval spec;
	struct eval_set calib_set, eval_set;
	struct eval_data calib, eval;      /* views of the sets (inputs NULL when absent) */
	size_t n_steps;
	struct eval_set *step_sets;        /* [n_steps]: a step's own "dataset" */
	struct eval_data *step_data;       /* [n_steps] */
	const struct eval_data **step_ptrs; /* [n_steps]: &step_data[i] or NULL */
	struct onnx_model **models;        /* [n_models]: the models steps name by id */
	struct step_model *model_refs;     /* [n_models]: id -> models[i] */
	char (*model_ids)[SPEC_ID_CAP];    /* [n_models] */
	size_t n_models;
	struct pipeline_data pipeline;     /* points into the above */
};

/* Loads the spec's top-level dataset (its kept part with "holdout"), each
 * step's own dataset and the evaluation data (eval.dataset, or the held-out
 * part, or the top-level dataset itself), shaped for model m, and every
 * model a step names by id (spec_step_model_refs; each once). Only what the
 * spec names; a dataset named twice is loaded once per use. */
enum nn_status job_inputs_load(const struct job_source *src, const json_t *spec,
			       const struct onnx_model *m, unsigned threads, struct job_inputs *out,
			       struct nn_err *e);
void job_inputs_free(struct job_inputs *in);

/* Loads dataset reference d for model m: the whole dataset, or `part` of
 * it when holdout > 0. field names the spec field for errors
 * ("eval.dataset", "dataset", "steps[1].dataset"). */
enum nn_status job_data_load(const struct job_source *src, const struct spec_dataset *d,
			     double holdout, enum eval_part part, const char *field,
			     const struct onnx_model *m, struct eval_set *out, struct nn_err *e);

#endif
