/* Unit tests for engine/npy against files numpy itself wrote
 * (data/make_npy_cases.py). Usage: test_npy CASE DATA_DIR */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "npy.h"

static const char *data_dir = ".";

static int open_case(const char *name)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/npy_%s.npy", data_dir, name);
	return open(path, O_RDONLY | O_CLOEXEC);
}

/* Header of a case, or the error it gives. */
static enum nn_status header_of(const char *name, struct npy_header *h, struct nn_err *e)
{
	int fd = open_case(name);
	if (fd < 0)
		return err_set(e, NN_EIO, NULL, NULL, "cannot open case %s", name);
	enum nn_status st = npy_read_header_fd(fd, h, e);
	close(fd);
	return st;
}

static int test_headers_numpy_writes(void)
{
	struct npy_header h;
	struct nn_err e = {0};
	CHECK(header_of("f32_2x3x4", &h, &e) == NN_OK, "%s", e.message);
	CHECK(h.dtype == DT_FLOAT && h.ndim == 3 && h.shape[0] == 2 && h.shape[1] == 3 &&
		      h.shape[2] == 4 && h.numel == 24 && h.data_bytes == 96,
	      "f32 header: dtype %d ndim %d", h.dtype, h.ndim);
	CHECK(h.data_offset % 64 == 0, "numpy aligns data to 64 bytes, got offset %llu",
	      (unsigned long long)h.data_offset);
	CHECK(header_of("u8_images", &h, &e) == NN_OK, "%s", e.message);
	CHECK(h.dtype == DT_UINT8 && h.ndim == 3 && h.shape[0] == 5 && h.shape[1] == 28,
	      "u8 header");
	CHECK(header_of("i64_labels", &h, &e) == NN_OK, "%s", e.message);
	CHECK(h.dtype == DT_INT64 && h.ndim == 1 && h.shape[0] == 5, "i64 header");
	CHECK(header_of("f64_scalar", &h, &e) == NN_OK, "%s", e.message);
	CHECK(h.dtype == DT_DOUBLE && h.ndim == 0 && h.numel == 1, "scalar header");
	return 0;
}

static int test_data_readable_at_offset(void)
{
	struct npy_header h;
	struct nn_err e = {0};
	int fd = open_case("f32_2x3x4");
	CHECK(fd >= 0, "open");
	CHECK(npy_read_header_fd(fd, &h, &e) == NN_OK, "%s", e.message);
	float v[24];
	CHECK(pread(fd, v, sizeof v, (off_t)h.data_offset) == (ssize_t)sizeof v, "read data");
	close(fd);
	for (int i = 0; i < 24; i++)
		CHECK(v[i] == (float)i / 8, "element %d is %g", i, v[i]);
	return 0;
}

static int test_rejections_say_why(void)
{
	struct {
		const char *name, *msg_part;
	} cases[] = {
		{"f32_big_endian", "big-endian"},
		{"f32_fortran", "Fortran order"},
		{"f32_truncated", "is truncated"},
		{"f32_trailing", "trailing bytes"},
		{"not_npy", "not an npy file"},
		{"c64_complex", "dtype <c8 is not supported"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct npy_header h;
		struct nn_err e = {0};
		CHECK(header_of(cases[i].name, &h, &e) == NN_EINVAL, "%s accepted", cases[i].name);
		CHECK(strstr(e.message, cases[i].msg_part), "%s: message '%s'", cases[i].name,
		      e.message);
		CHECK(!strcmp(e.code, "invalid_dataset"), "%s: code %s", cases[i].name, e.code);
	}
	return 0;
}

static int test_malformed_headers_refused(void)
{
	/* Hand-made headers: every one must be refused, none may crash. */
	const char *dicts[] = {
		"{'descr': '<f4', 'fortran_order': False}",
		"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3, 4, 5, 6, 7, 8, 9), }",
		"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }",
		"{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }",
		"{'descr': '<f4', 'fortran_order': maybe, 'shape': (1,), }",
		"{'descr': '|f4', 'fortran_order': False, 'shape': (1,), }",
		"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1}",
		"{'descr': '<f4'",
		"",
		"{'descr': '<f4\\', 'fortran_order': False, 'shape': (1,), }",
		"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }",
	};
	for (size_t i = 0; i < sizeof dicts / sizeof dicts[0]; i++) {
		unsigned char buf[512] = "\x93NUMPY\x01\x00";
		size_t n = strlen(dicts[i]);
		buf[8] = (unsigned char)(n & 0xff);
		buf[9] = (unsigned char)(n >> 8);
		memcpy(buf + 10, dicts[i], n);
		struct npy_header h;
		struct nn_err e = {0};
		CHECK(npy_parse_header(buf, 10 + n, 10 + n + 4, &h, &e) == NN_EINVAL,
		      "header %zu accepted: %s", i, dicts[i]);
		CHECK(e.message[0], "header %zu: no message", i);
	}
	/* A header length past the buffer is truncation, not an over-read. */
	unsigned char shortbuf[12] = "\x93NUMPY\x01\x00\xff\x00";
	struct npy_header h;
	struct nn_err e = {0};
	CHECK(npy_parse_header(shortbuf, sizeof shortbuf, 1000, &h, &e) == NN_EINVAL,
	      "short buffer accepted");
	return 0;
}

static int test_nonfinite_found_at_index(void)
{
	struct {
		const char *name;
		uint64_t want;
	} cases[] = {
		{"f32_nan_at_13", 13}, {"f16_inf_at_7", 7}, {"f32_2x3x4", UINT64_MAX},
		{"u8_images", UINT64_MAX},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct npy_header h;
		struct nn_err e = {0};
		int fd = open_case(cases[i].name);
		CHECK(fd >= 0, "open %s", cases[i].name);
		CHECK(npy_read_header_fd(fd, &h, &e) == NN_OK, "%s: %s", cases[i].name, e.message);
		uint64_t bad = 0;
		CHECK(npy_find_nonfinite_fd(fd, &h, &bad, &e) == NN_OK, "%s", e.message);
		close(fd);
		CHECK(bad == cases[i].want, "%s: first non-finite at %llu, want %llu", cases[i].name,
		      (unsigned long long)bad, (unsigned long long)cases[i].want);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: test_npy CASE [DATA_DIR]\n");
		return 2;
	}
	if (argc > 2)
		data_dir = argv[2];
	struct {
		const char *name;
		int (*fn)(void);
	} cases[] = {
		{"headers_numpy_writes", test_headers_numpy_writes},
		{"data_readable_at_offset", test_data_readable_at_offset},
		{"rejections_say_why", test_rejections_say_why},
		{"malformed_headers_refused", test_malformed_headers_refused},
		{"nonfinite_found_at_index", test_nonfinite_found_at_index},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (!strcmp(argv[1], cases[i].name))
			return cases[i].fn();
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}
