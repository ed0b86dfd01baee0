/*
 * config.c — reading a config: the INI file of SPEC "Config file" and the
 * ORDERD_ environment into a struct config, every error with its line.
 *
 * Owns: the reader and handler for libinih (sections, unknown and duplicate
 * keys, syntax errors), the ORDERD_<SECTION>_<KEY> environment overrides,
 * where each key was set (struct config's origins, so that config_key_error()
 * can place an error found elsewhere at the key's line), the error list and
 * its printing, and the loaders of include/config.h. The keys themselves (the
 * table, defaults, the checks and warnings between keys) are config_keys.c's;
 * a value's text into a field is config_values.c's; src/config_int.h is what
 * the three files share, and nothing else includes it. Leaves to others:
 * acting on a config (main.c applies it, the reload path decides what may
 * change live) and checking that the files it names exist (config is pure: it
 * never opens anything but the config file).
 *
 * How a file is read: libinih does the INI syntax, through ini_parse_stream()
 * and our own reader. The reader hands inih one whole line at a time, counts
 * lines (Debian's libinih is built without INI_HANDLER_LINENO, so this is how
 * the key handler knows its line), and looks at each line as inih will: a line
 * that is too long, holds a NUL, is not "key = value" or is a "[section" without
 * its ']' is reported there, with its line, and inih gets a blank line instead.
 * That way every syntax error is named, not only the first one inih returns.
 * Order of assignment: defaults, the file top to bottom, then the environment;
 * the checks between keys run last and blame the key that was set last.
 *
 * Threads: pure functions of their input, callable from any thread. libinih's
 * options are process-wide globals: they are set once, under pthread_once().
 */
#include "config.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"

#define ENV_PREFIX "ORDERD_"
#define COMMENT_PREFIXES ";#" /* at line start, and inline after whitespace */

/* ---- errors -------------------------------------------------------------- */

/* Bounded copy of src[0..len) with control characters shown as '?'. */
void config_copy_printable(char *dst, size_t cap, const char *src, size_t len)
{
    size_t n = 0;

    assert(cap > 0);
    for (; n < len && n + 1 < cap && src[n] != '\0'; n++)
        dst[n] = iscntrl((unsigned char)src[n]) ? '?' : src[n];
    dst[n] = '\0';
}

__attribute__((format(printf, 5, 6))) static void
errs_add(struct config_errors *errs, unsigned line, const char *section, const char *key,
         const char *fmt, ...)
{
    struct config_error *e;
    va_list ap;

    if (errs->count >= CONFIG_ERRORS_MAX) {
        errs->dropped++;
        return;
    }
    e = &errs->items[errs->count++];
    e->line = line;
    config_copy_printable(e->section, sizeof(e->section), section, strlen(section));
    config_copy_printable(e->key, sizeof(e->key), key, strlen(key));
    va_start(ap, fmt);
    (void)vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
}

void config_errs_reset(struct config_errors *errs)
{
    errs->count = 0;
    errs->dropped = 0;
}

static bool errs_have_line(const struct config_errors *errs, unsigned line)
{
    for (size_t i = 0; i < errs->count; i++)
        if (errs->items[i].line == line)
            return true;
    return false;
}

static void parser_nomem(struct parser *p)
{
    if (p->rc == 0)
        errs_add(p->errs, 0, "", "", "out of memory");
    p->rc = -ENOMEM;
}

/*
 * Reports an error against a key where its value came from: the file line
 * ("[section] key"), or the environment (line 0, no section, the variable's
 * name as key — config_errors_print() shows it as "environment: NAME").
 */
void config_report(struct parser *p, const struct origin *o, const struct key_def *k,
                   const char *fmt, ...)
{
    char msg[sizeof(p->errs->items[0].message)];
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (o->env != NULL) {
        char name[sizeof(p->errs->items[0].key)];
        config_copy_printable(name, sizeof(name), o->env, strcspn(o->env, "="));
        errs_add(p->errs, 0, "", name, "%s", msg);
    } else {
        errs_add(p->errs, o->line, k->section, k->name, "%s", msg);
    }
}

