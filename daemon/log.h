/* log: structured logs, one JSON object per line on stderr.
 *
 * {"ts":"…Z","level":"info","msg":"…", extra fields…}. Lines are written with
 * one write(2) each so concurrent threads never interleave within a line.
 * The level threshold is set once at start-up, before threads exist. */
#ifndef NNCD_LOG_H
#define NNCD_LOG_H

#include <jansson.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

struct logger {
	enum log_level min_level;
	int fd;
};

/* Returns -1 for an unknown name. */
int log_level_parse(const char *name);
const char *log_level_name(enum log_level level);

/* fields (may be NULL) is borrowed; its keys are added beside ts/level/msg. */
void log_json(const struct logger *lg, enum log_level level, const char *msg, const json_t *fields);
/* Convenience: printf-style message, no extra fields. */
void log_msg(const struct logger *lg, enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* RFC 3339 UTC with milliseconds into buf (>= 32 bytes). */
void log_timestamp(char *buf, size_t cap);

#endif
