/* distill: the distill and finetune steps (see distill.h). */
#include "distill.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eval.h"
#include "exec.h"
#include "optim.h"
#include "rng.h"
#include "structured.h"
#include "train_graph.h"

#define DISTILL_MAX_EPOCHS 100000
#define DISTILL_MAX_BATCH 65536
#define DISTILL_MAX_TEMPERATURE 1000.0

static enum nn_status oom(struct nn_err *e)
{
	return err_set(e, NN_ENOMEM, "out_of_memory", "", "out of memory");
}

static enum nn_status bad(struct nn_err *e, size_t index, const char *key, const char *fmt,
			  const json_t *v)
{
	char field[128], got[96];
	snprintf(field, sizeof field, "steps[%zu].%s", index, key);
	return err_set(e, NN_EINVAL, "invalid_spec", field, "%s, got %s", fmt,
		       step_describe_json(v, got, sizeof got));
}

/* {"model": "mdl_..."} -> id; key is "teacher" or "student". */
static enum nn_status parse_model_ref(const json_t *v, size_t index, const char *key, char *id,
				      struct nn_err *e)
{
	char field[128];
	const json_t *mv = json_object_get(v, "model");
	snprintf(field, sizeof field, "%s.model", key);
	if (!json_is_string(mv) || json_string_length(mv) == 0 ||
	    json_string_length(mv) >= SPEC_ID_CAP)
		return bad(e, index, field, "must be a model id string", mv);
	snprintf(id, SPEC_ID_CAP, "%s", json_string_value(mv));
	return NN_OK;
}

static enum nn_status parse_teacher(const json_t *v, size_t index, struct distill_params *out,
				    struct nn_err *e)
{
	if (json_is_string(v) && !strcmp(json_string_value(v), "input")) {
		out->teacher = DISTILL_TEACHER_INPUT;
		return NN_OK;
	}
	if (!json_is_object(v))
		return bad(e, index, "teacher",
			   "teacher must be \"input\" (the job's model) or {\"model\": \"mdl_...\"}",
			   v);
	const char *key;
	json_t *x;
	json_object_foreach((json_t *)v, key, x) {
		if (strcmp(key, "model")) {
			char f[128];
			snprintf(f, sizeof f, "teacher.%.80s", key);
			return bad(e, index, f, "unknown field; teacher takes only \"model\"", x);
		}
	}
	out->teacher = DISTILL_TEACHER_MODEL;
	return parse_model_ref(v, index, "teacher", out->teacher_id, e);
}

static enum nn_status parse_student(const json_t *v, size_t index, struct distill_params *out,
				    struct nn_err *e)
{
	if (!json_is_object(v))
		return bad(e, index, "student",
			   "student must be {\"model\": id}, {\"from\": \"structured\", \"ratio\": r} "
			   "or {\"hidden\": [sizes]}",
			   v);
	const json_t *model = json_object_get(v, "model"), *from = json_object_get(v, "from");
	const json_t *hidden = json_object_get(v, "hidden");
	int kinds = !!model + !!from + !!hidden;
	const char *key;
	json_t *x;
	json_object_foreach((json_t *)v, key, x) {
		bool ok = !strcmp(key, "model") || !strcmp(key, "from") || !strcmp(key, "hidden") ||
			  (!strcmp(key, "ratio") && from);
		if (!ok) {
			char f[128];
			snprintf(f, sizeof f, "student.%.80s", key);
			return bad(e, index, f,
				   "unknown field; student takes \"model\", \"from\" + \"ratio\" or "
				   "\"hidden\"",
				   x);
		}
	}
	if (kinds != 1)
		return bad(e, index, "student",
			   "student needs exactly one of \"model\", \"from\" or \"hidden\"", v);
	if (model) {
		out->student = DISTILL_STUDENT_MODEL;
		return parse_model_ref(v, index, "student", out->student_id, e);
	}
	if (from) {
		if (!json_is_string(from) || strcmp(json_string_value(from), "structured"))
			return bad(e, index, "student.from", "from must be \"structured\"", from);
		const json_t *r = json_object_get(v, "ratio");
		double ratio = json_is_number(r) ? json_number_value(r) : NAN;
		if (!(ratio > 0 && ratio < 1))
			return bad(e, index, "student.ratio",
				   "ratio (the fraction of neurons/channels removed) must be a number "
				   "in (0, 1)",
				   r);
		out->student = DISTILL_STUDENT_STRUCTURED;
		out->ratio = ratio;
		return NN_OK;
	}
	if (!json_is_array(hidden) || json_array_size(hidden) < 1 ||
	    json_array_size(hidden) > DISTILL_MAX_HIDDEN)
		return bad(e, index, "student.hidden",
			   "hidden must be an array of 1 to 16 layer sizes", hidden);
	out->student = DISTILL_STUDENT_HIDDEN;
	out->n_hidden = json_array_size(hidden);
	for (size_t i = 0; i < out->n_hidden; i++) {
		const json_t *h = json_array_get(hidden, i);
		char f[64];
		snprintf(f, sizeof f, "student.hidden[%zu]", i);
		if (!json_is_integer(h) || json_integer_value(h) < 1 ||
		    json_integer_value(h) > DISTILL_MAX_WIDTH)
			return bad(e, index, f, "a hidden size must be an integer in [1, 1048576]", h);
		out->hidden[i] = (int64_t)json_integer_value(h);
	}
	return NN_OK;
}

static enum nn_status parse_int(const json_t *step, size_t index, const char *key, int64_t lo,
				int64_t hi, int64_t *out, struct nn_err *e)
{
	const json_t *v = json_object_get(step, key);
	if (!v)
		return NN_OK;
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
		char msg[96];
		snprintf(msg, sizeof msg, "%s must be an integer in [%lld, %lld]", key, (long long)lo,
			 (long long)hi);
		return bad(e, index, key, msg, v);
	}
	*out = (int64_t)json_integer_value(v);
	return NN_OK;
}

