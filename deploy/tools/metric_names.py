#!/usr/bin/env python3
"""Checks that the dashboard and the rules ask only for metrics the gateway exports.

  metric_names.py SCRAPE DASHBOARD_JSON RULES_YAML

SCRAPE is a /metrics scrape (Prometheus text). Every PromQL expression of the dashboard
(panel targets and template variable queries) and of the rule file is searched for identifiers:
  - `dashpush_...` names must exist in the scrape, as a series or a declared metric family; a
    `_bucket`, `_sum` or `_count` name counts when its base is a declared histogram (a bare
    histogram base name has no series and fails);
  - names with a colon (recording rules, `level:metric:operation`) must be recorded by the rule
    file.
Also checks the dashboard's shape: a `datasource` variable of type prometheus, every panel and
target on `${datasource}`, unique panel ids. Prints a line per finding and `N passed, N failed`.
"""
import json
import re
import sys

import yaml

IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
VARIABLES = re.compile(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*")
DURATIONS = re.compile(r"\[[^\]]*\]")


def scrape_names(text):
    series, histograms, families = set(), set(), set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            families.add(name)
            if kind.strip() == "histogram":
                histograms.add(name)
        elif line and not line.startswith("#"):
            series.add(re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group(0))
    return series, histograms, families


def identifiers(expr):
    expr = STRINGS.sub('""', expr)
    expr = VARIABLES.sub("", expr)
    expr = DURATIONS.sub("", expr)
    return set(IDENT.findall(expr))


def dashboard_exprs(dash):
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((f"panel {p.get('title')!r}", t["expr"]))
            walk(p.get("panels", []))

    walk(dash.get("panels", []))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            if q:
                out.append((f"variable ${v['name']}", q))
    return out


def main(scrape_path, dash_path, rules_path):
    series, histograms, families = scrape_names(open(scrape_path, encoding="utf-8").read())
    dash = json.load(open(dash_path, encoding="utf-8"))
    rules = yaml.safe_load(open(rules_path, encoding="utf-8"))
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    exprs = dashboard_exprs(dash) + [
        (f"rule {r.get('record') or r.get('alert')}", r["expr"])
        for g in rules["groups"] for r in g["rules"]]
    passed = failed = 0

    def check(ok, what):
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += 1
            print(f"FAIL: {what}")

    used = {}
    for where, expr in exprs:
        for name in identifiers(expr):
            if name.startswith("dashpush_") or ":" in name:
                used.setdefault(name, []).append(where)
    for name, wheres in sorted(used.items()):
        if ":" in name:
            ok = name in recorded
            why = "not recorded by the rule file"
        else:
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            ok = name in series or (name in families and name not in histograms) or (
                base != name and base in histograms)
            why = ("a histogram base name (use _bucket, _sum or _count)" if name in histograms
                   else "not exported by the gateway (absent from the scrape)")
        check(ok, f"{name} ({wheres[0]}{' and more' if len(wheres) > 1 else ''}): {why}")
    print(f"names: {len([n for n in used if ':' not in n])} metric names and "
          f"{len([n for n in used if ':' in n])} recording rules in {len(exprs)} expressions")

    # dashboard shape
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource", {})
    check(ds.get("type") == "datasource" and ds.get("query") == "prometheus",
          "dashboard has a `datasource` variable of type datasource, query prometheus")
    ids = []

    def walk(panels):
        for p in panels:
            ids.append(p.get("id"))
            if p.get("type") != "row":
                check(p.get("datasource", {}).get("uid") == "${datasource}",
                      f"panel {p.get('title')!r} uses ${{datasource}}")
                for t in p.get("targets", []):
                    check(t.get("datasource", {}).get("uid") == "${datasource}",
                          f"panel {p.get('title')!r} target {t.get('refId')} uses ${{datasource}}")
            walk(p.get("panels", []))

    walk(dash.get("panels", []))
    check(len(ids) == len(set(ids)), "panel ids are unique")
    check(isinstance(dash.get("schemaVersion"), int) and dash["schemaVersion"] >= 36,
          f"schemaVersion {dash.get('schemaVersion')}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
