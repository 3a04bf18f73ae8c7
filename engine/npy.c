#include "npy.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define SCAN_CHUNK ((size_t)1 << 20)

static enum nn_status bad(struct nn_err *e, const char *fmt, const char *detail)
{
	return err_set(e, NN_EINVAL, "invalid_dataset", NULL, fmt, detail);
}

/* ---- a tiny reader for the header's Python dict literal ---- */

struct lit {
	const char *p, *end;
};

static void skip_space(struct lit *l)
{
	while (l->p < l->end && (*l->p == ' ' || *l->p == '\t' || *l->p == '\n' || *l->p == '\r'))
		l->p++;
}

static bool take(struct lit *l, char c)
{
	skip_space(l);
	if (l->p < l->end && *l->p == c) {
		l->p++;
		return true;
	}
	return false;
}

/* A quoted string ('...' or "..."), no escapes (numpy never writes any). */
static bool read_string(struct lit *l, char *out, size_t cap)
{
	skip_space(l);
	if (l->p >= l->end || (*l->p != '\'' && *l->p != '"'))
		return false;
	char quote = *l->p++;
	size_t n = 0;
	while (l->p < l->end && *l->p != quote) {
		if (*l->p == '\\' || n + 1 >= cap)
			return false;
		out[n++] = *l->p++;
	}
	if (l->p >= l->end)
		return false;
	l->p++;
	out[n] = '\0';
	return true;
}

static bool read_word(struct lit *l, const char *word)
{
	skip_space(l);
	size_t n = strlen(word);
	if ((size_t)(l->end - l->p) < n || memcmp(l->p, word, n) != 0)
		return false;
	l->p += n;
	return true;
}

/* (), (n,), (a, b), (a, b,) of non-negative integers. */
static bool read_shape(struct lit *l, struct npy_header *h)
{
	if (!take(l, '('))
		return false;
	h->ndim = 0;
	for (;;) {
		if (take(l, ')'))
			return true;
		skip_space(l);
		if (l->p >= l->end || *l->p < '0' || *l->p > '9')
			return false;
		int64_t v = 0;
		while (l->p < l->end && *l->p >= '0' && *l->p <= '9') {
			if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *l->p - '0', &v))
				return false;
			l->p++;
		}
		if (h->ndim >= TENSOR_MAX_DIMS)
			return false;
		h->shape[h->ndim++] = v;
		if (!take(l, ',')) {
			return take(l, ')');
		}
	}
}

static bool dtype_from_descr(const char *descr, enum dtype *out)
{
	static const struct {
		const char *code;
		enum dtype dt;
	} codes[] = {
		{"f4", DT_FLOAT}, {"f8", DT_DOUBLE}, {"f2", DT_FLOAT16}, {"u1", DT_UINT8},
		{"i1", DT_INT8},  {"u2", DT_UINT16}, {"i2", DT_INT16},   {"u4", DT_UINT32},
		{"i4", DT_INT32}, {"u8", DT_UINT64}, {"i8", DT_INT64},   {"b1", DT_BOOL},
	};
	char order = descr[0];
	const char *code = descr + 1;
	if (order != '<' && order != '|' && order != '=')
		return false;
	for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
		if (strcmp(code, codes[i].code) != 0)
			continue;
		/* '|' (not applicable) is only right for byte-sized types. */
		if (order == '|' && dtype_size(codes[i].dt) != 1)
			return false;
		*out = codes[i].dt;
		return true;
	}
	return false;
}

static enum nn_status parse_dict(const char *text, size_t len, struct npy_header *h,
				 struct nn_err *e)
{
	struct lit l = {text, text + len};
	bool seen_descr = false, seen_order = false, seen_shape = false;
	char key[32], descr[32];
	if (!take(&l, '{'))
		return bad(e, "not an npy file: %s", "header is not a dict");
	while (!take(&l, '}')) {
		if (!read_string(&l, key, sizeof key) || !take(&l, ':'))
			return bad(e, "not an npy file: %s", "malformed header dict");
		if (strcmp(key, "descr") == 0) {
			if (!read_string(&l, descr, sizeof descr))
				return bad(e, "npy header: %s", "'descr' must be a dtype string");
			if (descr[0] == '>')
				return bad(e, "npy array is big-endian (%s); save it little-endian "
					      "(arr.astype(arr.dtype.newbyteorder('<')))", descr);
			if (!dtype_from_descr(descr, &h->dtype))
				return bad(e, "npy dtype %s is not supported; use float32, float64, "
					      "float16, an integer type or bool", descr);
			seen_descr = true;
		} else if (strcmp(key, "fortran_order") == 0) {
			if (read_word(&l, "True"))
				return bad(e, "npy array is in Fortran order%s; save it with "
					      "np.ascontiguousarray", "");
			if (!read_word(&l, "False"))
				return bad(e, "npy header: %s", "'fortran_order' must be True or False");
			seen_order = true;
		} else if (strcmp(key, "shape") == 0) {
			if (!read_shape(&l, h))
				return bad(e, "npy header: %s", "'shape' must be a tuple of at most 8 "
						       "non-negative integers");
			seen_shape = true;
		} else {
			return bad(e, "npy header: unknown key '%s'", key);
		}
		if (!take(&l, ',')) {
			if (!take(&l, '}'))
				return bad(e, "not an npy file: %s", "malformed header dict");
			break;
		}
	}
	if (!seen_descr || !seen_order || !seen_shape)
		return bad(e, "npy header: %s", "needs 'descr', 'fortran_order' and 'shape'");
	return NN_OK;
}

