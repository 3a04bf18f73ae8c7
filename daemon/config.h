/* config: nncd serve's settings from NNCD_* environment variables, then
 * command-line flags (flags win). Plain value filled once at start-up. */
#ifndef NNCD_CONFIG_H
#define NNCD_CONFIG_H

#include <stdint.h>

#include "err.h"
#include "log.h"

struct config {
	char listen[256];
	char data_dir[1024];
	unsigned workers;
	unsigned http_threads;
	uint64_t max_upload;
	enum log_level log_level;
	unsigned grace_seconds;
};

/* argv[0] is the first argument after "serve". NN_EINVAL with a message for
 * unknown flags and bad values; e->field names the flag. */
enum nn_status config_load(struct config *c, int argc, char **argv, struct nn_err *e);
void config_usage(const char *prog);

#endif
