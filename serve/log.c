#include "log.h"

#include <stdio.h>

void log_vline(const char *level, const char *comp, const char *fmt, va_list ap) {
    char line[LOG_MAX_LINE];
    int k = snprintf(line, sizeof line, "%s %s: ", level, comp);
    if (k < 0 || (size_t)k >= sizeof line) k = 0;
    vsnprintf(line + k, sizeof line - (size_t)k, fmt, ap);
    for (char *p = line; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    fprintf(stderr, "%s\n", line);
}

void log_line(const char *level, const char *comp, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_vline(level, comp, fmt, ap);
    va_end(ap);
}
