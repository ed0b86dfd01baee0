/*
 * ctl_format.c — the text `orderd ctl` (src/ctl.c) shows people: cells
 * cleaned of control characters, bidi controls and invalid UTF-8 (a
 * customer's text never drives the terminal), cut to the terminal's width;
 * tables; "key: value" lines; ages and the API's timestamps; the one line of
 * an error answer; and the --json output (the answer as it came, or one item
 * a line). No requests, no state; it writes to the FILE it is given, and a
 * list's end (ctl_list_print) to stdout and stderr (ctl_int.h).
 *
 * Threads: the main thread, with no other thread running.
 */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "ctl_int.h"
#include "strbuf.h"

/* ---- text for people ------------------------------------------------------------ */

/*
 * The code point at s (UTF-8, at most 4 bytes, NUL-terminated): its length in
 * *len, or -1 for an invalid sequence (then *len = 1).
 */
static long decode_utf8(const unsigned char *s, size_t *len)
{
    unsigned char c = s[0];
    long cp;
    size_t n;
    *len = 1;
    if (c < 0x80)
        return c;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return -1;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return -1; /* also stops at the NUL */
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return -1;
    *len = n;
    return cp;
}

/* Characters that would move or restyle the terminal, or break a line. */
static bool is_control(long cp)
{
    return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
           (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

/*
 * s cleaned into a new string: control characters a space, invalid UTF-8 a
 * '?'; collapse: runs of spaces one, ends trimmed; else the end trimmed only.
 * NULL when memory ran out.
 */
static char *clean(const char *s, bool collapse)
{
    size_t n = strlen(s), k = 0;
    char *out = malloc(n + 1);
    if (out == NULL)
        return NULL;
    const unsigned char *p = (const unsigned char *)s;
    while (*p != '\0') {
        size_t len;
        long cp = decode_utf8(p, &len);
        if (cp == ' ' || (cp >= 0 && is_control(cp))) {
            if (!collapse || (k > 0 && out[k - 1] != ' '))
                out[k++] = ' ';
        } else if (cp < 0) {
            out[k++] = '?';
        } else {
            memcpy(out + k, p, len);
            k += len;
        }
        p += len;
    }
    while (k > 0 && out[k - 1] == ' ')
        k--;
    out[k] = '\0';
    return out;
}

size_t ctl_columns(const char *s)
{
    size_t cols = 0;
    for (; *s != '\0'; s++)
        cols += ((unsigned char)*s & 0xc0) != 0x80;
    return cols;
}

/* Copies whole code points of s (clean) to out[size] up to cols columns; the columns copied. */
static size_t copy_columns(const char *s, size_t cols, char *out, size_t size, size_t *used)
{
    size_t k = *used, c = 0;
    while (*s != '\0' && c < cols) {
        size_t len = 1;
        while ((((unsigned char)s[len]) & 0xc0) == 0x80)
            len++;
        if (k + len >= size)
            break;
        memcpy(out + k, s, len);
        k += len;
        s += len;
        c++;
    }
    out[k] = '\0';
    *used = k;
    return c;
}

size_t ctl_cell(const char *s, size_t max_cols, char *out, size_t size)
{
    if (size == 0)
        return 0;
    out[0] = '\0';
    char *c = clean(s != NULL ? s : "", true);
    if (c == NULL)
        return 0;
    size_t used = 0, cols = ctl_columns(c), wrote;
    if (max_cols == 0 || cols <= max_cols) {
        wrote = copy_columns(c, cols, out, size, &used);
    } else if (max_cols <= 3) {
        wrote = copy_columns(c, max_cols, out, size, &used);
    } else {
        wrote = copy_columns(c, max_cols - 3, out, size, &used);
        /* a cut at a space would leave "word ...": end on the word */
        while (used > 0 && out[used - 1] == ' ') {
            out[--used] = '\0';
            wrote--;
        }
        wrote += copy_columns("...", 3, out, size, &used);
    }
    free(c);
    return wrote;
}

int ctl_parse_time(const char *s, int64_t *out)
{
    int y, mo, d, h, mi, sec, n = 0;
    if (s == NULL || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 ||
        n != 19)
        return -EINVAL;
    const char *p = s + n;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return -EINVAL;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (strcmp(p, "Z") != 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
        sec > 60)
        return -EINVAL;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = sec};
    *out = (int64_t)timegm(&tm);
    return 0;
}

void ctl_format_age(int64_t s, char *buf, size_t size)
{
    long long v = s < 0 ? 0 : (long long)s;
    if (v < 60)
        snprintf(buf, size, "%llds", v);
    else if (v < 3600)
        snprintf(buf, size, "%lldm", v / 60);
    else if (v < 86400)
        snprintf(buf, size, "%lldh%02lldm", v / 3600, v % 3600 / 60);
    else
        snprintf(buf, size, "%lldd%02lldh", v / 86400, v % 86400 / 3600);
}

/* ---- tables ------------------------------------------------------------------------- */

struct ctl_table {
    size_t ncols;
    unsigned right;
    char **cells; /* rows + 1 (the header) times ncols, cleaned */
    size_t rows, cap;
};

struct ctl_table *ctl_table_new(size_t ncols, const char *const *headers, unsigned right_mask)
{
    struct ctl_table *t = calloc(1, sizeof(*t));
    if (t == NULL || ncols == 0)
        goto fail;
    t->ncols = ncols;
    t->right = right_mask;
    /* the header is row "-1": kept as the first ncols cells */
    t->cells = calloc(16 * ncols, sizeof(*t->cells));
    if (t->cells == NULL)
        goto fail;
    t->cap = 16;
    for (size_t i = 0; i < ncols; i++)
        if ((t->cells[i] = clean(headers[i], true)) == NULL)
            goto fail;
    return t;
fail:
    ctl_table_free(t);
    return NULL;
}

int ctl_table_add(struct ctl_table *t, const char *const *cells)
{
    if (t->rows + 2 > t->cap) {
        size_t cap = t->cap * 2;
        char **p = realloc(t->cells, cap * t->ncols * sizeof(*p));
        if (p == NULL)
            return -ENOMEM;
        t->cells = p;
        t->cap = cap;
    }
    char **row = t->cells + (t->rows + 1) * t->ncols;
    for (size_t i = 0; i < t->ncols; i++) {
        row[i] = clean(cells[i] != NULL ? cells[i] : "-", true);
        if (row[i] == NULL) {
            for (size_t j = 0; j < i; j++)
                free(row[j]);
            return -ENOMEM;
        }
    }
    t->rows++;
    return 0;
}

size_t ctl_table_rows(const struct ctl_table *t) { return t->rows; }

void ctl_table_print(const struct ctl_table *t, size_t width, FILE *out)
{
    size_t nc = t->ncols, w[32] = {0}, fixed = 0;
    if (nc > sizeof(w) / sizeof(w[0]))
        return;
    for (size_t r = 0; r <= t->rows; r++)
        for (size_t i = 0; i + 1 < nc; i++) {
            size_t c = ctl_columns(t->cells[r * nc + i]);
            if (c > w[i])
                w[i] = c;
        }
    for (size_t i = 0; i + 1 < nc; i++)
        fixed += w[i] + 2;
    size_t flex = width > fixed + CTL_FLEX_MIN ? width - fixed : CTL_FLEX_MIN;
    for (size_t r = 0; r <= t->rows; r++) {
        struct strbuf line = STRBUF_INIT;
        char *const *row = t->cells + r * nc;
        for (size_t i = 0; i + 1 < nc; i++) {
            size_t pad = w[i] - ctl_columns(row[i]);
            bool right = (t->right >> i) & 1u;
            if (right)
                strbuf_printf(&line, "%*s", (int)pad, "");
            strbuf_str(&line, row[i]);
            strbuf_printf(&line, "%*s", right ? 2 : (int)pad + 2, "");
        }
        const char *last = row[nc - 1];
        size_t size = strlen(last) + 4;
        char *cut = malloc(size);
        if (cut != NULL) {
            ctl_cell(last, flex, cut, size);
            strbuf_str(&line, cut);
            free(cut);
        }
        char *text = strbuf_finish(&line);
        if (text != NULL) {
            size_t len = strlen(text);
            while (len > 0 && text[len - 1] == ' ')
                len--;
            fprintf(out, "%.*s\n", (int)len, text);
            free(text);
        }
    }
}

void ctl_table_free(struct ctl_table *t)
{
    if (t == NULL)
        return;
    if (t->cells != NULL)
        for (size_t i = 0; i < (t->rows + 1) * t->ncols; i++)
            free(t->cells[i]);
    free(t->cells);
    free(t);
}

/* ---- "key: value" lines -------------------------------------------------------------- */

/* The lines of a value, each already clean, into lines (a strbuf of '\n'-separated text). */
static void value_lines(const char *key, const json_t *v, struct strbuf *b)
{
    if (json_is_null(v)) {
        strbuf_str(b, "-");
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        /* each line of the text, cleaned on its own */
        while (true) {
            const char *nl = strchr(s, '\n');
            size_t n = nl != NULL ? (size_t)(nl - s) : strlen(s);
            char *part = strndup(s, n), *c = part ? clean(part, false) : NULL;
            if (c != NULL)
                strbuf_str(b, c);
            free(c);
            free(part);
            if (nl == NULL)
                break;
            strbuf_str(b, "\n");
            s = nl + 1;
        }
    } else if (json_is_integer(v)) {
        strbuf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    } else if (json_is_real(v)) {
        strbuf_printf(b, "%.3f", json_real_value(v));
    } else if (json_is_boolean(v)) {
        strbuf_str(b, json_is_true(v) ? "true" : "false");
    } else {
        bool items = strcmp(key, "items") == 0 && json_is_array(v) && json_array_size(v) > 0;
        size_t i;
        const json_t *it;
        json_array_foreach(v, i, it)
        {
            if (!json_is_string(json_object_get(it, "item")) ||
                !json_is_integer(json_object_get(it, "quantity")))
                items = false;
        }
        if (items) {
            json_array_foreach(v, i, it)
            {
                char *c = clean(json_string_value(json_object_get(it, "item")), true);
                strbuf_printf(b, "%s%" JSON_INTEGER_FORMAT " x %s", i > 0 ? "\n" : "",
                              json_integer_value(json_object_get(it, "quantity")),
                              c != NULL ? c : "");
                free(c);
            }
        } else {
            /* ASCII only, control characters escaped: safe for a terminal */
            char *text = json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_ENCODE_ANY);
            if (text != NULL)
                strbuf_str(b, text);
            free(text);
        }
    }
}

