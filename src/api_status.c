/*
 * api_status.c — the built-in status page (GET /) and its data
 * (GET /status.json).
 *
 * The page is one HTML document held below as a C string literal: inline CSS
 * and JavaScript, no external asset, no build step. Its script polls
 * status.json every 2.5 s, shows the counters and queue gauges, and derives
 * the received / processed / failed rates from the difference between two
 * polls. The Content-Security-Policy allows exactly that script: its SHA-256
 * is computed once in api_status_init(), so editing STATUS_SCRIPT can never
 * leave a stale hash behind. Edit the page here; keep it free of double
 * quotes in JavaScript (use single quotes) so the literal stays readable.
 *
 * With [auth] protect_status the page is still served to anyone (it holds no
 * data) but status.json needs an API key, which a browser does not send: the
 * page then says so instead of showing numbers.
 *
 * status.json reads the counters (metrics_counter_get) and the store's cheap
 * stats (in-memory depths plus one indexed lookup for the oldest message):
 * no table scan, whatever the queue holds. "ready" is store_writable(), a
 * small write, cached for API_STATUS_READY_CACHE_MS.
 *
 * Threads: api_status_init on the loop thread before the HTTP server starts;
 * the handlers on HTTP threads (the shared state they touch is atomic).
 */
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <jansson.h>
#include <stdio.h>

#include "api_status.h"
#include "ids.h"
#include "log.h"

/* How long a readiness probe answer is reused. */
#define API_STATUS_READY_CACHE_MS 5000