static enum nn_status parse_feature_loss(const json_t *v, size_t index, struct train_params *tp,
					 struct nn_err *e)
{
	if (!json_is_object(v))
		return bad(e, index, "feature_loss",
			   "feature_loss must be {\"teacher\": tensor name, \"student\": tensor "
			   "name, \"weight\": w}",
			   v);
	const char *key;
	json_t *x;
	json_object_foreach((json_t *)v, key, x) {
		if (strcmp(key, "teacher") && strcmp(key, "student") && strcmp(key, "weight")) {
			char f[128];
			snprintf(f, sizeof f, "feature_loss.%.80s", key);
			return bad(e, index, f,
				   "unknown field; feature_loss takes teacher, student, weight", x);
		}
	}
	const json_t *t = json_object_get(v, "teacher"), *s = json_object_get(v, "student");
	const json_t *w = json_object_get(v, "weight");
	if (!json_is_string(t) || json_string_length(t) == 0)
		return bad(e, index, "feature_loss.teacher",
			   "must name a tensor of the teacher's graph", t);
	if (!json_is_string(s) || json_string_length(s) == 0)
		return bad(e, index, "feature_loss.student",
			   "must name a tensor of the student's graph", s);
	double wv = w ? (json_is_number(w) ? json_number_value(w) : NAN) : 1.0;
	if (!(wv >= 0 && wv <= 1e6))
		return bad(e, index, "feature_loss.weight", "weight must be a number in [0, 1e6]",
			   w);
	tp->feature_teacher = json_string_value(t);
	tp->feature_student = json_string_value(s);
	tp->feature_weight = wv;
	return NN_OK;
}

enum nn_status distill_params_parse(const json_t *step, size_t index, bool finetune,
				    struct distill_params *out, struct nn_err *e)
{
	static const char *const distill_keys[] = {
		"op", "teacher", "student", "dataset", "epochs", "batch_size", "temperature",
		"alpha", "optimizer", "schedule", "seed", "feature_loss", NULL};
	static const char *const finetune_keys[] = {
		"op", "teacher", "dataset", "epochs", "batch_size", "temperature", "alpha",
		"optimizer", "schedule", "seed", "feature_loss", NULL};
	const char *op = finetune ? "finetune" : "distill";
	enum nn_status st =
		step_check_keys(step, index, op, finetune ? finetune_keys : distill_keys, e);
	if (st != NN_OK)
		return st;
	memset(out, 0, sizeof *out);
	out->index = index;
	out->finetune = finetune;
	train_params_default(&out->train);
	struct train_params *tp = &out->train;
	char field[128];

	const json_t *teacher = json_object_get(step, "teacher");
	out->teacher = finetune ? DISTILL_TEACHER_NONE : DISTILL_TEACHER_INPUT;
	if (teacher && (st = parse_teacher(teacher, index, out, e)) != NN_OK)
		return st;
	const json_t *student = json_object_get(step, "student");
	out->student = DISTILL_STUDENT_CURRENT;
	if (student && (st = parse_student(student, index, out, e)) != NN_OK)
		return st;
	const json_t *ds = json_object_get(step, "dataset");
	if (ds) {
		struct spec_dataset d;
		snprintf(field, sizeof field, "steps[%zu].dataset", index);
		if ((st = spec_parse_dataset(ds, field, &d, e)) != NN_OK)
			return st;
		out->has_dataset = true;
	}
	if ((st = parse_int(step, index, "epochs", 0, DISTILL_MAX_EPOCHS, &tp->epochs, e)) != NN_OK ||
	    (st = parse_int(step, index, "batch_size", 1, DISTILL_MAX_BATCH, &tp->batch_size, e)) !=
		    NN_OK)
		return st;
	int64_t seed = 0;
	if ((st = parse_int(step, index, "seed", 0, INT64_MAX, &seed, e)) != NN_OK)
		return st;
	tp->seed = (uint64_t)seed;
	const json_t *t = json_object_get(step, "temperature");
	if (t) {
		double v = json_is_number(t) ? json_number_value(t) : NAN;
		if (!(v > 0 && v <= DISTILL_MAX_TEMPERATURE))
			return bad(e, index, "temperature", "temperature must be a number in (0, 1000]",
				   t);
		tp->temperature = v;
	}
	tp->alpha = out->teacher == DISTILL_TEACHER_NONE ? 0.0 : 0.9;
	const json_t *a = json_object_get(step, "alpha");
	if (a) {
		double v = json_is_number(a) ? json_number_value(a) : NAN;
		if (!(v >= 0 && v <= 1))
			return bad(e, index, "alpha",
				   "alpha (the weight of the teacher's soft loss) must be a number in "
				   "[0, 1]",
				   a);
		if (v > 0 && out->teacher == DISTILL_TEACHER_NONE)
			return bad(e, index, "alpha",
				   "alpha > 0 weighs a teacher's soft loss: add \"teacher\": \"input\" "
				   "or {\"model\": id}",
				   a);
		tp->alpha = v;
	}
	snprintf(field, sizeof field, "steps[%zu].optimizer", index);
	if ((st = optim_params_parse(json_object_get(step, "optimizer"), field, &tp->optimizer,
				     e)) != NN_OK)
		return st;
	snprintf(field, sizeof field, "steps[%zu].schedule", index);
	if ((st = optim_schedule_parse(json_object_get(step, "schedule"), field, &tp->schedule,
				       e)) != NN_OK)
		return st;
	if (tp->epochs > 0 && (st = optim_schedule_check(&tp->schedule, tp->optimizer.lr,
							 tp->epochs, field, e)) != NN_OK)
		return st;
	const json_t *fl = json_object_get(step, "feature_loss");
	if (fl) {
		if (out->teacher == DISTILL_TEACHER_NONE)
			return bad(e, index, "feature_loss",
				   "a feature loss compares with a teacher's tensor: add \"teacher\"",
				   fl);
		if ((st = parse_feature_loss(fl, index, tp, e)) != NN_OK)
			return st;
	}
	return NN_OK;
}

/* Per-sample element count of a summary's first input / output; -1 when a
 * dimension past the batch is unknown (symbolic or absent). */
static int64_t summary_numel(const json_t *summary, const char *which)
{
	const json_t *shape = json_object_get(json_array_get(json_object_get(summary, which), 0),
					      "shape");
	if (!json_is_array(shape) || json_array_size(shape) < 1)
		return -1;
	int64_t n = 1;
	for (size_t i = 1; i < json_array_size(shape); i++) {
		const json_t *d = json_array_get(shape, i);
		if (!json_is_integer(d) || json_integer_value(d) < 0 ||
		    __builtin_mul_overflow(n, (int64_t)json_integer_value(d), &n))
			return -1;
	}
	return n;
}

