/* evaluation: submit-time checks of a spec's datasets and evaluation, and
 * the job report (see evaluation.h). */
#include "evaluation.h"

#include <stdio.h>
#include <string.h>

#include "dataset.h"
#include "distill.h"
#include "eval.h"
#include "exec.h"
#include "onnx_io.h"
#include "spec.h"

/* The arrays of a dataset the spec names; unknown ids are a 400 naming the
 * field, not a 404 (the request's URL exists). */
static enum nn_status dataset_arrays(struct request *rq, const char *id, const char *field,
				     json_t **arrays, struct nn_err *e)
{
	enum nn_status st = store_dataset_arrays(rq->srv->store, STORE_DEFAULT_TENANT, id, arrays, e);
	if (st == NN_ENOTFOUND)
		return err_set(e, NN_EINVAL, "unknown_dataset", field, "no dataset with id '%s'", id);
	return st;
}

static bool lists_metric(const json_t *spec, const char *name)
{
	const json_t *list = json_object_get(json_object_get(spec, "eval"), "metrics");
	for (size_t i = 0; i < json_array_size(list); i++)
		if (json_is_string(json_array_get(list, i)) &&
		    !strcmp(json_string_value(json_array_get(list, i)), name))
			return true;
	return false;
}

/* A dataset reference (ids, fit to the model input, labels when asked for). */
static enum nn_status check_dataset(struct request *rq, const struct spec_dataset *d,
				    const char *field, const json_t *model_input, bool need_labels,
				    bool *has_labels, struct nn_err *e)
{
	json_t *arrays = NULL, *label_arrays = NULL;
	char input[64], labels[64], sub[128];
	enum nn_status st = dataset_arrays(rq, d->id, field, &arrays, e);
	if (st == NN_OK)
		st = dataset_check_fit(arrays, model_input, field, input, labels, e);
	if (st == NN_OK && d->labels_id[0]) {
		snprintf(sub, sizeof sub, "%s.labels", field);
		st = dataset_arrays(rq, d->labels_id, sub, &label_arrays, e);
		labels[0] = st == NN_OK && json_object_size(label_arrays) ? 'y' : '\0';
	}
	if (st == NN_OK && has_labels)
		*has_labels = labels[0] != '\0';
	if (st == NN_OK && need_labels && !labels[0])
		st = err_set(e, NN_EINVAL, "invalid_spec", field,
			     "accuracy needs labels: dataset %s has no array named y or labels "
			     "(upload them in the .npz, or as a second .npy named by \"labels\")",
			     d->id);
	json_decref(arrays);
	json_decref(label_arrays);
	return st;
}

/* A distill/finetune step that learns from hard labels needs a dataset that
 * has them (the step's own, else the top-level one). */
static enum nn_status check_training_labels(const json_t *step, size_t index,
					    const json_t *summary, bool has_labels,
					    struct nn_err *e)
{
	const char *op = json_string_value(json_object_get(step, "op"));
	bool finetune = op && !strcmp(op, "finetune");
	if (!op || (!finetune && strcmp(op, "distill")))
		return NN_OK;
	struct distill_params dp;
	enum nn_status st = distill_params_parse(step, index, finetune, &dp, e);
	return st == NN_OK ? distill_check(&dp, summary, has_labels, e) : st;
}

/* Every model a step names by id (a distill teacher or student) exists. */
static enum nn_status check_model_refs(struct request *rq, const json_t *steps, struct nn_err *e)
{
	for (size_t i = 0; i < json_array_size(steps); i++) {
		struct spec_model_ref refs[SPEC_MAX_MODEL_REFS];
		size_t n = spec_step_model_refs(json_array_get(steps, i), i, refs);
		for (size_t k = 0; k < n; k++) {
			char sha[65];
			enum nn_status st = store_model_blob(rq->srv->store, STORE_DEFAULT_TENANT,
							     refs[k].id, sha, NULL, e);
			if (st == NN_ENOTFOUND)
				return err_set(e, NN_EINVAL, "unknown_model", refs[k].field,
					       "no model with id '%s'", refs[k].id);
			if (st != NN_OK)
				return st;
		}
	}
	return NN_OK;
}

/* The executor must run every node when the spec evaluates the model. */
static enum nn_status check_runnable(struct request *rq, const char *model_sha, struct nn_err *e)
{
	char path[1200];
	struct onnx_model *m = NULL;
	blob_path(rq->srv->blobs, model_sha, path, sizeof path);
	enum nn_status st = onnx_load_file(path, &m, e);
	if (st == NN_OK)
		st = exec_check_support(m, e);
	onnx_free(m);
	if (st != NN_OK) {
		snprintf(e->field, sizeof e->field, "eval");
		err_prefix(e, "the model cannot be evaluated");
	}
	return st;
}

