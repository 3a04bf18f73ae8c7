/* spec: whole-spec validation. Step parameters are checked by the steps' own
 * parsers (prune_params_parse, quant_params_parse) so that the API's check
 * before queueing and pipeline_run's defensive re-check agree exactly.
 * model_summary may be NULL: then only the checks that need no model run
 * (pipeline_run does this; the steps themselves report a model that does not
 * fit). */
#include "spec.h"

#include <stdio.h>
#include <string.h>

#include "prune.h"
#include "quant.h"

#define SPEC_MAX_STEPS 64

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

/* A quantize step raises the default opset to 13 (quant.c); the summary's
 * opset_upgrade["13"] says whether onnx_raise_opset would refuse that, so a
 * model it cannot convert is a 400 naming the step, not a failed job.
 * Summaries stored before the key existed skip the check (the worker then
 * fails the job with the same reason). */
static enum nn_status check_opset_upgrade(const json_t *summary, const char *field,
					  const struct quant_params *qp, struct nn_err *e)
{
	const json_t *up = json_object_get(json_object_get(summary, "opset_upgrade"), "13");
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
		       "cannot quantize: raising the model from %s to 13 (needed by "
		       "DequantizeLinear%s) would change %s: %.200s; re-export the model at "
		       "opset >= 13",
		       from_s, qp->granularity == QUANT_PER_CHANNEL ? " per-axis" : "", what,
		       why ? why : "the conversion is not supported");
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
		} else {
			return err_set(e, NN_EINVAL, "invalid_spec", key,
				       "unknown field '%.80s'; allowed: model, steps, output", key);
		}
	}

	const json_t *steps = json_object_get(spec, "steps");
	size_t n = steps ? json_array_size(steps) : 0;
	long quantized_by = -1;
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
		if (!is_prune && !is_quant) {
			snprintf(field, sizeof field, "steps[%zu].op", i);
			if (!op)
				return err_set(e, NN_EINVAL, "invalid_spec", field,
					       "missing required field 'op'; supported: prune, "
					       "quantize");
			if (name)
				return err_set(e, NN_EINVAL, "invalid_spec", field,
					       "unknown op '%.80s'; supported: prune, quantize",
					       name);
			return err_set(e, NN_EINVAL, "invalid_spec", field,
				       "op must be a string, got %s; supported: prune, quantize",
				       step_describe_json(op, got, sizeof got));
		}
		struct quant_params qp;
		if (is_prune) {
			struct prune_params pp;
			if ((st = prune_params_parse(step, i, &pp, e)) != NN_OK)
				return st;
		} else {
			if ((st = quant_params_parse(step, i, &qp, e)) != NN_OK)
				return st;
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
				       "model has no Gemm/MatMul/Conv float weights to %s",
				       is_prune ? "prune" : "quantize");
		if (is_quant && model_summary &&
		    (st = check_opset_upgrade(model_summary, field, &qp, e)) != NN_OK)
			return st;
		if (is_quant)
			quantized_by = (long)i;
	}
	return NN_OK;
}
