#include "npz.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_ZIP64_LOCATOR 0x07064b50u
#define SIG_ZIP64_EOCD 0x06064b50u
#define EOCD_MIN 22
#define EOCD_SEARCH (EOCD_MIN + 65535)
#define CENTRAL_MAX_BYTES ((uint64_t)1 << 22) /* 64 members need far less */
#define CHUNK ((size_t)1 << 20)

struct npz {
	int fd;
	uint64_t file_size;
	size_t count;
	struct npz_member members[NPZ_MAX_MEMBERS];
};

static enum nn_status bad(struct nn_err *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static enum nn_status bad(struct nn_err *e, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	err_setv(e, NN_EINVAL, "invalid_dataset", NULL, fmt, ap);
	va_end(ap);
	return NN_EINVAL;
}

static uint16_t le16(const unsigned char *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* Reads exactly len bytes at off; a short read means the archive lies about
 * its layout (NN_EINVAL), an I/O error is NN_EIO. */
static enum nn_status read_exact(int fd, void *buf, size_t len, uint64_t off, struct nn_err *e)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return err_set(e, NN_EIO, "io_error", NULL, "read: %s", strerror(errno));
		if (n == 0)
			return bad(e, "npz archive is truncated at byte %llu",
				   (unsigned long long)(off + done));
		done += (size_t)n;
	}
	return NN_OK;
}

struct directory {
	uint64_t entries, size, offset;
};

static enum nn_status find_directory(struct npz *z, struct directory *d, struct nn_err *e)
{
	if (z->file_size < EOCD_MIN)
		return bad(e, "not an npz archive: %llu bytes is too small for a ZIP file",
			   (unsigned long long)z->file_size);
	size_t span = z->file_size < EOCD_SEARCH ? (size_t)z->file_size : EOCD_SEARCH;
	unsigned char *tail = malloc(span);
	if (!tail)
		return err_set(e, NN_ENOMEM, NULL, NULL, "out of memory");
	uint64_t tail_off = z->file_size - span;
	enum nn_status st = read_exact(z->fd, tail, span, tail_off, e);
	if (st != NN_OK)
		goto done;
	size_t at = SIZE_MAX;
	for (size_t i = span - EOCD_MIN + 1; i-- > 0;) {
		if (le32(tail + i) == SIG_EOCD && i + EOCD_MIN + le16(tail + i + 20) == span) {
			at = i;
			break;
		}
	}
	if (at == SIZE_MAX) {
		st = bad(e, "not an npz archive: no ZIP end-of-central-directory record "
			    "(save with np.savez or np.savez_compressed)");
		goto done;
	}
	const unsigned char *eocd = tail + at;
	if (le16(eocd + 4) != 0 || le16(eocd + 6) != 0) {
		st = bad(e, "npz archive spans several disks");
		goto done;
	}
	d->entries = le16(eocd + 10);
	d->size = le32(eocd + 12);
	d->offset = le32(eocd + 16);
	bool zip64 = d->entries == 0xffff || d->size == 0xffffffffu || d->offset == 0xffffffffu;
	if (at >= 20 && le32(eocd - 20) == SIG_ZIP64_LOCATOR) {
		uint64_t rec_off = le64(eocd - 20 + 8);
		unsigned char rec[56];
		if (rec_off > z->file_size - sizeof rec) {
			st = bad(e, "npz archive: ZIP64 directory record out of the file");
			goto done;
		}
		if ((st = read_exact(z->fd, rec, sizeof rec, rec_off, e)) != NN_OK)
			goto done;
		if (le32(rec) != SIG_ZIP64_EOCD) {
			st = bad(e, "npz archive: broken ZIP64 directory record");
			goto done;
		}
		d->entries = le64(rec + 32);
		d->size = le64(rec + 40);
		d->offset = le64(rec + 48);
	} else if (zip64) {
		st = bad(e, "npz archive: ZIP64 sizes without a ZIP64 record");
		goto done;
	}
	if (d->entries > NPZ_MAX_MEMBERS) {
		st = bad(e, "npz archive has %llu members; at most %d are accepted",
			 (unsigned long long)d->entries, NPZ_MAX_MEMBERS);
		goto done;
	}
	if (d->size > CENTRAL_MAX_BYTES || d->offset > z->file_size ||
	    d->size > z->file_size - d->offset) {
		st = bad(e, "npz archive: central directory out of the file");
		goto done;
	}
done:
	free(tail);
	return st;
}

