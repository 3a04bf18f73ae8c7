/* store_models: model rows (an uploaded ONNX model's name, blob hash, size
 * and summary) of the store. Included by store.h; see store.h for the
 * conventions every store call follows (tenants, JSON ownership, timestamps).
 *
 * Owns no state of its own: every call borrows a connection from the store's
 * pool (store.c) for its duration. A deleted model is soft-deleted
 * (deleted_at), so finished jobs keep a valid model_id.
 * Threading: every function may be called from any thread; changes run in one
 * write transaction each. */
#ifndef NNCD_STORE_MODELS_H
#define NNCD_STORE_MODELS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"
/* store.h defines STORE_ID_CAP and struct store before it includes this
 * header, so either may be included first. */
#include "store.h"

/* summary: onnx_summarize_fd's JSON (stored as is). */
enum nn_status store_model_insert(struct store *s, const char *tenant, const char *name,
				  const char *sha256, int64_t size, const json_t *summary,
				  char id_out[STORE_ID_CAP], struct nn_err *e);
/* {"id","name","sha256","size","created_at", ...summary fields merged in} */
enum nn_status store_model_get(struct store *s, const char *tenant, const char *id, json_t **out,
			       struct nn_err *e);
/* Newest first. {"models":[{id,name,sha256,size,created_at}...], "next": cursor|null};
 * `after` is the previous page's cursor or NULL; limit 1..1000. */
enum nn_status store_model_list(struct store *s, const char *tenant, const char *after, int limit,
				json_t **out, struct nn_err *e);
/* NN_ENOTFOUND; NN_ECONFLICT while a queued or running job uses it.
 * sha_out receives the model's blob hash so the caller can remove the blob
 * when store_blob_in_use says nothing else refers to it. */
enum nn_status store_model_delete(struct store *s, const char *tenant, const char *id,
				  char sha_out[65], struct nn_err *e);
/* Blob hash of a model (for workers). */
enum nn_status store_model_blob(struct store *s, const char *tenant, const char *id,
				char sha_out[65], json_t **summary_out, struct nn_err *e);

#endif
