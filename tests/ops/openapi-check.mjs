// openapi-check.mjs — checks docs/openapi.yaml against the OpenAPI 3.1
// schema and against the routes the daemon serves.
//
//   node openapi-check.mjs OPENAPI_YAML SRC_DIR NODE_MODULES_DIR
//
// NODE_MODULES_DIR holds `yaml` and `@seriousme/openapi-schema-validator`
// (static.sh installs them under build/). Prints one line per problem and
// exits 1 if there is any; prints a summary and exits 0 otherwise.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [file, srcDir, modules] = process.argv.slice(2);
if (!file || !srcDir || !modules) {
    console.error("usage: openapi-check.mjs OPENAPI_YAML SRC_DIR NODE_MODULES_DIR");
    process.exit(2);
}
const load = (pkg, entry) => import(pathToFileURL(join(modules, pkg, entry)).href);
const YAML = await load("yaml", "dist/index.js");
const { Validator } = await load("@seriousme/openapi-schema-validator", "index.js");

const problems = [];
const problem = (msg) => problems.push(msg);

// 1. It parses, strictly (duplicate keys are errors), as OpenAPI 3.1.
const text = readFileSync(file, "utf8");
const parsed = YAML.parseDocument(text, { uniqueKeys: true, prettyErrors: true });
if (parsed.errors.length > 0) {
    for (const e of parsed.errors) problem(`yaml: ${e.message.split("\n")[0]}`);
    console.log(problems.join("\n"));
    process.exit(1);
}
const doc = parsed.toJS();
if (typeof doc.openapi !== "string" || !/^3\.1\.\d+$/.test(doc.openapi))
    problem(`openapi: is ${JSON.stringify(doc.openapi)}, want 3.1.x`);

// 2. It validates against the OpenAPI 3.1 schema.
const validator = new Validator();
const res = await validator.validate(structuredClone(doc));
if (!res.valid) {
    const errs = Array.isArray(res.errors) ? res.errors : [{ message: String(res.errors) }];
    for (const e of errs.slice(0, 20))
        problem(`schema: ${e.instancePath || "/"}: ${e.message}` +
                (e.params ? ` ${JSON.stringify(e.params)}` : ""));
}

// 3. Every local $ref resolves.
const pointer = (ref) => {
    let node = doc;
    for (const raw of ref.slice(2).split("/")) {
        const key = raw.replace(/~1/g, "/").replace(/~0/g, "~");
        if (node === null || typeof node !== "object" || !(key in node)) return undefined;
        node = node[key];
    }
    return node;
};
const walk = (node, where) => {
    if (Array.isArray(node)) return node.forEach((v, i) => walk(v, `${where}/${i}`));
    if (node === null || typeof node !== "object") return;
    for (const [k, v] of Object.entries(node)) {
        if (k === "$ref" && typeof v === "string") {
            if (!v.startsWith("#/")) problem(`${where}: $ref ${v} is not local`);
            else if (pointer(v) === undefined) problem(`${where}: $ref ${v} does not resolve`);
        } else {
            walk(v, `${where}/${k}`);
        }
    }
};
walk(doc, "");

// 4. House rules: what every response and operation of orderd must say.
const deref = (o) => (o && typeof o.$ref === "string" ? pointer(o.$ref) ?? {} : o ?? {});
const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
const documented = new Set();
const normal = (p) => p.replace(/\{[^}]*\}/g, "{}");
const open = new Set(["/healthz", "/readyz", "/metrics"]);
let operations = 0;
for (const [path, item] of Object.entries(doc.paths ?? {})) {
    for (const m of METHODS) {
        const op = item[m];
        if (!op) continue;
        operations++;
        const name = `${m.toUpperCase()} ${path}`;
        documented.add(`${m.toUpperCase()} ${normal(path)}`);
        if (!op.operationId) problem(`${name}: no operationId`);
        const security = op.security ?? doc.security ?? [];
        const secured = security.some((r) => Object.keys(r).length > 0);
        const codes = Object.keys(op.responses ?? {});
        const need = ["500"];
        if (secured) need.push("401", "403", "429");
        if (!open.has(path)) need.push("503");
        for (const c of need)
            if (!codes.includes(c)) problem(`${name}: no ${c} response`);
        if (!codes.some((c) => /^2\d\d$/.test(c))) problem(`${name}: no 2xx response`);
        for (const [code, r0] of Object.entries(op.responses ?? {})) {
            const r = deref(r0);
            const headers = Object.keys(r.headers ?? {});
            for (const h of ["X-Request-Id", "traceparent"])
                if (!headers.includes(h)) problem(`${name} ${code}: no ${h} header`);
            if (/^[45]/.test(code) && !(r.content && r.content["application/problem+json"]))
                problem(`${name} ${code}: not application/problem+json`);
            if (["503", "429"].includes(code) && !headers.includes("Retry-After"))
                problem(`${name} ${code}: no Retry-After header`);
            if (code === "401" && !headers.includes("WWW-Authenticate"))
                problem(`${name} 401: no WWW-Authenticate header`);
            if (code === "202" && !headers.includes("Location"))
                problem(`${name} 202: no Location header`);
        }
    }
}

// 5. Every route the daemon serves is documented. Routes are the
// {"METHOD", "/pattern", ...} initialisers of struct http_route in src/*.c.
const served = new Set();
const routeRe = /\{\s*"(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)"\s*,\s*"(\/[^"]*)"/g;
for (const f of readdirSync(srcDir).filter((n) => n.endsWith(".c")).sort()) {
    const src = readFileSync(join(srcDir, f), "utf8");
    for (const m of src.matchAll(routeRe)) served.add(`${m[1]} ${normal(m[2])}|${f}`);
}
const servedKeys = new Set([...served].map((s) => s.split("|")[0]));
if (servedKeys.size === 0) problem(`no routes found in ${srcDir}/*.c: has the route table moved?`);
for (const s of [...served].sort()) {
    const [route, f] = s.split("|");
    if (!documented.has(route)) problem(`route ${route} (src/${f}) is not in ${file}`);
}
const notServed = [...documented].filter((d) => !servedKeys.has(d)).sort();

if (problems.length > 0) {
    console.log(problems.join("\n"));
    process.exit(1);
}
console.log(`openapi ${doc.openapi}: valid; ${operations} operations; ` +
            `all ${servedKeys.size} served routes documented` +
            (notServed.length ? `; documented, not served yet: ${notServed.join(", ")}` : ""));
