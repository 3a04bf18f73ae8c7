/* ops_float16: float16 / bfloat16 conversions and Cast (see ops_float16.h). */
#include "ops_float16.h"

#include <math.h>
#include <string.h>

#include "exec_op.h"

static inline uint32_t float_bits(float x)
{
	uint32_t b;
	memcpy(&b, &x, sizeof b);
	return b;
}

static inline float bits_float(uint32_t b)
{
	float x;
	memcpy(&x, &b, sizeof x);
	return x;
}

uint16_t f16_from_float(float x)
{
	uint32_t b = float_bits(x);
	uint16_t sign = (uint16_t)((b >> 16) & 0x8000u);
	uint32_t a = b & 0x7fffffffu;
	if (a > 0x7f800000u) /* NaN: keep it quiet and non-zero */
		return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
	if (a >= 0x477ff000u) /* >= 65520 rounds past the largest half (65504) */
		return (uint16_t)(sign | 0x7c00u);
	if (a < 0x38800000u) {
		/* Subnormal half (or zero): value / 2^-24 rounded to nearest even.
		 * Adding 0.5f shifts the value so that the float adder performs
		 * exactly that rounding in its low mantissa bits. */
		float f = bits_float(a) + 0.5f;
		return (uint16_t)(sign | (float_bits(f) - 0x3f000000u));
	}
	/* Normal: rebias the exponent (127 -> 15) and round the 13 dropped bits
	 * to nearest even; a carry into the exponent is the correct result. */
	uint32_t odd = (a >> 13) & 1u;
	a += 0xc8000fffu + odd; /* (15 - 127) << 23, plus the rounding bias */
	return (uint16_t)(sign | (a >> 13));
}