enum nn_status distill_check(const struct distill_params *p, const json_t *summary,
			     bool has_labels, struct nn_err *e)
{
	char field[128];
	bool soft_only = p->teacher != DISTILL_TEACHER_NONE && p->train.alpha == 1.0;
	if (p->train.epochs > 0 && !has_labels && !soft_only) {
		snprintf(field, sizeof field, "steps[%zu].dataset", p->index);
		return err_set(e, NN_EINVAL, "invalid_spec", field,
			       "%s on hard labels (alpha %g < 1) needs a labelled dataset (an array "
			       "named y or labels, or a second .npy named by \"labels\")",
			       p->finetune ? "finetune" : "distill", p->train.alpha);
	}
	/* An MLP student needs the teacher's output width: refused when the
	 * summary declares a first output whose per-sample size is 0. */
	if (p->student == DISTILL_STUDENT_HIDDEN && p->teacher == DISTILL_TEACHER_INPUT && summary &&
	    summary_numel(summary, "outputs") == 0) {
		snprintf(field, sizeof field, "steps[%zu].student.hidden", p->index);
		return err_set(e, NN_EINVAL, "invalid_spec", field,
			       "an MLP student is built to the teacher's output width, and the "
			       "model's first output holds no values per sample");
	}
	return NN_OK;
}

/* Per-sample element counts of a model's single input and first output, from
 * an executor plan at batch 1. */
static enum nn_status io_numel(const struct onnx_model *m, int64_t *in, int64_t *out, int *in_rank,
			       struct nn_err *e)
{
	struct exec_plan *plan = NULL;
	enum nn_status st = exec_compile(m, 1, &plan, e);
	if (st != NN_OK)
		return st;
	if (exec_input_count(plan) != 1 || exec_output_count(plan) < 1) {
		st = err_set(e, NN_EUNSUPPORTED, "unsupported_model", "",
			     "a model with %zu inputs (training takes exactly one)",
			     exec_input_count(plan));
	} else {
		*in = tensor_numel(exec_input_spec(plan, 0));
		*out = tensor_numel(exec_output_spec(plan, 0));
		if (in_rank)
			*in_rank = exec_input_spec(plan, 0)->ndim;
	}
	exec_free(plan);
	return st;
}

enum nn_status distill_check_pair(const struct onnx_model *teacher,
				  const struct onnx_model *student, const char *field,
				  struct nn_err *e)
{
	int64_t ti = 0, to = 0, si = 0, so = 0;
	enum nn_status st = io_numel(teacher, &ti, &to, NULL, e);
	if (st != NN_OK) {
		err_prefix(e, "teacher");
		return st;
	}
	if ((st = io_numel(student, &si, &so, NULL, e)) != NN_OK) {
		err_prefix(e, "student");
		if (!e->field[0])
			snprintf(e->field, sizeof e->field, "%s", field);
		return st;
	}
	if (ti != si || to != so)
		return err_set(e, NN_EINVAL, "invalid_spec", field,
			       "the student takes %lld values per sample and gives %lld; the teacher "
			       "takes %lld and gives %lld: they must match",
			       (long long)si, (long long)so, (long long)ti, (long long)to);
	return NN_OK;
}

/* ---- the MLP student ---------------------------------------------------- */

static void free_nodes(Onnx__GraphProto *g)
{
	for (size_t i = 0; i < g->n_node; i++)
		onnx__node_proto__free_unpacked(g->node[i], NULL);
	free(g->node);
	g->node = NULL;
	g->n_node = 0;
	for (size_t i = 0; i < g->n_initializer; i++)
		onnx__tensor_proto__free_unpacked(g->initializer[i], NULL);
	free(g->initializer);
	g->initializer = NULL;
	g->n_initializer = 0;
	for (size_t i = 0; i < g->n_sparse_initializer; i++)
		onnx__sparse_tensor_proto__free_unpacked(g->sparse_initializer[i], NULL);
	free(g->sparse_initializer);
	g->sparse_initializer = NULL;
	g->n_sparse_initializer = 0;
	for (size_t i = 0; i < g->n_value_info; i++)
		onnx__value_info_proto__free_unpacked(g->value_info[i], NULL);
	free(g->value_info);
	g->value_info = NULL;
	g->n_value_info = 0;
}

/* Keeps only the entry named `keep` of a ValueInfo list. */
static void keep_value(Onnx__ValueInfoProto ***list, size_t *n, const char *keep)
{
	size_t w = 0;
	for (size_t i = 0; i < *n; i++) {
		if (!strcmp((*list)[i]->name, keep) && w == 0)
			(*list)[w++] = (*list)[i];
		else
			onnx__value_info_proto__free_unpacked((*list)[i], NULL);
	}
	*n = w;
}

/* U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for a [rows, fan_in] weight, or a bias. */
static void linear_init(struct rng *r, float *v, size_t n, int64_t fan_in)
{
	double bound = 1.0 / sqrt((double)fan_in);
	for (size_t i = 0; i < n; i++)
		v[i] = (float)(bound * (2.0 * (double)rng_uniform(r) - 1.0));
}

