// tests/observability/check.mjs — the JSON and HTML checks of run.sh, in node
// (on every machine that runs the tests; jq is not). Each command prints what
// is wrong on stderr and exits 1, or prints nothing and exits 0.
//
//   node check.mjs dashboard FILE RULES_OUT
//       FILE is an importable Grafana dashboard with the panels the runbook
//       relies on; every PromQL expression in it is written to RULES_OUT as a
//       recording rule so that `promtool check rules RULES_OUT` parses them.
//   node check.mjs status-json FILE [KEY=VALUE ...]
//       FILE is a /status.json body with exactly the documented fields and
//       types; each KEY=VALUE must hold (numbers compared as numbers,
//       KEY>=VALUE also accepted).
//   node check.mjs csp PAGE CSP
//       the Content-Security-Policy CSP allows the one inline script of PAGE
//       by its SHA-256 and nothing else from anywhere.
//   node check.mjs dom FILE [ID=TEXT ...]
//       FILE (chromium --dump-dom) shows TEXT in the element with id ID.
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';

const problems = [];
const problem = (msg) => problems.push(msg);

function dashboard(file, rulesOut) {
  let d;
  try {
    d = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    problem(`${file}: not valid JSON: ${e.message}`);
    return;
  }
  if (typeof d.schemaVersion !== 'number' || d.schemaVersion < 36)
    problem(`schemaVersion ${d.schemaVersion}: want a number >= 36`);
  if (d.id !== null) problem('id must be null in an importable dashboard');
  if (!d.uid || !d.title) problem('uid and title are required');
  const input = (d.__inputs || []).find((i) => i.name === 'DS_PROMETHEUS');
  if (!input || input.type !== 'datasource' || input.pluginId !== 'prometheus')
    problem('__inputs lacks the DS_PROMETHEUS datasource input');

  const panels = [];
  const walk = (list) => {
    for (const p of list || []) {
      panels.push(p);
      walk(p.panels);
    }
  };
  walk(d.panels);
  const ids = new Set();
  const exprs = [];
  for (const p of panels) {
    if (ids.has(p.id)) problem(`panel id ${p.id} used twice`);
    ids.add(p.id);
    const g = p.gridPos || {};
    if (![g.h, g.w, g.x, g.y].every(Number.isInteger) || g.x + g.w > 24)
      problem(`panel "${p.title}": bad gridPos ${JSON.stringify(g)}`);
    if (p.type === 'row') continue;
    if (!p.datasource || p.datasource.uid !== '${DS_PROMETHEUS}')
      problem(`panel "${p.title}": datasource is not \${DS_PROMETHEUS}`);
    if (!(p.targets || []).length) problem(`panel "${p.title}": no query`);
    for (const t of p.targets || []) {
      if (!t.expr) problem(`panel "${p.title}": target ${t.refId} has no expr`);
      else exprs.push({ title: p.title, expr: t.expr });
      if (t.datasource && t.datasource.uid !== '${DS_PROMETHEUS}')
        problem(`panel "${p.title}": target ${t.refId} datasource is not \${DS_PROMETHEUS}`);
    }
  }
  for (const v of (d.templating && d.templating.list) || []) {
    if (v.datasource && v.datasource.uid !== '${DS_PROMETHEUS}')
      problem(`variable ${v.name}: datasource is not \${DS_PROMETHEUS}`);
  }

  // The panels the issue asks for, found by what they query.
  const has = (re) => exprs.some((e) => re.test(e.expr));
  const required = [
    ['received rate', /rate\(orderd_orders_received_total/],
    ['processed rate', /rate\(orderd_orders_processed_total/],
    ['queue depth', /orderd_queue_depth/],
    ['oldest age', /orderd_queue_oldest_age_seconds/],
    ['dead letters', /orderd_dlq_depth/],
    ['HTTP latency p50 by route',
      /histogram_quantile\(0\.5, sum by \(le, route\) \(rate\(orderd_http_request_duration_seconds_bucket/],
    ['HTTP latency p99 by route',
      /histogram_quantile\(0\.99, sum by \(le, route\) \(rate\(orderd_http_request_duration_seconds_bucket/],
    ['5xx error rate', /orderd_http_requests_total\{[^}]*code=~"5\.\."[^}]*\}.*\/.*orderd_http_requests_total/],
    ['fsync p99', /histogram_quantile\(0\.99, sum by \(le\) \(rate\(orderd_storage_sync_duration_seconds_bucket/],
    ['orders per commit', /rate\(orderd_orders_received_total[^)]*\)\)? *\/ *sum\(rate\(orderd_intake_commits_total/],
    ['SQLite WAL size', /orderd_storage_wal_bytes/],
    ['checkpoints by result', /sum by \(result\) \(rate\(orderd_storage_checkpoints_total/],
    ['fulfilment results', /rate\(orderd_fulfilment_results_total/],
    ['fulfilment p99 by kind',
      /histogram_quantile\(0\.99, sum by \(le, kind\) \(rate\(orderd_fulfilment_duration_seconds_bucket/],
    ['fulfilments in flight', /orderd_fulfilment_in_flight/],
  ];
  for (const [what, re] of required) if (!has(re)) problem(`no panel queries the ${what}`);

  // Grafana's variables are not PromQL: give them values promtool accepts.
  const rules = exprs.map((e, i) => {
    const q = e.expr
      .replaceAll('$__rate_interval', '5m')
      .replaceAll('$__interval', '1m')
      .replaceAll('$__range', '1h')
      .replaceAll('$instance', '.+');
    return `      - record: dashboard:expr_${i}\n        expr: ${JSON.stringify(q)}\n`;
  });
  writeFileSync(rulesOut, 'groups:\n  - name: dashboard\n    rules:\n' + rules.join(''));
}

const STATUS_FIELDS = {
  version: 'string',
  uptime_seconds: 'number',
  received: 'number',
  processed: 'number',
  failed: 'number',
  dead_lettered: 'number',
  queue_depth: 'number',
  oldest_age_seconds: 'number',
  dlq_depth: 'number',
  ready: 'boolean',
};

function expectations(args, get) {
  for (const a of args) {
    const m = /^([A-Za-z_-]+)(>=|=)(.*)$/.exec(a);
    if (!m) {
      problem(`bad expectation ${a}`);
      continue;
    }
    const [, key, op, want] = m;
    const got = get(key);
    if (op === '>=') {
      if (!(Number(got) >= Number(want))) problem(`${key} is ${got}, want >= ${want}`);
    } else if (String(got) !== want) {
      problem(`${key} is ${JSON.stringify(got)}, want ${want}`);
    }
  }
}

function statusJson(file, args) {
  let s;
  try {
    s = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    problem(`${file}: not valid JSON: ${e.message}`);
    return;
  }
  for (const [k, type] of Object.entries(STATUS_FIELDS)) {
    if (!(k in s)) problem(`missing field ${k}`);
    else if (typeof s[k] !== type) problem(`${k} is ${JSON.stringify(s[k])}, want a ${type}`);
  }
  for (const k of Object.keys(s)) if (!(k in STATUS_FIELDS)) problem(`unexpected field ${k}`);
  for (const k of ['uptime_seconds', 'received', 'processed', 'failed', 'dead_lettered',
                   'queue_depth', 'dlq_depth'])
    if (typeof s[k] === 'number' && !(Number.isInteger(s[k]) && s[k] >= 0))
      problem(`${k} is ${s[k]}, want a whole number >= 0`);
  expectations(args, (k) => s[k]);
}

function csp(pageFile, policy) {
  const page = readFileSync(pageFile, 'utf8');
  const scripts = [...page.matchAll(/<script([^>]*)>([\s\S]*?)<\/script>/g)];
  if (scripts.length !== 1) problem(`want exactly one <script>, found ${scripts.length}`);
  if (scripts.some((m) => /\bsrc\s*=/.test(m[1]))) problem('a <script> loads an external file');
  if (/\b(?:src|href)\s*=\s*["']?(?:https?:)?\/\//i.test(page)) problem('the page links an external asset');
  if (/<link[^>]+rel=["']?stylesheet/i.test(page)) problem('the page loads a stylesheet file');
  const dirs = Object.fromEntries(policy.split(';').map((d) => d.trim()).filter(Boolean)
    .map((d) => { const [name, ...v] = d.split(/\s+/); return [name, v]; }));
  if (!dirs['default-src'] || !['\'none\'', '\'self\''].includes(dirs['default-src'].join(' ')))
    problem(`default-src is ${dirs['default-src']}, want 'none' or 'self'`);
  if (!dirs['script-src']) {
    problem('no script-src');
  } else if (scripts.length === 1) {
    const want = `'sha256-${createHash('sha256').update(scripts[0][2], 'utf8').digest('base64')}'`;
    if (dirs['script-src'].join(' ') !== want)
      problem(`script-src is ${dirs['script-src'].join(' ')}, want ${want} (the hash of the page's script)`);
  }
  const connect = dirs['connect-src'] || dirs['default-src'] || [];
  if (!connect.includes('\'self\'')) problem('fetch("status.json") is not allowed by connect-src');
}

function dom(file, args) {
  const html = readFileSync(file, 'utf8');
  const text = (id) => {
    const m = new RegExp(`id="${id}"[^>]*>([^<]*)<`).exec(html);
    return m ? m[1].trim() : undefined;
  };
  const cls = (id) => {
    const m = new RegExp(`<[^>]*\\bid="${id}"[^>]*>`).exec(html);
    const c = m && /class="([^"]*)"/.exec(m[0]);
    return c ? c[1] : undefined;
  };
  expectations(args, (k) => (k.endsWith('-class') ? cls(k.slice(0, -6)) : text(k)));
}

const [cmd, ...rest] = process.argv.slice(2);
switch (cmd) {
  case 'dashboard': dashboard(rest[0], rest[1]); break;
  case 'status-json': statusJson(rest[0], rest.slice(1)); break;
  case 'csp': csp(rest[0], rest[1]); break;
  case 'dom': dom(rest[0], rest.slice(1)); break;
  default: problem(`unknown command ${cmd}`);
}
if (problems.length) {
  for (const p of problems) console.error(p);
  process.exit(1);
}