#define STATUS_HEAD \
    "<!DOCTYPE html>\n" \
    "<html lang=\"en\">\n" \
    "<head>\n" \
    "<meta charset=\"utf-8\">\n" \
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n" \
    "<meta name=\"color-scheme\" content=\"light dark\">\n" \
    "<title>orderd status</title>\n" \
    "<link rel=\"icon\" href=\"data:,\">\n" \
    "<style>\n" \
    ":root { --bg: #f6f7f9; --card: #fff; --fg: #1d2330; --muted: #667085; --line: #d9dde5;\n" \
    "        --ok: #1a7f37; --warn: #b54708; --bad: #c4320a; --rx: #2563eb; --px: #16a34a; }\n" \
    "@media (prefers-color-scheme: dark) {\n" \
    "  :root { --bg: #14171c; --card: #1d2128; --fg: #e6e8ec; --muted: #98a2b3; --line: #323844; }\n" \
    "}\n" \
    "* { box-sizing: border-box; }\n" \
    "body { margin: 0; font: 15px/1.4 system-ui, -apple-system, \"Segoe UI\", Roboto, sans-serif;\n" \
    "       background: var(--bg); color: var(--fg); }\n" \
    "header { display: flex; flex-wrap: wrap; align-items: baseline; gap: .5rem 1.5rem;\n" \
    "         padding: 1rem 1.5rem; border-bottom: 1px solid var(--line); }\n" \
    "h1 { font-size: 1.25rem; margin: 0; }\n" \
    "h2 { font-size: .8rem; font-weight: 600; text-transform: uppercase; letter-spacing: .05em;\n" \
    "     color: var(--muted); margin: 1.25rem 1.5rem .5rem; }\n" \
    ".meta { color: var(--muted); font-size: .9rem; }\n" \
    "#conn::before { content: \"\\25CF  \"; }\n" \
    "#conn.live { color: var(--ok); }\n" \
    "#conn.down { color: var(--bad); }\n" \
    "main { max-width: 1100px; }\n" \
    ".grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr));\n" \
    "        gap: .75rem; margin: 0 1.5rem; }\n" \
    ".card { background: var(--card); border: 1px solid var(--line); border-radius: 8px;\n" \
    "        padding: .75rem 1rem; }\n" \
    ".label { color: var(--muted); font-size: .85rem; }\n" \
    ".value { font-size: 1.75rem; font-weight: 600; font-variant-numeric: tabular-nums;\n" \
    "         overflow-wrap: anywhere; }\n" \
    ".sub { color: var(--muted); font-size: .85rem; font-variant-numeric: tabular-nums; }\n" \
    ".warn .value { color: var(--warn); }\n" \
    ".bad .value { color: var(--bad); }\n" \
    ".good .value { color: var(--ok); }\n" \
    ".chart { margin: 0 1.5rem; background: var(--card); border: 1px solid var(--line);\n" \
    "         border-radius: 8px; padding: .75rem 1rem; }\n" \
    "canvas { width: 100%; height: 120px; display: block; }\n" \
    ".legend span { margin-right: 1rem; font-size: .85rem; }\n" \
    ".rx { color: var(--rx); } .px { color: var(--px); }\n" \
    "footer { color: var(--muted); font-size: .8rem; margin: 1.5rem; }\n" \
    "</style>\n" \
    "</head>\n" \
    "<body>\n" \
    "<header>\n" \
    "<h1>orderd</h1>\n" \
    "<span class=\"meta\">version <span id=\"version\">&ndash;</span></span>\n" \
    "<span class=\"meta\">up <span id=\"uptime\">&ndash;</span></span>\n" \
    "<span class=\"meta\" id=\"conn\">connecting&hellip;</span>\n" \
    "</header>\n" \
    "<main>\n" \
    "<h2>Orders</h2>\n" \
    "<div class=\"grid\">\n" \
    "<div class=\"card\">\n" \
    "  <div class=\"label\">Received</div>\n" \
    "  <div class=\"value\" id=\"received\">&ndash;</div>\n" \
    "  <div class=\"sub\"><span id=\"received-rate\">&ndash;</span> /s</div>\n" \
    "</div>\n" \
    "<div class=\"card\">\n" \
    "  <div class=\"label\">Processed</div>\n" \
    "  <div class=\"value\" id=\"processed\">&ndash;</div>\n" \
    "  <div class=\"sub\"><span id=\"processed-rate\">&ndash;</span> /s</div>\n" \
    "</div>\n" \
    "<div class=\"card\" id=\"failed-card\">\n" \
    "  <div class=\"label\">Failed attempts</div>\n" \
    "  <div class=\"value\" id=\"failed\">&ndash;</div>\n" \
    "  <div class=\"sub\"><span id=\"failed-rate\">&ndash;</span> /s</div>\n" \
    "</div>\n" \
    "<div class=\"card\" id=\"dead-card\">\n" \
    "  <div class=\"label\">Dead-lettered</div>\n" \
    "  <div class=\"value\" id=\"dead_lettered\">&ndash;</div>\n" \
    "  <div class=\"sub\">since start</div>\n" \
    "</div>\n" \
    "</div>\n" \
    "<h2>Queue</h2>\n" \
    "<div class=\"grid\">\n" \
    "<div class=\"card\">\n" \
    "  <div class=\"label\">Queue depth</div>\n" \
    "  <div class=\"value\" id=\"queue_depth\">&ndash;</div>\n" \
    "  <div class=\"sub\">messages waiting</div>\n" \
    "</div>\n" \
    "<div class=\"card\" id=\"age-card\">\n" \
    "  <div class=\"label\">Oldest message</div>\n" \
    "  <div class=\"value\" id=\"oldest_age\">&ndash;</div>\n" \
    "  <div class=\"sub\">alert at 10 min</div>\n" \
    "</div>\n" \
    "<div class=\"card\" id=\"dlq-card\">\n" \
    "  <div class=\"label\">Dead-letter queue</div>\n" \
    "  <div class=\"value\" id=\"dlq_depth\">&ndash;</div>\n" \
    "  <div class=\"sub\">held for redrive</div>\n" \
    "</div>\n" \
    "<div class=\"card\" id=\"ready-card\">\n" \
    "  <div class=\"label\">Ready</div>\n" \
    "  <div class=\"value\" id=\"ready\">&ndash;</div>\n" \
    "  <div class=\"sub\">database writable</div>\n" \
    "</div>\n" \
    "</div>\n" \
    "<h2>Rate, last <span id=\"window\">&ndash;</span></h2>\n" \
    "<div class=\"chart\">\n" \
    "<div class=\"legend\">\n" \
    "  <span class=\"rx\">&#9632; received /s</span>\n" \
    "  <span class=\"px\">&#9632; processed /s</span>\n" \
    "  <span id=\"peak\" class=\"sub\"></span>\n" \
    "</div>\n" \
    "<canvas id=\"spark\" width=\"1000\" height=\"120\"\n" \
    "        aria-label=\"received and processed per second\"></canvas>\n" \
    "</div>\n" \
    "</main>\n" \
    "<footer>Counters count since this process started. Refreshes every 2.5 s from\n" \
    "<a href=\"status.json\">/status.json</a>; history lives in Prometheus\n" \
    "(<a href=\"metrics\">/metrics</a>).</footer>\n"