enum nn_status distill_build_mlp(const struct onnx_model *teacher, const int64_t *hidden,
				 size_t n_hidden, uint64_t seed, struct onnx_model **out,
				 struct nn_err *e)
{
	int64_t in_numel = 0, out_numel = 0;
	int in_rank = 0;
	const char *in_name = NULL;
	struct tensor in_shape;
	enum nn_status st = io_numel(teacher, &in_numel, &out_numel, &in_rank, e);
	if (st != NN_OK) {
		err_prefix(e, "teacher");
		return st;
	}
	if ((st = eval_model_input(teacher, &in_name, &in_shape, e)) != NN_OK)
		return st;
	const Onnx__GraphProto *tg = teacher->proto->graph;
	if (!tg || tg->n_output < 1)
		return err_set(e, NN_EINVAL, "invalid_model", "", "the teacher has no output");
	struct onnx_model *m = NULL;
	if ((st = onnx_clone(teacher, &m, e)) != NN_OK)
		return st;
	Onnx__GraphProto *g = m->proto->graph;
	char *out_name = strdup(tg->output[0]->name);
	char *x_name = strdup(in_name);
	if (!out_name || !x_name) {
		st = oom(e);
		goto fail;
	}
	free_nodes(g);
	keep_value(&g->input, &g->n_input, x_name);
	keep_value(&g->output, &g->n_output, out_name);
	/* The output is [batch, k]: a teacher output of another rank loses its
	 * declared shape (the element type stays). */
	Onnx__ValueInfoProto *ov = g->output[0];
	if (ov->type && ov->type->tensor_type && ov->type->tensor_type->shape &&
	    ov->type->tensor_type->shape->n_dim != 2) {
		onnx__tensor_shape_proto__free_unpacked(ov->type->tensor_type->shape, NULL);
		ov->type->tensor_type->shape = NULL;
	}
	/* Layers in order, nodes prepended in reverse afterwards. */
	size_t layers = n_hidden + 1;
	struct rng rng;
	rng_seed(&rng, seed);
	int64_t fan_in = in_numel;
	char wname[64], bname[64], yname[64], rname[64], nname[64], prev[256];
	snprintf(prev, sizeof prev, "%s", in_rank > 2 ? "student/flatten" : x_name);
	if (in_rank > 2 && strlen(x_name) >= sizeof prev) {
		st = err_set(e, NN_EUNSUPPORTED, "unsupported_model", "", "input name too long");
		goto fail;
	}
	/* Initializers first (in layer order, so the seeded draws are in layer order). */
	for (size_t l = 0; l < layers; l++) {
		int64_t width = l < n_hidden ? hidden[l] : out_numel;
		size_t wn;
		if (__builtin_mul_overflow((size_t)width, (size_t)fan_in, &wn) ||
		    wn > ((size_t)1 << 31)) {
			st = err_set(e, NN_ETOOBIG, "too_big", "", "layer %zu of the student: %lld x %lld "
				     "weights is too large", l + 1, (long long)width, (long long)fan_in);
			goto fail;
		}
		struct tensor w = {0}, b = {0};
		int64_t wshape[2] = {width, fan_in}, bshape[1] = {width};
		if ((st = tensor_alloc(&w, DT_FLOAT, 2, wshape, e)) != NN_OK)
			goto fail;
		if ((st = tensor_alloc(&b, DT_FLOAT, 1, bshape, e)) != NN_OK) {
			tensor_free(&w);
			goto fail;
		}
		linear_init(&rng, w.data, wn, fan_in);
		linear_init(&rng, b.data, (size_t)width, fan_in);
		snprintf(wname, sizeof wname, "student.fc%zu.weight", l + 1);
		snprintf(bname, sizeof bname, "student.fc%zu.bias", l + 1);
		st = onnx_add_initializer_take(m, wname, &w, e);
		if (st == NN_OK)
			st = onnx_add_initializer_take(m, bname, &b, e);
		tensor_free(&w);
		tensor_free(&b);
		if (st != NN_OK)
			goto fail;
		fan_in = width;
	}
	for (size_t l = layers; l-- > 0;) {
		snprintf(wname, sizeof wname, "student.fc%zu.weight", l + 1);
		snprintf(bname, sizeof bname, "student.fc%zu.bias", l + 1);
		snprintf(nname, sizeof nname, "student/fc%zu/Gemm", l + 1);
		char in_buf[256];
		if (l == 0)
			snprintf(in_buf, sizeof in_buf, "%s", prev);
		else
			snprintf(in_buf, sizeof in_buf, "student/relu%zu", l);
		snprintf(yname, sizeof yname, "student/fc%zu", l + 1);
		const char *ins[3] = {in_buf, wname, bname};
		const char *outs[1] = {l + 1 == layers ? out_name : yname};
		Onnx__NodeProto *node = NULL;
		if (l + 1 < layers) {
			snprintf(rname, sizeof rname, "student/relu%zu", l + 1);
			snprintf(nname, sizeof nname, "student/relu%zu/Relu", l + 1);
			const char *rin[1] = {yname}, *rout[1] = {rname};
			if ((st = onnx_prepend_node(m, "Relu", nname, rin, 1, rout, 1, &node, e)) != NN_OK)
				goto fail;
			snprintf(nname, sizeof nname, "student/fc%zu/Gemm", l + 1);
		}
		if ((st = onnx_prepend_node(m, "Gemm", nname, ins, 3, outs, 1, &node, e)) != NN_OK ||
		    (st = onnx_node_set_int_attr(node, "transB", 1, e)) != NN_OK)
			goto fail;
	}
	if (in_rank > 2) {
		const char *fin[1] = {x_name}, *fout[1] = {"student/flatten"};
		Onnx__NodeProto *node = NULL;
		if ((st = onnx_prepend_node(m, "Flatten", "student/Flatten", fin, 1, fout, 1, &node,
					    e)) != NN_OK ||
		    (st = onnx_node_set_int_attr(node, "axis", 1, e)) != NN_OK)
			goto fail;
	}
	free(out_name);
	free(x_name);
	*out = m;
	return NN_OK;
fail:
	free(out_name);
	free(x_name);
	onnx_free(m);
	return st;
}

/* ---- int8 weights: float shadows with fake quantization ------------------ */

/* A DequantizeLinear(W_q, scale, zero_point) weight trained as a float shadow. */
struct fq_weight {
	char *name;              /* the DQ output (the float weight's name) */
	Onnx__TensorProto *q;    /* the int8/uint8 initializer in the job's model */
	enum dtype qt;
	float *scale;            /* channels */
	int32_t *zp;             /* channels */
	size_t channels, inner, n;
	float *shadow;           /* n floats, the optimizer's values */
	struct tg_param *param;  /* the graph's parameter */
	struct tg_param view;    /* what the optimizer sees: shadow + graph grad */
};

struct fq_set {
	struct fq_weight *w;
	size_t n;
};

static void fq_free(struct fq_set *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->w[i].name);
		free(s->w[i].scale);
		free(s->w[i].zp);
		free(s->w[i].shadow);
	}
	free(s->w);
	s->w = NULL;
	s->n = 0;
}

