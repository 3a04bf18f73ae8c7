/* job_data: a spec's dataset ids to an eval_set (see job_data.h). */
#include "job_data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"

void job_arrays_close(struct job_arrays *a)
{
	for (size_t i = 0; i < a->n; i++)
		if (a->fds[i] >= 0)
			close(a->fds[i]);
	a->n = 0;
}

/* ---- the store-backed source ---- */

static enum nn_status store_dataset(void *ud, const char *id, struct job_arrays *out,
				    struct nn_err *e)
{
	struct job_store_source *src = ud;
	json_t *arrays = NULL;
	out->n = 0;
	enum nn_status st = store_dataset_arrays(src->store, src->tenant, id, &arrays, e);
	const char *key;
	json_t *v;
	json_object_foreach(arrays, key, v) {
		const char *sha = json_string_value(json_object_get(v, "sha256"));
		int64_t size;
		if (st != NN_OK || out->n == NPZ_MAX_MEMBERS)
			break;
		if (!sha) {
			st = err_set(e, NN_EINTERNAL, "internal", "", "array '%s' has no blob", key);
			break;
		}
		snprintf(out->names[out->n], sizeof out->names[out->n], "%s", key);
		out->fds[out->n] = -1;
		if ((st = blob_open(src->blobs, sha, &out->fds[out->n], &size, e)) == NN_OK)
			out->n++;
	}
	json_decref(arrays);
	if (st != NN_OK)
		job_arrays_close(out);
	return st;
}

static enum nn_status store_model(void *ud, const char *id, struct onnx_model **out,
				  struct nn_err *e)
{
	struct job_store_source *src = ud;
	char sha[65], path[1200];
	enum nn_status st = store_model_blob(src->store, src->tenant, id, sha, NULL, e);
	if (st != NN_OK)
		return st;
	blob_path(src->blobs, sha, path, sizeof path);
	return onnx_load_file(path, out, e);
}

void job_source_store(struct job_source *src, struct job_store_source *ud)
{
	*src = (struct job_source){ud, store_dataset, store_model};
}

/* ---- loading ---- */

static enum nn_status open_dataset(const struct job_source *src, const char *id,
				   struct job_arrays *out, struct nn_err *e)
{
	enum nn_status st = src->dataset(src->ud, id, out, e);
	if (st == NN_ENOTFOUND) { /* a bad reference in the spec: keep the source's words */
		char why[sizeof e->message];
		snprintf(why, sizeof why, "%s", e->message);
		return err_set(e, NN_EINVAL, "unknown_dataset", "", "%s", why);
	}
	return st;
}

/* The label array of a separate labels dataset: its label-named array, or
 * its only array. */
static enum nn_status pick_labels(const struct job_arrays *a, const char *id, size_t *index,
				  struct nn_err *e)
{
	for (size_t i = 0; i < a->n; i++) {
		if (dataset_is_label_name(a->names[i])) {
			*index = i;
			return NN_OK;
		}
	}
	if (a->n == 1) {
		*index = 0;
		return NN_OK;
	}
	return err_set(e, NN_EINVAL, "invalid_dataset", "",
		       "dataset %s has %zu arrays and none is named y or labels", id, a->n);
}

enum nn_status job_data_load(const struct job_source *src, const struct spec_dataset *d,
			     double holdout, enum eval_part part, const char *field,
			     const struct onnx_model *m, struct eval_set *out, struct nn_err *e)
{
	struct job_arrays arrays = {0}, label_arrays = {0};
	const char *names[NPZ_MAX_MEMBERS], *input_name;
	struct tensor shape;
	size_t xi, li = 0;
	long yi;
	int yfd = -1;
	enum nn_status st = eval_model_input(m, &input_name, &shape, e);
	if (st != NN_OK)
		goto fail;
	if ((st = open_dataset(src, d->id, &arrays, e)) != NN_OK)
		goto fail;
	for (size_t i = 0; i < arrays.n; i++)
		names[i] = arrays.names[i];
	if ((st = dataset_pick_arrays(names, arrays.n, input_name, &xi, &yi, e)) != NN_OK)
		goto fail;
	if (d->labels_id[0]) {
		if ((st = open_dataset(src, d->labels_id, &label_arrays, e)) != NN_OK ||
		    (st = pick_labels(&label_arrays, d->labels_id, &li, e)) != NN_OK)
			goto fail;
		yfd = label_arrays.fds[li];
	} else if (yi >= 0) {
		yfd = arrays.fds[yi];
	}
	st = eval_load_set(m, arrays.fds[xi], yfd, d->scale, holdout, part, out, e);
fail:
	if (st != NN_OK && e && !e->field[0])
		snprintf(e->field, sizeof e->field, "%s", field);
	job_arrays_close(&arrays);
	job_arrays_close(&label_arrays);
	return st;
}

