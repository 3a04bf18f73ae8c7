/* dataset: stored .npy arrays to executor inputs and labels (see dataset.h).
 * Data is read with pread in bounded chunks and converted as it arrives, so
 * the only large allocation is the float32 result itself. */
#include "dataset.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "npy.h"

#define READ_CHUNK ((size_t)1 << 20)

static const char *const label_names[] = {"y", "label", "labels", "target", "targets", NULL};

bool dataset_is_label_name(const char *name)
{
	for (size_t i = 0; label_names[i]; i++)
		if (!strcmp(name, label_names[i]))
			return true;
	return false;
}

enum nn_status dataset_pick_arrays(const char *const *names, size_t n, const char *model_input,
				   size_t *input_index, long *label_index, struct nn_err *e)
{
	long label = -1, by_model = -1, by_x = -1, only = -1;
	size_t others = 0;
	for (size_t i = 0; i < n; i++) {
		if (dataset_is_label_name(names[i])) {
			if (label < 0 || !strcmp(names[i], "y"))
				label = (long)i;
			continue;
		}
		others++;
		only = (long)i;
		if (model_input && !strcmp(names[i], model_input))
			by_model = (long)i;
		if (!strcmp(names[i], "x"))
			by_x = (long)i;
	}
	long pick = by_model >= 0 ? by_model : by_x >= 0 ? by_x : others == 1 ? only : -1;
	if (pick < 0) {
		char list[512] = "";
		size_t used = 0;
		for (size_t i = 0; i < n && used < sizeof list; i++) {
			int w = snprintf(list + used, sizeof list - used, "%s'%s'", i ? ", " : "",
					 names[i]);
			if (w > 0)
				used += (size_t)w;
		}
		return err_set(e, NN_EINVAL, "invalid_dataset", "",
			       "cannot tell which array is the input: name it 'x'%s%s%s (arrays: %s)",
			       model_input ? " or '" : "", model_input ? model_input : "",
			       model_input ? "'" : "", n ? list : "none");
	}
	*input_index = (size_t)pick;
	*label_index = label;
	return NN_OK;
}

/* Product of a JSON shape's dims from index `from`; -1 when a dim is not a
 * known non-negative integer or the product overflows. */
static int64_t shape_product(const json_t *shape, size_t from)
{
	int64_t p = 1;
	for (size_t i = from; i < json_array_size(shape); i++) {
		const json_t *d = json_array_get(shape, i);
		if (!json_is_integer(d) || json_integer_value(d) < 0 ||
		    __builtin_mul_overflow(p, (int64_t)json_integer_value(d), &p))
			return -1;
	}
	return p;
}

static void shape_text(const json_t *shape, char *buf, size_t cap)
{
	size_t used = (size_t)snprintf(buf, cap, "[");
	for (size_t i = 0; i < json_array_size(shape) && used < cap; i++) {
		const json_t *d = json_array_get(shape, i);
		int w = json_is_integer(d)
				? snprintf(buf + used, cap - used, "%s%lld", i ? "," : "",
					   (long long)json_integer_value(d))
				: snprintf(buf + used, cap - used, "%s%s", i ? "," : "",
					   json_is_string(d) ? json_string_value(d) : "N");
		if (w > 0)
			used += (size_t)w;
	}
	if (used < cap)
		snprintf(buf + used, cap - used, "]");
}

