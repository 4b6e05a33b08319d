#!/usr/bin/env python3
"""Checks that the promtool unit tests cover the rule file, and that runbooks exist.

  rules_coverage.py RULES TESTS OPERATIONS_MD

- every recording rule is the expression of at least one promql_expr_test;
- every alert has an alert_rule_test that expects it to fire and one that expects it silent;
- every alert has a runbook_url `docs/operations.md#ANCHOR`, and OPERATIONS_MD has a heading
  whose GitHub anchor is ANCHOR; every alert has a severity label and a summary.
Prints one line per finding and a `N passed, N failed` total; exits 1 on any failure.
"""
import re
import sys

import yaml


def anchors(markdown):
    """GitHub-style anchors of the headings of a Markdown file."""
    out = set()
    for line in markdown.splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            text = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
            out.add(text.replace(" ", "-"))
    return out


def main(rules_path, tests_path, ops_path):
    rules = yaml.safe_load(open(rules_path, encoding="utf-8"))
    tests = yaml.safe_load(open(tests_path, encoding="utf-8"))
    known = anchors(open(ops_path, encoding="utf-8").read())
    records, alerts = [], []
    for g in rules["groups"]:
        for r in g["rules"]:
            (records if "record" in r else alerts).append(r)
    tested_exprs = set()
    firing, silent = set(), set()
    for t in tests.get("tests", []):
        for e in t.get("promql_expr_test", []) or []:
            tested_exprs.add(e["expr"].strip())
        for a in t.get("alert_rule_test", []) or []:
            (firing if a.get("exp_alerts") else silent).add(a["alertname"])
    ok = failed = 0

    def check(cond, what):
        nonlocal ok, failed
        if cond:
            ok += 1
        else:
            failed += 1
            print(f"FAIL: {what}")

    for r in records:
        check(r["record"] in tested_exprs, f"recording rule {r['record']} has no promql_expr_test")
    for a in alerts:
        name = a["alert"]
        check(name in firing, f"alert {name} has no test where it fires")
        check(name in silent, f"alert {name} has no test where it stays silent")
        check(a.get("labels", {}).get("severity") in ("warning", "critical"),
              f"alert {name} has no severity label (warning or critical)")
        check(bool(a.get("annotations", {}).get("summary")), f"alert {name} has no summary")
        url = a.get("annotations", {}).get("runbook_url", "")
        m = re.fullmatch(r"docs/operations\.md#([\w-]+)", url)
        check(m is not None, f"alert {name}: runbook_url {url!r} is not docs/operations.md#ANCHOR")
        if m:
            check(m.group(1) in known, f"alert {name}: {ops_path} has no heading for #{m.group(1)}")
    print(f"rules coverage: {len(records)} recording rules, {len(alerts)} alerts")
    print(f"{ok} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
