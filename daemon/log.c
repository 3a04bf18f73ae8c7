#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int log_level_parse(const char *name)
{
	static const char *const names[] = {"debug", "info", "warn", "error"};
	for (int i = 0; i < 4; i++)
		if (strcmp(name, names[i]) == 0)
			return i;
	if (strcmp(name, "warning") == 0)
		return LOG_WARN;
	return -1;
}

const char *log_level_name(enum log_level level)
{
	switch (level) {
	case LOG_DEBUG: return "debug";
	case LOG_INFO: return "info";
	case LOG_WARN: return "warn";
	case LOG_ERROR: return "error";
	}
	return "info";
}

void log_timestamp(char *buf, size_t cap)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

void log_json(const struct logger *lg, enum log_level level, const char *msg, const json_t *fields)
{
	if (!lg || level < lg->min_level)
		return;
	char ts[40];
	log_timestamp(ts, sizeof ts);
	json_t *line = json_object();
	if (!line)
		return;
	json_object_set_new(line, "ts", json_string(ts));
	json_object_set_new(line, "level", json_string(log_level_name(level)));
	json_object_set_new(line, "msg", json_string(msg));
	if (fields && json_is_object(fields)) {
		const char *key;
		json_t *value;
		json_object_foreach((json_t *)fields, key, value)
			json_object_set(line, key, value);
	}
	char *text = json_dumps(line, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(line);
	if (!text)
		return;
	size_t len = strlen(text);
	text[len] = '\n';
	/* One write per line: the buffer has room because json_dumps NUL-terminates. */
	ssize_t rc = write(lg->fd, text, len + 1);
	(void)rc;
	free(text);
}

void log_msg(const struct logger *lg, enum log_level level, const char *fmt, ...)
{
	if (!lg || level < lg->min_level)
		return;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	log_json(lg, level, msg, NULL);
}