enum nn_status npy_parse_header(const void *buf, size_t len, uint64_t file_size,
				struct npy_header *out, struct nn_err *e)
{
	const unsigned char *b = buf;
	memset(out, 0, sizeof *out);
	if (len < NPY_MAGIC_LEN + 2 || memcmp(b, NPY_MAGIC, NPY_MAGIC_LEN) != 0)
		return bad(e, "not an npy file: %s", "missing the \\x93NUMPY magic");
	unsigned major = b[6];
	size_t prefix, header_len;
	if (major == 1) {
		if (len < 10)
			return bad(e, "npy file %s", "truncated in its header");
		prefix = 10;
		header_len = (size_t)b[8] | (size_t)b[9] << 8;
	} else if (major == 2 || major == 3) {
		if (len < 12)
			return bad(e, "npy file %s", "truncated in its header");
		prefix = 12;
		header_len = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 |
			     (size_t)b[11] << 24;
	} else {
		char v[16];
		snprintf(v, sizeof v, "%u", major);
		return bad(e, "npy format version %s is not supported (1, 2 or 3)", v);
	}
	if (header_len > NPY_MAX_HEADER_BYTES)
		return bad(e, "npy header %s", "is larger than 64 KiB");
	if (prefix + header_len > len || prefix + header_len > file_size)
		return bad(e, "npy file %s", "truncated in its header");
	enum nn_status st = parse_dict((const char *)b + prefix, header_len, out, e);
	if (st != NN_OK)
		return st;
	uint64_t numel = 1;
	for (int i = 0; i < out->ndim; i++)
		if (__builtin_mul_overflow(numel, (uint64_t)out->shape[i], &numel))
			return bad(e, "npy shape %s", "overflows");
	uint64_t bytes;
	if (__builtin_mul_overflow(numel, (uint64_t)dtype_size(out->dtype), &bytes))
		return bad(e, "npy shape %s", "overflows");
	out->numel = numel;
	out->data_offset = prefix + header_len;
	out->data_bytes = bytes;
	uint64_t have = file_size - out->data_offset;
	if (have != bytes)
		return err_set(e, NN_EINVAL, "invalid_dataset", NULL,
			       "npy file %s: header promises %llu bytes of data, file has %llu",
			       have < bytes ? "is truncated" : "has trailing bytes",
			       (unsigned long long)bytes, (unsigned long long)have);
	return NN_OK;
}

static enum nn_status file_size_of(int fd, uint64_t *size, struct nn_err *e)
{
	struct stat sb;
	if (fstat(fd, &sb) != 0)
		return err_set(e, NN_EIO, "io_error", NULL, "fstat: %s", strerror(errno));
	*size = (uint64_t)sb.st_size;
	return NN_OK;
}

static enum nn_status read_at(int fd, void *buf, size_t len, uint64_t off, size_t *got,
			      struct nn_err *e)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return err_set(e, NN_EIO, "io_error", NULL, "read: %s", strerror(errno));
		if (n == 0)
			break;
		done += (size_t)n;
	}
	*got = done;
	return NN_OK;
}

enum nn_status npy_read_header_fd(int fd, struct npy_header *out, struct nn_err *e)
{
	uint64_t size = 0;
	enum nn_status st = file_size_of(fd, &size, e);
	if (st != NN_OK)
		return st;
	size_t want = NPY_MAX_HEADER_BYTES + 12, got = 0;
	unsigned char *buf = malloc(want);
	if (!buf)
		return err_set(e, NN_ENOMEM, NULL, NULL, "out of memory");
	st = read_at(fd, buf, want, 0, &got, e);
	if (st == NN_OK)
		st = npy_parse_header(buf, got, size, out, e);
	free(buf);
	return st;
}

static bool half_is_finite(uint16_t h)
{
	return (h & 0x7c00u) != 0x7c00u;
}

/* Index of the first non-finite element in a chunk, or n. */
static size_t first_nonfinite(const unsigned char *p, size_t n, enum dtype dt)
{
	for (size_t i = 0; i < n; i++) {
		bool finite;
		if (dt == DT_FLOAT) {
			float v;
			memcpy(&v, p + i * 4, 4);
			finite = isfinite(v);
		} else if (dt == DT_DOUBLE) {
			double v;
			memcpy(&v, p + i * 8, 8);
			finite = isfinite(v);
		} else {
			uint16_t v;
			memcpy(&v, p + i * 2, 2);
			finite = half_is_finite(v);
		}
		if (!finite)
			return i;
	}
	return n;
}

enum nn_status npy_find_nonfinite_fd(int fd, const struct npy_header *h, uint64_t *bad_index,
				     struct nn_err *e)
{
	*bad_index = UINT64_MAX;
	if (h->dtype != DT_FLOAT && h->dtype != DT_DOUBLE && h->dtype != DT_FLOAT16)
		return NN_OK;
	size_t esize = dtype_size(h->dtype);
	size_t per_chunk = SCAN_CHUNK / esize;
	unsigned char *buf = malloc(per_chunk * esize);
	if (!buf)
		return err_set(e, NN_ENOMEM, NULL, NULL, "out of memory");
	enum nn_status st = NN_OK;
	for (uint64_t start = 0; start < h->numel; start += per_chunk) {
		size_t n = (size_t)(h->numel - start < per_chunk ? h->numel - start : per_chunk);
		size_t got = 0;
		st = read_at(fd, buf, n * esize, h->data_offset + start * esize, &got, e);
		if (st != NN_OK)
			break;
		if (got != n * esize) {
			st = err_set(e, NN_EINVAL, "invalid_dataset", NULL,
				     "npy file is truncated at element %llu",
				     (unsigned long long)(start + got / esize));
			break;
		}
		size_t i = first_nonfinite(buf, n, h->dtype);
		if (i < n) {
			*bad_index = start + i;
			break;
		}
	}
	free(buf);
	return st;
}
