/* cli_data: local .npz / .npy files as dataset arrays (see cli_data.h). */
#include "cli_data.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "npz.h"

#define CLI_NPZ_MAX_BYTES ((uint64_t)16 << 30)

static enum nn_status write_fd(void *ud, const void *data, size_t len, struct nn_err *e)
{
	int fd = *(int *)ud;
	for (size_t done = 0; done < len;) {
		ssize_t w = write(fd, (const char *)data + done, len - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return err_set(e, NN_EIO, "io_error", "", "writing an extracted array: %s",
				       strerror(errno));
		done += (size_t)w;
	}
	return NN_OK;
}

enum nn_status cli_data_open(const char *path, struct job_arrays *out, struct nn_err *e)
{
	out->n = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(e, NN_EIO, "io_error", "", "%s: %s", path, strerror(errno));
	char magic[4] = {0};
	if (pread(fd, magic, sizeof magic, 0) != (ssize_t)sizeof magic || memcmp(magic, "PK", 2)) {
		snprintf(out->names[0], sizeof out->names[0], "x");
		out->fds[0] = fd; /* an .npy, or the loader will say what it is not */
		out->n = 1;
		return NN_OK;
	}
	struct npz_limits lim = {CLI_NPZ_MAX_BYTES, CLI_NPZ_MAX_BYTES};
	struct npz *z = NULL;
	enum nn_status st = npz_open(fd, &lim, &z, e);
	for (size_t i = 0; st == NN_OK && i < npz_member_count(z); i++) {
		const struct npz_member *m = npz_member_at(z, i);
		int mfd = memfd_create(m->name, MFD_CLOEXEC);
		if (mfd < 0) {
			st = err_set(e, NN_EIO, "io_error", "", "memfd_create: %s", strerror(errno));
			break;
		}
		out->fds[out->n] = mfd;
		snprintf(out->names[out->n], sizeof out->names[out->n], "%s", m->name);
		out->n++;
		st = npz_extract(z, i, write_fd, &mfd, e);
	}
	npz_close(z);
	close(fd);
	if (st == NN_OK && out->n == 0)
		st = err_set(e, NN_EINVAL, "invalid_dataset", "", "%s holds no arrays", path);
	if (st != NN_OK) {
		job_arrays_close(out);
		err_prefix(e, "%s", path);
	}
	return st;
}
