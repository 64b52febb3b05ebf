"""Checks what can be checked of the container files without a Docker engine.

Both compose files parse; every service is built from this repository (a Dockerfile that
exists) or runs an official image; dependencies name services of the same file; every
service of the full stack has a health check; the Dockerfile's base images are official.
"""
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
OFFICIAL = re.compile(r"^(postgres|redis|rust|debian):[\w.\-]+$")
problems = []


def check_compose(name, needs_healthchecks):
    document = yaml.safe_load((ROOT / name).read_text())
    services = document.get("services") or {}
    if not services:
        problems.append(f"{name}: no services")
    for service, spec in services.items():
        if "build" in spec:
            context = spec["build"] if isinstance(spec["build"], str) else spec["build"].get("context", ".")
            dockerfile = "Dockerfile" if isinstance(spec["build"], str) else spec["build"].get("dockerfile", "Dockerfile")
            if not (ROOT / context / dockerfile).is_file():
                problems.append(f"{name}: {service} builds from {context}/{dockerfile}, which does not exist")
        elif not OFFICIAL.match(str(spec.get("image", ""))):
            problems.append(f"{name}: {service} uses image {spec.get('image')!r}, not built here nor official")
        for dependency in spec.get("depends_on") or []:
            if dependency not in services:
                problems.append(f"{name}: {service} depends on unknown service {dependency}")
        if needs_healthchecks and "healthcheck" not in spec:
            problems.append(f"{name}: {service} has no healthcheck")
    return set(services)


full = check_compose("docker-compose.yml", needs_healthchecks=True)
dev = check_compose("docker-compose.dev.yml", needs_healthchecks=True)
for expected in ["hub", "postgres", "redis", "mock-operator", "mock-rgs"]:
    if expected not in full:
        problems.append(f"docker-compose.yml: no {expected} service")
if dev != {"postgres", "redis"}:
    problems.append(f"docker-compose.dev.yml: expected postgres and redis only, found {sorted(dev)}")
for line in (ROOT / "Dockerfile").read_text().splitlines():
    if line.startswith("FROM "):
        image = line.split()[1]
        if not OFFICIAL.match(image):
            problems.append(f"Dockerfile: base image {image} is not an official image")

for problem in problems:
    print(f"check_compose: {problem}", file=sys.stderr)
print(f"check_compose: {'FAILED' if problems else 'ok'} ({len(full)} + {len(dev)} services)")
sys.exit(1 if problems else 0)
