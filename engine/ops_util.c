/* ops_util: helpers shared by the operator modules (see ops_util.h). */
#include "ops_util.h"

#include <string.h>

bool ops_broadcast_shape(const struct tensor *a, const struct tensor *b, struct tensor *out)
{
	int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
	int64_t shape[TENSOR_MAX_DIMS];
	for (int i = 0; i < nd; i++) {
		int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
		int64_t da = ia >= 0 ? a->shape[ia] : 1;
		int64_t db = ib >= 0 ? b->shape[ib] : 1;
		if (da == db || db == 1)
			shape[i] = da;
		else if (da == 1)
			shape[i] = db;
		else
			return false;
	}
	out->ndim = nd;
	memcpy(out->shape, shape, sizeof(int64_t) * (size_t)nd);
	return true;
}

int64_t ops_int_at(const struct tensor *t, int64_t i)
{
	switch (t->dtype) {
	case DT_INT64:
		return ((const int64_t *)t->data)[i];
	case DT_INT32:
		return ((const int32_t *)t->data)[i];
	case DT_INT16:
		return ((const int16_t *)t->data)[i];
	case DT_INT8:
		return ((const int8_t *)t->data)[i];
	case DT_UINT8:
	case DT_BOOL:
		return ((const uint8_t *)t->data)[i];
	case DT_UINT16:
		return ((const uint16_t *)t->data)[i];
	case DT_UINT32:
		return ((const uint32_t *)t->data)[i];
	case DT_UINT64:
		return (int64_t)((const uint64_t *)t->data)[i];
	default:
		return 0;
	}
}
