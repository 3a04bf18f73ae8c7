/* job_data: a spec's dataset ids to an eval_set (see job_data.h). */
#include "job_data.h"

#include <stdio.h>
#include <stdlib.h>
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
	return err_set(e, NN_EINVAL, "invalid_dataset", "",
		       "dataset %s has %zu arrays and none is named y or labels", id, n);
}

enum nn_status job_data_load(struct store *s, struct blob_store *bs, const char *tenant,
			     const struct spec_dataset *d, double holdout, enum eval_part part,
			     const char *field, const struct onnx_model *m, struct eval_set *out,
			     struct nn_err *e)
{
	json_t *arrays = NULL, *label_arrays = NULL;
	int xfd = -1, yfd = -1;
	const char *names[MAX_ARRAYS], *input_name, *label_name = NULL;
	struct tensor shape;
	size_t xi;
	long yi;
	enum nn_status st = eval_model_input(m, &input_name, &shape, e);
	if (st != NN_OK)
		goto fail;
	if ((st = store_dataset_arrays(s, tenant, d->id, &arrays, e)) != NN_OK)
		goto fail;
	size_t n = array_names(arrays, names);
	if ((st = dataset_pick_arrays(names, n, input_name, &xi, &yi, e)) != NN_OK)
		goto fail;
	if ((st = open_array(bs, arrays, names[xi], &xfd, e)) != NN_OK)
		goto fail;
	if (d->labels_id[0]) {
		if ((st = store_dataset_arrays(s, tenant, d->labels_id, &label_arrays, e)) != NN_OK ||
		    (st = pick_labels(label_arrays, d->labels_id, &label_name, e)) != NN_OK ||
		    (st = open_array(bs, label_arrays, label_name, &yfd, e)) != NN_OK)
			goto fail;
	} else if (yi >= 0 && (st = open_array(bs, arrays, names[yi], &yfd, e)) != NN_OK) {
		goto fail;
	}
	st = eval_load_set(m, xfd, yfd, d->scale, holdout, part, out, e);
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

static struct eval_data view_of(const struct eval_set *set)
{
	return (struct eval_data){set->inputs.data ? &set->inputs : NULL, set->labels};
}

static enum nn_status load_steps(struct store *s, struct blob_store *bs, const char *tenant,
				 const json_t *spec, const struct onnx_model *m,
				 struct job_inputs *in, struct nn_err *e)
{
	const json_t *steps = json_object_get(spec, "steps");
	in->n_steps = json_array_size(steps);
	if (in->n_steps == 0)
		return NN_OK;
	in->step_sets = calloc(in->n_steps, sizeof *in->step_sets);
	in->step_data = calloc(in->n_steps, sizeof *in->step_data);
	in->step_ptrs = calloc(in->n_steps, sizeof *in->step_ptrs);
	if (!in->step_sets || !in->step_data || !in->step_ptrs)
		return err_set(e, NN_ENOMEM, NULL, NULL, "out of memory");
	for (size_t i = 0; i < in->n_steps; i++) {
		const json_t *ds = json_object_get(json_array_get(steps, i), "dataset");
		if (!ds)
			continue;
		char field[64];
		struct spec_dataset d;
		snprintf(field, sizeof field, "steps[%zu].dataset", i);
		enum nn_status st = spec_parse_dataset(ds, field, &d, e);
		if (st == NN_OK)
			st = job_data_load(s, bs, tenant, &d, 0, EVAL_PART_KEPT, field, m,
					   &in->step_sets[i], e);
		if (st != NN_OK)
			return st;
		in->step_data[i] = view_of(&in->step_sets[i]);
		in->step_ptrs[i] = &in->step_data[i];
	}
	return NN_OK;
}

/* One model a step names, unless already loaded. */
static enum nn_status load_model_ref(struct store *s, struct blob_store *bs, const char *tenant,
				     const struct spec_model_ref *ref, struct job_inputs *in,
				     size_t cap, struct nn_err *e)
{
	for (size_t i = 0; i < in->n_models; i++)
		if (!strcmp(in->model_ids[i], ref->id))
			return NN_OK;
	if (in->n_models == cap)
		return err_set(e, NN_EINTERNAL, "internal", ref->field, "too many model references");
	char sha[65], path[1200];
	enum nn_status st = store_model_blob(s, tenant, ref->id, sha, NULL, e);
	if (st == NN_ENOTFOUND)
		return err_set(e, NN_EINVAL, "invalid_spec", ref->field,
			       "model %s does not exist (deleted after the job was submitted?)",
			       ref->id);
	if (st != NN_OK)
		return st;
	blob_path(bs, sha, path, sizeof path);
	size_t k = in->n_models;
	if ((st = onnx_load_file(path, &in->models[k], e)) != NN_OK) {
		err_prefix(e, "loading model %s (%s)", ref->id, ref->field);
		return st;
	}
	snprintf(in->model_ids[k], sizeof in->model_ids[k], "%s", ref->id);
	in->model_refs[k] = (struct step_model){in->model_ids[k], in->models[k]};
	in->n_models++;
	return NN_OK;
}

static enum nn_status load_models(struct store *s, struct blob_store *bs, const char *tenant,
				  const json_t *spec, struct job_inputs *in, struct nn_err *e)
{
	const json_t *steps = json_object_get(spec, "steps");
	size_t cap = json_array_size(steps) * SPEC_MAX_MODEL_REFS;
	if (cap == 0)
		return NN_OK;
	in->models = calloc(cap, sizeof *in->models);
	in->model_refs = calloc(cap, sizeof *in->model_refs);
	in->model_ids = calloc(cap, sizeof *in->model_ids);
	if (!in->models || !in->model_refs || !in->model_ids)
		return err_set(e, NN_ENOMEM, NULL, NULL, "out of memory");
	for (size_t i = 0; i < json_array_size(steps); i++) {
		struct spec_model_ref refs[SPEC_MAX_MODEL_REFS];
		size_t n = spec_step_model_refs(json_array_get(steps, i), i, refs);
		for (size_t k = 0; k < n; k++) {
			enum nn_status st = load_model_ref(s, bs, tenant, &refs[k], in, cap, e);
			if (st != NN_OK)
				return st;
		}
	}
	return NN_OK;
}

enum nn_status job_inputs_load(struct store *s, struct blob_store *bs, const char *tenant,
			       const json_t *spec, const struct onnx_model *m, unsigned threads,
			       struct job_inputs *in, struct nn_err *e)
{
	memset(in, 0, sizeof *in);
	struct spec_eval *ev = &in->spec;
	enum nn_status st = spec_parse_eval(spec, ev, e);
	if (st != NN_OK)
		return st;
	if (ev->train.set &&
	    (st = job_data_load(s, bs, tenant, &ev->train, ev->holdout, EVAL_PART_KEPT, "dataset", m,
				&in->calib_set, e)) != NN_OK)
		goto fail;
	in->calib = view_of(&in->calib_set);
	if ((st = load_steps(s, bs, tenant, spec, m, in, e)) != NN_OK ||
	    (st = load_models(s, bs, tenant, spec, in, e)) != NN_OK)
		goto fail;
	bool eval_needs_data = ev->requested && (ev->metrics & EVAL_NEEDS_DATA);
	if (eval_needs_data && ev->train.set && !ev->from_holdout && !ev->data.labels_id[0] &&
	    !strcmp(ev->data.id, ev->train.id) && ev->data.scale == ev->train.scale) {
		in->eval = in->calib; /* evaluated on the very data the steps use */
	} else if (eval_needs_data) {
		const char *field = ev->from_holdout ? "dataset" : "eval.dataset";
		if ((st = job_data_load(s, bs, tenant, &ev->data, ev->from_holdout ? ev->holdout : 0,
					EVAL_PART_HELD_OUT, field, m, &in->eval_set, e)) != NN_OK)
			goto fail;
		in->eval = view_of(&in->eval_set);
	}
	in->pipeline = (struct pipeline_data){
		.calib = in->calib.inputs ? &in->calib : NULL,
		.step_calib = in->step_ptrs,
		.n_step_calib = in->n_steps,
		.eval = in->eval.inputs ? &in->eval : NULL,
		.threads = threads,
		.models = in->model_refs,
		.n_models = in->n_models,
	};
	return NN_OK;
fail:
	job_inputs_free(in);
	return st;
}

void job_inputs_free(struct job_inputs *in)
{
	eval_set_free(&in->calib_set);
	eval_set_free(&in->eval_set);
	for (size_t i = 0; in->step_sets && i < in->n_steps; i++)
		eval_set_free(&in->step_sets[i]);
	free(in->step_sets);
	free(in->step_data);
	free(in->step_ptrs);
	for (size_t i = 0; i < in->n_models; i++)
		onnx_free(in->models[i]);
	free(in->models);
	free(in->model_refs);
	free(in->model_ids);
	memset(in, 0, sizeof *in);
}
