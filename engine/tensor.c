/* tensor: dense n-dimensional array values (see tensor.h).
 *
 * Owns nothing but the data of tensors marked `owned`. Pure functions on
 * caller-provided structs: safe from any thread on distinct tensors. */
#include "tensor.h"

#include <stdlib.h>
#include <string.h>

size_t dtype_size(enum dtype dt)
{
	switch ((int)dt) {
	case DT_FLOAT: return 4;
	case DT_UINT8: return 1;
	case DT_INT8: return 1;
	case DT_UINT16: return 2;
	case DT_INT16: return 2;
	case DT_INT32: return 4;
	case DT_INT64: return 8;
	case DT_BOOL: return 1;
	case DT_FLOAT16: return 2;
	case DT_DOUBLE: return 8;
	case DT_UINT32: return 4;
	case DT_UINT64: return 8;
	case DT_BFLOAT16: return 2;
	default: return 0; /* string, 4-bit, undefined, unknown */
	}
}

const char *dtype_name(enum dtype dt)
{
	/* Numbering is ONNX's TensorProto.DataType, so values read from a model
	 * that enum dtype does not list (complex, float8) still get a name. */
	switch ((int)dt) {
	case DT_UNDEFINED: return "undefined";
	case DT_FLOAT: return "float32";
	case DT_UINT8: return "uint8";
	case DT_INT8: return "int8";
	case DT_UINT16: return "uint16";
	case DT_INT16: return "int16";
	case DT_INT32: return "int32";
	case DT_INT64: return "int64";
	case DT_STRING: return "string";
	case DT_BOOL: return "bool";
	case DT_FLOAT16: return "float16";
	case DT_DOUBLE: return "float64";
	case DT_UINT32: return "uint32";
	case DT_UINT64: return "uint64";
	case 14: return "complex64";
	case 15: return "complex128";
	case DT_BFLOAT16: return "bfloat16";
	case 17: return "float8e4m3fn";
	case 18: return "float8e4m3fnuz";
	case 19: return "float8e5m2";
	case 20: return "float8e5m2fnuz";
	case DT_UINT4: return "uint4";
	case DT_INT4: return "int4";
	case 23: return "float4e2m1";
	default: return "unknown";
	}
}

int64_t tensor_numel(const struct tensor *t)
{
	if (t->ndim < 0 || t->ndim > TENSOR_MAX_DIMS)
		return -1;
	int64_t n = 1;
	for (int i = 0; i < t->ndim; i++) {
		if (t->shape[i] < 0 || __builtin_mul_overflow(n, t->shape[i], &n))
			return -1;
	}
	return n;
}

enum nn_status tensor_nbytes(const struct tensor *t, size_t *out, struct nn_err *e)
{
	*out = 0;
	int64_t n = tensor_numel(t);
	if (n < 0)
		return err_set(e, NN_EINVAL, "invalid_tensor", NULL,
			       "tensor shape is invalid (negative dimension, more than %d dims, "
			       "or element count overflows)", TENSOR_MAX_DIMS);
	if (t->dtype == DT_INT4 || t->dtype == DT_UINT4) {
		/* ONNX packs two 4-bit values per byte, low nibble first. */
		*out = (size_t)(n / 2 + n % 2);
		return NN_OK;
	}
	size_t es = dtype_size(t->dtype);
	if (es == 0)
		return err_set(e, NN_EUNSUPPORTED, "unsupported_dtype", NULL,
			       "dtype %s has no fixed element size", dtype_name(t->dtype));
	size_t bytes;
	if ((uint64_t)n > SIZE_MAX || __builtin_mul_overflow((size_t)n, es, &bytes))
		return err_set(e, NN_ETOOBIG, "tensor_too_large", NULL,
			       "tensor of %lld elements does not fit in memory", (long long)n);
	*out = bytes;
	return NN_OK;
}

enum nn_status tensor_alloc(struct tensor *t, enum dtype dt, int ndim, const int64_t *shape,
			    struct nn_err *e)
{
	memset(t, 0, sizeof *t);
	if (ndim < 0 || ndim > TENSOR_MAX_DIMS)
		return err_set(e, NN_EUNSUPPORTED, "too_many_dims", NULL,
			       "tensor has %d dims; at most %d are supported", ndim, TENSOR_MAX_DIMS);
	t->dtype = dt;
	t->ndim = ndim;
	for (int i = 0; i < ndim; i++)
		t->shape[i] = shape[i];
	size_t bytes;
	enum nn_status st = tensor_nbytes(t, &bytes, e);
	if (st != NN_OK) {
		memset(t, 0, sizeof *t);
		return st;
	}
	/* Never zero bytes: callers may rely on data != NULL for owned storage. */
	t->data = calloc(1, bytes ? bytes : 1);
	if (!t->data) {
		memset(t, 0, sizeof *t);
		return err_set(e, NN_ENOMEM, "out_of_memory", NULL,
			       "cannot allocate %zu bytes for a tensor", bytes);
	}
	t->owned = true;
	return NN_OK;
}

void tensor_view(struct tensor *t, enum dtype dt, int ndim, const int64_t *shape, void *data)
{
	memset(t, 0, sizeof *t);
	t->dtype = dt;
	t->data = data;
	t->owned = false;
	if (ndim < 0 || ndim > TENSOR_MAX_DIMS) {
		/* Unrepresentable shape: ndim -1 makes tensor_numel/nbytes fail
		 * instead of describing the wrong array. */
		t->ndim = -1;
		return;
	}
	t->ndim = ndim;
	for (int i = 0; i < ndim; i++)
		t->shape[i] = shape[i];
}

void tensor_free(struct tensor *t)
{
	if (!t)
		return;
	if (t->owned)
		free(t->data);
	memset(t, 0, sizeof *t);
}
