/*
 * rumpuser_dprintf: the one variadic hypercall, which stable Rust cannot
 * define. Formats and hands the text to the Rust console.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void hypercall_console_write(const char *buf, size_t len);

void
rumpuser_dprintf(const char *fmt, ...)
{
	char small[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(small)) {
		hypercall_console_write(small, (size_t)n);
		return;
	}

	char *big = malloc((size_t)n + 1);
	if (big == NULL) {
		hypercall_console_write(small, sizeof(small) - 1);
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	hypercall_console_write(big, (size_t)n);
	free(big);
}
