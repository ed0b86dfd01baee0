/*
 * log.h — structured log lines on stderr (journald reads them from there).
 *
 * One line per event: JSON ({"time","level","msg", ...context}) or a text form
 * for humans. Safe to call from any thread; a line is written with one write(2)
 * so lines from different threads never interleave. The level and format are
 * the log module's own state, changed live by log_configure() on reload.
 */
#ifndef ORDERD_LOG_H
#define ORDERD_LOG_H

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };
enum log_format { LOG_FORMAT_JSON, LOG_FORMAT_TEXT };

/* Context printed with a line; any field may be NULL. Printed in the order
 * request_id, trace_id, span_id, order_id; span_id is last here so that an
 * initialiser of the first three leaves it NULL. */
struct log_ctx {
    const char *request_id;
    const char *trace_id;
    const char *order_id;
    const char *span_id; /* the span the line belongs to (tracing.h), beside trace_id */
};

/* Never fails; thread-safe. */
void log_configure(enum log_level level, enum log_format format);
enum log_level log_current_level(void);

/* Parses "debug|info|warn|error" / "json|text"; 0 or -EINVAL. */
int log_level_parse(const char *s, enum log_level *out);
int log_format_parse(const char *s, enum log_format *out);
const char *log_level_name(enum log_level level);

void log_write(enum log_level level, const struct log_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(ctx, ...) log_write(LOG_LEVEL_DEBUG, (ctx), __VA_ARGS__)
#define log_info(ctx, ...) log_write(LOG_LEVEL_INFO, (ctx), __VA_ARGS__)
#define log_warn(ctx, ...) log_write(LOG_LEVEL_WARN, (ctx), __VA_ARGS__)
#define log_error(ctx, ...) log_write(LOG_LEVEL_ERROR, (ctx), __VA_ARGS__)

#endif