enum nn_status dataset_check_fit(const json_t *arrays, const json_t *model_input,
				 const char *field, char input_out[64], char labels_out[64],
				 struct nn_err *e)
{
	const char *names[64];
	size_t n = 0;
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)arrays, key, v) {
		if (n < 64)
			names[n++] = key;
	}
	const char *model_name = json_string_value(json_object_get(model_input, "name"));
	size_t xi;
	long yi;
	enum nn_status st = dataset_pick_arrays(names, n, model_name, &xi, &yi, e);
	if (st != NN_OK) {
		snprintf(e->field, sizeof e->field, "%s", field);
		return st;
	}
	snprintf(input_out, 64, "%s", names[xi]);
	snprintf(labels_out, 64, "%s", yi >= 0 ? names[yi] : "");
	const json_t *xshape = json_object_get(json_object_get(arrays, names[xi]), "shape");
	const json_t *mshape = json_object_get(model_input, "shape");
	if (!json_is_array(mshape) || json_array_size(mshape) == 0)
		return NN_OK; /* a model input of unknown rank: the executor will say */
	int64_t want = shape_product(mshape, 1), have = shape_product(xshape, 1);
	if (want < 0)
		return NN_OK; /* symbolic non-batch dims: checked when the plan is built */
	if (have != want) {
		char ms[160], xs[160];
		shape_text(mshape, ms, sizeof ms);
		shape_text(xshape, xs, sizeof xs);
		return err_set(e, NN_EINVAL, "invalid_dataset", field,
			       "per-sample size %lld of array '%s' %s does not match model input "
			       "'%s' %s (%lld values per sample)",
			       (long long)have, names[xi], xs, model_name ? model_name : "?", ms,
			       (long long)want);
	}
	return NN_OK;
}

/* IEEE half to single, subnormals included. */
static float half_to_float(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ffu;
	uint32_t bits;
	if (exp == 0) {
		float f = ldexpf((float)mant, -24);
		return sign ? -f : f;
	}
	if (exp == 31)
		bits = sign | 0x7f800000u | (mant << 13);
	else
		bits = sign | ((exp + 112) << 23) | (mant << 13);
	float f;
	memcpy(&f, &bits, sizeof f);
	return f;
}

/* One element of a little-endian npy array as a double. */
static double element_at(const unsigned char *p, enum dtype dt)
{
	switch (dt) {
	case DT_FLOAT: {
		float v;
		memcpy(&v, p, 4);
		return v;
	}
	case DT_DOUBLE: {
		double v;
		memcpy(&v, p, 8);
		return v;
	}
	case DT_FLOAT16: {
		uint16_t v;
		memcpy(&v, p, 2);
		return half_to_float(v);
	}
	case DT_UINT8: return p[0];
	case DT_INT8: return (int8_t)p[0];
	case DT_BOOL: return p[0] != 0;
	case DT_UINT16: {
		uint16_t v;
		memcpy(&v, p, 2);
		return v;
	}
	case DT_INT16: {
		int16_t v;
		memcpy(&v, p, 2);
		return v;
	}
	case DT_UINT32: {
		uint32_t v;
		memcpy(&v, p, 4);
		return v;
	}
	case DT_INT32: {
		int32_t v;
		memcpy(&v, p, 4);
		return v;
	}
	case DT_UINT64: {
		uint64_t v;
		memcpy(&v, p, 8);
		return (double)v;
	}
	case DT_INT64: {
		int64_t v;
		memcpy(&v, p, 8);
		return (double)v;
	}
	default: return NAN;
	}
}

/* Calls fn on every element of the array in fd, in order, reading in chunks. */
typedef enum nn_status (*element_fn)(void *ud, uint64_t i, double v, struct nn_err *e);

static enum nn_status for_each_element(int fd, const struct npy_header *h, element_fn fn,
				       void *ud, struct nn_err *e)
{
	size_t es = dtype_size(h->dtype);
	if (es == 0)
		return err_set(e, NN_EINVAL, "invalid_dataset", "", "unsupported dtype %s",
			       dtype_name(h->dtype));
	size_t per_chunk = READ_CHUNK / es;
	unsigned char *buf = malloc(per_chunk * es);
	if (!buf)
		return err_set(e, NN_ENOMEM, NULL, NULL, "out of memory reading a dataset");
	enum nn_status st = NN_OK;
	for (uint64_t done = 0; done < h->numel && st == NN_OK;) {
		uint64_t count = h->numel - done < per_chunk ? h->numel - done : per_chunk;
		size_t want = (size_t)count * es, got = 0;
		while (got < want) {
			ssize_t r = pread(fd, buf + got, want - got,
					  (off_t)(h->data_offset + done * es + got));
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				st = err_set(e, NN_EIO, "io_error", "", "reading dataset: %s",
					     r < 0 ? strerror(errno) : "unexpected end of file");
				break;
			}
			got += (size_t)r;
		}
		for (uint64_t i = 0; st == NN_OK && i < count; i++)
			st = fn(ud, done + i, element_at(buf + i * es, h->dtype), e);
		done += count;
	}
	free(buf);
	return st;
}

