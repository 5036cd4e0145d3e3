"""Runs every query of the Grafana dashboard against a Prometheus (run by
scripts/check-dashboard, with python3's standard library only).

  python3 dashboard.py PROMETHEUS_URL DASHBOARD_JSON RULES_FILE [--timeout SECONDS]
                      [--expect EXPR ...]

Each panel's targets are expanded as Grafana would with the dashboard's defaults (the
textbox variables' values, "All" for multi-value variables, $__rate_interval as
RATE_INTERVAL) and sent to /api/v1/query. A query passes when it returns at least one
series with a number (NaN, what histogram_quantile gives for no observations, is what
Grafana draws as nothing). The template variables' queries must find values too, and
every rule of RULES_FILE must be loaded and evaluated without error.

Each --expect EXPR (e.g. what the caller's scenario must have caused: a retry, a dead
letter) must return a series too. Queries are asked again until all pass or SECONDS
have gone (the jobs take a while to go through); then every query that still shows
nothing is named, and the exit status is 1.
"""

import argparse
import json
import math
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

RATE_INTERVAL = "1m"


def get(base, path, params=None):
    url = base.rstrip("/") + path
    if params:
        url += "?" + urllib.parse.urlencode(params, doseq=True)
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def panels(items):
    for p in items:
        yield p
        yield from panels(p.get("panels", []))


def variables(dashboard):
    values = {"__rate_interval": RATE_INTERVAL, "__interval": "15s", "__range": "1h"}
    queries = []
    for v in dashboard.get("templating", {}).get("list", []):
        if v["type"] == "textbox":
            values[v["name"]] = v.get("current", {}).get("value") or v.get("query", "")
        elif v["type"] == "query":
            values[v["name"]] = v.get("allValue") or ".*"
            q = v.get("query")
            queries.append((v["name"], q.get("query") if isinstance(q, dict) else q))
        elif v["type"] == "datasource":
            pass
        else:
            sys.exit(f"check-dashboard: variable {v['name']} of type {v['type']} not handled")
    return values, queries


def expand(expr, values):
    def sub(m):
        name = m.group(1) or m.group(2)
        if name not in values:
            sys.exit(f"check-dashboard: unknown variable ${name} in {expr}")
        return values[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", sub, expr)


def has_number(result):
    for series in result:
        value = series.get("value")
        if value is not None and not math.isnan(float(value[1])):
            return True
    return False


def check_query(base, expr):
    """None when the query returns a number, else why not."""
    try:
        answer = get(base, "/api/v1/query", {"query": expr})
    except urllib.error.HTTPError as e:
        return f"error: {json.load(e).get('error', e)}"
    data = answer["data"]
    if data["resultType"] != "vector":
        return f"a {data['resultType']}, not a vector"
    if not data["result"]:
        return "no series"
    if not has_number(data["result"]):
        return "only NaN (no observations)"
    return None


def label_values(base, query):
    m = re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\s*\)\s*", query)
    if not m:
        sys.exit(f"check-dashboard: variable query {query} not handled")
    match, label = m.groups()
    return get(base, f"/api/v1/label/{label}/values", {"match[]": match})["data"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("prometheus")
    parser.add_argument("dashboard")
    parser.add_argument("rules")
    parser.add_argument("--timeout", type=float, default=90)
    parser.add_argument("--expect", action="append", default=[])
    args = parser.parse_args()
    base, dashboard_file, rules_file, timeout = (
        args.prometheus,
        args.dashboard,
        args.rules,
        args.timeout,
    )
    with open(dashboard_file) as f:
        dashboard = json.load(f)
    values, var_queries = variables(dashboard)

    checks = []  # (what, expr)
    for p in panels(dashboard["panels"]):
        for t in p.get("targets", []):
            if "expr" in t:
                what = f"panel {p.get('id')} \"{p.get('title')}\" {t.get('refId')}"
                checks.append((what, expand(t["expr"], values)))
    panel_checks = len(checks)
    for expr in args.expect:
        checks.append((f"expected {expr}", expr))

    deadline = time.monotonic() + timeout
    pending = dict(checks)
    why = {}
    while True:
        for what, expr in list(pending.items()):
            reason = check_query(base, expr)
            if reason is None:
                del pending[what]
            else:
                why[what] = reason
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(2)

    failures = 0
    for what, expr in checks:
        if what in pending:
            failures += 1
            print(f"check-dashboard: NO DATA {what}: {why[what]}\n    {expr}", file=sys.stderr)
        else:
            print(f"check-dashboard: ok {what}")

    for name, query in var_queries:
        found = label_values(base, query)
        if found:
            print(f"check-dashboard: ok variable ${name} ({query}): {', '.join(found)}")
        else:
            failures += 1
            print(f"check-dashboard: NO DATA variable ${name}: {query}", file=sys.stderr)

    groups = get(base, "/api/v1/rules")["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    with open(rules_file) as f:
        expected = len(re.findall(r"^\s*- alert:", f.read(), re.M))
    bad = [r for r in rules if r.get("health") != "ok"]
    for r in bad:
        failures += 1
        print(
            f"check-dashboard: rule {r['name']} is {r.get('health')}: {r.get('lastError')}",
            file=sys.stderr,
        )
    if len(rules) != expected:
        failures += 1
        print(
            f"check-dashboard: Prometheus loaded {len(rules)} rules, {rules_file} has "
            f"{expected}",
            file=sys.stderr,
        )
    active = [f"{r['name']} ({r['state']})" for r in rules if r.get("state") != "inactive"]
    print(
        f"check-dashboard: {len(rules)} rules evaluated without error"
        + (f"; active now: {', '.join(active)}" if active else "")
    )

    if failures:
        print(f"check-dashboard: {failures} check(s) found nothing or failed", file=sys.stderr)
        sys.exit(1)
    print(
        f"check-dashboard: all {panel_checks} panel queries return data, and the "
        f"{len(args.expect)} expected series are there"
    )


if __name__ == "__main__":
    main()