enum nn_status api_eval_check_spec(struct request *rq, const json_t *spec, const json_t *summary,
				   const char *model_sha, struct nn_err *e)
{
	struct spec_eval ev;
	enum nn_status st = spec_parse_eval(spec, &ev, e);
	if (st != NN_OK)
		return st;
	const json_t *model_input = json_array_get(json_object_get(summary, "inputs"), 0);
	bool train_labels = false;
	if (ev.train.set &&
	    (st = check_dataset(rq, &ev.train, "dataset", model_input,
				ev.from_holdout && lists_metric(spec, "accuracy"), &train_labels,
				e)) != NN_OK)
		return st;
	const json_t *steps = json_object_get(spec, "steps");
	if ((st = check_model_refs(rq, steps, e)) != NN_OK)
		return st;
	for (size_t i = 0; i < json_array_size(steps); i++) {
		const json_t *step = json_array_get(steps, i);
		const json_t *ds = json_object_get(step, "dataset");
		char field[64];
		struct spec_dataset d;
		bool labels = train_labels;
		snprintf(field, sizeof field, "steps[%zu].dataset", i);
		if (ds && ((st = spec_parse_dataset(ds, field, &d, e)) != NN_OK ||
			   (st = check_dataset(rq, &d, field, model_input, false, &labels, e)) !=
				   NN_OK))
			return st;
		if ((st = check_training_labels(step, i, summary, labels, e)) != NN_OK)
			return st;
	}
	if (!ev.requested || !(ev.metrics & EVAL_NEEDS_DATA))
		return NN_OK;
	if (!ev.from_holdout &&
	    (st = check_dataset(rq, &ev.data, "eval.dataset", model_input,
				lists_metric(spec, "accuracy"), NULL, e)) != NN_OK)
		return st;
	return check_runnable(rq, model_sha, e);
}

/* ---- report ---- */

static double number(const json_t *o, const char *key, bool *ok)
{
	const json_t *v = json_object_get(o, key);
	*ok = *ok && json_is_number(v);
	return json_is_number(v) ? json_number_value(v) : 0;
}

/* What a user reads first: accuracy lost, size and speed ratios. */
static json_t *comparison(const json_t *in, const json_t *out)
{
	json_t *c = json_object();
	bool ok = true;
	double a = number(in, "accuracy", &ok), b = number(out, "accuracy", &ok);
	if (c && ok)
		json_object_set_new(c, "accuracy_drop", json_real(a - b));
	ok = true;
	a = number(in, "bytes", &ok), b = number(out, "bytes", &ok);
	if (c && ok && a > 0)
		json_object_set_new(c, "size_ratio", json_real(b / a));
	ok = true;
	a = number(in, "bytes_zstd", &ok), b = number(out, "bytes_zstd", &ok);
	if (c && ok && a > 0)
		json_object_set_new(c, "zstd_size_ratio", json_real(b / a));
	ok = true;
	a = number(in, "latency_ms", &ok), b = number(out, "latency_ms", &ok);
	if (c && ok && b > 0)
		json_object_set_new(c, "latency_speedup", json_real(a / b));
	ok = true;
	a = number(in, "throughput", &ok), b = number(out, "throughput", &ok);
	if (c && ok && a > 0)
		json_object_set_new(c, "throughput_ratio", json_real(b / a));
	return c;
}

enum MHD_Result api_eval_report(struct request *rq)
{
	struct nn_err e = {0};
	json_t *job = NULL, *model = NULL;
	if (store_job_get(rq->srv->store, STORE_DEFAULT_TENANT, rq->id, &job, &e) != NN_OK)
		return api_respond_err(rq, &e);
	const char *model_id = json_string_value(json_object_get(job, "model"));
	if (store_model_get(rq->srv->store, STORE_DEFAULT_TENANT, model_id, &model, &e) != NN_OK)
		model = json_pack("{s:s}", "id", model_id); /* a deleted model keeps its id */
	const json_t *spec = json_object_get(job, "spec");
	const json_t *metrics = json_object_get(job, "metrics");
	const json_t *in = json_object_get(metrics, "input"), *out = json_object_get(metrics, "output");
	json_t *steps = json_array();
	const json_t *job_steps = json_object_get(job, "steps");
	for (size_t i = 0; steps && i < json_array_size(job_steps); i++) {
		const json_t *s = json_array_get(job_steps, i);
		json_array_append_new(steps,
				      json_pack("{s:I, s:O?, s:O?, s:O?}", "index", (json_int_t)i,
						"params", json_array_get(json_object_get(spec, "steps"), i),
						"state", json_object_get(s, "state"), "metrics",
						json_object_get(s, "metrics")));
	}
	json_t *artifacts = json_object_get(job, "artifacts");
	json_t *report = json_pack(
		"{s:O, s:O, s:O?, s:{s:O?, s:O?, s:O?, s:O?, s:O?}, s:{s:O?, s:O?, s:o?},"
		" s:o, s:O?, s:O?, s:O?, s:O?, s:O?}",
		"job", json_object_get(job, "id"), "state", json_object_get(job, "state"), "error",
		json_object_get(job, "error"), "model", "id", json_object_get(model, "id"), "name",
		json_object_get(model, "name"), "sha256", json_object_get(model, "sha256"), "size",
		json_object_get(model, "size"), "inputs", json_object_get(model, "inputs"), "metrics",
		"input", in, "output", out, "comparison", in && out ? comparison(in, out) : NULL,
		"steps", steps, "artifact", json_array_get(artifacts, 0), "spec", spec, "created_at",
		json_object_get(job, "created_at"), "started_at", json_object_get(job, "started_at"),
		"finished_at", json_object_get(job, "finished_at"));
	/* What runtimes load the artifact (opset, IR, contrib ops) and its check
	 * in nncd's executor: pipeline_run puts it in the last step's metrics. */
	const json_t *runtime = json_object_get(
		json_object_get(json_array_get(job_steps, json_array_size(job_steps) - 1), "metrics"),
		"artifact");
	if (report && runtime)
		json_object_set(report, "artifact_runtime", (json_t *)runtime);
	json_decref(job);
	json_decref(model);
	if (!report)
		return api_respond_error(rq, MHD_HTTP_SERVICE_UNAVAILABLE, "out_of_memory", "",
					 "out of memory building the report");
	return api_respond_json(rq, MHD_HTTP_OK, report);
}
