/* err: the status + message value that every fallible call in nncd fills.
 *
 * A function that can fail returns an enum nn_status and, on failure, writes a
 * human message (and, for spec errors, the JSON path of the offending field)
 * into the caller's struct nn_err. The API layer maps the status to an HTTP
 * code and sends {"error":{"code","message","field"}} unchanged.
 * Plain value, no allocation: safe to use from any thread. */
#ifndef NNCD_ERR_H
#define NNCD_ERR_H

#include <stdarg.h>

enum nn_status {
	NN_OK = 0,
	NN_EINVAL,       /* bad input: malformed model, bad spec, bad JSON (400) */
	NN_ENOTFOUND,    /* unknown id (404) */
	NN_ECONFLICT,    /* resource in use (409) */
	NN_ETOOBIG,      /* over a size cap (413) */
	NN_EUNSUPPORTED, /* valid input nncd cannot handle yet (400) */
	NN_ENOMEM,       /* allocation failed (500/503) */
	NN_EIO,          /* file system or database failure (500) */
	NN_ENOSPC,       /* disk full (507 -> reported as 503) */
	NN_ECANCELED,    /* cooperative cancellation observed */
	NN_EINTERNAL,    /* a bug: an invariant did not hold (500) */
};

struct nn_err {
	enum nn_status status;
	char code[32];     /* machine-readable, e.g. "invalid_model" */
	char field[128];   /* JSON path for spec errors, e.g. "steps[0].sparsity"; "" if none */
	char message[512];
};

/* Fills e (if not NULL) and returns status, so callers can write
 * `return err_set(e, NN_EINVAL, "invalid_spec", "steps[0].sparsity", "must be in [0,1)")`. */
enum nn_status err_set(struct nn_err *e, enum nn_status status, const char *code,
		       const char *field, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
enum nn_status err_setv(struct nn_err *e, enum nn_status status, const char *code,
			const char *field, const char *fmt, va_list ap);

/* Prefixes the existing message with context ("loading model: ..."). */
void err_prefix(struct nn_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void err_clear(struct nn_err *e);

/* Stable lowercase name of a status ("invalid", "not_found", ...). */
const char *err_status_name(enum nn_status status);

#endif