/* Stops at the first negative element (labels must be class indices). */
struct first_negative {
	uint64_t index;
	double value;
};

static enum nn_status find_negative(void *ud, uint64_t i, double v, struct nn_err *e)
{
	(void)e;
	struct first_negative *f = ud;
	if (v < 0 && f->index == UINT64_MAX) {
		f->index = i;
		f->value = v;
	}
	return NN_OK;
}

static void shape_str(const struct npy_header *h, char *buf, size_t cap)
{
	size_t used = (size_t)snprintf(buf, cap, "[");
	for (int i = 0; i < h->ndim && used < cap; i++) {
		int w = snprintf(buf + used, cap - used, "%s%" PRId64, i ? "," : "", h->shape[i]);
		if (w > 0)
			used += (size_t)w;
	}
	if (used < cap)
		snprintf(buf + used, cap - used, "]");
}

static bool is_input_dtype(enum dtype dt)
{
	switch (dt) {
	case DT_FLOAT16:
	case DT_FLOAT:
	case DT_DOUBLE:
	case DT_UINT8:
	case DT_INT8:
	case DT_UINT16:
	case DT_INT16:
	case DT_INT32:
	case DT_INT64: return true;
	default: return false;
	}
}

static bool is_integer_dtype(enum dtype dt)
{
	switch (dt) {
	case DT_UINT8:
	case DT_INT8:
	case DT_UINT16:
	case DT_INT16:
	case DT_INT32:
	case DT_INT64: return true;
	default: return false;
	}
}

/* Reads what a non-finite element is, for the message. */
static const char *nonfinite_kind(int fd, const struct npy_header *h, uint64_t index)
{
	size_t es = dtype_size(h->dtype);
	unsigned char b[8] = {0};
	if (es > sizeof b || pread(fd, b, es, (off_t)(h->data_offset + index * es)) != (ssize_t)es)
		return "NaN or Inf";
	bool nan, neg;
	if (h->dtype == DT_FLOAT16) {
		uint16_t v;
		memcpy(&v, b, 2);
		nan = (v & 0x3ffu) != 0;
		neg = (v & 0x8000u) != 0;
	} else if (h->dtype == DT_FLOAT) {
		uint32_t v;
		memcpy(&v, b, 4);
		nan = (v & 0x7fffffu) != 0;
		neg = (v >> 31) != 0;
	} else {
		uint64_t v;
		memcpy(&v, b, 8);
		nan = (v & 0xfffffffffffffull) != 0;
		neg = (v >> 63) != 0;
	}
	return nan ? "NaN" : neg ? "-Inf" : "Inf";
}

/* Every check one array must pass on its own (the N match and the model fit
 * come after all arrays are read). Messages name the array. */
