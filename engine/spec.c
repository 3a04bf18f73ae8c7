/* spec: whole-spec validation. Step parameters are checked by the steps' own
 * parsers (prune_params_parse, quant_params_parse) so that the API's check
 * before queueing and pipeline_run's defensive re-check agree exactly.
 * model_summary may be NULL: then only the checks that need no model run
 * (pipeline_run does this; the steps themselves report a model that does not
 * fit). */
#include "spec.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "distill.h"
#include "eval.h"
#include "prune.h"
#include "quant.h"
#include "quant_float.h"
#include "replace_act.h"
#include "sensitivity.h"
#include "step.h"

#define SPEC_MAX_STEPS 64
#define SPEC_OPS "prune, quantize, sensitivity, replace_activation, distill, finetune"

static enum nn_status check_output(const json_t *out, struct nn_err *e)
{
	char got[96], field[128];
	if (!json_is_object(out))
		return err_set(e, NN_EINVAL, "invalid_spec", "output",
			       "output must be an object like {\"format\": \"onnx\"}, got %s",
			       step_describe_json(out, got, sizeof got));
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)out, key, v) {
		if (strcmp(key, "format")) {
			snprintf(field, sizeof field, "output.%.80s", key);
			return err_set(e, NN_EINVAL, "invalid_spec", field,
				       "unknown field '%.80s' in output; allowed: format", key);
		}
		if (!json_is_string(v) || strcmp(json_string_value(v), "onnx"))
			return err_set(e, NN_EINVAL, "invalid_spec", "output.format",
				       "unsupported output format %s; supported: onnx",
				       step_describe_json(v, got, sizeof got));
	}
	return NN_OK;
}

/* The summary's "prunable" list is non-empty. */
static bool has_prunable(const json_t *summary)
{
	const json_t *p = json_object_get(summary, "prunable");
	return json_is_array(p) && json_array_size(p) > 0;
}

/* The summary's "prunable" list holds a weight of a Gemm or MatMul (what
 * int4 quantizes). */
static bool has_gemm_weight(const json_t *summary)
{
	const json_t *p = json_object_get(summary, "prunable"), *v;
	size_t i;
	json_array_foreach(p, i, v) {
		const char *op = json_string_value(json_object_get(v, "op"));
		if (op && (!strcmp(op, "Gemm") || !strcmp(op, "MatMul")))
			return true;
	}
	return false;
}

/* A quantize step raises the default opset to 13 (quant.c; 21 for int4 in
 * the onnx format, quant_int4.c); the summary's opset_upgrade["13"] (["21"])
 * says whether onnx_raise_opset would refuse that, so a model it cannot
 * convert is a 400 naming the step, not a failed job.
 * Summaries stored before the key existed skip the check (the worker then
 * fails the job with the same reason). */
static enum nn_status check_opset_upgrade(const json_t *summary, const char *field,
					  const struct quant_params *qp, struct nn_err *e)
{
	bool int4 = qp->scheme == QUANT_INT4 && qp->format == QUANT_FORMAT_ONNX;
	if (qp->scheme == QUANT_INT4 && !int4)
		return NN_OK; /* MatMulNBits: the default opset is kept */
	const char *target = int4 ? "21" : "13";
	const json_t *up = json_object_get(json_object_get(summary, "opset_upgrade"), target);
	if (!json_is_object(up))
		return NN_OK;
	const json_t *from = json_object_get(json_object_get(summary, "opset"), "");
	const char *node = json_string_value(json_object_get(up, "node"));
	const char *op = json_string_value(json_object_get(up, "op"));
	const char *why = json_string_value(json_object_get(up, "message"));
	char from_s[32] = "its opset", what[200];
	if (json_is_integer(from))
		snprintf(from_s, sizeof from_s, "opset %lld", (long long)json_integer_value(from));
	if (node && *node)
		snprintf(what, sizeof what, "node '%.100s' (%.60s)", node, op ? op : "?");
	else
		snprintf(what, sizeof what, "an unnamed %.60s node", op ? op : "?");
	return err_set(e, NN_EINVAL, "invalid_spec", field,
		       "cannot quantize: raising the model from %s to %s (needed by "
		       "DequantizeLinear%s) would change %s: %.200s; re-export the model at "
		       "opset >= %s",
		       from_s, target,
		       int4 ? " with block_size"
		       : qp->granularity == QUANT_PER_CHANNEL ? " per-axis" : "",
		       what, why ? why : "the conversion is not supported", target);
}

