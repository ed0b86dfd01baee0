/*
 * strbuf.h — a growable string for building text: the metrics exposition,
 * the canonical JSON of an order, PostgreSQL array literals.
 *
 * The text is always NUL-terminated once anything was added. Appending never
 * fails loudly: when memory runs out, failed is set, later appends do
 * nothing, and strbuf_finish() gives NULL. Not shared between threads.
 */
#ifndef ORDERD_STRBUF_H
#define ORDERD_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

struct strbuf {
    char *p;                      /* NULL until the first append or reserve */
    size_t len;                   /* bytes of text, without the NUL */
    size_t cap;
    bool failed;                  /* memory ran out: the text is incomplete */
};

#define STRBUF_INIT {NULL, 0, 0, false}

/* Room for `more` bytes beyond len, plus the NUL; false once failed. */
bool strbuf_reserve(struct strbuf *b, size_t more);
void strbuf_add(struct strbuf *b, const char *s, size_t n);
void strbuf_str(struct strbuf *b, const char *s);
__attribute__((format(printf, 2, 3))) void strbuf_printf(struct strbuf *b, const char *fmt, ...);
/* The text, which the caller now owns ("" when nothing was added), or NULL
 * when memory ran out (nothing is left allocated then). */
char *strbuf_finish(struct strbuf *b);

#endif
