/* store_datasets: dataset rows (an uploaded .npy or .npz: its name, the
 * upload's hash and size, and one row per array with the blob that holds that
 * array as a standalone .npy file). Included by store.h; see store.h for the
 * conventions every store call follows (tenants, JSON ownership, timestamps).
 *
 * Datasets are immutable: an upload creates one, DELETE removes it. Every
 * array of one dataset has the same first dimension (the sample count).
 * Owns no state of its own: every call borrows a connection from the store's
 * pool (store.c) for its duration.
 * Threading: every function may be called from any thread; changes run in one
 * write transaction each. */
#ifndef NNCD_STORE_DATASETS_H
#define NNCD_STORE_DATASETS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"
/* store.h defines STORE_ID_CAP and struct store before it includes this
 * header, so either may be included first. */
#include "store.h"

/* arrays: {"<name>": {"dtype": "float32", "shape": [N, ...], "sha256": "<blob hex>"}, ...}
 * in the order the API shows them; format "npy" or "npz"; sha256/size are the
 * upload's. Each array may also carry "bytes" (its blob's size; 0 when absent).
 * NN_EINVAL when an entry is malformed or its first dimension is not samples. */
enum nn_status store_dataset_insert(struct store *s, const char *tenant, const char *name,
				    const char *format, const char *sha256, int64_t size,
				    int64_t samples, const json_t *arrays, char id_out[STORE_ID_CAP],
				    struct nn_err *e);
/* API view: {"id","name","format","sha256","size","samples",
 *            "arrays": {"<name>": {"dtype","shape"}}, "created_at"}. NN_ENOTFOUND. */
enum nn_status store_dataset_get(struct store *s, const char *tenant, const char *id,
				 json_t **out, struct nn_err *e);
/* Newest first. {"datasets":[...API view...], "next": cursor|null}; limit 1..1000. */
enum nn_status store_dataset_list(struct store *s, const char *tenant, const char *after,
				  int limit, json_t **out, struct nn_err *e);
/* What a worker or the job check needs: {"<name>": {"dtype","shape","sha256","bytes"}}
 * in the stored order. NN_ENOTFOUND (message names the id). */
enum nn_status store_dataset_arrays(struct store *s, const char *tenant, const char *id,
				    json_t **out, struct nn_err *e);
/* NN_ENOTFOUND; NN_ECONFLICT while a queued or running job's spec names the
 * dataset. On success *array_shas gets the removed arrays' blob hashes
 * (a JSON array of strings) so the caller can remove the blobs nothing else
 * refers to (store_blob_in_use). */
enum nn_status store_dataset_delete(struct store *s, const char *tenant, const char *id,
				    json_t **array_shas, struct nn_err *e);

#endif
