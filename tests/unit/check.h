/* check: the assertion macro unit tests share. CHECK(cond, fmt, ...) prints
 * file:line, the condition and a message, and makes the test function return 1. */
#ifndef NNCD_TEST_CHECK_H
#define NNCD_TEST_CHECK_H

#include <stdio.h>

#define CHECK(cond, ...)                                                              \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, \
				#cond);                                               \
			fprintf(stderr, __VA_ARGS__);                                 \
			fprintf(stderr, "\n");                                        \
			return 1;                                                     \
		}                                                                     \
	} while (0)

#endif
