#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_UPLOAD ((uint64_t)1 << 30)

/* Accepts plain bytes or a K/M/G (binary) suffix: "200M", "1G". */
static bool parse_size(const char *text, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(text, &end, 10);
	if (errno || end == text || text[0] == '-')
		return false;
	unsigned shift = 0;
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	default: return false;
	}
	if (*end == 'i' || *end == 'B')
		end += (*end == 'i' && end[1] == 'B') ? 2 : 1;
	if (*end)
		return false;
	if (shift && v > (UINT64_MAX >> shift))
		return false;
	*out = (uint64_t)v << shift;
	return true;
}

static bool parse_uint(const char *text, unsigned max, unsigned *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(text, &end, 10);
	if (errno || end == text || *end || text[0] == '-' || v > max)
		return false;
	*out = (unsigned)v;
	return true;
}

static enum nn_status apply(struct config *c, const char *key, const char *value,
			    struct nn_err *e)
{
	if (strcmp(key, "listen") == 0) {
		if (strlen(value) >= sizeof c->listen)
			return err_set(e, NN_EINVAL, "invalid_config", key, "--listen too long");
		snprintf(c->listen, sizeof c->listen, "%s", value);
	} else if (strcmp(key, "data-dir") == 0) {
		if (strlen(value) >= sizeof c->data_dir || !value[0])
			return err_set(e, NN_EINVAL, "invalid_config", key, "bad --data-dir");
		snprintf(c->data_dir, sizeof c->data_dir, "%s", value);
	} else if (strcmp(key, "workers") == 0) {
		if (!parse_uint(value, 256, &c->workers))
			return err_set(e, NN_EINVAL, "invalid_config", key,
				       "--workers must be an integer in [0, 256], got '%s'", value);
	} else if (strcmp(key, "http-threads") == 0) {
		if (!parse_uint(value, 64, &c->http_threads) || c->http_threads == 0)
			return err_set(e, NN_EINVAL, "invalid_config", key,
				       "--http-threads must be an integer in [1, 64], got '%s'", value);
	} else if (strcmp(key, "max-upload") == 0) {
		if (!parse_size(value, &c->max_upload) || c->max_upload == 0)
			return err_set(e, NN_EINVAL, "invalid_config", key,
				       "--max-upload must be a byte count like 1073741824 or 1G, got '%s'",
				       value);
	} else if (strcmp(key, "log-level") == 0) {
		int level = log_level_parse(value);
		if (level < 0)
			return err_set(e, NN_EINVAL, "invalid_config", key,
				       "--log-level must be debug, info, warn or error, got '%s'",
				       value);
		c->log_level = (enum log_level)level;
	} else if (strcmp(key, "grace") == 0) {
		if (!parse_uint(value, 86400, &c->grace_seconds))
			return err_set(e, NN_EINVAL, "invalid_config", key,
				       "--grace must be seconds in [0, 86400], got '%s'", value);
	} else {
		return err_set(e, NN_EINVAL, "invalid_config", key, "unknown option --%s", key);
	}
	return NN_OK;
}

static const struct {
	const char *env;
	const char *key;
} env_keys[] = {
	{"NNCD_LISTEN", "listen"},         {"NNCD_DATA_DIR", "data-dir"},
	{"NNCD_WORKERS", "workers"},       {"NNCD_MAX_UPLOAD", "max-upload"},
	{"NNCD_LOG_LEVEL", "log-level"},   {"NNCD_GRACE", "grace"},
	{"NNCD_HTTP_THREADS", "http-threads"},
};

enum nn_status config_load(struct config *c, int argc, char **argv, struct nn_err *e)
{
	memset(c, 0, sizeof *c);
	snprintf(c->listen, sizeof c->listen, "127.0.0.1:8080");
	snprintf(c->data_dir, sizeof c->data_dir, "./data");
	c->workers = 1;
	c->http_threads = 2;
	c->max_upload = DEFAULT_MAX_UPLOAD;
	c->log_level = LOG_INFO;
	c->grace_seconds = 30;

	for (size_t i = 0; i < sizeof env_keys / sizeof env_keys[0]; i++) {
		const char *value = getenv(env_keys[i].env);
		if (value && value[0] && apply(c, env_keys[i].key, value, e) != NN_OK) {
			err_prefix(e, "%s", env_keys[i].env);
			return e->status;
		}
	}
	for (int i = 0; i < argc; i++) {
		const char *arg = argv[i];
		if (strncmp(arg, "--", 2) != 0)
			return err_set(e, NN_EINVAL, "invalid_config", "", "unexpected argument '%s'",
				       arg);
		char key[64];
		const char *value;
		const char *eq = strchr(arg + 2, '=');
		if (eq) {
			size_t klen = (size_t)(eq - arg - 2);
			if (klen >= sizeof key)
				return err_set(e, NN_EINVAL, "invalid_config", "", "bad option %s", arg);
			memcpy(key, arg + 2, klen);
			key[klen] = '\0';
			value = eq + 1;
		} else {
			snprintf(key, sizeof key, "%s", arg + 2);
			if (i + 1 >= argc)
				return err_set(e, NN_EINVAL, "invalid_config", key,
					       "option --%s needs a value", key);
			value = argv[++i];
		}
		if (apply(c, key, value, e) != NN_OK)
			return e->status;
	}
	return NN_OK;
}

void config_usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s serve [--listen HOST:PORT] [--data-dir DIR] [--workers N]\n"
		"          [--max-upload BYTES] [--log-level debug|info|warn|error] [--grace SECONDS]\n"
		"          [--http-threads N]\n"
		"       %s compress IN.onnx --spec SPEC.json -o OUT.onnx [--dataset ID=DATA.npz]...\n"
		"                 [--model ID=MODEL.onnx]... [--threads N]\n"
		"       %s eval MODEL.onnx --data DATA.npz [--labels Y.npy] [--scale S] [--holdout F]\n"
		"                 [--metrics accuracy,fidelity,size,latency] [--reference ORIG.onnx] [--threads N]\n"
		"       %s version\n"
		"Each serve flag can also come from NNCD_LISTEN, NNCD_DATA_DIR, NNCD_WORKERS,\n"
		"NNCD_MAX_UPLOAD, NNCD_LOG_LEVEL, NNCD_GRACE, NNCD_HTTP_THREADS (flags win).\n"
		"Defaults: --listen 127.0.0.1:8080 --data-dir ./data --workers 1 --max-upload 1G\n"
		"          --log-level info --grace 30 --http-threads 2\n",
		prog, prog, prog, prog);
}