#define STATUS_SCRIPT \
    "(function () {\n" \
    "  'use strict';\n" \
    "  var POLL_MS = 2500, TIMEOUT_MS = 2000, KEEP = 120;\n" \
    "  var prev = null, samples = [];\n" \
    "  function el(id) { return document.getElementById(id); }\n" \
    "  function set(id, text) { el(id).textContent = text; }\n" \
    "  function num(v) { return typeof v === 'number' && isFinite(v); }\n" \
    "  function count(v) { return num(v) ? String(v) : 'n/a'; }\n" \
    "  function duration(s) {\n" \
    "    if (!num(s)) { return 'n/a'; }\n" \
    "    if (s < 60) { return s.toFixed(s < 10 ? 1 : 0) + ' s'; }\n" \
    "    var m = Math.floor(s / 60);\n" \
    "    if (m < 60) { return m + ' min ' + Math.floor(s % 60) + ' s'; }\n" \
    "    var h = Math.floor(m / 60);\n" \
    "    if (h < 48) { return h + ' h ' + (m % 60) + ' min'; }\n" \
    "    return Math.floor(h / 24) + ' d ' + (h % 24) + ' h';\n" \
    "  }\n" \
    "  function rate(v) { return num(v) ? (v < 10 ? v.toFixed(2) : v.toFixed(0)) : 'n/a'; }\n" \
    "  function mark(id, cls) {\n" \
    "    el(id).className = 'card' + (cls ? ' ' + cls : '');\n" \
    "  }\n" \
    "  function draw() {\n" \
    "    var c = el('spark'), g = c.getContext('2d');\n" \
    "    if (!g) { return; }\n" \
    "    var w = c.width, h = c.height, peak = 0, i;\n" \
    "    for (i = 0; i < samples.length; i++) {\n" \
    "      peak = Math.max(peak, samples[i].rx, samples[i].px);\n" \
    "    }\n" \
    "    g.clearRect(0, 0, w, h);\n" \
    "    var top = peak > 0 ? peak * 1.1 : 1;\n" \
    "    var step = w / (KEEP - 1);\n" \
    "    var styles = getComputedStyle(document.documentElement);\n" \
    "    [['rx', '--rx'], ['px', '--px']].forEach(function (s) {\n" \
    "      g.beginPath();\n" \
    "      g.lineWidth = 2;\n" \
    "      g.strokeStyle = styles.getPropertyValue(s[1]).trim() || '#888';\n" \
    "      for (i = 0; i < samples.length; i++) {\n" \
    "        var x = w - (samples.length - 1 - i) * step;\n" \
    "        var y = h - 2 - (samples[i][s[0]] / top) * (h - 4);\n" \
    "        if (i === 0) { g.moveTo(x, y); } else { g.lineTo(x, y); }\n" \
    "      }\n" \
    "      g.stroke();\n" \
    "    });\n" \
    "    set('peak', 'peak ' + rate(peak) + ' /s');\n" \
    "    set('window', duration(samples.length * POLL_MS / 1000));\n" \
    "  }\n" \
    "  function show(d, now) {\n" \
    "    set('version', d.version || 'n/a');\n" \
    "    set('uptime', duration(d.uptime_seconds));\n" \
    "    set('received', count(d.received));\n" \
    "    set('processed', count(d.processed));\n" \
    "    set('failed', count(d.failed));\n" \
    "    set('dead_lettered', count(d.dead_lettered));\n" \
    "    set('queue_depth', count(d.queue_depth));\n" \
    "    set('oldest_age', duration(d.oldest_age_seconds));\n" \
    "    set('dlq_depth', count(d.dlq_depth));\n" \
    "    set('ready', d.ready ? 'yes' : 'NO');\n" \
    "    mark('ready-card', d.ready ? 'good' : 'bad');\n" \
    "    var age = d.oldest_age_seconds;\n" \
    "    mark('age-card', age > 600 ? 'bad' : (age > 60 ? 'warn' : ''));\n" \
    "    mark('dlq-card', d.dlq_depth > 0 ? 'warn' : '');\n" \
    "    mark('dead-card', d.dead_lettered > 0 ? 'warn' : '');\n" \
    "    if (prev && now > prev.t && d.uptime_seconds >= prev.d.uptime_seconds) {\n" \
    "      var dt = (now - prev.t) / 1000;\n" \
    "      var rx = Math.max(0, d.received - prev.d.received) / dt;\n" \
    "      var px = Math.max(0, d.processed - prev.d.processed) / dt;\n" \
    "      var fx = Math.max(0, d.failed - prev.d.failed) / dt;\n" \
    "      set('received-rate', rate(rx));\n" \
    "      set('processed-rate', rate(px));\n" \
    "      set('failed-rate', rate(fx));\n" \
    "      mark('failed-card', fx > 0 ? 'warn' : '');\n" \
    "      samples.push({ rx: rx, px: px });\n" \
    "      if (samples.length > KEEP) { samples.shift(); }\n" \
    "      draw();\n" \
    "    }\n" \
    "    prev = { t: now, d: d };\n" \
    "  }\n" \
    "  function down(why) {\n" \
    "    var c = el('conn');\n" \
    "    c.className = 'meta down';\n" \
    "    c.textContent = 'unreachable: ' + why;\n" \
    "    prev = null;\n" \
    "  }\n" \
    "  function poll() {\n" \
    "    var ctl = typeof AbortController === 'function' ? new AbortController() : null;\n" \
    "    var timer = ctl ? setTimeout(function () { ctl.abort(); }, TIMEOUT_MS) : null;\n" \
    "    fetch('status.json', { cache: 'no-store', signal: ctl ? ctl.signal : undefined })\n" \
    "      .then(function (r) {\n" \
    "        if (r.status === 401) { throw new Error('status.json needs an API key'); }\n" \
    "        if (!r.ok) { throw new Error('HTTP ' + r.status); }\n" \
    "        return r.json();\n" \
    "      })\n" \
    "      .then(function (d) {\n" \
    "        show(d, performance.now());\n" \
    "        var c = el('conn');\n" \
    "        c.className = 'meta live';\n" \
    "        c.textContent = 'live, updated ' + new Date().toLocaleTimeString();\n" \
    "      })\n" \
    "      .catch(function (e) { down(e && e.message ? e.message : String(e)); })\n" \
    "      .then(function () {\n" \
    "        if (timer) { clearTimeout(timer); }\n" \
    "        setTimeout(poll, POLL_MS);\n" \
    "      });\n" \
    "  }\n" \
    "  poll();\n" \
    "}());\n"