enum nn_status dataset_check_array(int fd, const char *name, struct npy_header *h,
				   struct nn_err *e)
{
	bool label = dataset_is_label_name(name);
	char shape[160];
	enum nn_status st = npy_read_header_fd(fd, h, e);
	if (st != NN_OK) {
		err_prefix(e, "array '%s'", name);
		return st;
	}
	shape_str(h, shape, sizeof shape);
	if (h->ndim == 0)
		return err_set(e, NN_EINVAL, "invalid_dataset", NULL,
			       "array '%s' is 0-d (a scalar): a dataset array needs a sample "
			       "dimension",
			       name);
	if (h->shape[0] < 1)
		return err_set(e, NN_EINVAL, "invalid_dataset", NULL,
			       "array '%s' has shape %s: a dataset needs at least 1 sample", name,
			       shape);
	if (label) {
		if (!is_integer_dtype(h->dtype))
			return err_set(e, NN_EINVAL, "invalid_dataset", NULL,
				       "label array '%s' has dtype %s: labels must be integer class "
				       "indices (uint8, int8, uint16, int16, int32 or int64)",
				       name, dtype_name(h->dtype));
		if (h->ndim > 2 || (h->ndim == 2 && h->shape[1] != 1))
			return err_set(e, NN_EINVAL, "invalid_dataset", NULL,
				       "label array '%s' has shape %s: labels must be [N] or [N,1]",
				       name, shape);
		struct first_negative neg = {UINT64_MAX, 0};
		if ((st = for_each_element(fd, h, find_negative, &neg, e)) != NN_OK)
			return st;
		if (neg.index != UINT64_MAX)
			return err_set(e, NN_EINVAL, "invalid_dataset", NULL,
				       "label array '%s' has a negative label %.0f at index %" PRIu64
				       ": labels are class indices >= 0",
				       name, neg.value, neg.index);
		return NN_OK;
	}
	if (!is_input_dtype(h->dtype))
		return err_set(e, NN_EINVAL, "invalid_dataset", NULL,
			       "array '%s' has dtype %s: inputs must be float16, float32, float64, "
			       "uint8, int8, uint16, int16, int32 or int64",
			       name, dtype_name(h->dtype));
	if (h->numel == 0)
		return err_set(e, NN_EINVAL, "invalid_dataset", NULL,
			       "array '%s' has shape %s: no values per sample", name, shape);
	uint64_t bad = UINT64_MAX;
	if ((st = npy_find_nonfinite_fd(fd, h, &bad, e)) != NN_OK) {
		err_prefix(e, "array '%s'", name);
		return st;
	}
	if (bad != UINT64_MAX) {
		uint64_t per_sample = h->numel / (uint64_t)h->shape[0];
		return err_set(e, NN_EINVAL, "invalid_dataset", NULL,
			       "array '%s' has %s at flat index %" PRIu64 " (sample %" PRIu64
			       "): datasets must be finite",
			       name, nonfinite_kind(fd, h, bad), bad, bad / per_sample);
	}
	return NN_OK;
}

struct fill_inputs {
	float *dst;
	double scale;
};

static enum nn_status fill_input(void *ud, uint64_t i, double v, struct nn_err *e)
{
	struct fill_inputs *f = ud;
	double x = v * f->scale;
	if (!isfinite(x) || fabs(x) > 3.4e38)
		return err_set(e, NN_EINVAL, "invalid_dataset", "",
			       "input element %llu is %g after scaling: not a finite float32",
			       (unsigned long long)i, x);
	f->dst[i] = (float)x;
	return NN_OK;
}

enum nn_status dataset_load_inputs(int fd, const int64_t *sample_dims, int n_sample_dims,
				   double scale, struct tensor *out, struct nn_err *e)
{
	struct npy_header h;
	enum nn_status st = npy_read_header_fd(fd, &h, e);
	if (st != NN_OK)
		return st;
	if (h.ndim < 1 || h.shape[0] < 1)
		return err_set(e, NN_EINVAL, "invalid_dataset", "",
			       "the input array needs a sample dimension with at least one sample");
	if (h.dtype == DT_BOOL)
		return err_set(e, NN_EINVAL, "invalid_dataset", "",
			       "input array dtype bool is not numeric");
	if (n_sample_dims + 1 > TENSOR_MAX_DIMS)
		return err_set(e, NN_EINVAL, "invalid_dataset", "", "model input has too many dims");
	int64_t per_sample = 1, have = 1;
	for (int d = 0; d < n_sample_dims; d++)
		if (sample_dims[d] < 0 || __builtin_mul_overflow(per_sample, sample_dims[d], &per_sample))
			return err_set(e, NN_EINVAL, "invalid_dataset", "",
				       "model input has a symbolic non-batch dimension");
	for (int d = 1; d < h.ndim; d++)
		have *= h.shape[d]; /* npy_parse_header bounded numel, no overflow */
	if (have != per_sample)
		return err_set(e, NN_EINVAL, "invalid_dataset", "",
			       "per-sample size %lld of the input array does not match the model "
			       "input (%lld values per sample)",
			       (long long)have, (long long)per_sample);
	int64_t shape[TENSOR_MAX_DIMS];
	shape[0] = h.shape[0];
	memcpy(shape + 1, sample_dims, sizeof *shape * (size_t)n_sample_dims);
	if ((st = tensor_alloc(out, DT_FLOAT, n_sample_dims + 1, shape, e)) != NN_OK)
		return st;
	struct fill_inputs f = {out->data, scale};
	if ((st = for_each_element(fd, &h, fill_input, &f, e)) != NN_OK)
		tensor_free(out);
	return st;
}

