#!/usr/bin/env bash
# Checks the monitoring assets against Prometheus' own tools and against the metric catalogue.
#
#   scripts/check-monitoring.sh [SCRAPE]
#
# 1. promtool check rules deploy/monitoring/rules.yml
# 2. every metric name the rules and the dashboard use is in docs/metrics.md (or is a histogram's
#    _bucket/_sum/_count, a recording rule defined in rules.yml, or Prometheus' `up`), with label
#    names the catalogue gives that metric and, where the catalogue lists them, label values it
#    lists; every alert has a severity (page, ticket or info), a summary, a description and a
#    runbook_url naming a section of docs/runbook.md; every alert has a unit test where it fires
#    and one where it does not
# 3. promtool test rules deploy/monitoring/rules.test.yml
# 4. every query of deploy/monitoring/dashboard.json, its Grafana variables replaced by sample
#    values, parsed by promtool (as recording rules of a temporary rule file)
# 5. with SCRAPE (a saved `curl -s localhost:9090/metrics`): promtool check metrics on it, and
#    every metric the rules and the dashboard use present in it (the SLO buckets included),
#    but the platform series of docs/metrics.md (Kubernetes exports those)
#
# Every check runs even when an earlier one failed, so one run lists every problem.
# Installs promtool (Debian's `prometheus` package) when it is missing, as root or with sudo.
# Exits non-zero, saying why, on any failure; the last line sums up what was checked.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

RULES=deploy/monitoring/rules.yml
TESTS=deploy/monitoring/rules.test.yml
DASHBOARD=deploy/monitoring/dashboard.json
CATALOGUE=docs/metrics.md
RUNBOOK=docs/runbook.md
SCRAPE=${1:-}

# Lint findings of `promtool check metrics` accepted on purpose (an extended regex matched
# against each line). "no help text" is only a note: the exporter writes HELP for described
# metrics only, and the catalogue is the description that counts.
ACCEPTED_LINT='no help text$'

fail() {
    echo "check-monitoring: FAILED: $*" >&2
    exit 1
}

for file in "$RULES" "$TESTS" "$DASHBOARD" "$CATALOGUE" "$RUNBOOK"; do
    [[ -f $file ]] || fail "$file is missing"
done
if [[ -n $SCRAPE && ! -f $SCRAPE ]]; then
    fail "scrape file $SCRAPE does not exist"
fi

work=$(mktemp -d)
TOOL=check-monitoring
die() { fail "$@"; }
# shellcheck source=scripts/debian-tools.sh
. scripts/debian-tools.sh
cleanup() {
    rm -rf "$work"
    remove_policy_rc_d
}
trap cleanup EXIT

command -v promtool >/dev/null || install_promtool
command -v python3 >/dev/null || fail "python3 is needed"
echo "check-monitoring: $(promtool --version 2>&1 | head -n 1)"

# The checks that need parsing, in Python with the standard library only. rules.yml and
# rules.test.yml are read line by line (no YAML library): they keep the layout their headers
# describe.
cat >"$work/check.py" <<'PYTHON'
import json
import re
import sys

def die(message):
    print(f"check-monitoring: FAILED: {message}", file=sys.stderr)
    sys.exit(1)

def indent(line):
    return len(line) - len(line.lstrip(" "))

# --- the catalogue ---------------------------------------------------------------------------

