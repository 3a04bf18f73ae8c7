/* store: nncd's state in SQLite (WAL): tenants, models, jobs, artifacts, job
 * metrics and job events, behind functions named for what they do.
 *
 * Schema changes are numbered migrations applied in order at open (PRAGMA
 * user_version records the last one). Every row belongs to a tenant; until
 * authentication exists all calls use STORE_DEFAULT_TENANT.
 * Thread-safety: a struct store may be used from any number of threads; it
 * hands each call a connection from an internal pool (one connection is never
 * used by two threads at once). Multi-row changes run in one transaction.
 * Returned JSON objects are new references the caller decrefs. Timestamps are
 * RFC 3339 UTC strings with milliseconds ("2026-11-28T22:03:01.123Z").
 *
 * This header declares what store.c owns: open/close (with the migrations and
 * the connection pool), ids, the blob-in-use query and health. The queries
 * live in their own modules, whose public headers it includes, so
 * "store.h" still gives the whole API: store_models.h (model rows),
 * store_jobs.h (jobs, steps, events, the worker's claim/finish calls and
 * artifacts) and store_datasets.h (datasets and their arrays). */
#ifndef NNCD_STORE_H
#define NNCD_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"

#define STORE_DEFAULT_TENANT "default"
#define STORE_ID_CAP 48 /* "mdl_" + 26 base32 chars + NUL fits with room */

struct store;

/* Opens (creating if needed) DATA_DIR/nncd.db and migrates it. */
enum nn_status store_open(const char *data_dir, struct store **out, struct nn_err *e);
void store_close(struct store *s);

/* New opaque id: prefix + 26 chars of base32 from 130 random bits (getrandom). */
void store_new_id(const char *prefix, char out[STORE_ID_CAP]);

/* Whether any model, artifact or dataset array row refers to the blob. */
enum nn_status store_blob_in_use(struct store *s, const char *sha256, bool *in_use,
				 struct nn_err *e);

/* ---- health ---- */
/* A trivial query through the pool: readiness. */
enum nn_status store_ping(struct store *s, struct nn_err *e);
/* PRAGMA integrity_check == ok. */
enum nn_status store_integrity_check(struct store *s, bool *ok, struct nn_err *e);

#include "store_models.h"
#include "store_jobs.h"
#include "store_datasets.h"

#endif
