#!/usr/bin/env python3
"""tests/package/ci_workflow.py — checks .github/workflows/ci.yml, which
cannot run here: it parses (PyYAML), runs .ci/run in a debian:12 container
on pushes and pull requests with the whole history (the package test
upgrades from a tag), builds the package with `make deb` on a tag v* and
uploads it, and every `make TARGET` it runs is a target of the Makefile.

    tests/package/ci_workflow.py WORKFLOW ROOT

Prints one line per problem and exits 1 if there is any.
"""
import os
import re
import sys

import yaml


def container_image(job):
    c = job.get("container")
    return c.get("image") if isinstance(c, dict) else c


def steps(job):
    return job.get("steps") or []


def runs(job):
    return [s["run"] for s in steps(job) if isinstance(s, dict) and "run" in s]


def uses(job, action):
    return [s for s in steps(job) if isinstance(s, dict)
            and str(s.get("uses", "")).startswith(action + "@")]


def check(wf, root):
    problems = []
    if not isinstance(wf, dict):
        return ["the file is not a YAML mapping"]
    # YAML 1.1 (PyYAML) reads the key `on` as true
    on = wf.get("on", wf.get(True))
    if not isinstance(on, dict):
        return ["no 'on:' triggers"]
    push = on.get("push") or {}
    if not any(str(t).startswith("v") for t in push.get("tags") or []):
        problems.append("on.push.tags does not list the release tags (v*)")
    if "pull_request" not in on:
        problems.append("pull requests are not tested (on.pull_request)")

    jobs = wf.get("jobs") or {}
    test, deb = jobs.get("test"), jobs.get("deb")
    if not isinstance(test, dict) or not isinstance(deb, dict):
        return problems + ["jobs 'test' and 'deb' are both needed"]

    for name, job in (("test", test), ("deb", deb)):
        if container_image(job) != "debian:12":
            problems.append(f"job {name} does not run in a debian:12 container")
        if not uses(job, "actions/checkout"):
            problems.append(f"job {name} does not check the tree out")
    if ".ci/run" not in [r.strip() for r in runs(test)]:
        problems.append("job test does not run .ci/run (what CI runs here)")
    co = uses(test, "actions/checkout")
    if co and str((co[0].get("with") or {}).get("fetch-depth")) != "0":
        problems.append("job test checks out a shallow clone (fetch-depth: 0 keeps the release tags)")

    if "refs/tags/v" not in str(deb.get("if", "")):
        problems.append("job deb does not run on tags only (if: startsWith(github.ref, 'refs/tags/v'))")
    needs = deb.get("needs")
    if "test" not in (needs if isinstance(needs, list) else [needs]):
        problems.append("job deb does not need job test")
    if not any(re.search(r"(^|\s)make deb(\s|$)", r) for r in runs(deb)):
        problems.append("job deb does not run make deb")
    up = uses(deb, "actions/upload-artifact")
    if not up or (up[0].get("with") or {}).get("path") != "build/orderd_*.deb":
        problems.append("job deb does not upload build/orderd_*.deb")

    # a thin call: the make targets named exist, the scripts are executable
    with open(os.path.join(root, "Makefile"), encoding="utf-8") as f:
        targets = set(re.findall(r"^([A-Za-z0-9_.-]+):", f.read(), re.M))
    for name, job in jobs.items():
        for r in runs(job):
            for t in re.findall(r"(?:^|[;&|]\s*|\s)make\s+([A-Za-z0-9_-]+)", r):
                if t not in targets:
                    problems.append(f"job {name} runs 'make {t}': no such Makefile target")
            for p in re.findall(r"(?:^|\s)(\.ci/[A-Za-z0-9_.-]+|build-aux/[A-Za-z0-9_.-]+)", r):
                if not os.access(os.path.join(root, p), os.X_OK):
                    problems.append(f"job {name} runs {p}, which is not an executable file")
    return problems


def main():
    if len(sys.argv) != 3:
        print("usage: ci_workflow.py WORKFLOW ROOT", file=sys.stderr)
        return 2
    try:
        with open(sys.argv[1], encoding="utf-8") as f:
            wf = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        print(f"{sys.argv[1]}: {e}".replace("\n", " "))
        return 1
    problems = check(wf, sys.argv[2])
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