void ctl_print_fields(const json_t *obj, FILE *out)
{
    const char *key;
    const json_t *v;
    size_t kw = 0;
    json_object_foreach((json_t *)obj, key, v)
    {
        size_t c = ctl_columns(key);
        if (c > kw)
            kw = c;
    }
    json_object_foreach((json_t *)obj, key, v)
    {
        struct strbuf b = STRBUF_INIT;
        value_lines(key, v, &b);
        char *text = strbuf_finish(&b);
        char *k = clean(key, true);
        if (text != NULL && k != NULL) {
            const char *s = text;
            bool first = true;
            do {
                const char *nl = strchr(s, '\n');
                int n = nl != NULL ? (int)(nl - s) : (int)strlen(s);
                if (first) {
                    int pad = (int)(kw - ctl_columns(k));
                    if (n > 0)
                        fprintf(out, "%s:%*s %.*s\n", k, pad, "", n, s);
                    else
                        fprintf(out, "%s:\n", k);
                } else {
                    fprintf(out, "%*s %.*s\n", (int)kw + 1, "", n, s);
                }
                first = false;
                s = nl != NULL ? nl + 1 : NULL;
            } while (s != NULL);
        }
        free(k);
        free(text);
    }
}

/* ---- error answers ------------------------------------------------------------------ */

