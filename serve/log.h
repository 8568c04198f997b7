// log: serve's one log. Every module of serve logs through log_line, from
// any thread (loop, engine, thread pool).
//
// A line is "level component: message key=value ...", e.g.
//   info http: request method=POST path=/v1/chat/completions status=200 ...
// written to stderr with one stdio call, so lines from different threads
// never interleave. CR and LF inside the message become spaces: a value
// that came from a client (a file name, a model id) cannot start a forged
// line. Lines longer than LOG_MAX_LINE bytes are cut.
#ifndef TESSERA_LOG_H
#define TESSERA_LOG_H

#include <stdarg.h>

#define LOG_MAX_LINE 2048

// level: "debug", "info", "warn", "error"; comp: the module ("http",
// "sched", "files", "ftjobs", ...).
void log_line(const char *level, const char *comp, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void log_vline(const char *level, const char *comp, const char *fmt, va_list ap);

#endif