static enum nn_status fill_label(void *ud, uint64_t i, double v, struct nn_err *e)
{
	int64_t *dst = ud;
	if (v < 0)
		return err_set(e, NN_EINVAL, "invalid_dataset", "",
			       "label %llu is %.0f: labels are class indices >= 0",
			       (unsigned long long)i, v);
	dst[i] = (int64_t)v;
	return NN_OK;
}

enum nn_status dataset_load_labels(int fd, int64_t **labels, int64_t *n, struct nn_err *e)
{
	struct npy_header h;
	enum nn_status st = npy_read_header_fd(fd, &h, e);
	if (st != NN_OK)
		return st;
	if (!is_integer_dtype(h.dtype))
		return err_set(e, NN_EINVAL, "invalid_dataset", "",
			       "labels must be an integer array (class indices), got %s",
			       dtype_name(h.dtype));
	if (h.ndim < 1 || h.ndim > 2 || (h.ndim == 2 && h.shape[1] != 1) || h.shape[0] < 1)
		return err_set(e, NN_EINVAL, "invalid_dataset", "",
			       "labels must have shape [N] or [N,1] with N >= 1");
	int64_t *buf = malloc(sizeof *buf * (size_t)h.shape[0]);
	if (!buf)
		return err_set(e, NN_ENOMEM, NULL, NULL, "out of memory reading labels");
	if ((st = for_each_element(fd, &h, fill_label, buf, e)) != NN_OK) {
		free(buf);
		return st;
	}
	*labels = buf;
	*n = h.shape[0];
	return NN_OK;
}

/* splitmix64: a tiny, well-mixed generator whose output is the same on
 * every platform, so a holdout split is reproducible anywhere. */
static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

enum nn_status dataset_holdout(int64_t n, double holdout, uint64_t seed, int64_t **perm,
			       int64_t *n_kept, struct nn_err *e)
{
	if (n < 2 || !(holdout > 0 && holdout < 1))
		return err_set(e, NN_EINVAL, "invalid_spec", "holdout",
			       "a holdout split needs at least 2 samples and a fraction in (0,1)");
	int64_t *p = malloc(sizeof *p * (size_t)n);
	if (!p)
		return err_set(e, NN_ENOMEM, NULL, NULL, "out of memory for a holdout split");
	for (int64_t i = 0; i < n; i++)
		p[i] = i;
	uint64_t state = seed;
	for (int64_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
		int64_t j = (int64_t)(splitmix64(&state) % (uint64_t)(i + 1));
		int64_t t = p[i];
		p[i] = p[j];
		p[j] = t;
	}
	int64_t held = (int64_t)llround((double)n * holdout);
	held = held < 1 ? 1 : held > n - 1 ? n - 1 : held;
	*perm = p;
	*n_kept = n - held;
	return NN_OK;
}

enum nn_status dataset_take_rows(const struct tensor *src, const int64_t *idx, int64_t count,
				 struct tensor *out, struct nn_err *e)
{
	int64_t shape[TENSOR_MAX_DIMS];
	memcpy(shape, src->shape, sizeof shape);
	shape[0] = count;
	enum nn_status st = tensor_alloc(out, src->dtype, src->ndim, shape, e);
	if (st != NN_OK)
		return st;
	size_t row = dtype_size(src->dtype);
	for (int d = 1; d < src->ndim; d++)
		row *= (size_t)src->shape[d];
	for (int64_t i = 0; i < count; i++)
		memcpy((char *)out->data + (size_t)i * row, (const char *)src->data + (size_t)idx[i] * row,
		       row);
	return NN_OK;
}

enum nn_status dataset_take_labels(const int64_t *src, const int64_t *idx, int64_t count,
				   int64_t **out, struct nn_err *e)
{
	int64_t *l = malloc(sizeof *l * (size_t)(count ? count : 1));
	if (!l)
		return err_set(e, NN_ENOMEM, NULL, NULL, "out of memory for labels");
	for (int64_t i = 0; i < count; i++)
		l[i] = src[idx[i]];
	*out = l;
	return NN_OK;
}
