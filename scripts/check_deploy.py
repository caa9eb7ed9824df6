"""Structural checks of ferry's deployment files (called by scripts/check-deploy.sh).

docker-compose.yml is read twice: as written (to see that secrets are only referenced, never
written down) and as `docker-compose config` resolved it (--resolved FILE). The Kubernetes
manifests are parsed with PyYAML and checked for the kinds, names, images, probes and
references the docs promise. Prints every failure, then PASS or FAIL; exits 1 on failure.
"""

import argparse
import glob
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
FERRY_ROLES = {
    "migrate": ["migrate"],
    "api": ["serve", "--listen", "0.0.0.0:8080"],
    "scheduler": ["scheduler"],
    "worker": ["worker"],
}
BACKING = ["postgres", "redis", "mongodb", "s3", "mailpit"]
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|AUTH")
# Read by code being built in parallel (issue 8, `ferry serve`); found by the source search
# below once it is merged.
PENDING_ENV = {"FERRY_API_TOKEN", "FERRY_ADMIN_TOKEN"}

failures = []
checks = 0


def check(ok, message):
    global checks
    checks += 1
    if not ok:
        failures.append(message)
    return ok


def env_names_ferry_reads():
    """Every quoted UPPER_CASE name in the Rust sources."""
    names = set()
    sources = [p for p in ROOT.rglob("*.rs") if "target" not in p.parts]
    for path in sources:
        text = path.read_text(errors="replace")
        names.update(re.findall(r'"([A-Z][A-Z0-9_]{2,})"', text))
        names.update(re.findall(r"\$\{?([A-Z][A-Z0-9_]{2,})", text))
    return names


def as_dict(environment):
    if isinstance(environment, list):
        return dict(item.split("=", 1) for item in environment)
    return environment or {}


def check_compose(raw, resolved):
    services = resolved.get("services", {})
    for name in BACKING + list(FERRY_ROLES):
        check(name in services, f"compose: service {name!r} is missing")

    redis = " ".join(map(str, services.get("redis", {}).get("command", [])))
    check("--appendonly yes" in redis, "compose: redis must run with --appendonly yes")
    check(
        "--maxmemory-policy noeviction" in redis,
        "compose: redis must run with --maxmemory-policy noeviction",
    )

    reads = env_names_ferry_reads() | PENDING_ENV
    for role, command in FERRY_ROLES.items():
        svc = services.get(role)
        if svc is None:
            continue
        check(svc.get("command") == command, f"compose: {role} must run `ferry {' '.join(command)}`")
        check("image" in svc and "build" in svc, f"compose: {role} needs image and build")
        env = as_dict(svc.get("environment"))
        for var in ["DATABASE_URL", "REDIS_URL", "FERRY_CONFIG"]:
            check(var in env, f"compose: {role} has no {var}")
        for var in env:
            check(var in reads, f"compose: {role} sets {var}, which ferry never reads")
        deps = svc.get("depends_on", {})
        if role != "migrate":
            check(
                deps.get("migrate", {}).get("condition") == "service_completed_successfully",
                f"compose: {role} must wait for migrate (service_completed_successfully)",
            )
            health = svc.get("healthcheck", {})
            check(
                not health.get("disable") and health.get("test"),
                f"compose: {role} needs a healthcheck",
            )
        for dep in ["postgres", "redis"] if role != "migrate" else ["postgres"]:
            check(
                deps.get(dep, {}).get("condition") == "service_healthy",
                f"compose: {role} must wait for {dep} (service_healthy)",
            )
    for name, svc in services.items():
        for dep, cond in svc.get("depends_on", {}).items():
            if cond.get("condition") == "service_healthy":
                check(
                    "healthcheck" in services.get(dep, {}),
                    f"compose: {name} waits for {dep} to be healthy, but {dep} has no healthcheck",
                )

    worker = services.get("worker", {})
    check("container_name" not in worker, "compose: worker has container_name: cannot scale")
    check("ports" not in worker, "compose: worker publishes ports: cannot scale")
    # Compose durations: 45s, 1m30s, 2m.
    grace = str(worker.get("stop_grace_period", "10s"))
    unit = {"h": 3600, "m": 60, "s": 1}
    seconds = sum(int(n) * unit[u] for n, u in re.findall(r"(\d+)([hms])", grace))
    check(seconds >= 35, "compose: worker stop_grace_period must exceed shutdown_grace (30 s)")

    # Secrets only as ${VAR} references, as written in the file.
    for name, svc in raw.get("services", {}).items():
        for var, value in as_dict(svc.get("environment")).items():
            value = str(value)
            if SECRET_NAME.search(var) or re.search(r"://[^/@\s]*:[^/@\s]*@", value):
                check(
                    "${" in value,
                    f"compose: {name}.{var} holds a literal secret; reference ${{VAR}} from .env",
                )


def check_dockerfile():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)", text, re.M)
    check(len(stages) >= 2, "Dockerfile: must be multi-stage")
    check(
        "cargo build --release --locked -p ferry-cli" in text,
        "Dockerfile: must build with cargo build --release --locked -p ferry-cli",
    )
    check(stages and "slim" in stages[-1], "Dockerfile: runtime stage must be a slim Debian")
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    check(users and users[-1] not in ("root", "0"), "Dockerfile: must run as a non-root USER")
    check(re.search(r"^HEALTHCHECK\s", text, re.M), "Dockerfile: needs a HEALTHCHECK")
    check(re.search(r"^ARG PG_MAJOR=\d+", text, re.M), "Dockerfile: needs ARG PG_MAJOR")
    check("postgresql-client-$PG_MAJOR" in text, "Dockerfile: must install postgresql-client")
    ignore = (ROOT / ".dockerignore").read_text().split()
    check(".env" in ignore and "target/" in ignore, ".dockerignore: must exclude .env and target/")


