/* tensor: a dense n-dimensional array value (dtype, shape, data).
 *
 * Data is either owned (freed by tensor_free) or borrowed from something that
 * outlives the tensor (an ONNX initializer's raw_data, a mapped file). Plain
 * value type: callers may read every field. No thread-safety of its own. */
#ifndef NNCD_TENSOR_H
#define NNCD_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define TENSOR_MAX_DIMS 8

/* Values equal ONNX TensorProto.DataType so conversion is a cast. */
enum dtype {
	DT_UNDEFINED = 0,
	DT_FLOAT = 1,
	DT_UINT8 = 2,
	DT_INT8 = 3,
	DT_UINT16 = 4,
	DT_INT16 = 5,
	DT_INT32 = 6,
	DT_INT64 = 7,
	DT_STRING = 8,
	DT_BOOL = 9,
	DT_FLOAT16 = 10,
	DT_DOUBLE = 11,
	DT_UINT32 = 12,
	DT_UINT64 = 13,
	DT_BFLOAT16 = 16,
	DT_UINT4 = 21,
	DT_INT4 = 22,
};

struct tensor {
	enum dtype dtype;
	int ndim;
	int64_t shape[TENSOR_MAX_DIMS];
	void *data;
	bool owned;
};

/* Bytes per element; 0 for dtypes without a fixed byte size (string, 4-bit). */
size_t dtype_size(enum dtype dt);
const char *dtype_name(enum dtype dt);

/* Element count; -1 if a dimension is negative or the product overflows. */
int64_t tensor_numel(const struct tensor *t);
/* Byte size of the data; 0 (and e set) on overflow or unsized dtype. */
enum nn_status tensor_nbytes(const struct tensor *t, size_t *out, struct nn_err *e);

/* Allocates zeroed owned storage for the given dtype/shape. */
enum nn_status tensor_alloc(struct tensor *t, enum dtype dt, int ndim, const int64_t *shape,
			    struct nn_err *e);
/* Borrows data: t does not free it. */
void tensor_view(struct tensor *t, enum dtype dt, int ndim, const int64_t *shape, void *data);
void tensor_free(struct tensor *t);

#endif