def read_catalogue(path):
    """Metric name -> {"type", "labels": {label: set of values or None}}."""
    metrics = {}
    sections = re.split(r"^## ", open(path, encoding="utf-8").read(), flags=re.M)
    for section in sections:
        rows = []
        bullets = {}
        buckets = None
        # A bullet's text goes on over the indented lines after it.
        lines = []
        for line in section.splitlines():
            if line.startswith("  ") and lines and lines[-1].startswith("- "):
                lines[-1] += " " + line.strip()
            else:
                lines.append(line)
        for line in lines:
            cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
            if len(cells) >= 4 and re.fullmatch(r"`[a-z_:][a-z0-9_:]*`", cells[0]):
                rows.append(cells)
                continue
            m = re.match(r"^- `([a-z_]+)`: (.*)$", line)
            if m:
                bullets[m.group(1)] = m.group(2)
            m = re.match(r"^- Buckets \(seconds\): (.*)$", line)
            if m:
                buckets = set(re.findall(r"\d+(?:\.\d+)?", m.group(1)))
        for cells in rows:
            name = cells[0].strip("`")
            labels = {}
            for label in re.findall(r"`([a-z_]+)`", cells[2]):
                text = bullets.get(label, cells[3])
                values = set(re.findall(r"`([^`]+)`", text))
                if label in bullets and "…" in text:
                    values |= {v[:-2] + "_*" for v in values if v.endswith("_1")}
                labels[label] = values or None
            metrics[name] = {"type": cells[1], "labels": labels, "buckets": buckets,
                             "refs": re.findall(r"`([a-z_:][a-z0-9_:]*)`", cells[3]),
                             # Kubernetes' series, never in the service's scrape.
                             "platform": section.startswith("Platform series")}
    if not metrics:
        die(f"no metric found in {path}")
    # Values given as "as `other_metric`" are that metric's values for the same label.
    for info in metrics.values():
        for label, values in info["labels"].items():
            for ref in info["refs"]:
                if ref in metrics and label in metrics[ref]["labels"] and values is not None:
                    values |= metrics[ref]["labels"][label] or set()
    return metrics

def catalogue_lookup(metrics, name):
    """(base name, info, suffix) for a catalogued series name, or None."""
    if name in metrics:
        return name, metrics[name], ""
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)]
        if name.endswith(suffix) and base in metrics and "histogram" in metrics[base]["type"]:
            return base, metrics[base], suffix
    return None

# --- PromQL: the metric names and label matchers of an expression ----------------------------

