/* Unit tests for engine/npz: numpy's own archives (stored and deflate, ZIP64
 * local headers) read back exactly; broken and hostile archives refused with
 * a reason (data/make_npz_cases.py). Usage: test_npz CASE DATA_DIR */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "npy.h"
#include "npz.h"

static const char *data_dir = ".";
static const struct npz_limits test_limits = {.max_member_bytes = 1 << 20,
					      .max_total_bytes = 1 << 20};

static int open_case(const char *name)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/npz_%s.npz", data_dir, name);
	return open(path, O_RDONLY | O_CLOEXEC);
}

struct sink {
	unsigned char *data;
	size_t len, cap;
};

static enum nn_status to_sink(void *ud, const void *data, size_t len, struct nn_err *e)
{
	struct sink *s = ud;
	if (s->len + len > s->cap)
		return err_set(e, NN_ETOOBIG, NULL, NULL, "sink full");
	memcpy(s->data + s->len, data, len);
	s->len += len;
	return NN_OK;
}

static int check_xy_archive(const char *name)
{
	int fd = open_case(name);
	CHECK(fd >= 0, "open %s", name);
	struct npz *z = NULL;
	struct nn_err e = {0};
	CHECK(npz_open(fd, &test_limits, &z, &e) == NN_OK, "%s: %s", name, e.message);
	CHECK(npz_member_count(z) == 2, "%s: %zu members", name, npz_member_count(z));
	size_t xi = strcmp(npz_member_at(z, 0)->name, "x") == 0 ? 0 : 1;
	CHECK(!strcmp(npz_member_at(z, xi)->name, "x") && !strcmp(npz_member_at(z, 1 - xi)->name, "y"),
	      "%s: member names", name);
	struct sink s = {.cap = 1 << 20};
	s.data = malloc(s.cap);
	CHECK(s.data, "oom");
	CHECK(npz_extract(z, xi, to_sink, &s, &e) == NN_OK, "%s: extract x: %s", name, e.message);
	struct npy_header h;
	CHECK(npy_parse_header(s.data, s.len, s.len, &h, &e) == NN_OK, "%s: x header: %s", name,
	      e.message);
	CHECK(h.dtype == DT_FLOAT && h.ndim == 2 && h.shape[0] == 6 && h.shape[1] == 784,
	      "%s: x is float32 [6, 784]", name);
	const float *x = (const float *)(s.data + h.data_offset);
	for (size_t i = 0; i < 6 * 784; i++) {
		float want = (float)(i % 255) / 255.0f;
		CHECK(x[i] == want, "%s: x[%zu] = %g, want %g", name, i, x[i], want);
	}
	s.len = 0;
	CHECK(npz_extract(z, 1 - xi, to_sink, &s, &e) == NN_OK, "%s: extract y: %s", name,
	      e.message);
	CHECK(npy_parse_header(s.data, s.len, s.len, &h, &e) == NN_OK, "%s: y: %s", name,
	      e.message);
	const int64_t *y = (const int64_t *)(s.data + h.data_offset);
	for (int i = 0; i < 6; i++)
		CHECK(y[i] == i, "%s: y[%d] = %lld", name, i, (long long)y[i]);
	free(s.data);
	npz_close(z);
	close(fd);
	return 0;
}

static int test_numpy_archives_read_back(void)
{
	if (check_xy_archive("stored_xy"))
		return 1;
	return check_xy_archive("deflate_xy");
}

/* Counts what it is given and checks that it is all zeros. */
struct zero_counter {
	unsigned long long bytes, nonzero;
};

static enum nn_status count_zeros(void *ud, const void *data, size_t len, struct nn_err *e)
{
	(void)e;
	struct zero_counter *c = ud;
	for (size_t i = 0; i < len; i++)
		c->nonzero += ((const unsigned char *)data)[i] != 0;
	c->bytes += len;
	return NN_OK;
}

/* 64 MiB of zeros deflated to 64 KB: all input is fed long before zlib has
 * given all its output, which must still come out (regression: this was
 * refused as "compressed data ends early"). Within generous limits it is a
 * valid archive; under the test limits it is big_declared's bomb case. */
static int test_highly_compressible_member_extracts(void)
{
	int fd = open_case("big_declared");
	CHECK(fd >= 0, "open");
	struct npz *z = NULL;
	struct nn_err e = {0};
	const struct npz_limits limits = {.max_member_bytes = 1ull << 27,
					  .max_total_bytes = 1ull << 27};
	CHECK(npz_open(fd, &limits, &z, &e) == NN_OK, "%s", e.message);
	const struct npz_member *m = npz_member_at(z, 0);
	CHECK(m && m->method == 8 && m->compressed_size < m->size / 500, "a deflated member");
	struct zero_counter c = {0};
	CHECK(npz_extract(z, 0, count_zeros, &c, &e) == NN_OK, "extract: %s", e.message);
	CHECK(c.bytes == m->size, "%llu of %llu bytes", c.bytes, (unsigned long long)m->size);
	CHECK(c.nonzero < 200, "only the npy header is non-zero (%llu bytes)", c.nonzero);
	npz_close(z);
	close(fd);
	return 0;
}

/* Opens a case and, if that works, extracts every member; returns the first
 * failure's status and message. */
static enum nn_status open_and_extract(const char *name, struct nn_err *e)
{
	int fd = open_case(name);
	if (fd < 0)
		return err_set(e, NN_EIO, NULL, NULL, "cannot open %s", name);
	struct npz *z = NULL;
	enum nn_status st = npz_open(fd, &test_limits, &z, e);
	struct sink s = {.cap = 1 << 20};
	s.data = malloc(s.cap);
	for (size_t i = 0; st == NN_OK && i < npz_member_count(z); i++) {
		s.len = 0;
		st = npz_extract(z, i, to_sink, &s, e);
	}
	free(s.data);
	npz_close(z);
	close(fd);
	return st;
}

static int test_hostile_archives_refused(void)
{
	struct {
		const char *name;
		enum nn_status status;
		const char *msg_part;
	} cases[] = {
		{"bomb_lies_about_size", NN_EINVAL, "decompression bomb"},
		{"big_declared", NN_ETOOBIG, "declares 67108992 bytes"},
		{"not_npy_member", NN_EINVAL, "is not a .npy array"},
		{"too_many_members", NN_EINVAL, "at most 64"},
		{"path_in_name", NN_EINVAL, "path or control character"},
		{"duplicate_names", NN_EINVAL, "two members named x"},
		{"bad_crc", NN_EINVAL, "CRC-32"},
		{"truncated", NN_EINVAL, "no ZIP end-of-central-directory"},
		{"not_zip", NN_EINVAL, "not an npz archive"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct nn_err e = {0};
		enum nn_status st = open_and_extract(cases[i].name, &e);
		CHECK(st == cases[i].status, "%s: status %d, want %d (%s)", cases[i].name, st,
		      cases[i].status, e.message);
		CHECK(strstr(e.message, cases[i].msg_part), "%s: message '%s'", cases[i].name,
		      e.message);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: test_npz CASE [DATA_DIR]\n");
		return 2;
	}
	if (argc > 2)
		data_dir = argv[2];
	if (!strcmp(argv[1], "numpy_archives_read_back"))
		return test_numpy_archives_read_back();
	if (!strcmp(argv[1], "highly_compressible_member_extracts"))
		return test_highly_compressible_member_extracts();
	if (!strcmp(argv[1], "hostile_archives_refused"))
		return test_hostile_archives_refused();
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}
