"""The docker target: each version its own container, behind one front on the environment's port.

Per environment, through the Docker SDK: a network ``mlops-ci-MODEL-ENV``, internal (no route
out) unless ``deploy.ENV.egress``, and an edge network ``mlops-ci-MODEL-ENV-edge``; a front
container of the environment's name (`mlops-ci front`, from the serving image) on both,
publishing ``deploy.ENV.port`` from the edge and keeping its routes in a volume; and one
container per version (``mlops-ci-MODEL-ENV-vN``) on the internal network only, publishing
nothing, reached by name. The front takes no upstream but these names. A new version starts
beside the old one at 0 %, is probed for readiness through the front (``x-model-version`` pins
it; this works on every engine, whether or not it runs the image's HEALTHCHECK), then takes
traffic step by step exactly like the local target (the deploy step judges each step from the
front's metrics);
a replaced version is stopped only once the front has nothing of it in flight. A version that
never becomes ready is removed and the old one keeps serving. Without a reachable engine the
deployment is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import secrets
import time
import urllib.error
import urllib.request
from typing import Any

from mlops_ci.config.types import DeployEnv
from mlops_ci.errors import ServiceError
from mlops_ci.packaging.context import FRONT_STATE_DIR
from mlops_ci.packaging.image import engine
from mlops_ci.targets import probes
from mlops_ci.targets.base import Stopped

CONTAINER_PORT = 8080
STATE_DIR = FRONT_STATE_DIR  # created for the serving user by the image
TOKEN_ENV = "MLOPS_ADMIN_TOKEN"
LABEL_MODEL = "io.mlops-ci.model.name"
LABEL_VERSION = "io.mlops-ci.model.version"
LABEL_ENV = "io.mlops-ci.environment"
LABEL_ROLE = "io.mlops-ci.role"  # front | version
REMOVE_TRIES = 5
READY_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 60.0


def base_name(model: str, env: DeployEnv) -> str:
    return f"mlops-ci-{model}-{env.name}"


def remove(container: Any) -> None:
    """Force-remove ``container``, one already gone included. Podman refuses a forced removal
    that races the container's own exit ("could not be stopped … container state improper");
    the next try finds it stopped and removes it."""
    from docker.errors import APIError, NotFound

    for attempt in range(REMOVE_TRIES):
        try:
            container.remove(force=True)
            return
        except NotFound:
            return
        except APIError as err:
            if "state improper" not in str(err) or attempt == REMOVE_TRIES - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def edge_name(model: str, env: DeployEnv) -> str:
    """The front's published side: a plain bridge, as the version network may have no route."""
    return f"{base_name(model, env)}-edge"


def run_spec(model: str, version: str, image: str, env: DeployEnv) -> dict[str, Any]:
    """Keyword arguments of ``containers.run`` for one version's container."""
    return {
        "image": image,
        "name": f"{base_name(model, env)}-v{version}",
        "detach": True,
        "network": base_name(model, env),
        "restart_policy": _policy(env),
        "labels": {**_labels(model, env, "version"), LABEL_VERSION: version},
        "read_only": True,
        "security_opt": ["no-new-privileges"],
    }


def front_spec(model: str, image: str, env: DeployEnv, token: str) -> dict[str, Any]:
    """Keyword arguments of ``containers.run`` for the environment's front."""
    name = base_name(model, env)
    return {
        "image": image,
        "command": [
            "mlops-ci",
            "front",
            "--model",
            model,
            "--port",
            str(CONTAINER_PORT),
            "--state-dir",
            STATE_DIR,
            "--token-env",
            TOKEN_ENV,
            "--upstream-base",
            name,
            "--upstream-port",
            str(CONTAINER_PORT),
        ],  # fmt: skip
        "name": name,
        "detach": True,
        "network": edge_name(model, env),
        "ports": {f"{CONTAINER_PORT}/tcp": (env.host, env.port)},
        "environment": {TOKEN_ENV: token},
        "volumes": {f"{name}-front": {"bind": STATE_DIR, "mode": "rw"}},
        "restart_policy": _policy(env),
        # The front is alive when it answers its own metrics (the image's HEALTHCHECK asks a
        # version, which the front only has once routed).
        "healthcheck": {
            "test": [
                "CMD",
                "python",
                "-c",
                "import urllib.request; urllib.request.urlopen("
                f"'http://127.0.0.1:{CONTAINER_PORT}/metrics', timeout=2)",
            ],
            "interval": 30 * 10**9,
            "timeout": 3 * 10**9,
            "retries": 3,
        },  # fmt: skip
        "labels": _labels(model, env, "front"),
        "read_only": True,
        "security_opt": ["no-new-privileges"],
    }