static enum nn_status parse_dataset_id(const json_t *v, const char *field, char out[SPEC_ID_CAP],
				       struct nn_err *e)
{
	char got[96];
	const char *id = json_string_value(v);
	if (!id || strncmp(id, "ds_", 3) || strlen(id) >= SPEC_ID_CAP)
		return err_set(e, NN_EINVAL, "invalid_spec", field,
			       "must be the id of an uploaded dataset (\"ds_…\"), got %s",
			       step_describe_json(v, got, sizeof got));
	snprintf(out, SPEC_ID_CAP, "%s", id);
	return NN_OK;
}

/* DATA = "ds_…" | {"id", "labels", "scale"} */
enum nn_status spec_parse_dataset(const json_t *v, const char *field, struct spec_dataset *out,
				  struct nn_err *e)
{
	char sub[128], got[96];
	enum nn_status st;
	memset(out, 0, sizeof *out);
	out->set = true;
	out->scale = 1.0;
	if (json_is_string(v))
		return parse_dataset_id(v, field, out->id, e);
	if (!json_is_object(v))
		return err_set(e, NN_EINVAL, "invalid_spec", field,
			       "must be a dataset id or {\"id\", \"labels\", \"scale\"}, got %s",
			       step_describe_json(v, got, sizeof got));
	const char *key;
	json_t *x;
	json_object_foreach((json_t *)v, key, x) {
		snprintf(sub, sizeof sub, "%s.%.60s", field, key);
		if (!strcmp(key, "id")) {
			st = parse_dataset_id(x, sub, out->id, e);
		} else if (!strcmp(key, "labels")) {
			st = parse_dataset_id(x, sub, out->labels_id, e);
		} else if (!strcmp(key, "scale")) {
			double s = json_is_number(x) ? json_number_value(x) : NAN;
			st = isfinite(s) && s > 0 ? NN_OK
						  : err_set(e, NN_EINVAL, "invalid_spec", sub,
							    "scale must be a number > 0, got %s",
							    step_describe_json(x, got, sizeof got));
			out->scale = s;
		} else {
			st = err_set(e, NN_EINVAL, "invalid_spec", sub,
				     "unknown field '%.60s'; allowed: id, labels, scale", key);
		}
		if (st != NN_OK)
			return st;
	}
	if (!out->id[0]) {
		snprintf(sub, sizeof sub, "%s.id", field);
		return err_set(e, NN_EINVAL, "invalid_spec", sub, "missing required field 'id'");
	}
	return NN_OK;
}

enum nn_status spec_parse_eval(const json_t *spec, struct spec_eval *out, struct nn_err *e)
{
	enum nn_status st;
	char got[96];
	memset(out, 0, sizeof *out);
	const json_t *top = json_object_get(spec, "dataset");
	if (top && (st = spec_parse_dataset(top, "dataset", &out->train, e)) != NN_OK)
		return st;
	const json_t *h = json_object_get(spec, "holdout");
	if (h) {
		double f = json_is_number(h) ? json_number_value(h) : NAN;
		if (!(f > 0 && f < 1))
			return err_set(e, NN_EINVAL, "invalid_spec", "holdout",
				       "holdout must be a fraction in (0, 1), got %s",
				       step_describe_json(h, got, sizeof got));
		if (!top)
			return err_set(e, NN_EINVAL, "invalid_spec", "holdout",
				       "holdout splits the top-level \"dataset\", and there is none");
		out->holdout = f;
	}
	const json_t *ev = json_object_get(spec, "eval");
	if (!ev)
		return NN_OK;
	if (!json_is_object(ev))
		return err_set(e, NN_EINVAL, "invalid_spec", "eval",
			       "eval must be an object like {\"dataset\": \"ds_…\", \"metrics\": "
			       "[\"accuracy\"]}, got %s",
			       step_describe_json(ev, got, sizeof got));
	out->requested = true;
	const char *key;
	json_t *x;
	json_object_foreach((json_t *)ev, key, x) {
		if (strcmp(key, "dataset") && strcmp(key, "metrics")) {
			char sub[128];
			snprintf(sub, sizeof sub, "eval.%.80s", key);
			return err_set(e, NN_EINVAL, "invalid_spec", sub,
				       "unknown field '%.80s' in eval; allowed: dataset, metrics", key);
		}
	}
	if ((st = eval_parse_metrics(json_object_get(ev, "metrics"), "eval.metrics", &out->metrics,
				     e)) != NN_OK)
		return st;
	const json_t *ds = json_object_get(ev, "dataset");
	if (ds) {
		if ((st = spec_parse_dataset(ds, "eval.dataset", &out->data, e)) != NN_OK)
			return st;
		if (h)
			return err_set(e, NN_EINVAL, "invalid_spec", "holdout",
				       "holdout is for evaluating on part of the top-level dataset; "
				       "eval.dataset names a separate one: give one or the other");
	} else if (top) {
		out->data = out->train;
		out->from_holdout = out->holdout > 0;
	} else if (out->metrics & EVAL_NEEDS_DATA) {
		return err_set(e, NN_EINVAL, "invalid_spec", "eval.dataset",
			       "accuracy, fidelity and latency are measured on data: name a dataset "
			       "(eval.dataset, or a top-level dataset with holdout), or ask only for "
			       "[\"size\"]");
	}
	return NN_OK;
}

