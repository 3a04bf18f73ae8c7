#include "err.h"

#include <stdio.h>
#include <string.h>

static void copy_bounded(char *dst, size_t cap, const char *src)
{
	if (!src) {
		dst[0] = '\0';
		return;
	}
	snprintf(dst, cap, "%s", src);
}

enum nn_status err_setv(struct nn_err *e, enum nn_status status, const char *code,
			const char *field, const char *fmt, va_list ap)
{
	if (!e)
		return status;
	e->status = status;
	copy_bounded(e->code, sizeof e->code, code ? code : err_status_name(status));
	copy_bounded(e->field, sizeof e->field, field);
	vsnprintf(e->message, sizeof e->message, fmt, ap);
	return status;
}

enum nn_status err_set(struct nn_err *e, enum nn_status status, const char *code,
		       const char *field, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	err_setv(e, status, code, field, fmt, ap);
	va_end(ap);
	return status;
}

void err_prefix(struct nn_err *e, const char *fmt, ...)
{
	if (!e)
		return;
	char prefix[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof prefix, fmt, ap);
	va_end(ap);
	char joined[sizeof e->message];
	snprintf(joined, sizeof joined, "%s: %s", prefix, e->message);
	memcpy(e->message, joined, sizeof joined);
}

void err_clear(struct nn_err *e)
{
	if (!e)
		return;
	memset(e, 0, sizeof *e);
}

const char *err_status_name(enum nn_status status)
{
	switch (status) {
	case NN_OK: return "ok";
	case NN_EINVAL: return "invalid";
	case NN_ENOTFOUND: return "not_found";
	case NN_ECONFLICT: return "conflict";
	case NN_ETOOBIG: return "too_large";
	case NN_EUNSUPPORTED: return "unsupported";
	case NN_ENOMEM: return "out_of_memory";
	case NN_EIO: return "io_error";
	case NN_ENOSPC: return "no_space";
	case NN_ECANCELED: return "canceled";
	case NN_EINTERNAL: return "internal";
	}
	return "internal";
}