/* Records where key idx came from, then sets it; errors go to the error list. */
static void key_set(struct parser *p, int idx, const struct origin *o, const char *value)
{
    const struct key_def *k = &config_key_defs[idx];
    char msg[sizeof(p->errs->items[0].message)];
    int rc;

    p->keys[idx].origin = *o;
    rc = config_key_apply(p->cfg, k, value, msg, sizeof(msg));
    p->keys[idx].bad = rc != 0;
    if (rc == -ENOMEM)
        parser_nomem(p);
    else if (rc != 0)
        config_report(p, o, k, "%s", msg);
}

/* ---- the file: reader and handler for libinih ---------------------------- */

static char start_comment_prefixes[] = COMMENT_PREFIXES;
static char inline_comment_prefixes[] = COMMENT_PREFIXES;
static pthread_once_t ini_once = PTHREAD_ONCE_INIT;

static void ini_setup(void)
{
    ini_allow_multiline = false; /* an indented line is a key of its own, not a continuation */
    ini_allow_bom = true;
    ini_start_comment_prefixes = start_comment_prefixes;
    ini_allow_inline_comments = true;
    ini_inline_comment_prefixes = inline_comment_prefixes;
    ini_use_stack = true;
    ini_max_line = CONFIG_LINE_MAX + 3; /* '\r', '\n' and '\0', as ini.h says */
    ini_allow_realloc = false;
    ini_stop_on_first_error = false;
    ini_allow_no_value = false;
}

static int source_getc(struct parser *p)
{
    int c;

    if (p->fp == NULL)
        return p->text[p->pos] == '\0' ? EOF : (unsigned char)p->text[p->pos++];
    c = getc(p->fp);
    if (c == EOF && ferror(p->fp) && p->read_errno == 0)
        p->read_errno = errno != 0 ? errno : EIO;
    return c;
}