/* Integer values of an int8/uint8 (or int32 for zp) initializer into out[n]. */
static bool read_ints(const Onnx__TensorProto *t, size_t n, int32_t *out)
{
	if (!t->has_data_type || (t->data_type != DT_INT8 && t->data_type != DT_UINT8))
		return false;
	if (t->raw_data.len == n) {
		for (size_t i = 0; i < n; i++)
			out[i] = t->data_type == DT_INT8 ? (int32_t)((const int8_t *)t->raw_data.data)[i]
							 : (int32_t)t->raw_data.data[i];
		return true;
	}
	if (t->n_int32_data == n) {
		for (size_t i = 0; i < n; i++)
			out[i] = t->int32_data[i];
		return true;
	}
	return false;
}

static size_t tensor_elems(const Onnx__TensorProto *t)
{
	size_t n = 1;
	for (size_t i = 0; i < t->n_dims; i++) {
		if (t->dims[i] < 0 || __builtin_mul_overflow(n, (size_t)t->dims[i], &n))
			return SIZE_MAX;
	}
	return n;
}

static inline float fq_value(float w, float scale, int32_t zp, int32_t lo, int32_t hi)
{
	float q = nearbyintf(w / scale) + (float)zp;
	q = q < (float)lo ? (float)lo : q > (float)hi ? (float)hi : q;
	return (q - (float)zp) * scale;
}

/* Projects every shadow onto the int8 grid into the graph's parameter. */
static void fq_project(void *ud)
{
	struct fq_set *s = ud;
	for (size_t k = 0; k < s->n; k++) {
		struct fq_weight *w = &s->w[k];
		int32_t lo = w->qt == DT_INT8 ? -128 : 0, hi = w->qt == DT_INT8 ? 127 : 255;
		float *dst = w->param->value;
		const float *src = w->shadow;
		/* [outer, channels, inner] (channels 1: per tensor) */
		size_t block = w->channels * w->inner, outer = block ? w->n / block : 0;
		for (size_t o = 0; o < outer; o++)
			for (size_t c = 0; c < w->channels; c++) {
				float sc = w->scale[c];
				int32_t zp = w->zp[c];
				size_t base = (o * w->channels + c) * w->inner;
				for (size_t j = 0; j < w->inner; j++)
					dst[base + j] = fq_value(src[base + j], sc, zp, lo, hi);
			}
	}
}

/* Finds DequantizeLinear nodes of int8 weights in m, records them in s and
 * rewrites the training copy mt (a clone of m): each such node is removed and
 * its output becomes a float initializer with the dequantized values. Other
 * quantized forms are refused. */
static enum nn_status fq_prepare(const struct onnx_model *m, struct onnx_model *mt,
				 struct fq_set *s, struct nn_err *e)
{
	const Onnx__GraphProto *g = m->proto->graph;
	enum nn_status st = NN_OK;
	for (size_t i = 0; g && i < g->n_node; i++) {
		const Onnx__NodeProto *nd = g->node[i];
		const char *op = nd->op_type;
		if (!strcmp(op, "MatMulNBits") || !strcmp(op, "QuantizeLinear") ||
		    !strcmp(op, "MatMulInteger") || !strcmp(op, "ConvInteger") ||
		    !strcmp(op, "DynamicQuantizeLinear") || !strcmp(op, "QLinearMatMul") ||
		    !strcmp(op, "QLinearConv"))
			return err_set(e, NN_EUNSUPPORTED, "unsupported_model", "",
				       "node '%s' (%s): training supports float weights and int8 "
				       "weight-only quantization (DequantizeLinear of an int8 "
				       "initializer); quantize after this step instead",
				       nd->name ? nd->name : "", op);
	}
	for (size_t i = 0; g && i < g->n_node; i++) {
		const Onnx__NodeProto *nd = g->node[i];
		if (strcmp(nd->op_type, "DequantizeLinear"))
			continue;
		Onnx__TensorProto *q = nd->n_input >= 1 ? onnx_find_initializer(m, nd->input[0]) : NULL;
		Onnx__TensorProto *sc = nd->n_input >= 2 ? onnx_find_initializer(m, nd->input[1]) : NULL;
		Onnx__TensorProto *zp = nd->n_input >= 3 && nd->input[2][0]
						? onnx_find_initializer(m, nd->input[2])
						: NULL;
		bool int8 = q && q->has_data_type &&
			    (q->data_type == DT_INT8 || q->data_type == DT_UINT8);
		if (!int8 || !sc || nd->n_output != 1)
			return err_set(e, NN_EUNSUPPORTED, "unsupported_model", "",
				       "node '%s' (DequantizeLinear): only int8/uint8 weight "
				       "initializers with constant scales can be trained (int4 blocks, "
				       "k-means palettes and static QDQ activations cannot)",
				       nd->name ? nd->name : "");
		struct tensor scv;
		if ((st = onnx_initializer_view(sc, &scv, e)) != NN_OK)
			return st;
		size_t n = tensor_elems(q), channels = (size_t)tensor_numel(&scv);
		int64_t axis = onnx_node_int_attr(nd, "axis", 1);
		if (axis < 0)
			axis += (int64_t)q->n_dims;
		size_t inner = 1;
		if (channels > 1) {
			if (axis < 0 || axis >= (int64_t)q->n_dims ||
			    q->dims[axis] != (int64_t)channels) {
				tensor_free(&scv);
				return err_set(e, NN_EUNSUPPORTED, "unsupported_model", "",
					       "node '%s' (DequantizeLinear): scales do not match "
					       "the weight's axis",
					       nd->name ? nd->name : "");
			}
			for (size_t d = (size_t)axis + 1; d < q->n_dims; d++)
				inner *= (size_t)q->dims[d];
		}
		if (n == SIZE_MAX || channels < 1) {
			tensor_free(&scv);
			return err_set(e, NN_EINVAL, "invalid_model", "", "bad quantized weight '%s'",
				       nd->input[0]);
		}
		struct fq_weight *grown = realloc(s->w, (s->n + 1) * sizeof *s->w);
		if (!grown) {
			tensor_free(&scv);
			return oom(e);
		}
		s->w = grown;
		struct fq_weight *w = &s->w[s->n++];
		memset(w, 0, sizeof *w);
		w->name = strdup(nd->output[0]);
		w->q = q;
		w->qt = (enum dtype)q->data_type;
		w->channels = channels;
		w->inner = inner;
		w->n = n;
		w->scale = malloc(channels * sizeof *w->scale);
		w->zp = calloc(channels, sizeof *w->zp);
		int32_t *qi = malloc((n ? n : 1) * sizeof *qi);
		if (!w->name || !w->scale || !w->zp || !qi) {
			free(qi);
			tensor_free(&scv);
			return oom(e);
		}
		memcpy(w->scale, scv.data, channels * sizeof *w->scale);
		tensor_free(&scv);
		if ((zp && !read_ints(zp, channels, w->zp)) || !read_ints(q, n, qi)) {
			free(qi);
			return err_set(e, NN_EUNSUPPORTED, "unsupported_model", "",
				       "quantized weight '%s': unreadable int8 data", nd->input[0]);
		}
		struct tensor f = {0};
		int64_t shape[TENSOR_MAX_DIMS];
		if (q->n_dims > TENSOR_MAX_DIMS) {
			free(qi);
			return err_set(e, NN_EUNSUPPORTED, "unsupported_model", "", "rank too high");
		}
		for (size_t d = 0; d < q->n_dims; d++)
			shape[d] = q->dims[d];
		if ((st = tensor_alloc(&f, DT_FLOAT, (int)q->n_dims, shape, e)) != NN_OK) {
			free(qi);
			return st;
		}
		float *fv = f.data;
		for (size_t k = 0; k < n; k++) {
			size_t c = channels == 1 ? 0 : (k / inner) % channels;
			fv[k] = (float)(qi[k] - w->zp[c]) * w->scale[c];
		}
		free(qi);
		st = onnx_add_initializer_take(mt, w->name, &f, e);
		tensor_free(&f);
		if (st != NN_OK)
			return st;
	}
	/* Remove the DQ nodes from the training copy (same order as m). */
	Onnx__GraphProto *gt = mt->proto->graph;
	size_t wpos = 0;
	for (size_t i = 0; gt && i < gt->n_node; i++) {
		Onnx__NodeProto *nd = gt->node[i];
		bool drop = false;
		for (size_t k = 0; k < s->n && !drop; k++)
			drop = !strcmp(nd->op_type, "DequantizeLinear") && nd->n_output == 1 &&
			       !strcmp(nd->output[0], s->w[k].name);
		if (drop)
			onnx__node_proto__free_unpacked(nd, NULL);
		else
			gt->node[wpos++] = nd;
	}
	if (gt)
		gt->n_node = wpos;
	return NN_OK;
}