def check_kubernetes():
    docs = []
    for path in sorted(glob.glob(str(ROOT / "deploy" / "kubernetes" / "*.yaml"))):
        try:
            for doc in yaml.safe_load_all(pathlib.Path(path).read_text()):
                if doc is not None:
                    docs.append((pathlib.Path(path).name, doc))
        except yaml.YAMLError as e:
            check(False, f"kubernetes: {path}: {e}")
    by_kind = {}
    for file, doc in docs:
        ok = check(
            all(k in doc for k in ("apiVersion", "kind", "metadata")) and "name" in doc["metadata"],
            f"kubernetes: {file}: a document lacks apiVersion, kind or metadata.name",
        )
        if ok:
            by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    configmaps = by_kind.get("ConfigMap", {})
    secrets = by_kind.get("Secret", {})
    for kind, name in [
        ("Deployment", "ferry-api"),
        ("Deployment", "ferry-scheduler"),
        ("Deployment", "ferry-worker"),
        ("Job", "ferry-migrate"),
        ("Service", "ferry-api"),
        ("ConfigMap", "ferry-config"),
        ("Secret", "ferry-secrets"),
    ]:
        check(name in by_kind.get(kind, {}), f"kubernetes: {kind} {name} is missing")

    config = configmaps.get("ferry-config", {}).get("data", {}).get("ferry.toml")
    check(
        config == (ROOT / "deploy" / "ferry.toml").read_text(),
        "kubernetes: ConfigMap ferry-config's ferry.toml differs from deploy/ferry.toml",
    )

    workloads = list(by_kind.get("Deployment", {}).items()) + list(by_kind.get("Job", {}).items())
    for name, doc in workloads:
        spec = doc.get("spec", {})
        pod = spec.get("template", {})
        if doc["kind"] == "Deployment":
            selector = spec.get("selector", {}).get("matchLabels", {})
            labels = pod.get("metadata", {}).get("labels", {})
            check(
                selector and selector.items() <= labels.items(),
                f"kubernetes: {name}: selector does not match the pod labels",
            )
        pod_spec = pod.get("spec", {})
        check(
            pod_spec.get("securityContext", {}).get("runAsNonRoot") is True,
            f"kubernetes: {name}: pods must set runAsNonRoot",
        )
        containers = pod_spec.get("containers", [])
        check(containers, f"kubernetes: {name}: no containers")
        volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
        for c in containers:
            check(c.get("image"), f"kubernetes: {name}: container {c.get('name')} has no image")
            for ref in c.get("envFrom", []):
                if "configMapRef" in ref:
                    check(
                        ref["configMapRef"]["name"] in configmaps,
                        f"kubernetes: {name}: ConfigMap {ref['configMapRef']['name']} is not defined",
                    )
                if "secretRef" in ref:
                    check(
                        ref["secretRef"]["name"] in secrets,
                        f"kubernetes: {name}: Secret {ref['secretRef']['name']} is not defined",
                    )
            for mount in c.get("volumeMounts", []):
                volume = volumes.get(mount["name"], {})
                check(volume, f"kubernetes: {name}: volume {mount['name']} is not defined")
                cm = volume.get("configMap", {}).get("name")
                check(cm is None or cm in configmaps, f"kubernetes: {name}: ConfigMap {cm} is not defined")

    def container(name):
        doc = by_kind.get("Deployment", {}).get(name) or by_kind.get("Job", {}).get(name) or {}
        containers = doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        return containers[0] if containers else {}

    for name, role in [
        ("ferry-migrate", "migrate"),
        ("ferry-api", "api"),
        ("ferry-scheduler", "scheduler"),
        ("ferry-worker", "worker"),
    ]:
        check(
            container(name).get("args") == FERRY_ROLES[role],
            f"kubernetes: {name} must run `ferry {' '.join(FERRY_ROLES[role])}`",
        )
    api = container("ferry-api")
    for probe, path in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
        check(
            api.get(probe, {}).get("httpGet", {}).get("path") == path,
            f"kubernetes: ferry-api {probe} must GET {path}",
        )
    for name in ["ferry-scheduler", "ferry-worker"]:
        check(container(name).get("readinessProbe"), f"kubernetes: {name} needs a readinessProbe")
    worker = by_kind.get("Deployment", {}).get("ferry-worker", {})
    grace = worker.get("spec", {}).get("template", {}).get("spec", {}).get("terminationGracePeriodSeconds", 30)
    check(grace >= 35, "kubernetes: ferry-worker terminationGracePeriodSeconds must exceed 30 s")
    service = by_kind.get("Service", {}).get("ferry-api", {})
    api_labels = by_kind.get("Deployment", {}).get("ferry-api", {}).get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
    selector = service.get("spec", {}).get("selector", {})
    check(selector and selector.items() <= api_labels.items(), "kubernetes: Service ferry-api selects no api pod")
    return len(docs)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--resolved", required=True, help="output of docker-compose config")
    args = parser.parse_args()
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    resolved = yaml.safe_load(pathlib.Path(args.resolved).read_text())
    check_compose(raw, resolved)
    check_dockerfile()
    manifests = check_kubernetes()
    for f in failures:
        print(f"check-deploy: {f}", file=sys.stderr)
    verdict = "FAIL" if failures else "PASS"
    print(
        f"check-deploy: {verdict}: {checks - len(failures)}/{checks} checks "
        f"(docker-compose.yml, Dockerfile, {manifests} Kubernetes manifests)"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