void ctl_describe_problem(const char *body, size_t len, char *out, size_t size)
{
    json_t *p = json_loadb(body, len, 0, NULL);
    struct strbuf b = STRBUF_INIT;
    const char *title = json_string_value(json_object_get(p, "title"));
    const char *detail = json_string_value(json_object_get(p, "detail"));
    const char *rid = json_string_value(json_object_get(p, "request_id"));
    if (title != NULL)
        strbuf_str(&b, title);
    if (detail != NULL)
        strbuf_printf(&b, "%s%s", title != NULL ? ": " : "", detail);
    json_t *errors = json_object_get(p, "errors");
    size_t i;
    json_t *e;
    json_array_foreach(errors, i, e)
    {
        const char *f = json_string_value(json_object_get(e, "field"));
        const char *m = json_string_value(json_object_get(e, "message"));
        strbuf_printf(&b, "%s%s: %s", i == 0 ? " (" : "; ", f ? f : "?", m ? m : "?");
    }
    if (json_array_size(errors) > 0)
        strbuf_str(&b, ")");
    if (title == NULL && detail == NULL && len > 0) /* not a problem document */
        strbuf_add(&b, body, len < 200 ? len : 200);
    if (rid != NULL)
        strbuf_printf(&b, " [request %s]", rid);
    char *text = strbuf_finish(&b);
    ctl_cell(text != NULL ? text : "", 400, out, size);
    free(text);
    json_decref(p);
}