/* Writes the shadows' int8 values into m's quantized initializers (same
 * scales, zero points, dtype and shape). */
static enum nn_status fq_commit(const struct fq_set *s, struct nn_err *e)
{
	for (size_t k = 0; k < s->n; k++) {
		const struct fq_weight *w = &s->w[k];
		struct tensor t = {0};
		int64_t shape[TENSOR_MAX_DIMS];
		for (size_t d = 0; d < w->q->n_dims; d++)
			shape[d] = w->q->dims[d];
		enum nn_status st = tensor_alloc(&t, w->qt, (int)w->q->n_dims, shape, e);
		if (st != NN_OK)
			return st;
		int32_t lo = w->qt == DT_INT8 ? -128 : 0, hi = w->qt == DT_INT8 ? 127 : 255;
		for (size_t i = 0; i < w->n; i++) {
			size_t c = w->channels == 1 ? 0 : (i / w->inner) % w->channels;
			float q = nearbyintf(w->shadow[i] / w->scale[c]) + (float)w->zp[c];
			q = q < (float)lo ? (float)lo : q > (float)hi ? (float)hi : q;
			if (w->qt == DT_INT8)
				((int8_t *)t.data)[i] = (int8_t)q;
			else
				((uint8_t *)t.data)[i] = (uint8_t)q;
		}
		st = onnx_initializer_set(w->q, &t, e);
		tensor_free(&t);
		if (st != NN_OK)
			return st;
	}
	return NN_OK;
}

/* Copies every float initializer of `from` that `to` also holds as a float
 * of the same size (trained parameters, BatchNormalization statistics). */
static enum nn_status copy_floats(const struct onnx_model *from, struct onnx_model *to,
				  const struct tg_graph *g, struct nn_err *e)
{
	(void)g;
	const Onnx__GraphProto *gf = from->proto->graph;
	for (size_t i = 0; gf && i < gf->n_initializer; i++) {
		const Onnx__TensorProto *src = gf->initializer[i];
		Onnx__TensorProto *dst = onnx_find_initializer(to, src->name);
		if (!dst || !dst->has_data_type || dst->data_type != DT_FLOAT ||
		    !src->has_data_type || src->data_type != DT_FLOAT)
			continue;
		struct tensor v;
		enum nn_status st = onnx_initializer_view(src, &v, e);
		if (st != NN_OK)
			return st;
		if (tensor_elems(dst) == (size_t)tensor_numel(&v))
			st = onnx_initializer_set(dst, &v, e);
		tensor_free(&v);
		if (st != NN_OK)
			return st;
	}
	return NN_OK;
}

/* ---- the training run shared by both steps ------------------------------ */

static void set_train_set(const struct eval_data *d, struct train_set *t)
{
	memset(t, 0, sizeof *t);
	if (!d || !d->inputs || d->inputs->ndim < 1 || d->inputs->shape[0] < 1)
		return;
	t->x = d->inputs->data;
	t->labels = d->labels;
	t->n = d->inputs->shape[0];
	t->sample_numel = tensor_numel(d->inputs) / t->n;
}

static int64_t param_total(const struct onnx_model *m)
{
	int64_t n = 0;
	const Onnx__GraphProto *g = m->proto->graph;
	for (size_t i = 0; g && i < g->n_initializer; i++) {
		size_t k = tensor_elems(g->initializer[i]);
		if (k != SIZE_MAX)
			n += (int64_t)k;
	}
	return n;
}