float f16_to_float(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
	if (exp == 0x1f)
		return bits_float(sign | 0x7f800000u | (man << 13));
	if (exp == 0) /* zero or subnormal: man * 2^-24, exact in float */
		return sign ? -((float)man * 0x1p-24f) : (float)man * 0x1p-24f;
	return bits_float(sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t bf16_from_float(float x)
{
	uint32_t b = float_bits(x);
	if ((b & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((b >> 16) | 0x40u); /* quiet NaN */
	b += 0x7fffu + ((b >> 16) & 1u);
	return (uint16_t)(b >> 16);
}

float bf16_to_float(uint16_t h)
{
	return bits_float((uint32_t)h << 16);
}

void f16_from_floats(uint16_t *dst, const float *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = f16_from_float(src[i]);
}

void bf16_from_floats(uint16_t *dst, const float *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = bf16_from_float(src[i]);
}

/* ---- Cast ---- */

static bool half_type(enum dtype dt)
{
	return dt == DT_FLOAT16 || dt == DT_BFLOAT16;
}

static bool float_type(enum dtype dt)
{
	return dt == DT_FLOAT || dt == DT_DOUBLE || half_type(dt);
}

/* ops_math's Cast, for every pair without a 16-bit float. */
static const struct exec_op *math_cast(void)
{
	for (size_t i = 0; i < exec_ops_math_count; i++)
		if (!strcmp(exec_ops_math[i].op_type, "Cast"))
			return &exec_ops_math[i];
	return NULL;
}

static enum nn_status infer_cast16(struct exec_infer_ctx *c, struct nn_err *e)
{
	const Onnx__AttributeProto *a = exec_attr_find(c->node, "to");
	enum dtype to = a ? (enum dtype)a->i : DT_UNDEFINED;
	enum dtype from = c->n_in >= 1 ? c->in[0].dtype : DT_UNDEFINED;
	if (!half_type(from) && !half_type(to)) {
		const struct exec_op *m = math_cast();
		if (!m)
			return exec_node_err(e, NN_EINTERNAL, c->node, "no Cast in ops_math");
		return m->infer(c, e);
	}
	if (c->n_in != 1 || c->n_out != 1)
		return exec_node_err(e, NN_EINVAL, c->node, "Cast takes 1 input and 1 output");
	if (!float_type(from) || !float_type(to))
		return exec_node_err(e, NN_EUNSUPPORTED, c->node, "cast from %s to %s is not supported",
				     dtype_name(from), dtype_name(to));
	c->out[0].dtype = to;
	c->out[0].ndim = c->in[0].ndim;
	memcpy(c->out[0].shape, c->in[0].shape, sizeof c->out[0].shape);
	return NN_OK;
}

static float read_f(enum dtype dt, const void *p, int64_t i)
{
	switch (dt) {
	case DT_FLOAT16:
		return f16_to_float(((const uint16_t *)p)[i]);
	case DT_BFLOAT16:
		return bf16_to_float(((const uint16_t *)p)[i]);
	case DT_DOUBLE:
		return (float)((const double *)p)[i];
	default:
		return ((const float *)p)[i];
	}
}

static enum nn_status run_cast16(const struct exec_run_ctx *c, struct nn_err *e)
{
	enum dtype from = c->in[0].dtype, to = c->out[0].dtype;
	if (!half_type(from) && !half_type(to))
		return math_cast()->run(c, e);
	const void *x = c->in[0].data;
	void *y = c->out[0].data;
	int64_t n = exec_numel(&c->out[0]);
	if (from == to) {
		memcpy(y, x, (size_t)n * 2);
		return NN_OK;
	}
	/* double -> 16-bit goes through float: double rounding differs from a
	 * direct rounding only in ties that float already broke, which ONNX
	 * Runtime's Cast (via float) shares. */
	for (int64_t i = 0; i < n; i++) {
		if (from == DT_FLOAT16 && to == DT_FLOAT) {
			((float *)y)[i] = f16_to_float(((const uint16_t *)x)[i]);
			continue;
		}
		if (from == DT_FLOAT16 && to == DT_DOUBLE) {
			((double *)y)[i] = f16_to_float(((const uint16_t *)x)[i]);
			continue;
		}
		if (from == DT_BFLOAT16 && to == DT_DOUBLE) {
			((double *)y)[i] = bf16_to_float(((const uint16_t *)x)[i]);
			continue;
		}
		float f = read_f(from, x, i);
		switch (to) {
		case DT_FLOAT16:
			((uint16_t *)y)[i] = f16_from_float(f);
			break;
		case DT_BFLOAT16:
			((uint16_t *)y)[i] = bf16_from_float(f);
			break;
		default:
			((float *)y)[i] = f;
			break;
		}
	}
	return NN_OK;
}

/* ---- nncd.f16 RoundToFloat16 ----
 * y = float(float16(x)) for float32 x (ties to even, overflow to infinity):
 * the value a float16 tensor would hold. The executor inserts it where ONNX
 * Runtime materialises a float16 value inside a graph it otherwise computes
 * in float32 (exec_f16.h). Other dtypes pass through unchanged (a value the
 * analysis could not type, e.g. an index). */

static enum nn_status infer_round16(struct exec_infer_ctx *c, struct nn_err *e)
{
	if (c->n_in != 1 || c->n_out != 1)
		return exec_node_err(e, NN_EINVAL, c->node, "RoundToFloat16 takes 1 input and 1 output");
	if (dtype_size(c->in[0].dtype) == 0)
		return exec_node_err(e, NN_EUNSUPPORTED, c->node, "RoundToFloat16 of %s",
				     dtype_name(c->in[0].dtype));
	c->out[0].dtype = c->in[0].dtype;
	c->out[0].ndim = c->in[0].ndim;
	memcpy(c->out[0].shape, c->in[0].shape, sizeof c->out[0].shape);
	return NN_OK;
}

static enum nn_status run_round16(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	int64_t n = exec_numel(&c->out[0]);
	if (c->in[0].dtype != DT_FLOAT) {
		memmove(c->out[0].data, c->in[0].data, (size_t)n * dtype_size(c->in[0].dtype));
		return NN_OK;
	}
	const float *x = c->in[0].data;
	float *y = c->out[0].data;
	for (int64_t i = 0; i < n; i++)
		y[i] = f16_to_float(f16_from_float(x[i]));
	return NN_OK;
}

const struct exec_op exec_ops_float16[] = {
	{"", "Cast", NULL, infer_cast16, run_cast16, NULL},
	{"nncd.f16", "RoundToFloat16", NULL, infer_round16, run_round16, NULL},
};
const size_t exec_ops_float16_count = sizeof exec_ops_float16 / sizeof exec_ops_float16[0];
