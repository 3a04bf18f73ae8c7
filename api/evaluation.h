/* evaluation: the API side of job evaluation — the submit-time checks that
 * turn a spec the worker could not evaluate into a 400 (unknown datasets,
 * data that does not fit the model's input, accuracy without labels, an
 * operator the executor cannot run), and GET /v1/jobs/{id}/report.
 * Private to api/; runs on MHD request threads. */
#ifndef NNCD_API_EVALUATION_H
#define NNCD_API_EVALUATION_H

#include <jansson.h>

#include "err.h"
#include "request.h"

/* Checks the spec's "dataset"/"eval" against the store and the model
 * (summary: the model's stored summary; model_sha: its blob, loaded only
 * when the spec runs the model). NN_EINVAL / NN_EUNSUPPORTED with a field. */
enum nn_status api_eval_check_spec(struct request *rq, const json_t *spec, const json_t *summary,
				   const char *model_sha, struct nn_err *e);

/* GET /v1/jobs/{id}/report */
enum MHD_Result api_eval_report(struct request *rq);

#endif
