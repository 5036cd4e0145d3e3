"""Every alert of a rules file has promtool unit tests that fire it and keep it quiet.

  python alert_coverage.py RULES_FILE TEST_FILE

`promtool test rules` checks the cases that exist; this checks that they exist: each
alert of RULES_FILE must be expected to fire (a case with exp_alerts) and expected to
stay quiet (a case with none) somewhere in TEST_FILE. A new alert without tests fails.
"""

import sys

import yaml


def main():
    rules_file, test_file = sys.argv[1], sys.argv[2]
    with open(rules_file) as f:
        rules = yaml.safe_load(f)
    with open(test_file) as f:
        tests = yaml.safe_load(f)
    alerts = [
        r["alert"] for g in rules.get("groups", []) for r in g.get("rules", []) if "alert" in r
    ]
    fired, quiet = set(), set()
    for test in tests.get("tests", []):
        for case in test.get("alert_rule_test", []) or []:
            (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    missing = []
    for alert in alerts:
        if alert not in fired:
            missing.append(f"{alert}: no test case in {test_file} makes it fire")
        if alert not in quiet:
            missing.append(f"{alert}: no test case in {test_file} keeps it quiet")
    unknown = sorted((fired | quiet) - set(alerts))
    for alert in unknown:
        missing.append(f"{alert}: tested in {test_file} but not in {rules_file}")
    for m in missing:
        print(f"check-operations: FAIL {m}", file=sys.stderr)
    if missing:
        sys.exit(1)
    print(
        f"check-operations: ok every alert of {rules_file} ({len(alerts)}) is tested "
        "firing and quiet"
    )


if __name__ == "__main__":
    main()