/* Trains sm in place (see distill.h); teacher may be NULL (alpha 0). */
static enum nn_status train_model(struct onnx_model *sm, const struct onnx_model *teacher,
				  const struct distill_params *p, bool mask_zeros,
				  const struct step_ctx *ctx, json_t *metrics, struct nn_err *e)
{
	struct train_set train, eval;
	set_train_set(ctx ? ctx->calib : NULL, &train);
	set_train_set(ctx ? ctx->eval : NULL, &eval);
	char field[64];
	snprintf(field, sizeof field, "steps[%zu].dataset", p->index);
	if (!train.x)
		return err_set(e, NN_EINVAL, "invalid_spec", field,
			       "%s needs training data: name a dataset (the step's \"dataset\" or "
			       "the spec's top-level one)",
			       p->finetune ? "finetune" : "distill");
	struct fq_set fq = {0};
	struct onnx_model *mt = NULL;
	struct tg_graph *g = NULL;
	struct optim *opt = NULL;
	struct tg_param **params = NULL;
	json_t *history = NULL;
	enum nn_status st;
	bool has_dq = false;
	for (size_t i = 0; sm->proto->graph && i < sm->proto->graph->n_node; i++)
		has_dq |= !strcmp(sm->proto->graph->node[i]->op_type, "DequantizeLinear") ||
			  !strcmp(sm->proto->graph->node[i]->op_type, "MatMulNBits");
	if (has_dq) {
		if ((st = onnx_clone(sm, &mt, e)) != NN_OK)
			goto done;
		if ((st = fq_prepare(sm, mt, &fq, e)) != NN_OK)
			goto done;
	}
	const struct onnx_model *tm = mt ? mt : sm;
	int64_t batch = p->train.batch_size < train.n ? p->train.batch_size : train.n;
	const char *taps[1] = {p->train.feature_student};
	struct tg_options to = {.max_batch = batch,
				.seed = p->train.seed,
				.taps = p->train.feature_student ? taps : NULL,
				.n_taps = p->train.feature_student ? 1 : 0};
	if ((st = tg_compile(tm, &to, &g, e)) != NN_OK) {
		err_prefix(e, "the student cannot be trained");
		goto done;
	}
	size_t np = tg_param_count(g);
	if (!(params = calloc(np ? np : 1, sizeof *params))) {
		st = oom(e);
		goto done;
	}
	for (size_t i = 0; i < np; i++) {
		struct tg_param *q = tg_param(g, i);
		params[i] = q;
		for (size_t k = 0; k < fq.n; k++) {
			struct fq_weight *w = &fq.w[k];
			if (strcmp(q->name, w->name))
				continue;
			if (q->n != w->n) {
				st = err_set(e, NN_EINTERNAL, "internal", "", "weight '%s' size changed",
					     w->name);
				goto done;
			}
			if (!(w->shadow = malloc((w->n ? w->n : 1) * sizeof *w->shadow))) {
				st = oom(e);
				goto done;
			}
			memcpy(w->shadow, q->value, w->n * sizeof *w->shadow);
			w->param = q;
			w->view = *q;
			w->view.value = w->shadow;
			params[i] = &w->view;
		}
	}
	for (size_t k = 0; k < fq.n; k++)
		if (!fq.w[k].param) {
			st = err_set(e, NN_EUNSUPPORTED, "unsupported_model", "",
				     "quantized weight '%s' is not a trainable parameter (it must feed "
				     "a Gemm, MatMul or Conv)",
				     fq.w[k].name);
			goto done;
		}
	if ((st = optim_new(&p->train.optimizer, params, np, &opt, e)) != NN_OK)
		goto done;
	size_t masked = 0;
	if (mask_zeros) {
		for (size_t i = 0; i < np; i++) {
			if (!params[i]->decay)
				continue;
			size_t c = 0;
			if ((st = optim_mask_zeros(opt, i, &c, e)) != NN_OK)
				goto done;
			masked += c;
		}
	}
	struct train_params tp = p->train;
	if (fq.n) {
		tp.before_forward = fq_project;
		tp.before_forward_ud = &fq;
	}
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if ((st = train_run(g, opt, &tp, &train, tp.alpha > 0 || tp.feature_teacher ? teacher : NULL,
			    eval.x ? &eval : NULL, ctx, &history, e)) != NN_OK)
		goto done;
	double secs = step_seconds_since(&t0);
	if (fq.n)
		fq_project(&fq);
	if (mt) {
		if ((st = tg_write_back(g, mt, e)) != NN_OK ||
		    (st = copy_floats(mt, sm, g, e)) != NN_OK || (st = fq_commit(&fq, e)) != NN_OK)
			goto done;
	} else if ((st = tg_write_back(g, sm, e)) != NN_OK) {
		goto done;
	}
	const json_t *last = json_array_get(history, json_array_size(history) - 1);
	int badj = 0;
	badj |= step_json_set(metrics, "samples", json_integer(train.n));
	badj |= step_json_set(metrics, "parameters_trained", json_integer((json_int_t)np));
	if (mask_zeros)
		badj |= step_json_set(metrics, "masked", json_integer((json_int_t)masked));
	badj |= step_json_set(metrics, "fake_quantized", json_integer((json_int_t)fq.n));
	if (last) {
		json_t *v;
		if ((v = json_object_get(last, "loss")))
			badj |= step_json_set(metrics, "final_loss", json_incref(v));
		if ((v = json_object_get(last, "train_accuracy")))
			badj |= step_json_set(metrics, "train_accuracy", json_incref(v));
		if ((v = json_object_get(last, "eval_accuracy")))
			badj |= step_json_set(metrics, "eval_accuracy", json_incref(v));
	}
	badj |= step_json_set(metrics, "train_seconds", step_json_real(secs));
	badj |= step_json_set(metrics, "history", history);
	history = NULL;
	if (badj)
		st = oom(e);
done:
	json_decref(history);
	optim_free(opt);
	free(params);
	tg_free(g);
	onnx_free(mt);
	fq_free(&fq);
	return st;
}