/* Applies a ZIP64 extended-information extra field to the values that were
 * saturated in the 32-bit header fields. */
static enum nn_status apply_zip64_extra(const unsigned char *x, size_t len, struct npz_member *m,
					bool usize_sat, bool csize_sat, bool off_sat,
					struct nn_err *e)
{
	size_t pos = 0;
	while (pos + 4 <= len) {
		uint16_t id = le16(x + pos), n = le16(x + pos + 2);
		if (pos + 4 + n > len)
			break;
		if (id == 0x0001) {
			const unsigned char *v = x + pos + 4;
			size_t need = 8 * ((size_t)usize_sat + csize_sat + off_sat);
			if (n < need)
				return bad(e, "npz member %s: short ZIP64 field", m->name);
			if (usize_sat) {
				m->size = le64(v);
				v += 8;
			}
			if (csize_sat) {
				m->compressed_size = le64(v);
				v += 8;
			}
			if (off_sat)
				m->local_header_offset = le64(v);
			return NN_OK;
		}
		pos += 4 + (size_t)n;
	}
	if (usize_sat || csize_sat || off_sat)
		return bad(e, "npz member %s: sizes need a ZIP64 field that is missing", m->name);
	return NN_OK;
}

static enum nn_status member_name(const unsigned char *p, size_t len, struct npz_member *m,
				  struct nn_err *e)
{
	if (len < 5 || len - 4 >= NPZ_NAME_CAP || memcmp(p + len - 4, ".npy", 4) != 0)
		return bad(e, "npz member '%.*s' is not a .npy array (name must be NAME.npy, "
			      "NAME at most %d characters)",
			   (int)(len < 200 ? len : 200), (const char *)p, NPZ_NAME_CAP - 1);
	for (size_t i = 0; i < len - 4; i++)
		if (p[i] == '/' || p[i] == '\\' || p[i] < 0x20)
			return bad(e, "npz member name '%.*s' has a path or control character",
				   (int)(len - 4), (const char *)p);
	memcpy(m->name, p, len - 4);
	m->name[len - 4] = '\0';
	return NN_OK;
}

