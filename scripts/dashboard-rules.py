#!/usr/bin/env python3
"""Turns the PromQL of a Grafana dashboard into a Prometheus rule file, so promtool can check it.

    usage: scripts/dashboard-rules.py DASHBOARD.json OUT.yml

Every panel target's `expr` becomes one recording rule, `dashboard:panel_<id>_<refId>`, after the
Grafana variables in it are replaced by values Prometheus accepts:

    $station (any query variable)   its "All" value (allValue, or .* without one)
    $__rate_interval, $__interval   1m
    $__range                        15m (the dashboard's default time range)
    $__interval_ms, $__range_ms ... the same, in milliseconds or seconds

`$var`, `${var}`, `${var:format}` and `[[var]]` are all recognised. Then run
`promtool check rules OUT.yml`; scripts/check-prometheus.sh does both.

Before writing, the dashboard is linted; the script exits with status 1 and writes nothing when:
  - the file is not valid JSON, or has no panels;
  - a panel (other than a row) has no description or no unit (fieldConfig.defaults.unit);
  - a panel id is missing or used twice, or a target has no refId or reuses one in its panel;
  - a target has no expr, or uses a variable the dashboard does not define.

Standard library only.
"""

import json
import re
import sys

# Grafana's built-in interval variables, as values for a 5 s scrape interval and the dashboard's
# default range of 15 minutes.
BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__interval_ms": "60000",
    "__interval_s": "60",
    "__range": "15m",
    "__range_ms": "900000",
    "__range_s": "900",
}

# ${var}, ${var:format}, [[var]], [[var:format]], $var. A name starts with a letter or an
# underscore, so label_replace's $1 is left alone.
VARIABLE = re.compile(
    r"\$\{(?P<braced>[A-Za-z_]\w*)(?::[^}]*)?\}"
    r"|\[\[(?P<bracketed>[A-Za-z_]\w*)(?::[^\]]*)?\]\]"
    r"|\$(?P<plain>[A-Za-z_]\w*)"
)

PANEL_TYPES_WITHOUT_DATA = {"row"}


def fail(errors):
    for error in errors:
        print(f"dashboard-rules: {error}", file=sys.stderr)
    sys.exit(1)


def dashboard_variables(dashboard):
    """Value to substitute for each templating variable of the dashboard."""
    values = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        name = variable.get("name")
        if not name:
            continue
        kind = variable.get("type")
        if kind == "datasource":
            values[name] = variable.get("query", "prometheus")
        elif variable.get("includeAll"):
            values[name] = variable.get("allValue") or ".*"
        else:
            current = variable.get("current", {}).get("value", "")
            if isinstance(current, list):
                current = current[0] if current else ""
            values[name] = current if current else ".*"
    return values


def all_panels(panels):
    """Panels in order, including those nested in (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def substitute(expr, values, where, errors):
    def replace(match):
        name = match.group("braced") or match.group("bracketed") or match.group("plain")
        if name in values:
            return values[name]
        if name in BUILTINS:
            return BUILTINS[name]
        errors.append(f"{where}: unknown variable ${name}")
        return match.group(0)

    return VARIABLE.sub(replace, expr)


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    source, out = argv[1], argv[2]

    try:
        with open(source, encoding="utf-8") as f:
            dashboard = json.load(f)
    except (OSError, ValueError) as e:
        fail([f"{source}: cannot read the dashboard as JSON: {e}"])

    panels = list(all_panels(dashboard.get("panels", [])))
    if not panels:
        fail([f"{source}: no panels"])

    values = dashboard_variables(dashboard)
    errors = []
    rules = []
    ids = set()
    for panel in panels:
        panel_id = panel.get("id")
        title = " ".join(str(panel.get("title", "")).split())
        where = f"panel {panel_id} {title!r}"
        if not isinstance(panel_id, int):
            errors.append(f"{where}: no numeric id")
        elif panel_id in ids:
            errors.append(f"{where}: id used twice")
        ids.add(panel_id)
        if panel.get("type") in PANEL_TYPES_WITHOUT_DATA:
            continue
        if not str(panel.get("description", "")).strip():
            errors.append(f"{where}: no description")
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        if not str(unit or "").strip():
            errors.append(f"{where}: no unit (fieldConfig.defaults.unit)")
        targets = panel.get("targets", [])
        if not targets:
            errors.append(f"{where}: no targets")
        ref_ids = set()
        for target in targets:
            ref_id = target.get("refId")
            target_where = f"{where} target {ref_id}"
            if not ref_id or not re.fullmatch(r"\w+", ref_id):
                errors.append(f"{target_where}: missing or unusable refId")
                continue
            if ref_id in ref_ids:
                errors.append(f"{target_where}: refId used twice")
            ref_ids.add(ref_id)
            expr = str(target.get("expr", "")).strip()
            if not expr:
                errors.append(f"{target_where}: no expr")
                continue
            rules.append(
                (
                    f"dashboard:panel_{panel_id}_{ref_id}",
                    f"panel {panel_id} ({title}), target {ref_id}",
                    substitute(expr, values, target_where, errors),
                )
            )

    if errors:
        fail(errors)

    lines = [
        f"# Generated by scripts/dashboard-rules.py from {source}; do not edit.",
        "# One recording rule per panel target, so that `promtool check rules` parses every query.",
        "groups:",
        "  - name: dashboard",
        "    rules:",
    ]
    for name, comment, expr in rules:
        # A JSON string is a valid YAML double-quoted scalar.
        lines.append(f"      # {comment}")
        lines.append(f"      - record: {name}")
        lines.append(f"        expr: {json.dumps(expr)}")
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"dashboard-rules: {len(rules)} expressions from {len(panels)} panels -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
