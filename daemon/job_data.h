/* job_data: the evaluation data a job's spec names, found through the store
 * (dataset ids -> array blobs) and loaded for the job's model.
 *
 * Shared by the worker (which loads it) and nothing else; the checks that a
 * submit-time 400 needs live in the API handler on the same rules
 * (dataset_check_fit), so a dataset that passed there loads here unless it
 * was deleted in between. Thread-safe: every call uses only its arguments. */
#ifndef NNCD_JOB_DATA_H
#define NNCD_JOB_DATA_H

#include "blob.h"
#include "err.h"
#include "eval.h"
#include "onnx_io.h"
#include "spec.h"
#include "store.h"

/* Loads ev->data (its held-out part when ev->from_holdout) for model m.
 * Errors carry field "eval.dataset" (or "dataset"). */
enum nn_status job_data_load(struct store *s, struct blob_store *bs, const char *tenant,
			     const struct spec_eval *ev, const struct onnx_model *m,
			     struct eval_set *out, struct nn_err *e);

#endif