static enum nn_status read_members(struct npz *z, const struct directory *d,
				   const struct npz_limits *lim, struct nn_err *e)
{
	unsigned char *cd = malloc(d->size ? d->size : 1);
	if (!cd)
		return err_set(e, NN_ENOMEM, NULL, NULL, "out of memory");
	enum nn_status st = read_exact(z->fd, cd, d->size, d->offset, e);
	uint64_t total = 0;
	size_t pos = 0;
	for (uint64_t i = 0; st == NN_OK && i < d->entries; i++) {
		if (pos + 46 > d->size || le32(cd + pos) != SIG_CENTRAL) {
			st = bad(e, "npz archive: broken central directory entry %llu",
				 (unsigned long long)i);
			break;
		}
		const unsigned char *h = cd + pos;
		size_t name_len = le16(h + 28), extra_len = le16(h + 30), comment_len = le16(h + 32);
		if (pos + 46 + name_len + extra_len + comment_len > d->size) {
			st = bad(e, "npz archive: central directory entry %llu overruns",
				 (unsigned long long)i);
			break;
		}
		struct npz_member *m = &z->members[z->count];
		memset(m, 0, sizeof *m);
		if ((st = member_name(h + 46, name_len, m, e)) != NN_OK)
			break;
		uint16_t flags = le16(h + 8);
		m->method = le16(h + 10);
		m->crc32 = le32(h + 16);
		m->compressed_size = le32(h + 20);
		m->size = le32(h + 24);
		m->local_header_offset = le32(h + 42);
		st = apply_zip64_extra(h + 46 + name_len, extra_len, m, m->size == 0xffffffffu,
				       m->compressed_size == 0xffffffffu,
				       m->local_header_offset == 0xffffffffu, e);
		if (st != NN_OK)
			break;
		if (flags & 1) {
			st = bad(e, "npz member %s is encrypted", m->name);
			break;
		}
		if (m->method != 0 && m->method != 8) {
			st = bad(e, "npz member %s uses ZIP method %u; only stored and deflate "
				    "(np.savez, np.savez_compressed) are accepted",
				 m->name, m->method);
			break;
		}
		if (m->method == 0 && m->compressed_size != m->size) {
			st = bad(e, "npz member %s: stored sizes disagree", m->name);
			break;
		}
		if (m->size > lim->max_member_bytes ||
		    __builtin_add_overflow(total, m->size, &total) || total > lim->max_total_bytes) {
			st = err_set(e, NN_ETOOBIG, "too_large", NULL,
				     "npz member %s declares %llu bytes; the dataset limit is %llu "
				     "bytes in all",
				     m->name, (unsigned long long)m->size,
				     (unsigned long long)lim->max_total_bytes);
			break;
		}
		if (m->local_header_offset > z->file_size ||
		    m->compressed_size > z->file_size - m->local_header_offset) {
			st = bad(e, "npz member %s lies outside the file", m->name);
			break;
		}
		for (size_t j = 0; j < z->count; j++) {
			if (!strcmp(z->members[j].name, m->name)) {
				st = bad(e, "npz archive has two members named %s", m->name);
				break;
			}
		}
		if (st != NN_OK)
			break;
		z->count++;
		pos += 46 + name_len + extra_len + comment_len;
	}
	free(cd);
	return st;
}

enum nn_status npz_open(int fd, const struct npz_limits *limits, struct npz **out,
			struct nn_err *e)
{
	*out = NULL;
	struct stat sb;
	if (fstat(fd, &sb) != 0)
		return err_set(e, NN_EIO, "io_error", NULL, "fstat: %s", strerror(errno));
	struct npz *z = calloc(1, sizeof *z);
	if (!z)
		return err_set(e, NN_ENOMEM, NULL, NULL, "out of memory");
	z->fd = fd;
	z->file_size = (uint64_t)sb.st_size;
	struct directory d = {0};
	enum nn_status st = find_directory(z, &d, e);
	if (st == NN_OK)
		st = read_members(z, &d, limits, e);
	if (st == NN_OK && z->count == 0)
		st = bad(e, "npz archive has no arrays");
	if (st != NN_OK) {
		free(z);
		return st;
	}
	*out = z;
	return NN_OK;
}

void npz_close(struct npz *z)
{
	free(z);
}

size_t npz_member_count(const struct npz *z)
{
	return z->count;
}

const struct npz_member *npz_member_at(const struct npz *z, size_t i)
{
	return i < z->count ? &z->members[i] : NULL;
}

static enum nn_status data_offset(const struct npz *z, const struct npz_member *m, uint64_t *off,
				  struct nn_err *e)
{
	unsigned char lh[30];
	enum nn_status st = read_exact(z->fd, lh, sizeof lh, m->local_header_offset, e);
	if (st != NN_OK)
		return st;
	if (le32(lh) != SIG_LOCAL)
		return bad(e, "npz member %s: no local header where the directory says", m->name);
	*off = m->local_header_offset + sizeof lh + le16(lh + 26) + le16(lh + 28);
	if (*off > z->file_size || m->compressed_size > z->file_size - *off)
		return bad(e, "npz member %s: data runs past the end of the file", m->name);
	return NN_OK;
}

static enum nn_status extract_stored(struct npz *z, const struct npz_member *m, uint64_t off,
				     unsigned char *in, uLong *crc, npz_write_fn write_fn, void *ud,
				     struct nn_err *e)
{
	for (uint64_t done = 0; done < m->size;) {
		size_t n = (size_t)(m->size - done < CHUNK ? m->size - done : CHUNK);
		enum nn_status st = read_exact(z->fd, in, n, off + done, e);
		if (st == NN_OK)
			st = write_fn(ud, in, n, e);
		if (st != NN_OK)
			return st;
		*crc = crc32(*crc, in, (uInt)n);
		done += n;
	}
	return NN_OK;
}