static const char status_page[] = STATUS_HEAD "<script>" STATUS_SCRIPT "</script>\n"
                                  "</body>\n"
                                  "</html>\n";

static const char csp_fixed[] = "default-src 'none'; style-src 'unsafe-inline'; "
                                "connect-src 'self'; img-src data:; base-uri 'none'; "
                                "form-action 'none'; frame-ancestors 'none'";

/* Standard base64 of n bytes into out (4 * ceil(n / 3) + 1 bytes). */
static void base64(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = digits[(v >> 18) & 63];
        out[o++] = digits[(v >> 12) & 63];
        out[o++] = i + 1 < n ? digits[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? digits[v & 63] : '=';
    }
    out[o] = '\0';
}

void api_status_init(struct api_status *st, struct metrics *metrics, struct store *store)
{
    st->metrics = metrics;
    st->store = store;
    st->started_s = ids_monotonic_seconds();
    atomic_init(&st->ready_checked_ms, 0);
    atomic_init(&st->ready, false);

    static const char script[] = STATUS_SCRIPT;
    unsigned char digest[32];
    char b64[45];
    if (gnutls_hash_fast(GNUTLS_DIG_SHA256, script, sizeof(script) - 1, digest) == 0) {
        base64(digest, sizeof(digest), b64);
        snprintf(st->csp, sizeof(st->csp), "%s; script-src 'sha256-%s'", csp_fixed, b64);
    } else {
        /* the page is static and writes only textContent: inline is still safe */
        log_warn(NULL, "status page: %s: cannot hash the script; CSP allows inline script",
                 __func__);
        snprintf(st->csp, sizeof(st->csp), "%s; script-src 'unsafe-inline'", csp_fixed);
    }
}

