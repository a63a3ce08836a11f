"""python-annotate: an example vk-stackpath policy written in Python (componentize-py).

It proves the `stackpath:policy` contract is language-neutral, and shows how small a policy can
be. It runs single-container pods only, maps the common fields (image, command, args, working
directory, ports, env, size, pull policy) the way the default policy does, says in a warning
what it does not carry over (probes, hooks, volumes, security contexts...), and annotates each
workload with the policy that placed it and the city it runs in.

Build: ./build.sh (see README.md). The host gives each call a fresh instance: no state survives
between pods, and there is no file system, network or environment to reach.
"""

import json
from decimal import Decimal, InvalidOperation

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import log
from wit_world.imports.types import (
    Context,
    PolicyInfo,
    Rejection,
    Translation,
    Violation,
    Warning,
)

NAME = "python-annotate"
VERSION = "0.1.0"
ANNOTATION_POLICY = "policy.vk-stackpath.io/translated-by"
ANNOTATION_CITY = "policy.vk-stackpath.io/city"

# StackPath sizes (MAPPING.md): name, cores, GiB.
SIZES = [
    ("SP-1", 1, 2),
    ("SP-2", 2, 4),
    ("SP-3", 2, 8),
    ("SP-4", 4, 16),
    ("SP-5", 8, 32),
    ("SP-6", 16, 64),
    ("SP-7", 32, 128),
    ("SP-8", 48, 256),
]
GI = Decimal(1 << 30)

# Kubernetes' quantity suffixes.
BINARY = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60}
DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
           "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
           "P": Decimal("1e15"), "E": Decimal("1e18")}

# Service-discovery variables Kubernetes injects; meaningless outside the cluster.
SERVICE_VARS = ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT",
                "KUBERNETES_SERVICE_PORT_HTTPS", "KUBERNETES_PORT")

# Container fields this policy maps; any other field present gets a warning.
MAPPED = {"name", "image", "command", "args", "workingDir", "ports", "env", "resources",
          "imagePullPolicy",
          # Kubernetes defaults that carry no meaning here.
          "terminationMessagePath", "terminationMessagePolicy"}


def quantity(text):
    """A Kubernetes quantity as a Decimal, or None when it does not parse."""
    text = str(text).strip()
    for suffix, factor in BINARY.items():
        if text.endswith(suffix):
            number, scale = text[: -len(suffix)], Decimal(factor)
            break
    else:
        # `1e3` is an exponent, `1E` is exa: an exponent needs digits after the `e`.
        if text[-1:] in DECIMAL and not text[-1:].isdigit() and text[-1:] != "":
            number, scale = text[:-1], DECIMAL[text[-1:]]
        else:
            number, scale = text, Decimal(1)
    if not number or number.lstrip("+-")[:1] not in "0123456789.":
        return None
    try:
        value = Decimal(number) * scale
    except InvalidOperation:
        return None
    return value if value.is_finite() and value >= 0 else None