static enum nn_status extract_deflated(struct npz *z, const struct npz_member *m, uint64_t off,
				       unsigned char *in, unsigned char *outbuf, uLong *crc,
				       npz_write_fn write_fn, void *ud, struct nn_err *e)
{
	z_stream zs = {0};
	if (inflateInit2(&zs, -MAX_WBITS) != Z_OK)
		return err_set(e, NN_ENOMEM, NULL, NULL, "cannot start inflating");
	enum nn_status st = NN_OK;
	uint64_t consumed = 0, produced = 0;
	int zr = Z_OK;
	while (st == NN_OK && zr != Z_STREAM_END) {
		/* With all input fed, zlib may still hold output: keep inflating
		 * until it ends the stream or says it needs input it cannot get. */
		if (zs.avail_in == 0 && consumed < m->compressed_size) {
			size_t n = (size_t)(m->compressed_size - consumed < CHUNK
						    ? m->compressed_size - consumed
						    : CHUNK);
			if ((st = read_exact(z->fd, in, n, off + consumed, e)) != NN_OK)
				break;
			consumed += n;
			zs.next_in = in;
			zs.avail_in = (uInt)n;
		}
		zs.next_out = outbuf;
		zs.avail_out = (uInt)CHUNK;
		zr = inflate(&zs, Z_NO_FLUSH);
		if (zr == Z_BUF_ERROR && zs.avail_in == 0 && consumed == m->compressed_size) {
			st = bad(e, "npz member %s: compressed data ends early", m->name);
			break;
		}
		if (zr != Z_OK && zr != Z_STREAM_END) {
			st = bad(e, "npz member %s: corrupt deflate data (%s)", m->name,
				 zs.msg ? zs.msg : "zlib error");
			break;
		}
		size_t got = CHUNK - zs.avail_out;
		if (got > m->size - produced) {
			st = bad(e, "npz member %s inflates past its declared %llu bytes (refused as "
				    "a decompression bomb)",
				 m->name, (unsigned long long)m->size);
			break;
		}
		produced += got;
		*crc = crc32(*crc, outbuf, (uInt)got);
		if (got && (st = write_fn(ud, outbuf, got, e)) != NN_OK)
			break;
	}
	inflateEnd(&zs);
	if (st == NN_OK && produced != m->size)
		st = bad(e, "npz member %s inflates to %llu bytes, the directory says %llu", m->name,
			 (unsigned long long)produced, (unsigned long long)m->size);
	return st;
}

enum nn_status npz_extract(struct npz *z, size_t i, npz_write_fn write_fn, void *ud,
			   struct nn_err *e)
{
	const struct npz_member *m = npz_member_at(z, i);
	if (!m)
		return err_set(e, NN_EINTERNAL, "internal", NULL, "npz member %zu does not exist", i);
	uint64_t off = 0;
	enum nn_status st = data_offset(z, m, &off, e);
	if (st != NN_OK)
		return st;
	unsigned char *in = malloc(CHUNK), *outbuf = m->method == 8 ? malloc(CHUNK) : NULL;
	if (!in || (m->method == 8 && !outbuf)) {
		free(in);
		free(outbuf);
		return err_set(e, NN_ENOMEM, NULL, NULL, "out of memory");
	}
	uLong crc = crc32(0L, Z_NULL, 0);
	if (m->method == 0)
		st = extract_stored(z, m, off, in, &crc, write_fn, ud, e);
	else
		st = extract_deflated(z, m, off, in, outbuf, &crc, write_fn, ud, e);
	free(in);
	free(outbuf);
	if (st == NN_OK && (uint32_t)crc != m->crc32)
		st = bad(e, "npz member %s fails its CRC-32 check (corrupt archive)", m->name);
	return st;
}
