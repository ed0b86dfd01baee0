/*
 * strbuf.c — a growable string (see strbuf.h). Capacity doubles from
 * STRBUF_INITIAL_CAP; a size that would overflow counts as out of memory.
 */
#include "strbuf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STRBUF_INITIAL_CAP 128

bool strbuf_reserve(struct strbuf *b, size_t more)
{
    if (b->failed)
        return false;
    if (b->cap - b->len > more)
        return true;
    size_t cap = b->cap ? b->cap : STRBUF_INITIAL_CAP;
    while (cap - b->len <= more) {
        if (cap > SIZE_MAX / 2) {
            b->failed = true;
            return false;
        }
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        b->failed = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    b->p[b->len] = '\0';
    return true;
}

void strbuf_add(struct strbuf *b, const char *s, size_t n)
{
    if (!strbuf_reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void strbuf_str(struct strbuf *b, const char *s)
{
    strbuf_add(b, s, strlen(s));
}

void strbuf_printf(struct strbuf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return;
    }
    if ((size_t)n < sizeof(small)) {
        strbuf_add(b, small, (size_t)n);
        return;
    }
    if (!strbuf_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

char *strbuf_finish(struct strbuf *b)
{
    char *text = strbuf_reserve(b, 0) ? b->p : NULL;
    if (text == NULL)
        free(b->p);
    *b = (struct strbuf)STRBUF_INIT;
    return text;
}