static json_t *params_json(const struct distill_params *p)
{
	const struct train_params *t = &p->train;
	json_t *o = json_object();
	if (!o)
		return NULL;
	int b = 0;
	const char *teacher = p->teacher == DISTILL_TEACHER_NONE    ? "none"
			      : p->teacher == DISTILL_TEACHER_INPUT ? "input"
								    : p->teacher_id;
	b |= step_json_set(o, "teacher", json_string(teacher));
	if (!p->finetune) {
		json_t *s = NULL;
		switch (p->student) {
		case DISTILL_STUDENT_CURRENT: s = json_string("current"); break;
		case DISTILL_STUDENT_MODEL: s = json_pack("{s:s}", "model", p->student_id); break;
		case DISTILL_STUDENT_STRUCTURED:
			s = json_pack("{s:s, s:f}", "from", "structured", "ratio", p->ratio);
			break;
		case DISTILL_STUDENT_HIDDEN: {
			json_t *h = json_array();
			for (size_t i = 0; h && i < p->n_hidden; i++)
				b |= json_array_append_new(h, json_integer(p->hidden[i]));
			s = h ? json_pack("{s:o}", "hidden", h) : NULL;
			break;
		}
		}
		b |= step_json_set(o, "student", s);
	}
	b |= step_json_set(o, "epochs", json_integer(t->epochs));
	b |= step_json_set(o, "batch_size", json_integer(t->batch_size));
	b |= step_json_set(o, "temperature", json_real(t->temperature));
	b |= step_json_set(o, "alpha", json_real(t->alpha));
	b |= step_json_set(o, "optimizer", json_string(optim_kind_name(t->optimizer.kind)));
	b |= step_json_set(o, "lr", json_real(t->optimizer.lr));
	b |= step_json_set(o, "seed", json_integer((json_int_t)t->seed));
	if (b) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static enum nn_status resolve_teacher(const struct distill_params *p, const struct step_ctx *ctx,
				      const struct onnx_model **out, struct nn_err *e)
{
	*out = NULL;
	char field[128];
	if (p->teacher == DISTILL_TEACHER_NONE)
		return NN_OK;
	if (p->teacher == DISTILL_TEACHER_INPUT) {
		*out = ctx ? ctx->input_model : NULL;
		if (!*out)
			return err_set(e, NN_EINTERNAL, "internal", "",
				       "the job's input model was not kept for the teacher");
		return NN_OK;
	}
	*out = step_model_by_id(ctx, p->teacher_id);
	snprintf(field, sizeof field, "steps[%zu].teacher.model", p->index);
	if (!*out)
		return err_set(e, NN_EINVAL, "unknown_model", field, "no model with id '%s'",
			       p->teacher_id);
	return NN_OK;
}

enum nn_status distill_run(struct onnx_model *m, const struct distill_params *p,
			   const struct step_ctx *ctx, json_t **metrics, struct nn_err *e)
{
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	const struct onnx_model *teacher = NULL;
	struct onnx_model *student = NULL;
	json_t *out = params_json(p), *sub = NULL;
	char field[128];
	enum nn_status st;
	if (!out)
		return oom(e);
	if ((st = resolve_teacher(p, ctx, &teacher, e)) != NN_OK)
		goto done;
	int64_t params_before = param_total(m);
	switch (p->student) {
	case DISTILL_STUDENT_CURRENT:
		break;
	case DISTILL_STUDENT_MODEL: {
		const struct onnx_model *s = step_model_by_id(ctx, p->student_id);
		snprintf(field, sizeof field, "steps[%zu].student.model", p->index);
		if (!s) {
			st = err_set(e, NN_EINVAL, "unknown_model", field, "no model with id '%s'",
				     p->student_id);
			goto done;
		}
		if ((st = onnx_clone(s, &student, e)) != NN_OK)
			goto done;
		break;
	}
	case DISTILL_STUDENT_STRUCTURED: {
		struct prune_params pp = {.method = PRUNE_STRUCTURED,
					  .scope = PRUNE_SCOPE_GLOBAL,
					  .ratio = p->ratio,
					  .criterion = PRUNE_L1,
					  .index = p->index};
		struct step_ctx quiet = {.cancel = ctx ? ctx->cancel : NULL};
		if ((st = onnx_clone(teacher, &student, e)) != NN_OK)
			goto done;
		if ((st = structured_run(student, &pp, &quiet, &sub, e)) != NN_OK) {
			if (st != NN_ECANCELED)
				err_prefix(e, "structured student");
			goto done;
		}
		if (step_json_set(out, "structured", sub)) {
			sub = NULL;
			st = oom(e);
			goto done;
		}
		sub = NULL;
		break;
	}
	case DISTILL_STUDENT_HIDDEN:
		if ((st = distill_build_mlp(teacher, p->hidden, p->n_hidden, p->train.seed, &student,
					    e)) != NN_OK)
			goto done;
		break;
	}
	struct onnx_model *sm = student ? student : m;
	snprintf(field, sizeof field, "steps[%zu].student%s", p->index,
		 p->student == DISTILL_STUDENT_MODEL ? ".model" : "");
	if ((st = distill_check_pair(teacher, sm, field, e)) != NN_OK)
		goto done;
	if (p->train.epochs > 0 &&
	    (st = train_model(sm, teacher, p, false, ctx, out, e)) != NN_OK)
		goto done;
	if (student) { /* the student becomes the job's model */
		Onnx__ModelProto *old = m->proto;
		m->proto = student->proto;
		student->proto = old;
	}
	int bad = step_json_set(out, "parameters_before", json_integer(params_before));
	bad |= step_json_set(out, "parameters_after", json_integer(param_total(m)));
	bad |= step_json_set(out, "seconds", step_json_real(step_seconds_since(&t0)));
	if (bad)
		st = oom(e);
done:
	onnx_free(student);
	json_decref(sub);
	if (st == NN_OK)
		*metrics = out;
	else
		json_decref(out);
	return st;
}

enum nn_status finetune_run(struct onnx_model *m, const struct distill_params *p,
			    const struct step_ctx *ctx, json_t **metrics, struct nn_err *e)
{
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	const struct onnx_model *teacher = NULL;
	json_t *out = params_json(p);
	enum nn_status st;
	if (!out)
		return oom(e);
	if ((st = resolve_teacher(p, ctx, &teacher, e)) != NN_OK)
		goto done;
	if (teacher) {
		char field[64];
		snprintf(field, sizeof field, "steps[%zu].teacher", p->index);
		if ((st = distill_check_pair(teacher, m, field, e)) != NN_OK)
			goto done;
	}
	if (p->train.epochs > 0 && (st = train_model(m, teacher, p, true, ctx, out, e)) != NN_OK)
		goto done;
	int bad = step_json_set(out, "parameters", json_integer(param_total(m)));
	bad |= step_json_set(out, "seconds", step_json_real(step_seconds_since(&t0)));
	if (bad)
		st = oom(e);
done:
	if (st == NN_OK)
		*metrics = out;
	else
		json_decref(out);
	return st;
}
