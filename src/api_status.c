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
 * Its "Dead letters" section is a console over the /admin/dlq endpoints
 * (src/api_admin.c): a page of dead letters (GET /admin/dlq, paged by
 * next_cursor, a stack of cursors for Previous), Redrive and Delete per row,
 * Redrive all. With keys configured it needs an admin key typed into the
 * page: the script keeps it in a closure variable and sends it as a Bearer
 * header; never in storage, a cookie or the URL, forgotten on reload. It
 * learns whether a key is needed from one GET /admin/dlq without a key at
 * load (200: no keys_file, the console works keyless; 401: it asks). Every
 * value goes into the DOM as textContent. It lists again when status.json
 * shows the dead-letter queue moved (dlq_depth or dead_lettered changed).
 * Tested in headless Chromium by tests/browser/run.sh.
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

/* clang-format off */
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
    "main { max-width: 1400px; }\n" \
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
    "[hidden] { display: none !important; }\n" \
    ".panel { margin: 0 1.5rem; background: var(--card); border: 1px solid var(--line);\n" \
    "         border-radius: 8px; padding: .75rem 1rem; }\n" \
    ".count { text-transform: none; letter-spacing: 0; font-weight: 400; }\n" \
    ".row { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem .75rem; }\n" \
    ".row .grow { flex: 1; }\n" \
    "input, select, button { font: inherit; font-size: .9rem; color: var(--fg); background: var(--bg);\n" \
    "                        border: 1px solid var(--line); border-radius: 6px; padding: .3rem .6rem; }\n" \
    "input { width: 18rem; max-width: 100%; }\n" \
    "button { background: var(--card); cursor: pointer; }\n" \
    "button:hover:enabled { border-color: var(--muted); }\n" \
    "button:disabled { opacity: .45; cursor: default; }\n" \
    "button.primary { background: var(--rx); border-color: var(--rx); color: #fff; }\n" \
    "button.danger { color: var(--bad); }\n" \
    ".muted { color: var(--muted); font-size: .85rem; }\n" \
    ".msg { margin: .6rem 0; }\n" \
    ".msg:empty { display: none; }\n" \
    ".msg.ok { color: var(--ok); } .msg.bad { color: var(--bad); } .msg.info { color: var(--muted); }\n" \
    ".note { margin: .6rem 0; color: var(--warn); font-size: .85rem; }\n" \
    "#dlq-list { margin-top: .6rem; }\n" \
    ".scroll { overflow-x: auto; margin-top: .6rem; }\n" \
    "table { width: 100%; border-collapse: collapse; font-size: .875rem; }\n" \
    "th { text-align: left; font-weight: 600; color: var(--muted); font-size: .8rem;\n" \
    "     border-bottom: 1px solid var(--line); padding: .35rem .5rem; white-space: nowrap; }\n" \
    "td { border-bottom: 1px solid var(--line); padding: .35rem .5rem; vertical-align: top; }\n" \
    "tbody tr:hover { background: var(--bg); }\n" \
    ".loading tbody { opacity: .5; }\n" \
    ".n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }\n" \
    ".id { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .8rem;\n" \
    "      white-space: nowrap; }\n" \
    ".cust { min-width: 9rem; max-width: 16rem; overflow-wrap: anywhere; }\n" \
    ".when { white-space: nowrap; font-variant-numeric: tabular-nums; }\n" \
    "/* the error column takes what the others leave, its text cut to that width */\n" \
    ".err { width: 100%; max-width: 0; min-width: 12rem; }\n" \
    ".err summary { cursor: pointer; overflow: hidden; text-overflow: ellipsis; white-space: nowrap;\n" \
    "               list-style: none; }\n" \
    ".err summary::-webkit-details-marker { display: none; }\n" \
    ".err summary::before { content: \"\\25B8  \"; color: var(--muted); }\n" \
    ".err details[open] summary { white-space: pre-wrap; overflow-wrap: anywhere; }\n" \
    ".err details[open] summary::before { content: \"\\25BE  \"; }\n" \
    ".act { white-space: nowrap; text-align: right; }\n" \
    ".act button { padding: .15rem .5rem; font-size: .8rem; margin-left: .25rem; }\n" \
    ".pager { margin-top: .6rem; }\n" \
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
    "<h2 id=\"dlq-title\">Dead letters <span class=\"count\" id=\"dlq-count\"></span></h2>\n" \
    "<section class=\"panel\" aria-labelledby=\"dlq-title\">\n" \
    "<div class=\"row\">\n" \
    "  <label for=\"dlq-key\">Admin key</label>\n" \
    "  <input id=\"dlq-key\" type=\"password\" autocomplete=\"off\" spellcheck=\"false\"\n" \
    "         autocapitalize=\"off\" placeholder=\"a key with the admin scope\">\n" \
    "  <button type=\"button\" class=\"primary\" id=\"dlq-use\">Use key</button>\n" \
    "  <span class=\"muted\" id=\"dlq-held\" hidden>held in this tab&rsquo;s memory only</span>\n" \
    "  <button type=\"button\" id=\"dlq-forget\" hidden>Forget key</button>\n" \
    "</div>\n" \
    "<p class=\"note\" id=\"dlq-note\" hidden></p>\n" \
    "<p class=\"msg info\" id=\"dlq-msg\" role=\"status\" aria-live=\"polite\">Loading&hellip;</p>\n" \
    "<div id=\"dlq-list\" hidden>\n" \
    "<div class=\"row\">\n" \
    "  <button type=\"button\" id=\"dlq-refresh\">Refresh</button>\n" \
    "  <label class=\"muted\">Rows <select id=\"dlq-size\">\n" \
    "    <option>10</option><option selected>25</option><option>50</option><option>100</option>\n" \
    "  </select></label>\n" \
    "  <span class=\"grow\"></span>\n" \
    "  <button type=\"button\" class=\"danger\" id=\"dlq-redrive-all\">Redrive all&hellip;</button>\n" \
    "</div>\n" \
    "<p id=\"dlq-empty\" hidden>The dead-letter queue is empty.</p>\n" \
    "<div class=\"scroll\" id=\"dlq-table\">\n" \
    "<table>\n" \
    "<thead><tr><th>Order</th><th>Customer</th><th class=\"n\">Attempts</th><th class=\"n\">Age</th>\n" \
    "<th>Last error</th><th>Dead-lettered</th><th></th></tr></thead>\n" \
    "<tbody id=\"dlq-rows\"></tbody>\n" \
    "</table>\n" \
    "</div>\n" \
    "<div class=\"row pager\" id=\"dlq-pager\">\n" \
    "  <button type=\"button\" id=\"dlq-prev\">&lsaquo; Previous</button>\n" \
    "  <span class=\"muted\" id=\"dlq-page\"></span>\n" \
    "  <button type=\"button\" id=\"dlq-next\">Next &rsaquo;</button>\n" \
    "</div>\n" \
    "</div>\n" \
    "</section>\n" \
    "</main>\n" \
    "<footer>Counters count since this process started. Refreshes every 2.5 s from\n" \
    "<a href=\"status.json\">/status.json</a>; history lives in Prometheus\n" \
    "(<a href=\"metrics\">/metrics</a>). Dead letters are read from /admin/dlq with the key typed\n" \
    "above, sent as a Bearer header and never stored.</footer>\n"

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
    "    dlqDepth(d);\n" \
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
    "  // ---- dead letters: /admin/dlq with a key held in this closure only ----\n" \
    "  // The key lives in dlq.key and nowhere else: never in storage, a cookie,\n" \
    "  // the URL or the DOM (the field is emptied once the key is taken).\n" \
    "  var ADMIN_TIMEOUT_MS = 15000, REDRIVE_ALL_TIMEOUT_MS = 120000;\n" \
    "  var dlq = { key: null, auth: 'unknown', cursor: null, stack: [], next: null, gen: 0,\n" \
    "              acting: false, open: false, shown: '', depth: null, mark: '', skew: 0 };\n" \
    "  function say(text, cls) {\n" \
    "    var m = el('dlq-msg');\n" \
    "    m.textContent = text;\n" \
    "    m.className = 'msg' + (cls ? ' ' + cls : '');\n" \
    "  }\n" \
    "  function pad(n) { return (n < 10 ? '0' : '') + n; }\n" \
    "  function stamp(iso) {\n" \
    "    var t = Date.parse(iso), d = new Date(t);\n" \
    "    if (!isFinite(t)) { return '\\u2013'; }\n" \
    "    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' +\n" \
    "      pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());\n" \
    "  }\n" \
    "  function age(ms) {\n" \
    "    var s = Math.max(0, Math.floor(ms / 1000));\n" \
    "    if (s < 60) { return s + ' s'; }\n" \
    "    if (s < 3600) { return Math.floor(s / 60) + ' m'; }\n" \
    "    if (s < 172800) { return Math.floor(s / 3600) + ' h'; }\n" \
    "    return Math.floor(s / 86400) + ' d';\n" \
    "  }\n" \
    "  function ages() {\n" \
    "    var now = Date.now() + dlq.skew;\n" \
    "    Array.prototype.forEach.call(el('dlq-rows').querySelectorAll('td[data-t]'), function (td) {\n" \
    "      td.textContent = age(now - Number(td.getAttribute('data-t')));\n" \
    "    });\n" \
    "  }\n" \
    "  // The server's clock (Date header) for ages, when the browser's is off by more than 2 s.\n" \
    "  function clock(r) {\n" \
    "    var d = Date.parse(r.headers.get('Date') || '');\n" \
    "    if (isFinite(d)) {\n" \
    "      var off = d - Date.now();\n" \
    "      dlq.skew = Math.abs(off) > 2000 ? off : 0;\n" \
    "    }\n" \
    "  }\n" \
    "  function why(status, detail, r) {\n" \
    "    if (status === 401) { return 'the key was refused (401)'; }\n" \
    "    if (status === 403) { return 'the key lacks the admin scope (403)'; }\n" \
    "    if (status === 404) {\n" \
    "      return 'no longer in the dead-letter queue (404): redriven or deleted meanwhile';\n" \
    "    }\n" \
    "    if (status === 429) {\n" \
    "      return 'rate limited (429), retry in ' + (r.headers.get('Retry-After') || 'a few') + ' s';\n" \
    "    }\n" \
    "    if (status === 503) {\n" \
    "      return /shutting down/.test(detail) ? 'orderd is shutting down (503), retry later' :\n" \
    "        'storage unavailable, retry (503)';\n" \
    "    }\n" \
    "    return 'HTTP ' + status + (detail ? ': ' + detail : '');\n" \
    "  }\n" \
    "  // One admin request; resolves to the JSON body (null for 204), rejects with\n" \
    "  // an Error whose message is for the status line and whose status is the HTTP\n" \
    "  // status (0: no answer).\n" \
    "  function admin(method, path, timeout) {\n" \
    "    var ctl = typeof AbortController === 'function' ? new AbortController() : null;\n" \
    "    var ms = timeout || ADMIN_TIMEOUT_MS;\n" \
    "    var timer = ctl ? setTimeout(function () { ctl.abort(); }, ms) : null;\n" \
    "    var headers = {};\n" \
    "    if (dlq.key !== null) { headers.Authorization = 'Bearer ' + dlq.key; }\n" \
    "    function done(v) { if (timer) { clearTimeout(timer); } return v; }\n" \
    "    function failed(status, text) { var e = new Error(text); e.status = status; throw e; }\n" \
    "    return fetch(path, { method: method, headers: headers, cache: 'no-store',\n" \
    "                         signal: ctl ? ctl.signal : undefined })\n" \
    "      .then(function (r) {\n" \
    "        clock(r);\n" \
    "        if (r.status === 204) { return null; }\n" \
    "        if (r.ok) { return r.json(); }\n" \
    "        return r.text().then(function (t) {\n" \
    "          var p = null;\n" \
    "          try { p = JSON.parse(t); } catch (e) { p = null; }\n" \
    "          failed(r.status, why(r.status, p && typeof p.detail === 'string' ? p.detail : '', r));\n" \
    "        });\n" \
    "      }, function (e) {\n" \
    "        failed(0, e && e.name === 'AbortError' ? 'no answer within ' + ms / 1000 + ' s' :\n" \
    "          'orderd unreachable: ' + (e && e.message ? e.message : String(e)));\n" \
    "      })\n" \
    "      .then(done, function (e) { done(); throw e; });\n" \
    "  }\n" \
    "  function keyUi() {\n" \
    "    var held = dlq.key !== null;\n" \
    "    el('dlq-key').hidden = held;\n" \
    "    el('dlq-use').hidden = held;\n" \
    "    el('dlq-held').hidden = !held;\n" \
    "    el('dlq-forget').hidden = !held;\n" \
    "    var note = el('dlq-note');\n" \
    "    note.hidden = dlq.auth !== 'off';\n" \
    "    note.textContent = 'This orderd has no keys_file: /admin needs no key, so anyone who ' +\n" \
    "      'reaches this page can redrive and delete. A key typed here is sent but not checked.';\n" \
    "  }\n" \
    "  function busyUi() {\n" \
    "    var off = dlq.acting;\n" \
    "    Array.prototype.forEach.call(el('dlq-list').querySelectorAll('button'), function (b) {\n" \
    "      b.disabled = off;\n" \
    "    });\n" \
    "    if (!off) {\n" \
    "      el('dlq-prev').disabled = dlq.stack.length === 0;\n" \
    "      el('dlq-next').disabled = dlq.next === null;\n" \
    "    }\n" \
    "  }\n" \
    "  function hide(text, cls) {\n" \
    "    dlq.open = false;\n" \
    "    dlq.shown = '';\n" \
    "    el('dlq-list').hidden = true;\n" \
    "    el('dlq-rows').textContent = '';\n" \
    "    say(text, cls);\n" \
    "    keyUi();\n" \
    "  }\n" \
    "  var ASK = 'Type an admin key (a key with the admin scope in the keys file) to list, ' +\n" \
    "    'redrive and delete dead letters. It is held in this tab\\u2019s memory only: never ' +\n" \
    "    'stored, gone when the tab is closed or reloaded.';\n" \
    "  // 401/403: the key is dropped and asked for again. True when e was one.\n" \
    "  function refused(e, used) {\n" \
    "    if (e.status !== 401 && e.status !== 403) { return false; }\n" \
    "    dlq.key = null;\n" \
    "    dlq.auth = 'on';\n" \
    "    hide(used === null ? ASK : e.message + '. ' + ASK, used === null ? 'info' : 'bad');\n" \
    "    return true;\n" \
    "  }\n" \
    "  function td(tr, text, cls, title) {\n" \
    "    var c = document.createElement('td');\n" \
    "    c.textContent = text;\n" \
    "    if (cls) { c.className = cls; }\n" \
    "    if (title) { c.title = title; }\n" \
    "    tr.appendChild(c);\n" \
    "    return c;\n" \
    "  }\n" \
    "  function button(text, act, cls) {\n" \
    "    var b = document.createElement('button');\n" \
    "    b.type = 'button';\n" \
    "    b.textContent = text;\n" \
    "    b.setAttribute('data-act', act);\n" \
    "    if (cls) { b.className = cls; }\n" \
    "    return b;\n" \
    "  }\n" \
    "  function items(list) {\n" \
    "    if (!Array.isArray(list)) { return ''; }\n" \
    "    return list.map(function (i) {\n" \
    "      return (i && num(i.quantity) ? i.quantity : '?') + ' \\u00d7 ' + (i ? String(i.item) : '?');\n" \
    "    }).join(', ');\n" \
    "  }\n" \
    "  function row(x, open) {\n" \
    "    var id = String(x.order_id), tr = document.createElement('tr');\n" \
    "    tr.setAttribute('data-id', id);\n" \
    "    td(tr, id, 'id', x.trace_id ? 'trace id ' + x.trace_id : '');\n" \
    "    td(tr, String(x.customer_id), 'cust', items(x.items));\n" \
    "    td(tr, count(x.attempts), 'n');\n" \
    "    var created = Date.parse(x.created_at);\n" \
    "    var a = td(tr, '\\u2013', 'n', 'received ' + stamp(x.created_at) + ' (' + x.created_at + ')');\n" \
    "    if (isFinite(created)) { a.setAttribute('data-t', String(created)); }\n" \
    "    var err = td(tr, '', 'err');\n" \
    "    if (typeof x.last_error === 'string' && x.last_error !== '') {\n" \
    "      var d = document.createElement('details'), s = document.createElement('summary');\n" \
    "      s.textContent = x.last_error;\n" \
    "      s.title = x.last_error;\n" \
    "      d.appendChild(s);\n" \
    "      d.open = open.hasOwnProperty(id);\n" \
    "      err.appendChild(d);\n" \
    "    } else {\n" \
    "      err.textContent = '\\u2013';\n" \
    "    }\n" \
    "    td(tr, stamp(x.dead_lettered_at), 'when', x.dead_lettered_at || '');\n" \
    "    var act = td(tr, '', 'act');\n" \
    "    act.appendChild(button('Redrive', 'redrive'));\n" \
    "    act.appendChild(button('Delete', 'delete', 'danger'));\n" \
    "    return tr;\n" \
    "  }\n" \
    "  function render(d) {\n" \
    "    var list = Array.isArray(d.dead_letters) ? d.dead_letters : [];\n" \
    "    dlq.next = typeof d.next_cursor === 'string' ? d.next_cursor : null;\n" \
    "    dlq.open = true;\n" \
    "    el('dlq-list').hidden = false;\n" \
    "    var first = dlq.stack.length * size();\n" \
    "    el('dlq-page').textContent = list.length ? 'page ' + (dlq.stack.length + 1) + ' \\u00b7 ' +\n" \
    "      (first + 1) + '\\u2013' + (first + list.length) : '';\n" \
    "    el('dlq-empty').hidden = list.length > 0;\n" \
    "    el('dlq-table').hidden = list.length === 0;\n" \
    "    el('dlq-pager').hidden = list.length === 0 && dlq.stack.length === 0;\n" \
    "    var sig = JSON.stringify(list);\n" \
    "    if (sig !== dlq.shown) {\n" \
    "      // rebuilt only when the page changed, keeping the errors that were open\n" \
    "      var open = {}, body = el('dlq-rows');\n" \
    "      Array.prototype.forEach.call(body.querySelectorAll('details[open]'), function (o) {\n" \
    "        open[o.closest('tr').getAttribute('data-id')] = true;\n" \
    "      });\n" \
    "      body.textContent = '';\n" \
    "      list.forEach(function (x) { body.appendChild(row(x, open)); });\n" \
    "      dlq.shown = sig;\n" \
    "    }\n" \
    "    ages();\n" \
    "    busyUi();\n" \
    "  }\n" \
    "  function size() { return Number(el('dlq-size').value) || 25; }\n" \
    "  // Loads the current page; a newer load, or a change of key, discards the answer.\n" \
    "  function load(quiet, ok) {\n" \
    "    var gen = ++dlq.gen, used = dlq.key;\n" \
    "    var path = 'admin/dlq?limit=' + size() +\n" \
    "      (dlq.cursor ? '&cursor=' + encodeURIComponent(dlq.cursor) : '');\n" \
    "    if (!quiet) { el('dlq-list').classList.add('loading'); }\n" \
    "    return admin('GET', path).then(function (d) {\n" \
    "      if (gen !== dlq.gen || used !== dlq.key) { return; }\n" \
    "      if (used === null) { dlq.auth = 'off'; }\n" \
    "      var list = d && Array.isArray(d.dead_letters) ? d.dead_letters : [];\n" \
    "      if (list.length === 0 && dlq.stack.length > 0) {\n" \
    "        // this page emptied (its rows were redriven or deleted): the one before\n" \
    "        dlq.cursor = dlq.stack.pop();\n" \
    "        return load(quiet, ok);\n" \
    "      }\n" \
    "      keyUi();\n" \
    "      render(d || {});\n" \
    "      if (ok !== undefined) { say(ok, ok ? 'ok' : ''); }\n" \
    "    }, function (e) {\n" \
    "      if (gen !== dlq.gen || used !== dlq.key) { return; }\n" \
    "      if (!refused(e, used)) { say('Cannot list dead letters: ' + e.message, 'bad'); }\n" \
    "    }).then(function () {\n" \
    "      if (gen === dlq.gen) { el('dlq-list').classList.remove('loading'); }\n" \
    "    });\n" \
    "  }\n" \
    "  function firstPage() {\n" \
    "    dlq.cursor = null;\n" \
    "    dlq.stack = [];\n" \
    "    dlq.next = null;\n" \
    "  }\n" \
    "  function useKey() {\n" \
    "    var input = el('dlq-key'), v = input.value.trim();\n" \
    "    input.value = '';\n" \
    "    if (!/^[\\x21-\\x7e]{1,512}$/.test(v)) {\n" \
    "      say('An API key is 1 to 512 visible ASCII characters, without spaces.', 'bad');\n" \
    "      return;\n" \
    "    }\n" \
    "    dlq.key = v;\n" \
    "    firstPage();\n" \
    "    keyUi();\n" \
    "    say('Checking the key\\u2026', 'info');\n" \
    "    load(false, 'Key accepted.');\n" \
    "  }\n" \
    "  function forget() {\n" \
    "    dlq.key = null;\n" \
    "    dlq.gen++;\n" \
    "    el('dlq-key').value = '';\n" \
    "    firstPage();\n" \
    "    if (dlq.auth === 'off') {\n" \
    "      keyUi();\n" \
    "      load(false, 'Key forgotten.');\n" \
    "    } else {\n" \
    "      hide('Key forgotten. ' + ASK, 'info');\n" \
    "    }\n" \
    "    el('dlq-key').focus();\n" \
    "  }\n" \
    "  // Redrive, delete or redrive all; then the current page again.\n" \
    "  function act(method, path, before, after, timeout) {\n" \
    "    if (dlq.acting) { return; }\n" \
    "    var used = dlq.key;\n" \
    "    dlq.acting = true;\n" \
    "    busyUi();\n" \
    "    say(before, 'info');\n" \
    "    admin(method, path, timeout).then(function (d) {\n" \
    "      say(after(d), 'ok');\n" \
    "    }, function (e) {\n" \
    "      if (!refused(e, used)) { say(before.replace(/\\u2026$/, '') + ' failed: ' + e.message, 'bad'); }\n" \
    "    }).then(function () {\n" \
    "      dlq.acting = false;\n" \
    "      busyUi();\n" \
    "      if (dlq.open) { load(true); }\n" \
    "    });\n" \
    "  }\n" \
    "  el('dlq-rows').addEventListener('click', function (ev) {\n" \
    "    var b = ev.target.closest('button[data-act]');\n" \
    "    if (!b || b.disabled) { return; }\n" \
    "    var id = b.closest('tr').getAttribute('data-id'), path = 'admin/dlq/' + encodeURIComponent(id);\n" \
    "    if (b.getAttribute('data-act') === 'redrive') {\n" \
    "      act('POST', path + '/redrive', 'Redriving order ' + id + '\\u2026', function () {\n" \
    "        return 'Order ' + id + ' redriven: queued again.';\n" \
    "      });\n" \
    "    } else if (confirm('Delete the dead letter of order ' + id + '?\\n\\nIt is never delivered ' +\n" \
    "        'again; the order stays readable with status discarded.')) {\n" \
    "      act('DELETE', path, 'Deleting order ' + id + '\\u2026', function () {\n" \
    "        return 'Order ' + id + ' deleted: discarded.';\n" \
    "      });\n" \
    "    }\n" \
    "  });\n" \
    "  function letters(n) { return n + (n === 1 ? ' dead letter' : ' dead letters'); }\n" \
    "  el('dlq-redrive-all').addEventListener('click', function () {\n" \
    "    // the count as of now, not as of the last poll\n" \
    "    fetch('status.json', { cache: 'no-store' }).then(function (r) {\n" \
    "      return r.ok ? r.json() : null;\n" \
    "    }).catch(function () { return null; }).then(function (d) {\n" \
    "      var n = d && num(d.dlq_depth) ? ' (' + letters(d.dlq_depth) + ' now)' : '';\n" \
    "      if (!confirm('Redrive all dead letters' + n + '?\\n\\nEach goes back to the queue with a ' +\n" \
    "          'fresh receive count.')) { return; }\n" \
    "      act('POST', 'admin/dlq/redrive', 'Redriving all dead letters\\u2026', function (r) {\n" \
    "        firstPage();\n" \
    "        return (r && num(r.redriven) ? letters(r.redriven) : 'All dead letters') +\n" \
    "          ' redriven: queued again.';\n" \
    "      }, REDRIVE_ALL_TIMEOUT_MS);\n" \
    "    });\n" \
    "  });\n" \
    "  el('dlq-use').addEventListener('click', useKey);\n" \
    "  el('dlq-key').addEventListener('keydown', function (ev) {\n" \
    "    if (ev.key === 'Enter') { ev.preventDefault(); useKey(); }\n" \
    "  });\n" \
    "  el('dlq-forget').addEventListener('click', forget);\n" \
    "  el('dlq-refresh').addEventListener('click', function () { load(false, ''); });\n" \
    "  el('dlq-size').addEventListener('change', function () { firstPage(); load(false); });\n" \
    "  el('dlq-next').addEventListener('click', function () {\n" \
    "    if (dlq.next === null) { return; }\n" \
    "    dlq.stack.push(dlq.cursor);\n" \
    "    dlq.cursor = dlq.next;\n" \
    "    load(false, '');\n" \
    "  });\n" \
    "  el('dlq-prev').addEventListener('click', function () {\n" \
    "    if (dlq.stack.length === 0) { return; }\n" \
    "    dlq.cursor = dlq.stack.pop();\n" \
    "    load(false, '');\n" \
    "  });\n" \
    "  // From show(): the depth in the title; the page again when the queue moved:\n" \
    "  // its depth, or the dead-lettered count (one in, one redriven: same depth).\n" \
    "  function dlqDepth(d) {\n" \
    "    var n = d.dlq_depth, mark = n + '/' + d.dead_lettered;\n" \
    "    set('dlq-count', num(n) ? '\\u00b7 ' + n + ' held' : '');\n" \
    "    var moved = num(n) && mark !== dlq.mark;\n" \
    "    dlq.depth = n;\n" \
    "    dlq.mark = mark;\n" \
    "    if (moved && dlq.open && !dlq.acting) { load(true); }\n" \
    "  }\n" \
    "  setInterval(function () {\n" \
    "    ages();\n" \
    "    // no answer yet on whether a key is needed (unreachable, 503): ask again\n" \
    "    if (dlq.auth === 'unknown' && dlq.key === null && !dlq.open) { load(true, ''); }\n" \
    "  }, 5000);\n" \
    "  keyUi();\n" \
    "  load(true, '');\n" \
    "  poll();\n" \
    "}());\n"
/* clang-format on */

static const char status_page[] =
    STATUS_HEAD "<script>" STATUS_SCRIPT "</script>\n</body>\n</html>\n";

static const char csp_fixed[] = "default-src 'none'; style-src 'unsafe-inline'; "
                                "connect-src 'self'; img-src data:; base-uri 'none'; "
                                "form-action 'none'; frame-ancestors 'none'";

/* Standard base64 of n bytes into out (4 * ceil(n / 3) + 1 bytes). */
static void base64(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
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
    http_reply_static(req, 200, "text/html; charset=utf-8", status_page, sizeof(status_page) - 1);
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