/* ---- --json ----------------------------------------------------------------------------- */

void ctl_print_raw(const char *body, size_t len, FILE *out)
{
    if (len == 0)
        return;
    fwrite(body, 1, len, out);
    if (body[len - 1] != '\n')
        fputc('\n', out);
}

void ctl_print_items(const json_t *items, FILE *out)
{
    size_t i;
    const json_t *item;
    json_array_foreach(items, i, item)
    {
        json_dumpf(item, out, JSON_COMPACT | JSON_ENCODE_ANY);
        fputc('\n', out);
    }
    fflush(out); /* a stream: each page as it comes */
}

/* ---- lists: orders list, dlq list ------------------------------------------------------- */

size_t ctl_table_width(void)
{
    const char *env = getenv("COLUMNS");
    if (env != NULL && env[0] != '\0' && strspn(env, "0123456789") == strlen(env) &&
        strlen(env) < 6 && atoi(env) > 0)
        return (size_t)atoi(env);
    struct winsize ws;
    if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return CTL_WIDTH_DEFAULT;
}

static const char *str_or_dash(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s != NULL ? s : "-";
}

static int add_row(struct ctl_table *t, const json_t *item, bool dlq, time_t now)
{
    char attempts[24], age[32];
    const json_t *a = json_object_get(item, "attempts");
    if (json_is_integer(a))
        snprintf(attempts, sizeof(attempts), "%" JSON_INTEGER_FORMAT, json_integer_value(a));
    else
        snprintf(attempts, sizeof(attempts), "-");
    if (dlq) {
        int64_t at;
        if (ctl_parse_time(json_string_value(json_object_get(item, "dead_lettered_at")), &at) == 0)
            ctl_format_age((int64_t)now - at, age, sizeof(age));
        else
            snprintf(age, sizeof(age), "-");
        const char *cells[] = {str_or_dash(item, "order_id"), attempts, age,
                               str_or_dash(item, "last_error")};
        return ctl_table_add(t, cells);
    }
    const char *cells[] = {str_or_dash(item, "order_id"), str_or_dash(item, "status"),
                           str_or_dash(item, "customer_id"), attempts,
                           str_or_dash(item, "created_at")};
    return ctl_table_add(t, cells);
}

struct ctl_table *ctl_list_table_new(bool dlq)
{
    static const char *const orders_h[] = {"ID", "STATUS", "CUSTOMER", "ATTEMPTS", "CREATED"};
    static const char *const dlq_h[] = {"ID", "ATTEMPTS", "AGE", "LAST ERROR"};
    return dlq ? ctl_table_new(4, dlq_h, 1u << 1 | 1u << 2) : ctl_table_new(5, orders_h, 1u << 3);
}

int ctl_list_add_rows(struct ctl_table *t, const json_t *items, bool dlq, time_t now)
{
    size_t i;
    const json_t *item;
    json_array_foreach(items, i, item)
    {
        if (add_row(t, item, dlq, now) != 0)
            return -ENOMEM;
    }
    return 0;
}

void ctl_list_print(const struct ctl_table *t, bool dlq, const char *cursor, bool complete)
{
    if (t == NULL)
        return;
    if (ctl_table_rows(t) > 0)
        ctl_table_print(t, ctl_table_width(), stdout); /* what came, also before a failure */
    if (complete) {
        if (ctl_table_rows(t) == 0)
            fprintf(stderr, "no %s\n", dlq ? "dead letters" : "orders");
        if (cursor != NULL)
            fprintf(stderr, "more: --cursor %s for the next page, or --all\n", cursor);
    }
}
