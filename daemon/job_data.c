/* job_data: a spec's dataset ids to an eval_set (see job_data.h). */
#include "job_data.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"

#define MAX_ARRAYS 64

/* The array names of a store_dataset_arrays object, in stored order. */
static size_t array_names(const json_t *arrays, const char **names)
{
	size_t n = 0;
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)arrays, key, v) {
		if (n < MAX_ARRAYS)
			names[n++] = key;
	}
	return n;
}

static enum nn_status open_array(struct blob_store *bs, const json_t *arrays, const char *name,
				 int *fd, struct nn_err *e)
{
	const char *sha = json_string_value(json_object_get(json_object_get(arrays, name), "sha256"));
	int64_t size;
	if (!sha)
		return err_set(e, NN_EINTERNAL, "internal", "", "array '%s' has no blob", name);
	return blob_open(bs, sha, fd, &size, e);
}

/* The label array of a separate labels dataset: its label-named array, or
 * its only array. */
static enum nn_status pick_labels(const json_t *arrays, const char *id, const char **name,
				  struct nn_err *e)
{
	const char *names[MAX_ARRAYS];
	size_t n = array_names(arrays, names);
	for (size_t i = 0; i < n; i++) {
		if (dataset_is_label_name(names[i])) {
			*name = names[i];
			return NN_OK;
		}
	}
	if (n == 1) {
		*name = names[0];
		return NN_OK;
	}
	return err_set(e, NN_EINVAL, "invalid_dataset", "eval.dataset.labels",
		       "dataset %s has %zu arrays and none is named y or labels", id, n);
}

enum nn_status job_data_load(struct store *s, struct blob_store *bs, const char *tenant,
			     const struct spec_eval *ev, const struct onnx_model *m,
			     struct eval_set *out, struct nn_err *e)
{
	const char *field = ev->from_holdout ? "dataset" : "eval.dataset";
	json_t *arrays = NULL, *label_arrays = NULL;
	int xfd = -1, yfd = -1;
	const char *names[MAX_ARRAYS], *input_name, *label_name = NULL;
	struct tensor shape;
	size_t xi;
	long yi;
	enum nn_status st = eval_model_input(m, &input_name, &shape, e);
	if (st != NN_OK)
		goto fail;
	if ((st = store_dataset_arrays(s, tenant, ev->data.id, &arrays, e)) != NN_OK)
		goto fail;
	size_t n = array_names(arrays, names);
	if ((st = dataset_pick_arrays(names, n, input_name, &xi, &yi, e)) != NN_OK)
		goto fail;
	if ((st = open_array(bs, arrays, names[xi], &xfd, e)) != NN_OK)
		goto fail;
	if (ev->data.labels_id[0]) {
		if ((st = store_dataset_arrays(s, tenant, ev->data.labels_id, &label_arrays, e)) !=
			    NN_OK ||
		    (st = pick_labels(label_arrays, ev->data.labels_id, &label_name, e)) != NN_OK ||
		    (st = open_array(bs, label_arrays, label_name, &yfd, e)) != NN_OK)
			goto fail;
	} else if (yi >= 0 && (st = open_array(bs, arrays, names[yi], &yfd, e)) != NN_OK) {
		goto fail;
	}
	st = eval_load_set(m, xfd, yfd, ev->data.scale, ev->from_holdout ? ev->holdout : 0, out, e);
fail:
	if (st != NN_OK && e && !e->field[0])
		snprintf(e->field, sizeof e->field, "%s", field);
	if (xfd >= 0)
		close(xfd);
	if (yfd >= 0)
		close(yfd);
	json_decref(arrays);
	json_decref(label_arrays);
	return st;
}