def _labels(model: str, env: DeployEnv, role: str) -> dict[str, str]:
    return {LABEL_MODEL: model, LABEL_ENV: env.name, LABEL_ROLE: role}


def _policy(env: DeployEnv) -> dict[str, Any]:
    policy: dict[str, Any] = {"Name": env.restart_policy}
    if env.restart_policy == "on-failure":
        policy["MaximumRetryCount"] = 5
    return policy


class DockerTarget:
    """One environment on a Docker engine, driven like the local target: start, load, split,
    probe, unload."""

    name = "docker"

    def __init__(self, model: str, env: DeployEnv, client: Any) -> None:
        self.model = model
        self.env = env
        self.client = client
        self.base = base_name(model, env)
        host = "127.0.0.1" if env.host in ("0.0.0.0", "", "::") else env.host
        self.url = f"http://{host}:{env.port}"
        self._cached_token = ""

    @classmethod
    def connect(cls, model: str, env: DeployEnv) -> tuple[DockerTarget | None, str | None]:
        """The target, or (None, why no engine answers)."""
        client, why = engine()
        return (cls(model, env, client), None) if client is not None else (None, why)

    # --- containers -------------------------------------------------------------------------

    def containers(self, role: str | None = None) -> list[Any]:
        """This environment's containers (all states), of one role or all."""
        labels = [f"{LABEL_MODEL}={self.model}", f"{LABEL_ENV}={self.env.name}"]
        if role:
            labels.append(f"{LABEL_ROLE}={role}")
        return list(self.client.containers.list(all=True, filters={"label": labels}))

    def running(self) -> bool:
        """Whether the environment's front runs (something serves on its port)."""
        return any(c.status == "running" for c in self.containers("front"))

    def start(self, version: str, image: str) -> None:
        """A first deployment: the network, the front (from ``image``), then the version alone."""
        for stale in self.containers("front"):  # a front that exited: its routes are kept
            remove(stale)
        for legacy in self.containers():  # one container on the port, from before the front
            if LABEL_ROLE not in legacy.labels:
                remove(legacy)
        versions = self._network(self.base, internal=not self.env.egress)
        self._network(edge_name(self.model, self.env), internal=False)
        token = secrets.token_urlsafe(24)
        spec = front_spec(self.model, image, self.env, token)
        try:
            front = self.client.containers.run(**spec)
            versions.connect(front)  # the front alone spans the edge and the versions
        except Exception as err:  # the engine's own message names the cause (a busy port)
            why = f"docker: cannot start the front of {self.env.name}: {err}"
            raise ServiceError(why) from None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                self._admin("GET")
                break
            except ServiceError:
                front.reload()
                if front.status in ("exited", "dead") or time.monotonic() > deadline:
                    tail = front.logs(tail=3).decode(errors="replace").strip()
                    remove(front)
                    raise ServiceError(
                        f"docker: the front of {self.env.name} did not start: {tail or 'no log'}"
                    ) from None
                time.sleep(0.2)
        self._cached_token = token
        try:
            self.load(version, image)
        except ServiceError:
            self.stop()
            raise
        self.set_split({version: 100.0})

    # --- the routes -------------------------------------------------------------------------

    def traffic(self) -> dict[str, Any]:
        routes = self._admin("GET")
        return {
            "weights": routes["weights"],
            "versions": list(routes["upstreams"]),
            "inflight": routes.get("inflight", {}),
        }

    def set_split(self, weights: dict[str, float]) -> dict[str, Any]:
        routes = self._admin("GET")
        full = {v: float(weights.get(v, 0.0)) for v in routes["upstreams"]}
        return self._admin("PUT", {"upstreams": routes["upstreams"], "weights": full})

    def load(self, version: str, image: str) -> None:
        """Start ``version``'s container beside the others at 0 % and wait until it is ready;
        one that never is gets removed (the others serve on)."""
        name = f"{self.base}-v{version}"
        for old in self.client.containers.list(all=True, filters={"name": f"^{name}$"}):
            remove(old)  # a leftover of an earlier attempt
        try:
            container = self.client.containers.run(**run_spec(self.model, version, image, self.env))
        except Exception as err:
            raise ServiceError(f"docker: cannot run {image}: {err}") from None
        routes = self._admin("GET")
        upstreams = {**routes["upstreams"], version: f"http://{name}:{CONTAINER_PORT}"}
        weights = {**routes["weights"], version: 0.0}
        self._admin("PUT", {"upstreams": upstreams, "weights": weights})
        why = self._wait_ready(container, version)
        if why:
            self._forget(version)
            tail = container.logs(tail=2).decode(errors="replace").strip().replace("\n", " / ")
            remove(container)
            raise ServiceError(
                f"docker: {image} did not become ready ({why}): {tail or 'no log'}",
                hint="what served before serves on",
            )

    def set_shadow(self, version: str | None, percent: float = 100.0) -> None:
        """The front (HAProxy) mirrors no requests: no shadow here (the config refuses
        deploy.ENV.shadow for this target; clearing one is a no-op)."""
        if version is not None:
            raise ServiceError("docker: the front cannot mirror requests to a shadow version")

    def metrics_text(self) -> str:
        return probes.metrics_text(self.url)

    def probe(self, version: str, rows: list[Any]) -> list[int]:
        return probes.probe(self.url, version, rows)

    def unload(self, version: str) -> dict[str, Any]:
        """Take ``version`` out of the routes, wait until nothing of it is in flight, stop it."""
        self._forget(version)
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while self._admin("GET").get("inflight", {}).get(version, 0) > 0:
            if time.monotonic() > deadline:
                break  # a stuck request must not keep the old container forever
            time.sleep(0.05)
        for container in self.containers("version"):
            if container.labels.get(LABEL_VERSION) == version:
                container.stop(timeout=30)
                remove(container)
        return self.traffic()

    def stop(self) -> bool:
        """Remove everything the environment runs: versions, front, its routes and network."""
        self._cached_token = ""
        found = self.containers()
        for container in found:
            remove(container)
        from docker.errors import NotFound

        with contextlib.suppress(NotFound):
            self.client.volumes.get(f"{self.base}-front").remove(force=True)
        for network in (self.base, edge_name(self.model, self.env)):
            with contextlib.suppress(NotFound):
                self.client.networks.get(network).remove()
        return bool(found)

    def undeploy(self) -> Stopped:
        """Remove everything the environment runs: which containers, the versions they served."""
        found = self.containers()
        served = {c.labels[LABEL_VERSION] for c in found if LABEL_VERSION in c.labels}
        self.stop()
        return Stopped([f"container {c.name}" for c in found], sorted(served, key=_number))

    def _network(self, name: str, internal: bool) -> Any:
        """The network ``name`` as wanted; one left with the other setting (an earlier
        deploy.ENV.egress) is made again, unless containers still use it."""
        from docker.errors import APIError, NotFound

        try:
            network = self.client.networks.get(name)
            if bool(network.attrs.get("Internal")) == internal:
                return network
            network.remove()
        except NotFound:
            pass
        except APIError:  # in use: it stays as it is until the environment is undeployed
            return network
        labels = _labels(self.model, self.env, "network")
        return self.client.networks.create(name, driver="bridge", internal=internal, labels=labels)

    def _forget(self, version: str) -> None:
        routes = self._admin("GET")
        upstreams = {v: u for v, u in routes["upstreams"].items() if v != version}
        weights = {v: w for v, w in routes["weights"].items() if v != version}
        self._admin("PUT", {"upstreams": upstreams, "weights": weights})

    def _wait_ready(self, container: Any, version: str) -> str | None:
        """None once the version answers /v2/health/ready through the front; else why not."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            container.reload()
            health = container.attrs.get("State", {}).get("Health", {}).get("Status")
            if health == "unhealthy":
                return "its HEALTHCHECK says unhealthy"
            if container.status in ("exited", "dead"):
                return f"it {container.status}"
            if int(container.attrs.get("RestartCount") or 0) > 0:
                return "it crashed and was restarted"
            request = urllib.request.Request(
                f"{self.url}/v2/health/ready", headers={"x-model-version": version}
            )
            try:
                with urllib.request.urlopen(request, timeout=2) as answer:
                    if answer.status == 200:
                        return None
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        return f"not ready in {READY_TIMEOUT_S:g}s"

    # --- the front's admin API and the probes shared with the local target --------------------

    def _token(self) -> str:
        if self._cached_token:
            return self._cached_token
        for front in self.containers("front"):
            for item in front.attrs.get("Config", {}).get("Env") or []:
                key, _, value = item.partition("=")
                if key == TOKEN_ENV:
                    self._cached_token = str(value)
                    return self._cached_token
        raise ServiceError(f"docker: no front runs for {self.env.name}")

    def _admin(self, method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return probes.admin_call(
            f"{self.url}/admin/front", self._token(), method, body, "docker front", timeout=30
        )


def _number(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (0, version)