void api_status_page(struct http_request *req, void *ctx)
{
    const struct api_status *st = ctx;
    http_reply_header(req, "Content-Security-Policy", st->csp);
    http_reply_header(req, "X-Content-Type-Options", "nosniff");
    http_reply_header(req, "Referrer-Policy", "no-referrer");
    http_reply_static(req, 200, "text/html; charset=utf-8", status_page,
                      sizeof(status_page) - 1);
}

/* store_writable() at most once per API_STATUS_READY_CACHE_MS, whatever the load. */
static bool ready_now(struct api_status *st)
{
    int64_t now = ids_now_ms();
    int64_t checked = atomic_load(&st->ready_checked_ms);
    int64_t age = now - checked;
    if (age >= 0 && age < API_STATUS_READY_CACHE_MS)
        return atomic_load(&st->ready);
    /* one thread probes; the others answer with the previous value meanwhile */
    if (!atomic_compare_exchange_strong(&st->ready_checked_ms, &checked, now))
        return atomic_load(&st->ready);
    bool ok = store_writable(st->store);
    atomic_store(&st->ready, ok);
    return ok;
}

static void set_count(json_t *o, const char *key, uint64_t v)
{
    json_object_set_new(o, key, json_integer((json_int_t)v));
}

/* The fields in the documented order; storage fields null when unreadable. */
void api_status_json(struct http_request *req, void *ctx)
{
    struct api_status *st = ctx;
    json_t *o = json_object();
    if (o == NULL) {
        http_reply_json(req, 500, NULL);
        return;
    }
    double up = ids_monotonic_seconds() - st->started_s;
    json_object_set_new(o, "version", json_string(ORDERD_VERSION));
    set_count(o, "uptime_seconds", up > 0 ? (uint64_t)up : 0);
    set_count(o, "received", metrics_counter_get(st->metrics, METRICS_ORDERS_RECEIVED));
    set_count(o, "processed", metrics_counter_get(st->metrics, METRICS_ORDERS_PROCESSED));
    set_count(o, "failed", metrics_counter_get(st->metrics, METRICS_ORDERS_FAILED));
    set_count(o, "dead_lettered", metrics_counter_get(st->metrics, METRICS_ORDERS_DEAD_LETTERED));

    struct store_stats ss;
    bool have_stats = store_stats(st->store, &ss) == STORE_OK;
    if (have_stats) {
        double age = 0;
        if (ss.oldest_enqueued_at_ms > 0) {
            int64_t ms = ids_now_ms() - ss.oldest_enqueued_at_ms;
            age = ms > 0 ? (double)ms / 1000.0 : 0;
        }
        set_count(o, "queue_depth", ss.queue_depth);
        json_object_set_new(o, "oldest_age_seconds", json_real(age));
        set_count(o, "dlq_depth", ss.dlq_depth);
    } else {
        json_object_set_new(o, "queue_depth", json_null());
        json_object_set_new(o, "oldest_age_seconds", json_null());
        json_object_set_new(o, "dlq_depth", json_null());
    }
    json_object_set_new(o, "ready", json_boolean(have_stats && ready_now(st)));

    /* 15 digits: whole milliseconds print as such (3611.12, not 3611.1199999999999) */
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    json_decref(o);
    http_reply_json(req, 200, text);
}