TOKEN = re.compile(r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+(?![\w.]))
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=,(){}\[\]@])
""", re.X)
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "offset", "bool", "inf", "nan", "start", "end", "atan2"}
LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}

def tokenize(expr):
    tokens, pos = [], 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m:
            raise ValueError(f"cannot read {expr[pos:pos + 20]!r}")
        pos = m.end()
        if m.lastgroup != "space":
            tokens.append((m.lastgroup, m.group()))
    return tokens

def unquote(text):
    if text[0] == "`":
        return text[1:-1]
    return re.sub(r"\\(.)", r"\1", text[1:-1])

def selectors(expr):
    """[(metric name or None, [(label, op, value)])] for every vector selector."""
    tokens = tokenize(expr)
    found, i = [], 0
    while i < len(tokens):
        kind, text = tokens[i]
        nxt = tokens[i + 1][1] if i + 1 < len(tokens) else None
        if kind == "ident" and text in LABEL_LISTS and nxt == "(":
            i = next(j for j in range(i, len(tokens)) if tokens[j][1] == ")") + 1
            continue
        if text == "[":
            i = next(j for j in range(i, len(tokens)) if tokens[j][1] == "]") + 1
            continue
        if kind == "ident" and (text.lower() in KEYWORDS or nxt in ("(", "by", "without")):
            i += 1
            continue
        if kind == "ident" or text == "{":
            name = text if kind == "ident" else None
            matchers = []
            j = i + 1 if kind == "ident" else i
            if j < len(tokens) and tokens[j][1] == "{":
                j += 1
                while tokens[j][1] != "}":
                    if tokens[j][1] == ",":
                        j += 1
                        continue
                    label, op, value = tokens[j][1], tokens[j + 1][1], unquote(tokens[j + 2][1])
                    matchers.append((label, op, value))
                    j += 3
                j += 1
            found.append((name, matchers))
            i = j
            continue
        i += 1
    return found

def literal_alternatives(value):
    """The literal alternatives of a regex matcher; None when it is not a plain alternation."""
    value = value.replace("\\{", "{").replace("\\}", "}").replace("\\.", ".")
    alternatives = value.split("|")
    if any(re.search(r"[.*+?()\[\]^$\\]", a) for a in alternatives):
        return None
    return alternatives

def check_expr(where, expr, metrics, recorded, problems, used):
    try:
        found = selectors(expr)
    except (ValueError, StopIteration, IndexError) as error:
        problems.append(f"{where}: cannot read the expression ({error}): {expr}")
        return
    for name, matchers in found:
        if name is None:
            name = next((v for l, o, v in matchers if l == "__name__" and o == "="), None)
            if name is None:
                problems.append(f"{where}: a selector without a metric name: {expr}")
                continue
        used.add(name)
        if name in recorded:
            continue
        if name == "up":
            allowed, base, suffix = {"job": None, "instance": None}, "up", ""
            info = {"buckets": None}
        else:
            hit = catalogue_lookup(metrics, name)
            if hit is None:
                problems.append(f"{where}: metric {name} is not in docs/metrics.md")
                continue
            base, info, suffix = hit
            allowed = dict(info["labels"], job=None, instance=None)
            if suffix == "_bucket":
                allowed["le"] = (info["buckets"] | {"+Inf"}) if info["buckets"] else None
        for label, op, value in matchers:
            if label == "__name__":
                continue
            if label not in allowed:
                problems.append(f"{where}: {name} has no label {label} in docs/metrics.md")
                continue
            values = allowed[label]
            if values is None:
                continue
            candidates = [value] if op in ("=", "!=") else literal_alternatives(value)
            for candidate in candidates or []:
                ok = candidate in values or any(
                    v.endswith("_*") and re.fullmatch(re.escape(v[:-1]) + r"\d+", candidate)
                    for v in values)
                if not ok and label == "le":
                    ok = any(_same_float(candidate, v) for v in values)
                if not ok:
                    problems.append(f"{where}: {name}{{{label}{op}\"{value}\"}}: "
                                    f"{candidate!r} is not a value docs/metrics.md lists for {label}")

def _same_float(a, b):
    try:
        return float(a) == float(b)
    except ValueError:
        return False

# --- rules.yml, read line by line -----------------------------------------------------------

def read_rules(path):
    """[{"kind": "record"|"alert", "name", "expr", "labels", "annotations", "line"}]."""
    lines = open(path, encoding="utf-8").read().splitlines()
    rules = []
    for number, line in enumerate(lines):
        m = re.match(r"^(\s*)- (record|alert): *(\S+)\s*$", line)
        if not m:
            continue
        dash_indent = len(m.group(1))
        item_indent = dash_indent + 2
        body = []
        for following in lines[number + 1:]:
            text = following.strip()
            if text and not text.startswith("#") and indent(following) <= dash_indent:
                break
            body.append(following)
        rule = {"kind": m.group(2), "name": m.group(3), "line": number + 1,
                "expr": None, "labels": {}, "annotations": {}}
        k = 0
        while k < len(body):
            key_line = body[k]
            km = re.match(r"^(\s*)(expr|labels|annotations):\s*(.*)$", key_line)
            if not km or indent(key_line) != item_indent:
                k += 1
                continue
            key, value, key_indent = km.group(2), km.group(3).strip(), len(km.group(1))
            block = []
            k += 1
            while k < len(body) and (not body[k].strip() or indent(body[k]) > key_indent):
                block.append(body[k])
                k += 1
            if key == "expr":
                if value in ("|", "|-", "|+", ">", ">-", ">+"):
                    rule["expr"] = "\n".join(b.strip() for b in block if b.strip())
                else:
                    rule["expr"] = value.strip("'\"") if value[:1] in "'\"" else value
            else:
                child_indent = min((indent(b) for b in block if b.strip()), default=0)
                for b in block:
                    bm = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*):\s*(.*)$", b)
                    if bm and indent(b) == child_indent:
                        rule[key][bm.group(1)] = bm.group(2).strip().strip("'\"")
        if not rule["expr"]:
            die(f"{path}:{rule['line']}: rule {rule['name']} has no expr that this script can read")
        rules.append(rule)
    if not rules:
        die(f"no rule found in {path}")
    return rules

def github_anchor(heading):
    anchor = heading.strip().lower()
    anchor = re.sub(r"[^\w\- ]", "", anchor)
    return anchor.replace(" ", "-")

def check_alerts(rules, runbook_path, problems):
    text = open(runbook_path, encoding="utf-8").read()
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    anchors = {github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}
    for rule in rules:
        if rule["kind"] != "alert":
            continue
        where = f"rules.yml:{rule['line']} alert {rule['name']}"
        severity = rule["labels"].get("severity")
        if severity not in ("page", "ticket", "info"):
            problems.append(f"{where}: label severity is {severity!r}, not page, ticket or info")
        for key in ("summary", "description", "runbook_url"):
            if not rule["annotations"].get(key):
                problems.append(f"{where}: no {key} annotation")
        url = rule["annotations"].get("runbook_url", "")
        m = re.fullmatch(r"docs/runbook\.md#([\w-]+)", url)
        if url and not m:
            problems.append(f"{where}: runbook_url {url!r} is not docs/runbook.md#<anchor>")
        elif m and m.group(1) not in anchors:
            problems.append(f"{where}: docs/runbook.md has no section #{m.group(1)}")

# --- rules.test.yml, read line by line ------------------------------------------------------

def read_tests(path):
    """(number of alert and expression tests, {alert: {"fires", "silent"}})."""
    lines = open(path, encoding="utf-8").read().splitlines()
    count, cases, section, item_indent = 0, {}, None, None
    for number, line in enumerate(lines):
        m = re.match(r"^(\s*)(alert_rule_test|promql_expr_test|input_series):\s*$", line)
        if m:
            section, item_indent = m.group(2), None
            continue
        if section in ("alert_rule_test", "promql_expr_test") and re.match(r"^\s*- ", line):
            if item_indent is None:
                item_indent = indent(line)
            if indent(line) == item_indent:
                count += 1
        m = re.match(r"^\s*alertname:\s*(\S+)", line)
        if m:
            for after in lines[number + 1:]:
                em = re.match(r"^\s*exp_alerts:\s*(.*)$", after)
                if em:
                    kind = "silent" if em.group(1).strip() == "[]" else "fires"
                    cases.setdefault(m.group(1), set()).add(kind)
                    break
                if re.match(r"^\s*- ", after):
                    cases.setdefault(m.group(1), set()).add("silent")
                    break
    return count, cases

# --- the dashboard ----------------------------------------------------------------------------

VARIABLES = {"job": "shortener", "instance": "a:9090", "datasource": "prometheus",
             "__rate_interval": "1m", "__interval": "1m", "__range": "1h",
             "__range_s": "3600", "__interval_ms": "60000", "__range_ms": "3600000"}

def substitute(expr, where, problems):
    def replace(m):
        name = m.group(1) or m.group(2)
        if name not in VARIABLES:
            problems.append(f"{where}: unknown variable ${name}")
            return "unknown"
        return VARIABLES[name]
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", replace, expr)

def dashboard_queries(path, problems):
    try:
        dashboard = json.load(open(path, encoding="utf-8"))
    except json.JSONDecodeError as error:
        die(f"{path} is not JSON: {error}")
    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    for name in ("datasource", "job", "instance"):
        if name not in variables:
            problems.append(f"dashboard: no template variable {name}")
    if variables.get("datasource", {}).get("type") != "datasource":
        problems.append("dashboard: the datasource variable is not of type datasource")
    queries, ids = [], set()

    def walk(panels):
        for panel in panels:
            if panel.get("id") in ids:
                problems.append(f"dashboard: panel id {panel.get('id')} is used twice")
            ids.add(panel.get("id"))
            walk(panel.get("panels", []))
            if panel.get("type") == "row":
                continue
            title = panel.get("title", "?")
            if not panel.get("targets"):
                problems.append(f"dashboard: panel {title!r} has no query")
            if (panel.get("datasource") or {}).get("uid") != "${datasource}":
                problems.append(f"dashboard: panel {title!r} does not use ${{datasource}}")
            for target in panel.get("targets", []):
                where = f"dashboard panel {title!r} query {target.get('refId')}"
                if not target.get("expr"):
                    problems.append(f"{where}: no expr")
                    continue
                queries.append((where, panel.get("id"), target.get("refId"),
                                substitute(target["expr"], where, problems)))

    walk(dashboard.get("panels", []))
    for name, variable in variables.items():
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        m = re.match(r"^label_values\((.*),\s*\w+\)$", query or "")
        if m:
            queries.append((f"dashboard variable {name}", None, None,
                            substitute(m.group(1), f"variable {name}", problems)))
    return queries

# --- commands ---------------------------------------------------------------------------------

def main():
    command = sys.argv[1]
    if command == "static":
        rules_path, tests_path, dashboard_path, catalogue_path, runbook_path, out_rules, out_names = sys.argv[2:9]
        metrics = read_catalogue(catalogue_path)
        rules = read_rules(rules_path)
        recorded = {r["name"] for r in rules if r["kind"] == "record"}
        problems, used = [], set()
        for rule in rules:
            check_expr(f"rules.yml:{rule['line']} {rule['kind']} {rule['name']}", rule["expr"],
                       metrics, recorded, problems, used)
        check_alerts(rules, runbook_path, problems)
        alerts = sorted({r["name"] for r in rules if r["kind"] == "alert"})
        test_count, cases = read_tests(tests_path)
        for alert in alerts:
            missing = {"fires", "silent"} - cases.get(alert, set())
            if missing:
                problems.append(f"rules.test.yml: alert {alert} has no test where it "
                                + " and none where it ".join(
                                    "fires" if m == "fires" else "does not fire" for m in sorted(missing)))
        for alert in sorted(set(cases) - set(alerts)):
            problems.append(f"rules.test.yml: tests an alert {alert} that rules.yml does not define")
        queries = dashboard_queries(dashboard_path, problems)
        records = []
        for where, panel_id, ref, expr in queries:
            check_expr(where, expr, metrics, recorded, problems, used)
            if panel_id is not None:
                records.append({"record": f"dashboard:panel_{panel_id}_{ref}", "expr": expr})
        with open(out_rules, "w") as out:
            json.dump({"groups": [{"name": "dashboard-queries", "rules": records}]}, out, indent=1)
        with open(out_names, "w") as out:
            platform = {name for name, info in metrics.items() if info["platform"]}
            out.write("\n".join(sorted(used - recorded - platform)) + "\n")
        if problems:
            print("\n".join(f"  {p}" for p in problems), file=sys.stderr)
            sys.exit(1)
        print(f"{len(alerts)} {sum(r['kind'] == 'alert' for r in rules)} {test_count} {len(records)}")
    elif command == "scrape":
        scrape_path, names_path = sys.argv[2:4]
        present, buckets = set(), set()
        for line in open(scrape_path, encoding="utf-8", errors="replace"):
            m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})?\s', line)
            if m:
                present.add(m.group(1))
                if m.group(1) == "http_server_request_duration_seconds_bucket":
                    route = re.search(r'http_route="([^"]*)"', m.group(2) or "")
                    le = re.search(r'le="([^"]*)"', m.group(2) or "")
                    if route and le:
                        buckets.add((route.group(1), le.group(1)))
        problems = [f"  {name} is used by the rules or the dashboard but not in the scrape"
                    for name in open(names_path).read().split() if name != "up" and name not in present]
        for route, le in (("/{code}", "0.005"), ("/shorten", "0.05")):
            if (route, le) not in buckets:
                problems.append(f'  http_server_request_duration_seconds_bucket{{http_route="{route}", le="{le}"}}'
                                " (an SLO's bound) is not in the scrape")
        if problems:
            print("\n".join(problems), file=sys.stderr)
            sys.exit(1)
    else:
        die(f"unknown command {command}")

main()
PYTHON

# Every step runs, so one run reports every problem; the exit status says whether any failed.
failures=()
step() {
    echo "check-monitoring: $*"
}
failed() {
    echo "check-monitoring: FAILED: $*" >&2
    failures+=("$*")
}

step "promtool check rules $RULES"
if ! out=$(promtool check rules --lint=all --lint-fatal "$RULES" 2>&1); then
    echo "$out" >&2
    failed "promtool check rules $RULES"
fi

step "metric names, labels, alerts and tests against $CATALOGUE and $RUNBOOK"
counts=$(python3 "$work/check.py" static "$RULES" "$TESTS" "$DASHBOARD" "$CATALOGUE" "$RUNBOOK" \
    "$work/dashboard-rules.json" "$work/names.txt") || failed "the catalogue, alert and test checks"
read -r alert_names alert_rules test_count query_count <<<"${counts:-? ? ? ?}"

step "promtool test rules $TESTS"
if ! out=$(promtool test rules "$TESTS" 2>&1); then
    echo "$out" >&2
    failed "promtool test rules $TESTS"
fi

step "promtool check rules on the queries of $DASHBOARD"
if [[ ! -s $work/dashboard-rules.json ]]; then
    failed "the dashboard's queries could not be extracted"
elif ! out=$(promtool check rules --lint=none "$work/dashboard-rules.json" 2>&1); then
    echo "$out" >&2
    echo "(dashboard:panel_<id>_<refId> names the panel and its query)" >&2
    failed "a query of $DASHBOARD does not parse"
fi

if [[ -n $SCRAPE ]]; then
    step "promtool check metrics < $SCRAPE"
    status=0
    out=$(promtool check metrics <"$SCRAPE" 2>&1) || status=$?
    if [[ $status -ne 0 && $status -ne 3 ]] || grep -q '^error while linting' <<<"$out"; then
        echo "$out" >&2
        failed "promtool cannot read $SCRAPE as Prometheus text format"
    else
        real=$(grep -Ev -- "$ACCEPTED_LINT" <<<"$out" | grep -v '^$' || true)
        notes=$(grep -Ec -- "$ACCEPTED_LINT" <<<"$out" || true)
        if [[ $notes -gt 0 ]]; then
            echo "check-monitoring: note: $notes metric(s) without HELP text (accepted)"
        fi
        if [[ -n $real ]]; then
            while IFS= read -r line; do echo "  $line"; done <<<"$real" >&2
            failed "promtool check metrics: $(wc -l <<<"$real") problem(s) in $SCRAPE"
        fi
    fi
    step "the series the rules and the dashboard use, in $SCRAPE"
    if [[ -s $work/names.txt ]]; then
        python3 "$work/check.py" scrape "$SCRAPE" "$work/names.txt" || failed "series missing from $SCRAPE"
    else
        failed "no list of the metrics used (the static checks failed)"
    fi
    scraped=", scrape $SCRAPE checked"
fi

if [[ ${#failures[@]} -gt 0 ]]; then
    echo "check-monitoring: ${#failures[@]} check(s) failed:" >&2
    printf '  - %s\n' "${failures[@]}" >&2
    exit 1
fi
echo "monitoring: $alert_names alerts ($alert_rules alert rules), $test_count rule tests, $query_count dashboard queries checked${scraped:-}"