static struct eval_data view_of(const struct eval_set *set)
{
	return (struct eval_data){set->inputs.data ? &set->inputs : NULL, set->labels};
}

static enum nn_status load_steps(const struct job_source *src, const json_t *spec,
				 const struct onnx_model *m, struct job_inputs *in, struct nn_err *e)
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
			st = job_data_load(src, &d, 0, EVAL_PART_KEPT, field, m, &in->step_sets[i],
					   e);
		if (st != NN_OK)
			return st;
		in->step_data[i] = view_of(&in->step_sets[i]);
		in->step_ptrs[i] = &in->step_data[i];
	}
	return NN_OK;
}

/* One model a step names, unless already loaded. */
static enum nn_status load_model_ref(const struct job_source *src, const struct spec_model_ref *ref,
				     struct job_inputs *in, size_t cap, struct nn_err *e)
{
	for (size_t i = 0; i < in->n_models; i++)
		if (!strcmp(in->model_ids[i], ref->id))
			return NN_OK;
	if (in->n_models == cap)
		return err_set(e, NN_EINTERNAL, "internal", ref->field, "too many model references");
	size_t k = in->n_models;
	enum nn_status st = src->model(src->ud, ref->id, &in->models[k], e);
	if (st == NN_ENOTFOUND) {
		char why[sizeof e->message];
		snprintf(why, sizeof why, "%s", e->message);
		return err_set(e, NN_EINVAL, "unknown_model", ref->field, "%s", why);
	}
	if (st != NN_OK) {
		err_prefix(e, "loading model %s (%s)", ref->id, ref->field);
		return st;
	}
	snprintf(in->model_ids[k], sizeof in->model_ids[k], "%s", ref->id);
	in->model_refs[k] = (struct step_model){in->model_ids[k], in->models[k]};
	in->n_models++;
	return NN_OK;
}

static enum nn_status load_models(const struct job_source *src, const json_t *spec,
				  struct job_inputs *in, struct nn_err *e)
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
			enum nn_status st = load_model_ref(src, &refs[k], in, cap, e);
			if (st != NN_OK)
				return st;
		}
	}
	return NN_OK;
}

enum nn_status job_inputs_load(const struct job_source *src, const json_t *spec,
			       const struct onnx_model *m, unsigned threads, struct job_inputs *in,
			       struct nn_err *e)
{
	memset(in, 0, sizeof *in);
	struct spec_eval *ev = &in->spec;
	enum nn_status st = spec_parse_eval(spec, ev, e);
	if (st != NN_OK)
		return st;
	if (ev->train.set &&
	    (st = job_data_load(src, &ev->train, ev->holdout, EVAL_PART_KEPT, "dataset", m,
				&in->calib_set, e)) != NN_OK)
		goto fail;
	in->calib = view_of(&in->calib_set);
	if ((st = load_steps(src, spec, m, in, e)) != NN_OK ||
	    (st = load_models(src, spec, in, e)) != NN_OK)
		goto fail;
	bool eval_needs_data = ev->requested && (ev->metrics & EVAL_NEEDS_DATA);
	if (eval_needs_data && ev->train.set && !ev->from_holdout && !ev->data.labels_id[0] &&
	    !strcmp(ev->data.id, ev->train.id) && ev->data.scale == ev->train.scale) {
		in->eval = in->calib; /* evaluated on the very data the steps use */
	} else if (eval_needs_data) {
		const char *field = ev->from_holdout ? "dataset" : "eval.dataset";
		if ((st = job_data_load(src, &ev->data, ev->from_holdout ? ev->holdout : 0,
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