class Translator(exports.Translator):
    def info(self) -> PolicyInfo:
        return PolicyInfo(
            name=NAME,
            version=VERSION,
            description="Single-container pods only: the common fields mapped as the default "
            "policy does, plus annotations naming this policy and the city.",
        )

    def translate(self, pod: str, ctx: Context) -> Translation:
        violations, warnings = [], []
        try:
            pod = json.loads(pod)
        except ValueError as e:
            raise Err(Rejection([Violation("", f"the pod is not JSON: {e}")]))
        if not isinstance(pod, dict):
            raise Err(Rejection([Violation("", "the pod is not a JSON object")]))
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        containers = spec.get("containers") or []

        if len(containers) != 1:
            violations.append(Violation(
                "spec.containers",
                f"this policy runs single-container pods only; the pod has {len(containers)}",
            ))
        if spec.get("initContainers"):
            violations.append(Violation(
                "spec.initContainers", "this policy does not run init containers"))
        for field in ("volumes",):
            if spec.get(field):
                warnings.append(Warning(f"spec.{field}", "not carried over by this policy"))
        if violations:
            raise Err(Rejection(violations))

        c = containers[0]
        path = "spec.containers[0]"
        name = c.get("name") or "app"
        out = {}
        image = c.get("image")
        if not image:
            violations.append(Violation(f"{path}.image", "the container has no image"))
        else:
            out["image"] = image
        if c.get("args") and not c.get("command"):
            violations.append(Violation(
                f"{path}.args",
                f"container `{name}` has args but no command; StackPath cannot append args "
                "to an image's entrypoint, so set command too",
            ))
        for field in ("command", "args"):
            if c.get(field):
                out[field] = list(c[field])
        if c.get("workingDir"):
            out["workingDir"] = c["workingDir"]

        ports = {}
        for i, p in enumerate(c.get("ports") or []):
            key = p.get("name") or "default"
            if key in ports:
                violations.append(Violation(
                    f"{path}.ports[{i}]",
                    f"two ports are named `{key}`; name each port"))
            protocol = p.get("protocol") if p.get("protocol") in ("TCP", "UDP") else "TCP"
            ports[key] = {"port": p.get("containerPort"), "protocol": protocol}
        if ports:
            out["ports"] = ports

        env = {}
        resolved = {(e.container, e.name): e for e in ctx.env}
        for i, e in enumerate(c.get("env") or []):
            var = e.get("name", "")
            if var in SERVICE_VARS or (var.startswith("KUBERNETES_PORT_443_TCP")):
                continue
            if "valueFrom" in e:
                r = resolved.get((name, var))
                if r is None:
                    violations.append(Violation(
                        f"{path}.env[{i}].valueFrom", f"the host did not resolve `{var}`"))
                elif r.from_secret:
                    # The host fills in the secret; the policy never sees it.
                    env[var] = {"secretValue": ""}
                else:
                    env[var] = {"value": r.value or ""}
            else:
                env[var] = {"value": e.get("value", "")}
        if env:
            out["env"] = env

        size = self._size(c, path, violations, warnings)
        if size:
            figures = {"cpu": str(size[1]), "memory": f"{size[2]}Gi"}
            out["resources"] = {"requests": figures, "limits": dict(figures)}

        policy = c.get("imagePullPolicy")
        if policy is None:
            tag = image.rsplit("/", 1)[-1] if image else ""
            latest = "@" not in tag and (":" not in tag or tag.endswith(":latest"))
            policy = "Always" if latest else "IfNotPresent"
        if policy == "Always":
            out["imagePullPolicy"] = "ALWAYS"
        elif policy == "IfNotPresent":
            out["imagePullPolicy"] = "IF_NOT_PRESENT"
        else:
            warnings.append(Warning(
                f"{path}.imagePullPolicy", f"`{policy}` is not supported by StackPath; left out"))

        for field in sorted(set(c) - MAPPED):
            warnings.append(Warning(f"{path}.{field}", "not carried over by this policy"))

        if violations:
            log.log(log.Level.INFO, f"rejecting the pod: {len(violations)} violation(s)")
            raise Err(Rejection(violations))

        annotations = dict(meta.get("annotations") or {})
        annotations[ANNOTATION_POLICY] = f"{NAME}/{VERSION}"
        annotations[ANNOTATION_CITY] = ctx.city_code
        return Translation(
            spec=json.dumps({"containers": {name: out}}, sort_keys=True),
            annotations=sorted(annotations.items()),
            warnings=warnings,
        )

    @staticmethod
    def _size(c, path, violations, warnings):
        """The smallest StackPath size holding max(request, limit) of cpu and memory."""
        resources = c.get("resources") or {}
        wanted = {}
        for resource, default in (("cpu", Decimal(1)), ("memory", 2 * GI)):
            values = []
            for kind in ("requests", "limits"):
                raw = (resources.get(kind) or {}).get(resource)
                if raw is None:
                    continue
                value = quantity(raw)
                if value is None:
                    violations.append(Violation(
                        f"{path}.resources.{kind}.{resource}",
                        f"`{raw}` is not a Kubernetes quantity (e.g. 500m, 2, 512Mi, 2G)"))
                    continue
                values.append(value)
            wanted[resource] = max(values) if values else default
        for size in SIZES:
            if wanted["cpu"] <= size[1] and wanted["memory"] <= size[2] * GI:
                return size
        warnings.append(Warning(
            f"{path}.resources", "the container asks for more than the largest StackPath "
            "size; it runs on SP-8"))
        return SIZES[-1]