static char *rstrip(char *s)
{
    size_t n = strlen(s);

    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static char *lskip(char *s)
{
    while (*s != '\0' && isspace((unsigned char)*s))
        s++;
    return s;
}

/* inih's find_chars_or_comment(): the first of chars, an inline comment, or the end. */
static char *scan_to(char *s, const char *chars)
{
    bool was_space = false;

    while (*s != '\0' && strchr(chars, *s) == NULL &&
           !(was_space && strchr(COMMENT_PREFIXES, *s) != NULL)) {
        was_space = isspace((unsigned char)*s);
        s++;
    }
    return s;
}

static void section_header(struct parser *p, char *name)
{
    char list[128];

    if (config_section_known(name)) {
        p->section = SECTION_KNOWN;
        return;
    }
    p->section = SECTION_BAD;
    config_fmt_sections(list, sizeof(list));
    errs_add(p->errs, p->lineno, name, "", "unknown section (expected one of %s)", list);
}

/*
 * Looks at one line as inih will read it. Returns where it starts, to be
 * handed to inih, or NULL after reporting a syntax error (inih then gets a
 * blank line, so that each error is reported once, here, with its line).
 */
static char *line_check(struct parser *p, char *line)
{
    char *s = line, *end;

    if (p->lineno == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0)
        s += 3;
    s = lskip(rstrip(s));
    if (*s == '\0' || strchr(COMMENT_PREFIXES, *s) != NULL)
        return s;
    if (*s == '[') {
        end = scan_to(s + 1, "]");
        if (*end != ']') {
            p->section = SECTION_BAD;
            errs_add(p->errs, p->lineno, "", "", "expected \"[section]\": no closing ']'");
            return NULL;
        }
        *end = '\0';
        section_header(p, s + 1);
        *end = ']';
        return s;
    }
    end = scan_to(s, "=:");
    if (*end != '=' && *end != ':') {
        errs_add(p->errs, p->lineno, "", "",
                 "expected \"key = value\", \"[section]\" or a comment (; or #)");
        return NULL;
    }
    return s;
}

/* libinih's reader (an fgets()): one whole line per call, counted. */
static char *ini_read_line(char *str, int num, void *stream)
{
    struct parser *p = stream;
    size_t len = 0, n;
    bool too_long = false, has_nul = false;
    char *start = NULL;
    int c;

    assert(num >= 2);
    c = source_getc(p);
    if (c == EOF)
        return NULL;
    for (; c != EOF && c != '\n'; c = source_getc(p)) {
        if (c == '\0')
            has_nul = true;
        if (len < CONFIG_LINE_MAX)
            p->line[len++] = (char)c;
        else
            too_long = true;
    }
    p->line[len] = '\0';
    p->lineno++;
    if (too_long || len + 2 > (size_t)num) {
        if (*lskip(p->line) == '[')
            p->section = SECTION_BAD;
        errs_add(p->errs, p->lineno, "", "", "line too long (more than %d characters)",
                 CONFIG_LINE_MAX);
    } else if (has_nul) {
        errs_add(p->errs, p->lineno, "", "", "line holds a NUL byte");
    } else {
        start = line_check(p, p->line);
    }
    if (start == NULL)
        start = "";
    n = strlen(start);
    memcpy(str, start, n);
    str[n] = '\n';
    str[n + 1] = '\0';
    return str;
}

/* libinih's handler: one key = value. Always 1: our errors are in p->errs. */
static int ini_on_key(void *user, const char *section, const char *name, const char *value)
{
    struct parser *p = user;
    struct origin o = {.line = p->lineno, .seq = 0, .env = NULL};
    char list[160];
    int idx;

    if (p->section == SECTION_BAD)
        return 1;
    if (p->section == SECTION_NONE) {
        errs_add(p->errs, p->lineno, "", name, "key before any [section]");
        return 1;
    }
    if (name[0] == '\0') {
        errs_add(p->errs, p->lineno, section, "", "expected a key name before '='");
        return 1;
    }
    idx = config_key_find(section, name);
    if (idx < 0) {
        config_fmt_section_keys(list, sizeof(list), section);
        errs_add(p->errs, p->lineno, section, name, "unknown key (expected one of %s)", list);
        return 1;
    }
    if (p->keys[idx].origin.line != 0) {
        errs_add(p->errs, p->lineno, section, name, "duplicate key (first set on line %u)",
                 p->keys[idx].origin.line);
        return 1;
    }
    o.seq = ++p->seq;
    key_set(p, idx, &o, value);
    return 1;
}

static void parse_file(struct parser *p)
{
    int rc = pthread_once(&ini_once, ini_setup);

    if (rc != 0) {
        errs_add(p->errs, 0, "", "", "cannot set up the INI parser (error %d)", rc);
        if (p->rc == 0)
            p->rc = -rc;
        return;
    }
    rc = ini_parse_stream(ini_read_line, p, ini_on_key, p);
    if (rc == -2) {
        parser_nomem(p);
    } else if (rc > 0 && !errs_have_line(p->errs, (unsigned)rc)) {
        /* inih saw what line_check() did not: still an error of that line */
        errs_add(p->errs, (unsigned)rc, "", "", "syntax error");
    } else if (rc < 0 && p->rc == 0) {
        errs_add(p->errs, 0, "", "", "cannot parse (libinih error %d)", rc);
        p->rc = -EIO;
    }
}
/* ---- the environment ---------------------------------------------------------- */

/* Lower-cased copy of src[0..len) into dst[cap]; -EINVAL when empty or too long. */
static int lower_copy(char *dst, size_t cap, const char *src, size_t len)
{
    if (len == 0 || len >= cap)
        return -EINVAL;
    for (size_t i = 0; i < len; i++)
        dst[i] = (char)tolower((unsigned char)src[i]);
    dst[len] = '\0';
    return 0;
}

/* ORDERD_SERVER_MAX_BODY_BYTES -> index of [server] max_body_bytes, or -1. */
static int env_key_find(const char *name, size_t len)
{
    char section[16], key[48];
    const char *sep = memchr(name, '_', len);

    if (sep == NULL)
        return -1;
    if (lower_copy(section, sizeof(section), name, (size_t)(sep - name)) != 0 ||
        lower_copy(key, sizeof(key), sep + 1, len - (size_t)(sep - name) - 1) != 0)
        return -1;
    return config_key_find(section, key);
}

static void env_apply_one(struct parser *p, const char *entry)
{
    const char *eq = strchr(entry, '=');
    const char *name = entry + strlen(ENV_PREFIX), *v;
    struct origin o = {.line = 0, .seq = ++p->seq, .env = entry};
    size_t vlen;
    int idx;

    assert(eq != NULL);
    idx = env_key_find(name, (size_t)(eq - name));
    if (idx < 0) {
        config_report(p, &o, NULL,
                      "no such setting (expected ORDERD_<SECTION>_<KEY> for a key of the file, "
                      "e.g. ORDERD_SERVER_LISTEN)");
        return;
    }
    /* surrounding blanks are dropped, as in the file */
    v = eq + 1;
    while (*v != '\0' && isspace((unsigned char)*v))
        v++;
    vlen = strlen(v);
    while (vlen > 0 && isspace((unsigned char)v[vlen - 1]))
        vlen--;
    if (vlen > CONFIG_LINE_MAX) {
        config_report(p, &o, &config_key_defs[idx], "value too long (more than %d characters)",
                      CONFIG_LINE_MAX);
        p->keys[idx].bad = true;
        return;
    }
    memcpy(p->line, v, vlen);
    p->line[vlen] = '\0';
    key_set(p, idx, &o, p->line);
    explicit_bzero(p->line, vlen);
}

static void env_apply(struct parser *p, char *const *envp)
{
    if (envp == NULL)
        return;
    for (; *envp != NULL; envp++) {
        if (strncmp(*envp, ENV_PREFIX, strlen(ENV_PREFIX)) != 0 || strchr(*envp, '=') == NULL)
            continue;
        env_apply_one(p, *envp);
    }
}

/* Shared by both loaders: cfg is initialised here, over whatever it held. */
static int load(FILE *fp, const char *text, char *const *envp, struct config *cfg,
                struct config_errors *errs)
{
    struct parser p;
    int rc;

    memset(&p, 0, sizeof(p));
    p.cfg = cfg;
    p.errs = errs;
    p.fp = fp;
    p.text = text;
    rc = config_init(cfg);
    if (rc != 0) {
        errs_add(errs, 0, "", "", "out of memory");
        return rc;
    }
    parse_file(&p);
    if (p.read_errno != 0) {
        char buf[128];
        errs_add(errs, 0, "", "", "cannot read: %s",
                 strerror_r(p.read_errno, buf, sizeof(buf)));
        rc = -p.read_errno;
        goto out;
    }
    if (p.rc == 0)
        env_apply(&p, envp);
    if (p.rc == 0)
        config_cross_check(&p);
    for (size_t i = 0; i < config_keys_count; i++) {
        cfg->origins[i].line = p.keys[i].origin.line;
        cfg->origins[i].env = p.keys[i].origin.env != NULL;
    }
    rc = p.rc != 0 ? p.rc : (errs->count != 0 || errs->dropped != 0) ? -EINVAL : 0;
out:
    explicit_bzero(p.line, sizeof(p.line));
    return rc;
}

int config_load(const char *path, char *const *envp, struct config *cfg,
                struct config_errors *errs)
{
    FILE *fp;
    int rc;

    if (cfg == NULL || errs == NULL)
        return -EINVAL;
    config_errs_reset(errs);
    if (path == NULL) {
        errs_add(errs, 0, "", "", "no config file given");
        return config_init(cfg) == 0 ? -EINVAL : -ENOMEM;
    }
    fp = fopen(path, "re");
    if (fp == NULL) {
        char buf[128];
        rc = -errno;
        errs_add(errs, 0, "", "", "cannot open: %s", strerror_r(-rc, buf, sizeof(buf)));
        return config_init(cfg) == 0 ? rc : -ENOMEM;
    }
    rc = load(fp, NULL, envp, cfg, errs);
    if (fclose(fp) != 0 && rc == 0)
        rc = -EIO; /* read-only stream: cannot really fail */
    return rc;
}

int config_load_string(const char *text, char *const *envp, struct config *cfg,
                       struct config_errors *errs)
{
    if (cfg == NULL || errs == NULL)
        return -EINVAL;
    config_errs_reset(errs);
    if (text == NULL) {
        errs_add(errs, 0, "", "", "no config text given");
        return config_init(cfg) == 0 ? -EINVAL : -ENOMEM;
    }
    return load(NULL, text, envp, cfg, errs);
}

/* snprintf at buf + *used, moving *used on; stops quietly once buf is full. */
__attribute__((format(printf, 4, 5))) static void append(char *buf, size_t size, size_t *used,
                                                         const char *fmt, ...)
{
    va_list ap;
    int w;

    if (*used + 1 >= size)
        return;
    va_start(ap, fmt);
    w = vsnprintf(buf + *used, size - *used, fmt, ap);
    va_end(ap);
    if (w < 0)
        return;
    *used = (size_t)w >= size - *used ? size - 1 : *used + (size_t)w;
}

void config_error_format(const struct config_error *e, const char *path, char *buf, size_t size)
{
    size_t used = 0;

    if (buf == NULL || size == 0)
        return;
    buf[0] = '\0';
    if (e == NULL)
        return;
    if (path == NULL)
        path = "config";
    if (e->line == 0 && e->section[0] == '\0' && e->key[0] != '\0') {
        (void)snprintf(buf, size, "environment: %s: %s", e->key, e->message);
        return;
    }
    if (e->line != 0)
        append(buf, size, &used, "%s:%u: ", path, e->line);
    else
        append(buf, size, &used, "%s: ", path);
    if (e->section[0] != '\0')
        append(buf, size, &used, "[%s]%s", e->section, e->key[0] != '\0' ? " " : ": ");
    if (e->key[0] != '\0')
        append(buf, size, &used, "%s: ", e->key);
    append(buf, size, &used, "%s", e->message);
}

void config_errors_print(const struct config_errors *errs, const char *path, void *stream)
{
    FILE *out = stream;
    /* a path of up to PATH_MAX plus the fields of one error */
    char line[4096 + sizeof(errs->items[0]) + 16];

    if (errs == NULL || out == NULL)
        return;
    if (path == NULL)
        path = "config";
    for (size_t i = 0; i < errs->count && i < CONFIG_ERRORS_MAX; i++) {
        config_error_format(&errs->items[i], path, line, sizeof(line));
        (void)fprintf(out, "%s\n", line);
    }
    if (errs->dropped != 0)
        (void)fprintf(out, "%s: %zu more error%s not shown\n", path, errs->dropped,
                      errs->dropped == 1 ? "" : "s");
}

/* ---- errors about a loaded config ------------------------------------------------ */

void config_key_error(const struct config *cfg, const char *section, const char *key,
                      struct config_errors *errs, const char *fmt, ...)
{
    char msg[sizeof(errs->items[0].message)];
    int idx = config_key_find(section, key);
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (idx < 0 || !cfg->origins[idx].env) {
        errs_add(errs, idx < 0 ? 0 : cfg->origins[idx].line, section, key, "%s", msg);
        return;
    }
    /* as config_report() names a variable: no section, its name as the key */
    char name[sizeof(errs->items[0].key)];
    int n = snprintf(name, sizeof(name), ENV_PREFIX "%s_%s", section, key);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof(name) ? (size_t)n : sizeof(name) - 1;
    for (size_t i = 0; i < len; i++)
        name[i] = (char)toupper((unsigned char)name[i]);
    errs_add(errs, 0, "", name, "%s", msg);
}