enum nn_status spec_validate(const json_t *spec, const json_t *model_summary, struct nn_err *e)
{
	enum nn_status st;
	char got[96], field[128];
	if (!json_is_object(spec))
		return err_set(e, NN_EINVAL, "invalid_spec", "", "spec must be a JSON object, got %s",
			       step_describe_json(spec, got, sizeof got));
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)spec, key, v) {
		if (!strcmp(key, "model")) {
			if (!json_is_string(v))
				return err_set(e, NN_EINVAL, "invalid_spec", "model",
					       "model must be a model id string, got %s",
					       step_describe_json(v, got, sizeof got));
		} else if (!strcmp(key, "steps")) {
			if (!json_is_array(v) || json_array_size(v) > SPEC_MAX_STEPS)
				return err_set(e, NN_EINVAL, "invalid_spec", "steps",
					       "steps must be an array of at most %d steps, got %s",
					       SPEC_MAX_STEPS,
					       json_is_array(v) ? "more"
								: step_describe_json(v, got, sizeof got));
		} else if (!strcmp(key, "output")) {
			if ((st = check_output(v, e)) != NN_OK)
				return st;
		} else if (strcmp(key, "dataset") && strcmp(key, "holdout") && strcmp(key, "eval")) {
			return err_set(e, NN_EINVAL, "invalid_spec", key,
				       "unknown field '%.80s'; allowed: model, dataset, holdout, steps, "
				       "eval, output",
				       key);
		}
	}
	struct spec_eval ev;
	if ((st = spec_parse_eval(spec, &ev, e)) != NN_OK)
		return st;

	const json_t *steps = json_object_get(spec, "steps");
	size_t n = steps ? json_array_size(steps) : 0;
	long quantized_by = -1;
	bool quantized_int8 = false; /* quantized_by's scheme is weight-only int8 */
	for (size_t i = 0; i < n; i++) {
		const json_t *step = json_array_get(steps, i);
		snprintf(field, sizeof field, "steps[%zu]", i);
		if (!json_is_object(step))
			return err_set(e, NN_EINVAL, "invalid_spec", field,
				       "step must be an object, got %s",
				       step_describe_json(step, got, sizeof got));
		const json_t *op = json_object_get(step, "op");
		const char *name = json_is_string(op) ? json_string_value(op) : NULL;
		bool is_prune = name && !strcmp(name, "prune");
		bool is_quant = name && !strcmp(name, "quantize");
		bool is_sens = name && !strcmp(name, "sensitivity");
		bool is_ract = name && !strcmp(name, "replace_activation");
		bool is_train = name && (!strcmp(name, "distill") || !strcmp(name, "finetune"));
		if (!is_prune && !is_quant && !is_sens && !is_ract && !is_train) {
			snprintf(field, sizeof field, "steps[%zu].op", i);
			if (!op)
				return err_set(e, NN_EINVAL, "invalid_spec", field,
					       "missing required field 'op'; supported: %s", SPEC_OPS);
			if (name)
				return err_set(e, NN_EINVAL, "invalid_spec", field,
					       "unknown op '%.80s'; supported: %s", name, SPEC_OPS);
			return err_set(e, NN_EINVAL, "invalid_spec", field,
				       "op must be a string, got %s; supported: %s",
				       step_describe_json(op, got, sizeof got), SPEC_OPS);
		}
		struct quant_params qp;
		if (is_prune) {
			struct prune_params pp;
			if ((st = prune_params_parse(step, i, &pp, e)) != NN_OK)
				return st;
			if (model_summary &&
			    (st = prune_check_layers(&pp, model_summary, e)) != NN_OK)
				return st;
			if (pp.method == PRUNE_DEAD && !pp.has_dataset && !ev.train.set) {
				snprintf(field, sizeof field, "steps[%zu].dataset", i);
				return err_set(e, NN_EINVAL, "invalid_spec", field,
					       "method dead finds dead neurons on calibration data: "
					       "name a dataset (the step's \"dataset\" or the spec's "
					       "top-level one)");
			}
			if (pp.reconstruct && !pp.has_dataset && !ev.train.set) {
				snprintf(field, sizeof field, "steps[%zu].reconstruct", i);
				return err_set(e, NN_EINVAL, "invalid_spec", field,
					       "reconstruct re-fits the kept weights on calibration "
					       "data: name a dataset (the step's \"dataset\" or the "
					       "spec's top-level one)");
			}
		} else if (is_train) {
			struct distill_params dp;
			if ((st = distill_params_parse(step, i, !strcmp(name, "finetune"), &dp, e)) !=
				    NN_OK ||
			    (st = distill_check(&dp, model_summary, true, e)) != NN_OK)
				return st;
			if (dp.train.epochs > 0 && !dp.has_dataset && !ev.train.set) {
				snprintf(field, sizeof field, "steps[%zu].dataset", i);
				return err_set(e, NN_EINVAL, "invalid_spec", field,
					       "%s trains on a dataset: name one (the step's \"dataset\" "
					       "or the spec's top-level one)",
					       name);
			}
			/* Training the current model after quantization goes through fake
			 * quantization, which only int8 weight-only models support. */
			bool trains_current = dp.finetune || dp.student == DISTILL_STUDENT_CURRENT;
			if (trains_current && quantized_by >= 0 && !quantized_int8) {
				snprintf(field, sizeof field, "steps[%zu]", i);
				return err_set(e, NN_EINVAL, "invalid_spec", field,
					       "steps[%ld] quantizes with a scheme training cannot go "
					       "through (only int8 weight-only models are fine-tuned, "
					       "with fake quantization): put the %s step before it",
					       quantized_by, name);
			}
			/* A new student replaces the model: its weights are float again. */
			if (!trains_current)
				quantized_by = -1;
			continue;
		} else if (is_ract) {
			struct ract_params rp;
			if ((st = ract_params_parse(step, i, &rp, e)) != NN_OK)
				return st;
			if (model_summary &&
			    (st = ract_check_model(&rp, model_summary, steps, e)) != NN_OK)
				return st;
			/* Swaps activations only: needs no float weights, and may
			 * follow a quantize step. */
			continue;
		} else if (is_sens) {
			struct sensitivity_params sp;
			if ((st = sensitivity_params_parse(step, i, &sp, e)) != NN_OK)
				return st;
			if (!ev.requested || !ev.data.set) {
				snprintf(field, sizeof field, "steps[%zu]", i);
				return err_set(e, NN_EINVAL, "invalid_spec", field,
					       "sensitivity measures each trial on the evaluation "
					       "data: add \"eval\": {\"dataset\": \"ds_…\"} (or a "
					       "top-level dataset with \"holdout\")");
			}
		} else {
			if ((st = quant_params_parse(step, i, &qp, e)) != NN_OK)
				return st;
			if (qp.scheme == QUANT_INT4 && qp.format == QUANT_FORMAT_MATMULNBITS &&
			    qp.bias_correction) {
				snprintf(field, sizeof field, "steps[%zu].bias_correction", i);
				return err_set(e, NN_EINVAL, "invalid_spec", field,
					       "bias_correction needs format \"onnx\" (it corrects "
					       "layers reading a DequantizeLinear output)");
			}
			const json_t *op_counts = json_object_get(model_summary, "ops");
			if (qp.ops == QUANT_OP_GATHER && json_is_object(op_counts) &&
			    !json_object_get(op_counts, "Gather")) {
				snprintf(field, sizeof field, "steps[%zu].ops", i);
				return err_set(e, NN_EINVAL, "invalid_spec", field,
					       "ops [\"Gather\"] quantizes embedding tables read by "
					       "Gather, and this model has no Gather node");
			}
			if (qp.scheme == QUANT_INT4 && model_summary && has_prunable(model_summary) &&
			    !has_gemm_weight(model_summary)) {
				snprintf(field, sizeof field, "steps[%zu].scheme", i);
				return err_set(e, NN_EINVAL, "invalid_spec", field,
					       "int4 quantizes Gemm/MatMul weights and this model "
					       "has none (its weights feed Conv): use int8 or fp16");
			}
			if (qp.scheme == QUANT_DYNAMIC && model_summary &&
			    has_prunable(model_summary) && !has_gemm_weight(model_summary)) {
				snprintf(field, sizeof field, "steps[%zu].scheme", i);
				return err_set(e, NN_EINVAL, "invalid_spec", field,
					       "dynamic quantizes Gemm/MatMul weights and this "
					       "model has none (its weights feed Conv): use int8, "
					       "kmeans or fp16");
			}
			/* Whole graph: fp16 only (ONNX Runtime cannot load a bf16 graph,
			 * quant_float.h); keep_io_types means nothing without it. */
			bool io_types = json_object_get(step, "keep_io_types") != NULL;
			if (qp.scheme == QUANT_BF16 && qp.whole_graph) {
				snprintf(field, sizeof field, "steps[%zu].graph", i);
				return err_set(e, NN_EINVAL, "invalid_spec", field, "%s",
					       QUANT_FLOAT_BF16_GRAPH_REFUSAL);
			}
			if ((qp.scheme == QUANT_FP16 || qp.scheme == QUANT_BF16) && io_types &&
			    !qp.whole_graph) {
				snprintf(field, sizeof field, "steps[%zu].keep_io_types", i);
				return err_set(e, NN_EINVAL, "invalid_spec", field,
					       "keep_io_types applies to whole-graph conversion: add "
					       "\"graph\": true or omit keep_io_types");
			}
			/* float16 graph inputs cannot take the float32 evaluation data. */
			if (qp.scheme == QUANT_FP16 && qp.whole_graph && !qp.keep_io_types &&
			    ev.requested) {
				snprintf(field, sizeof field, "steps[%zu].keep_io_types", i);
				return err_set(e, NN_EINVAL, "invalid_spec", field,
					       "keep_io_types false makes the graph inputs float16, and "
					       "evaluation feeds float32 data: keep the default (true) "
					       "or drop \"eval\"");
			}
			if (qp.scheme == QUANT_STATIC && model_summary &&
			    !has_prunable(model_summary)) {
				snprintf(field, sizeof field, "steps[%zu].scheme", i);
				return err_set(e, NN_EINVAL, "invalid_spec", field,
					       "static quantization puts QDQ around Gemm/MatMul/Conv "
					       "nodes with float weights and this model has none");
			}
			bool needs_data = qp.scheme == QUANT_STATIC || qp.bias_correction;
			if (needs_data && !qp.has_dataset && !ev.train.set) {
				snprintf(field, sizeof field, "steps[%zu].dataset", i);
				return err_set(e, NN_EINVAL, "invalid_spec", field,
					       "%s needs calibration data: name a dataset (the step's "
					       "\"dataset\" or the spec's top-level one)",
					       qp.scheme == QUANT_STATIC ? "static quantization"
									 : "bias_correction");
			}
		}
		snprintf(field, sizeof field, "steps[%zu]", i);
		/* After a quantize step the weights are int8 initializers feeding
		 * DequantizeLinear: no float weights are left to prune or quantize. */
		if (quantized_by >= 0)
			return err_set(e, NN_EINVAL, "invalid_spec", field,
				       "weights are already quantized by steps[%ld]; a %s step must "
				       "come before the quantize step",
				       quantized_by, name);
		if (model_summary && !has_prunable(model_summary))
			return err_set(e, NN_EINVAL, "invalid_spec", field,
				       "model has no Gemm/MatMul/Conv float weights to %s", name);
		if (is_quant && model_summary &&
		    (st = check_opset_upgrade(model_summary, field, &qp, e)) != NN_OK)
			return st;
		if (is_quant) {
			quantized_by = (long)i;
			quantized_int8 = qp.scheme == QUANT_INT8;
		}
	}
	return NN_OK;
}

size_t spec_step_model_refs(const json_t *step, size_t index,
			    struct spec_model_ref out[SPEC_MAX_MODEL_REFS])
{
	static const char *const keys[SPEC_MAX_MODEL_REFS] = {"teacher", "student"};
	size_t n = 0;
	for (size_t k = 0; k < SPEC_MAX_MODEL_REFS; k++) {
		const json_t *id = json_object_get(json_object_get(step, keys[k]), "model");
		if (!json_is_string(id) || json_string_length(id) >= SPEC_ID_CAP)
			continue;
		snprintf(out[n].id, sizeof out[n].id, "%s", json_string_value(id));
		snprintf(out[n].field, sizeof out[n].field, "steps[%zu].%s.model", index, keys[k]);
		n++;
	}
	return n;
}
