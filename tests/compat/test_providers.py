"""Real inspect_ai sandbox providers, ported by changing one import, run by corral.

inspect-ec2-sandbox 0.1.1, inspect-k8s-sandbox 0.14.0 and inspect-podman 0.1.2
are downloaded (``pip download --no-deps``, once per session, into a pytest
temporary directory), unpacked, and their ``inspect_ai.util`` imports
rewritten to ``corral.util``: nothing else in their code changes. What they
import from inspect_ai's *private* modules is given to them by small stub
modules (:data:`STUBS`), and the pure-Python libraries they need
(:data:`DEPENDENCIES`) are downloaded too. The cloud SDKs are the boundary:
``boto3``, ``botocore`` and ``kubernetes`` are replaced by recording fakes
(:data:`SDK_FAKES`), and podman's command lines by a recorder patched over
the ``subprocess`` each of its modules imported.

Each provider must import, register through ``corral.util.sandboxenv``,
leave no abstract method, and turn a ``dict`` config into its model (through
``config_deserialize``, or ``ComposeConfig`` for a docker-compatible one),
also across a spec's JSON round trip. Each then goes through corral's whole
lifecycle (task_init, sample_init, an exec the fake sees, sample_cleanup,
task_cleanup), each fake recording what the provider asked of it: podman and
EC2 under trio and asyncio, Kubernetes under asyncio, with a trio test that
pins down where it fails there. ``docs/migrating.md`` says what each
provider needed.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import importlib
import json
import logging
import re
import subprocess
import sys
import threading
import traceback
import types
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import corral
import corral.sandboxes
import corral.util
from corral.sandboxes import _registry as registry
from corral.util import ComposeConfig, ExecResult, SandboxEnvironmentSpec, sandbox

#: The providers, as released.
PROVIDERS = ["inspect-ec2-sandbox==0.1.1", "inspect-k8s-sandbox==0.14.0", "inspect-podman==0.1.2"]

#: Libraries the providers import that corral does not install (pure Python but rpds-py).
DEPENDENCIES = [
    "tenacity==9.2.1",
    "pydantic-settings==2.16.3",
    "python-dotenv==1.2.4",
    "shortuuid==1.0.13",
    "semver==3.1.2",
    "jsonschema==4.26.0",
    "jsonschema-specifications==2025.9.1",
    "referencing==0.37.0",
    "rpds-py==2026.9.1",
    "websocket-client==1.9.2",
    "urllib3==2.8.0",
]

#: The provider packages whose imports are rewritten.
PACKAGES = ["ec2sandbox", "k8s_sandbox", "inspect_podman"]

#: What the providers name in their ``inspect_ai`` entry points: loading one registers
#: its provider; corral loads them when a lookup misses.
ENTRY_POINTS = [
    "ec2sandbox._ec2_sandbox_environment",
    "k8s_sandbox._sandbox_environment",
    "inspect_podman.providers:podman",
]

#: ``from inspect_ai.util import`` / ``import inspect_ai.util``, and nothing below it.
_UTIL_IMPORT = re.compile(r"^(\s*(?:from|import)\s+)inspect_ai\.util(?![\w.])", re.MULTILINE)


class PrerequisiteError(Exception):
    """Stands in for ``inspect_ai._util.error.PrerequisiteError`` (a missing tool)."""


async def _coro_print_exceptions(context: str, func: Any, *args: Any) -> None:
    """Stands in for ``inspect_ai._util._async.coro_print_exceptions``: run, print a failure."""
    try:
        await func(*args)
    except Exception as exc:
        print(f"Error {context}: {exc}")


#: inspect_ai's private modules the providers import, and what stands in for them.
#: ``inspect_ai.util`` itself is an empty package here: an import left unrewritten fails.
STUBS: dict[str, dict[str, Any]] = {
    "inspect_ai": {},
    "inspect_ai._util": {},
    # podman, k8s: raised when podman or helm/kubectl is missing
    "inspect_ai._util.error": {"PrerequisiteError": PrerequisiteError},
    # podman: where inspect_ai keeps its internal images' Dockerfiles
    "inspect_ai._util.constants": {"PKG_PATH": Path("/nonexistent/inspect_ai")},
    # podman: cleanup helper
    "inspect_ai._util._async": {"coro_print_exceptions": _coro_print_exceptions},
    # k8s: the TRACE log level (corral.util has it as well)
    "inspect_ai._util.logger": {"TRACE": corral.util.TRACE},
    # podman: the running sample (id, epoch), to name the compose project; None outside inspect
    "inspect_ai.log": {},
    "inspect_ai.log._samples": {"sample_active": lambda: None},
    # k8s: the running sample's TaskState, for its metadata; None outside inspect
    "inspect_ai.solver": {},
    "inspect_ai.solver._task_state": {"sample_state": lambda: None},
    # podman: HostMapping and PortMapping from a private module (corral.sandboxes has both)
    "inspect_ai.util": {},
    "inspect_ai.util._sandbox": {},
    "inspect_ai.util._sandbox.environment": {
        "HostMapping": corral.sandboxes.HostMapping,
        "PortMapping": corral.sandboxes.PortMapping,
    },
}


class _Recorder:
    """An SDK object: any attribute is another recorder, any call is recorded."""

    def __init__(self, calls: list[str], path: str) -> None:
        self._calls = calls
        self._path = path

    def __getattr__(self, name: str) -> _Recorder:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Recorder(self._calls, f"{self._path}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> _Recorder:
        self._calls.append(self._path)
        return _Recorder(self._calls, f"{self._path}()")

    def __mro_entries__(self, bases: tuple[object, ...]) -> tuple[type, ...]:
        return (Exception,)  # ``class X(ClientError)`` or ``except ApiException``


#: Calls made on the fake SDKs, in order (``boto3.Session``, ``kubernetes.client.CoreV1Api``).
SDK_CALLS: list[str] = []


class _FakeSDK(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        path = f"{self.__name__}.{name}"
        if name[:1].isupper() and name.endswith(("Error", "Exception")):
            return type(name, (Exception,), {})  # catchable, as the providers catch them
        if name[:1].isupper():  # a class: usable in annotations, its instances record

            def init(instance: _Recorder, *args: Any, **kwargs: Any) -> None:
                SDK_CALLS.append(path)
                _Recorder.__init__(instance, SDK_CALLS, f"{path}()")

            return type(name, (_Recorder,), {"__init__": init})
        return _Recorder(SDK_CALLS, path)


#: The cloud SDKs: fakes that record every call made on them.
SDK_FAKES = [
    "boto3",
    "botocore",
    "botocore.exceptions",
    "kubernetes",
    "kubernetes.client",
    "kubernetes.client.exceptions",
    "kubernetes.config",
    "kubernetes.stream",
    "kubernetes.stream.ws_client",
]


def _pip_download(requirements: list[str], into: Path) -> list[Path]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "-q",
            "-d",
            str(into),
            *requirements,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if result.returncode != 0:
        pytest.fail(
            f"pip download of {requirements} failed (exit {result.returncode}):\n{result.stderr}",
            pytrace=False,
        )
    return sorted(into.glob("*.whl"))


@pytest.fixture(scope="session")
def provider_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The providers and their libraries, unpacked, with ``inspect_ai.util`` rewritten."""
    root = tmp_path_factory.mktemp("inspect-providers")
    site = root / "site"
    for name, requirements in (("providers", PROVIDERS), ("deps", DEPENDENCIES)):
        directory = root / name
        directory.mkdir()
        for wheel in _pip_download(requirements, directory):
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(site)
    for package in PACKAGES:
        for path in (site / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            rewritten = _UTIL_IMPORT.sub(r"\1corral.util", text)
            if rewritten != text:
                path.write_text(rewritten, encoding="utf-8")
    return site


@pytest.fixture(scope="module")
def providers(provider_site: Path) -> Iterator[dict[str, type[Any]]]:
    """The three provider classes, imported with the stubs and fakes in place.

    Everything is undone when the module's tests are done: ``sys.modules``,
    ``sys.path`` and corral's registry are as they were.
    """
    before = set(sys.modules)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registry, "_table", dict(registry._table))
        mp.syspath_prepend(str(provider_site))
        for name, attributes in STUBS.items():
            module = types.ModuleType(name)
            module.__path__ = []  # a package, so that its stubbed submodules import
            module.__dict__.update(attributes)
            mp.setitem(sys.modules, name, module)
        for name in SDK_FAKES:
            fake = _FakeSDK(name)
            fake.__path__ = []
            mp.setitem(sys.modules, name, fake)
        # Found as a porter's users would: the wheels' own `inspect_ai` entry points
        # (their dist-info is on the path), read when the lookup misses.
        mp.setattr(registry, "_inspect_entry_points_loaded", False)
        found = {ep.value for ep in registry._inspect_entry_points()}
        assert found >= set(ENTRY_POINTS), found
        try:
            yield {name: registry.sandbox_class(name) for name in ("ec2", "k8s", "podman")}
        finally:
            for name in set(sys.modules) - before:
                if name.split(".")[0] in (*PACKAGES, *STUBS, *SDK_FAKES):
                    del sys.modules[name]


@pytest.mark.parametrize("name", ["ec2", "k8s", "podman"])
def test_provider_imports_and_registers(providers: dict[str, type[Any]], name: str) -> None:
    """The provider registers through corral.util.sandboxenv, with nothing left abstract."""
    cls = providers[name]
    assert issubclass(cls, corral.util.SandboxEnvironment)
    assert registry.registered_sandboxes()[name] is cls
    assert not cls.__abstractmethods__
    source = Path(sys.modules[cls.__module__].__file__ or "").read_text()
    assert "inspect_ai.util import" not in source
    assert "corral.util import" in source


#: A dict config for each provider, and the model corral must turn it into.
CONFIGS: dict[str, tuple[dict[str, Any], str]] = {
    "ec2": ({"region": "eu-west-2", "instance_type": "t3.small"}, "Ec2SandboxEnvironmentConfig"),
    "k8s": ({"chart": "my-chart", "values": "values.yaml"}, "K8sSandboxEnvironmentConfig"),
    "podman": ({"services": {"default": {"image": "python:3.12"}}}, "ComposeConfig"),
}


@pytest.mark.parametrize("name", ["ec2", "k8s", "podman"])
def test_dict_config_becomes_the_providers_model(
    providers: dict[str, type[Any]], name: str
) -> None:
    """A dict config becomes the provider's model, and a spec keeps it across JSON."""
    config, model_name = CONFIGS[name]
    model = registry.provider_config(providers[name], config)
    assert isinstance(model, BaseModel)
    assert type(model).__name__ == model_name
    spec = SandboxEnvironmentSpec(name, config)
    assert type(spec.config).__name__ == model_name
    again = SandboxEnvironmentSpec.model_validate_json(spec.model_dump_json())
    assert again == spec


# -- the podman lifecycle ----------------------------------------------------------------------


@dataclass
class FakePodman:
    """Answers podman's command lines as a podman with one running container would."""

    calls: list[list[str]] = field(default_factory=list)
    project: str | None = None

    async def __call__(self, args: list[str], **kwargs: Any) -> ExecResult[str]:
        self.calls.append(list(args))
        if "-p" in args:  # podman compose -p <project> -f <file> up|down|build|pull
            self.project = args[args.index("-p") + 1]
        if args[:2] == ["podman", "ps"]:
            return self._ok(json.dumps(self._containers(all="--all" in args)))
        if args[:2] == ["podman", "images"]:
            return self._ok("[]")
        if args[:2] == ["podman", "exec"]:
            if args[-3:] == ["sh", "-c", "pwd"]:
                return self._ok("/work\n")
            return self._ok(f"ran {args[args.index('c-default') + 1 :]}\n")
        return self._ok("")

    def _containers(self, *, all: bool) -> list[dict[str, Any]]:
        labels = {"io.podman.compose.project": self.project, "io.podman.compose.service": "default"}
        return [{"Names": ["c-default"], "Name": "c-default", "Labels": labels, "State": "running"}]

    @staticmethod
    def _ok(stdout: str) -> ExecResult[str]:
        return ExecResult(success=True, returncode=0, stdout=stdout, stderr="")


@pytest.mark.anyio
async def test_podman_goes_through_corrals_lifecycle(
    providers: dict[str, type[Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """task_init, sample_init, an exec podman sees, sample_cleanup, task_cleanup."""
    fake = FakePodman()
    for module in ("compose", "podman", "prereqs", "internal", "cleanup"):
        monkeypatch.setattr(f"inspect_podman.{module}.subprocess", fake)
    monkeypatch.setattr("inspect_podman.prereqs._COMPOSE_CMD", None)
    monkeypatch.chdir(tmp_path)  # podman writes its generated compose file here
    cls = providers["podman"]
    seen: list[object] = []
    task_init = cls.task_init.__func__

    async def recording_task_init(klass: type[Any], task_name: str, config: Any) -> None:
        seen.append(config)
        await task_init(klass, task_name, config)

    monkeypatch.setattr(cls, "task_init", classmethod(recording_task_init))
    config, _ = CONFIGS["podman"]

    async with corral.task("port", sandbox=("podman", config)) as task, task.sample(1):
        result = await sandbox().exec(["echo", "hi"])

    assert result.stdout == "ran ['echo', 'hi']\n"
    assert isinstance(seen[0], ComposeConfig)
    commands = [" ".join(c) for c in fake.calls]
    compose = [c.split(" -f ")[1].split(" ", 1)[1] for c in commands if " -f " in c]
    assert compose[:1] == ["build"]
    assert "up --detach" in compose
    assert compose[-1] == "down --volumes"  # sample_cleanup
    assert any(c.startswith("podman exec --workdir /work c-default echo hi") for c in commands)


# -- the EC2 lifecycle -------------------------------------------------------------------------


@dataclass
class FakeAWS:
    """boto3, answering EC2, SSM and S3 as an account with one running instance would.

    Every client call is recorded as ``(service, operation, kwargs)``. ``run_instances``
    starts ``i-0001``, the waiters return at once, SSM reports the instance online, and
    ``send_command`` leaves the command's stdout where SSM puts it in the S3 bucket (an
    empty stderr leaves no object, so ``head_object`` on it is a 404, as on S3).
    """

    client_error: type[Exception]
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    sessions: int = 0
    objects: dict[tuple[str, str], bytes] = field(default_factory=dict)

    def Session(self, *args: Any, **kwargs: Any) -> FakeAWS:  # as boto3 spells it
        self.sessions += 1
        return self

    def client(self, service: str, region_name: str | None = None, **kwargs: Any) -> _AWSClient:
        return _AWSClient(self, service, region_name or "us-east-1")

    def wait(self, service: str, waiter: str, **kw: Any) -> None:
        """A waiter's ``wait``: the state it waits for is already there."""
        self._record(service, f"waiter:{waiter}", kw)

    def _record(self, service: str, op: str, kwargs: dict[str, Any]) -> None:
        self.calls.append((service, op, kwargs))

    def answer(self, service: str, op: str, **kw: Any) -> Any:
        """Record a call to *service*'s *op*, and answer it."""
        self._record(service, op, kw)
        if op == "run_instances":
            return {"Instances": [{"InstanceId": "i-0001"}]}
        if op == "describe_instance_information":
            return {"InstanceInformationList": [{"PingStatus": "Online"}]}
        if op == "send_command":
            script = "\n".join(kw["Parameters"]["commands"])
            key = (
                f"{kw['OutputS3KeyPrefix']}cmd-1/{kw['InstanceIds'][0]}"
                "/awsrunShellScript/0.awsrunShellScript/stdout"
            )
            self.objects[(kw["OutputS3BucketName"], key)] = f"ran {script}\n".encode()
            return {"Command": {"CommandId": "cmd-1"}}
        if op == "get_command_invocation":
            return {"ResponseCode": 0, "Status": "Success"}
        if op in ("head_object", "get_object"):
            body = self.objects.get((kw["Bucket"], kw["Key"]))
            if body is None:
                error = self.client_error("404")
                error.response = {"Error": {"Code": "404"}}  # type: ignore[attr-defined]
                raise error
            if op == "head_object":
                return {"ContentLength": len(body)}
            return {"Body": types.SimpleNamespace(read=lambda: body)}
        if op == "list_objects_v2":
            return {}
        return {}

    def operations(self) -> list[str]:
        return [f"{service}.{op}" for service, op, _ in self.calls]


#: The client operations the EC2 provider calls; any other is an ``AttributeError``.
_AWS_OPERATIONS: dict[str, frozenset[str]] = {
    "ec2": frozenset({"run_instances", "describe_images", "terminate_instances"}),
    "ssm": frozenset(
        {
            "describe_instance_information",
            "get_parameters",
            "send_command",
            "get_command_invocation",
            "cancel_command",
        }
    ),
    "s3": frozenset(
        {"head_object", "get_object", "delete_object", "list_objects_v2", "delete_objects"}
    ),
}


class _AWSClient:
    """``session.client(service)``: its operations go to :meth:`FakeAWS.answer`."""

    def __init__(self, aws: FakeAWS, service: str, region: str) -> None:
        self._aws = aws
        self._service = service
        self.meta = types.SimpleNamespace(region_name=region)
        self.exceptions = types.SimpleNamespace(NoSuchKey=type("NoSuchKey", (Exception,), {}))

    def get_waiter(self, name: str) -> Any:
        return types.SimpleNamespace(wait=functools.partial(self._aws.wait, self._service, name))

    def __getattr__(self, op: str) -> Any:
        if op not in _AWS_OPERATIONS.get(self._service, frozenset()):
            raise AttributeError(f"{self._service} client has no {op!r} in the fake")
        return functools.partial(self._aws.answer, self._service, op)


#: What the default EC2 instance provider needs beyond the names of the fields.
EC2_CONFIG: dict[str, Any] = {
    **CONFIGS["ec2"][0],
    "ami_id": "ami-0123",
    "security_group_id": "sg-1",
    "subnet_id": "subnet-1",
    "instance_profile": "sandbox-profile",
    "s3_bucket": "sandbox-bucket",
}


@pytest.mark.anyio
async def test_ec2_goes_through_corrals_lifecycle(
    providers: dict[str, type[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An instance is started for the sample, the exec goes through SSM, cleanup terminates it."""
    cls = providers["ec2"]
    module = sys.modules[cls.__module__]
    aws = FakeAWS(client_error=module.ClientError)
    monkeypatch.setattr(module.boto3, "Session", aws.Session)
    monkeypatch.setattr(cls, "_session", None)
    monkeypatch.setattr(cls, "_tracked_instances", set())
    seen: list[object] = []
    task_init = cls.task_init.__func__

    async def recording_task_init(klass: type[Any], task_name: str, config: Any) -> None:
        seen.append(config)
        await task_init(klass, task_name, config)

    monkeypatch.setattr(cls, "task_init", classmethod(recording_task_init))

    async with corral.task("port", sandbox=("ec2", EC2_CONFIG)) as task:
        assert aws.calls == []  # task_init only makes the session
        async with task.sample(1):
            started = aws.operations()
            result = await sandbox().exec(["echo", "hi"])
            ran = aws.operations()[len(started) :]
        cleaned = aws.operations()[len(started) + len(ran) :]

    assert type(seen[0]).__name__ == "Ec2SandboxEnvironmentConfig"
    assert aws.sessions == 1
    assert started == [
        "ec2.run_instances",
        "ec2.waiter:instance_running",
        "ssm.describe_instance_information",
    ]
    run = aws.calls[0][2]
    assert (run["ImageId"], run["InstanceType"], run["SubnetId"]) == (
        "ami-0123",
        "t3.small",
        "subnet-1",
    )
    assert ran == [
        "ssm.send_command",
        "ssm.waiter:command_executed",
        "s3.head_object",  # stdout: there
        "s3.get_object",
        "s3.head_object",  # stderr: a 404, so ""
        "ssm.get_command_invocation",  # the exit status
        "s3.delete_object",
        "s3.delete_object",
        "s3.list_objects_v2",
    ]
    send = next(kw for service, op, kw in aws.calls if op == "send_command")
    assert send["InstanceIds"] == ["i-0001"]
    assert send["DocumentName"] == "AWS-RunShellScript"
    assert send["Parameters"]["commands"] == ["echo hi"]
    assert result.success
    assert result.stdout == "ran echo hi\n"
    assert result.stderr == ""
    assert cleaned == ["ec2.terminate_instances"]
    assert aws.calls[-1][2] == {"InstanceIds": ["i-0001"]}
    assert cls._tracked_instances == set()


# -- the Kubernetes lifecycle ------------------------------------------------------------------

#: The manifest ``helm install --output=json`` renders: one pod, the ``default`` sandbox.
_K8S_MANIFEST = """\
apiVersion: v1
kind: Pod
metadata:
  name: {release}-default
  labels:
    inspect/service: default
"""


@dataclass
class FakeCluster:
    """helm and the Kubernetes API, answering as a cluster whose release becomes ready.

    ``helm`` is recorded as its argument list; each Kubernetes call as a string, and
    each exec as the shell script the provider wrote to the pod's stdin. The release's
    one pod is ``Running`` and ``Ready`` as soon as it is installed; an exec prints
    ``ran <script's command line>`` and the sentinel with exit status 0, as the pod's
    ``/bin/sh`` would.
    """

    helm: list[list[str]] = field(default_factory=list)
    api: list[str] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)
    release: str | None = None

    # -- helm, at asyncio.create_subprocess_exec

    async def create_subprocess_exec(self, program: str, *args: str, **kwargs: Any) -> Any:
        asyncio.get_running_loop()  # as asyncio's does: it needs asyncio's running loop
        self.helm.append([program, *args])
        stdout = b""
        if args[0] == "install":
            self.release = args[1]
            manifest = _K8S_MANIFEST.format(release=self.release)
            stdout = json.dumps({"manifest": manifest}).encode()

        async def communicate() -> tuple[bytes, bytes]:
            return stdout, b""

        return types.SimpleNamespace(returncode=0, communicate=communicate, terminate=lambda: None)

    async def corral_subprocess(self, args: list[str], **kwargs: Any) -> ExecResult[str]:
        self.helm.append(list(args))  # helm version --short, through corral.util.subprocess
        return ExecResult(success=True, returncode=0, stdout="v3.15.3+g3bb50bb\n", stderr="")

    # -- kubernetes.config, kubernetes.client, kubernetes.stream

    def load_kube_config(self, *args: Any, **kwargs: Any) -> None:
        self.api.append("config.load_kube_config")

    def list_kube_config_contexts(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        context = {"name": "fake", "context": {"namespace": "sandboxes"}}
        return [context], context

    def new_client_from_config(self, *args: Any, **kwargs: Any) -> object:
        return object()

    def CoreV1Api(self, *args: Any, **kwargs: Any) -> FakeCluster:  # as kubernetes spells it
        return self

    def _pod(self) -> dict[str, Any]:
        return {
            "metadata": {
                "name": f"{self.release}-default",
                "uid": "uid-1",
                "labels": {"inspect/service": "default"},
            },
            "spec": {"containers": [{"name": "default"}]},
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "default", "restartCount": 0}],
            },
        }

    def list_namespaced_pod(self, namespace: str, *, label_selector: str, **kw: Any) -> Any:
        self.api.append(f"list_namespaced_pod {namespace} {label_selector}")
        pods = [self._pod()] if label_selector.endswith(f"={self.release}") else []
        return types.SimpleNamespace(data=json.dumps({"items": pods}))

    def read_namespaced_pod(self, *, name: str, namespace: str, **kw: Any) -> Any:
        self.api.append(f"read_namespaced_pod {namespace} {name}")
        return types.SimpleNamespace(data=json.dumps(self._pod()))

    def connect_get_namespaced_pod_exec(self, **kwargs: Any) -> None:
        raise AssertionError("called only through kubernetes.stream.stream")

    def stream(self, func: Any, **kwargs: Any) -> _FakeWebSocket:
        assert func == self.connect_get_namespaced_pod_exec
        self.api.append(f"stream {kwargs['namespace']} {kwargs['name']} {kwargs['command']}")
        return _FakeWebSocket(self)


class _FakeWebSocket:
    """The ``WSClient`` of an exec: a ``/bin/sh`` that runs the script it is sent."""

    def __init__(self, cluster: FakeCluster) -> None:
        self._cluster = cluster
        self._stdin = ""
        self._stdout: bytes | None = None
        self._open = True

    def write_stdin(self, data: str | bytes) -> None:
        self._stdin += data if isinstance(data, str) else data.decode()

    def update(self, timeout: float | None = None) -> None:
        if self._stdout is None and self._stdin.endswith("exit $returncode\n"):
            self._cluster.scripts.append(self._stdin)
            command = self._stdin.splitlines()[0]
            self._stdout = f"ran {command}\n<completed-sentinel-value-0>".encode()

    def is_open(self) -> bool:
        return self._open

    def peek_stderr(self) -> bool:
        return False

    def peek_stdout(self) -> bool:
        return bool(self._stdout)

    def read_stdout(self) -> bytes:
        stdout, self._stdout = self._stdout or b"", b""
        return stdout

    def write_channel(self, channel: int, data: bytes) -> None:
        pass

    def close(self) -> None:
        self._open = False


@pytest.fixture
def cluster(
    providers: dict[str, type[Any]], monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeCluster]:
    """A :class:`FakeCluster` in place of helm and the kubernetes SDK, singletons reset."""
    fake = FakeCluster()
    helm = importlib.import_module("k8s_sandbox._helm")
    api = importlib.import_module("k8s_sandbox._kubernetes_api")
    fake_asyncio = types.ModuleType("asyncio")
    fake_asyncio.__dict__.update(vars(asyncio))
    fake_asyncio.create_subprocess_exec = fake.create_subprocess_exec  # type: ignore[attr-defined]
    monkeypatch.setattr(helm, "asyncio", fake_asyncio)  # the provider's name, not asyncio's
    monkeypatch.setattr("k8s_sandbox._prereqs.subprocess", fake.corral_subprocess)
    monkeypatch.setattr(api, "config", fake)
    monkeypatch.setattr(api, "client", fake)
    monkeypatch.setattr("k8s_sandbox._pod.op.stream", fake.stream)
    monkeypatch.setattr(api._Config, "_instance", None)
    monkeypatch.setattr(api, "_thread_local", threading.local())
    monkeypatch.setattr("k8s_sandbox._pod.executor.PodOpExecutor._instance", None)
    # uninstall's --wait flag comes from a synchronous `helm version` (subprocess.run), cached
    run = subprocess.run

    def helm_run(args: Any, *a: Any, **kw: Any) -> Any:
        if not (isinstance(args, list) and args[:1] == ["helm"]):
            return run(args, *a, **kw)
        fake.helm.append(list(args))
        return subprocess.CompletedProcess(args, 0, stdout="v3.15.3+g3bb50bb\n", stderr="")

    monkeypatch.setattr(subprocess, "run", helm_run)
    helm._get_wait_flag.cache_clear()
    yield fake
    helm._get_wait_flag.cache_clear()


def _k8s_config(tmp_path: Path) -> dict[str, Any]:
    chart = tmp_path / "chart"
    chart.mkdir()
    (tmp_path / "values.yaml").write_text("services: {}\n")
    return {"chart": str(chart), "values": str(tmp_path / "values.yaml")}


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_k8s_goes_through_corrals_lifecycle_under_asyncio(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    """helm install, the pod listed ready, an exec through the stream API, helm uninstall."""
    config = _k8s_config(tmp_path)

    async with corral.task("port", sandbox=("k8s", config)) as task:
        assert cluster.helm == [["helm", "version", "--short"]]  # task_init: prerequisites
        async with task.sample(1):
            release = cluster.release
            installed = list(cluster.helm)
            result = await sandbox().exec(["echo", "hi"])
        uninstalled = cluster.helm[len(installed) :]
    after_task = cluster.helm[len(installed) + len(uninstalled) :]

    assert release is not None
    install = installed[1]
    assert install[:4] == ["helm", "install", release, config["chart"]]
    assert "--namespace=sandboxes" in install
    assert "--output=json" in install
    assert install[-2:] == ["--values", config["values"]]
    selector = f"app.kubernetes.io/instance={release}"
    pod = f"{release}-default"
    assert cluster.api[:1] == ["config.load_kube_config"]
    assert cluster.api[1:] == [
        f"list_namespaced_pod sandboxes {selector}",  # readiness, from the watch cache
        f"list_namespaced_pod sandboxes {selector}",  # confirmed
        f"read_namespaced_pod sandboxes {pod}",  # exec: the pod was not replaced
        f"stream sandboxes {pod} ['/bin/sh']",
    ]
    assert cluster.scripts[0].splitlines()[0] == "echo hi"
    assert result.success
    assert result.stdout == "ran echo hi\n"
    # sample_cleanup (helm version is read once, for uninstall's --wait flag)
    assert uninstalled == [
        ["helm", "version", "--short"],
        [
            "helm",
            "uninstall",
            release,
            "--namespace",
            "sandboxes",
            "--wait",
            "--timeout",
            "600s",
            "--ignore-not-found",
        ],
    ]
    assert after_task == []  # task_cleanup: nothing left installed


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.anyio
async def test_k8s_fails_under_trio_at_its_first_asyncio_call(
    cluster: FakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under trio sample_init fails at ``asyncio.create_subprocess_exec`` (helm install).

    That needs a running asyncio loop, which trio is not, so nothing is installed. The
    release stays tracked, and task_cleanup fails in turn (``asyncio.gather`` of its
    uninstalls), which corral reports as a ``RuntimeWarning`` and does not raise.
    """
    config = _k8s_config(tmp_path)
    # corral logs the task_cleanup failure too; a captured log record would keep its
    # traceback, and the coroutine in it, alive past the test
    monkeypatch.setattr(logging.getLogger("corral.sandbox"), "disabled", True)

    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        with pytest.raises(Exception) as raised:  # noqa: PT011 (checked below)
            async with corral.task("port", sandbox=("k8s", config)) as task, task.sample(1):
                pass
        gc.collect()  # the uninstall coroutine asyncio.gather made and never ran

    # trio's nursery in corral's task groups it
    error: BaseException = raised.value
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    assert isinstance(error, RuntimeError), repr(raised.value)
    assert str(error) == "no running event loop"
    # raised from the helm subprocess call
    assert "create_subprocess_exec" in "".join(traceback.format_tb(error.__traceback__))

    messages = [str(w.message) for w in warned]
    assert any(
        m.startswith("task_cleanup of sandbox 'k8s' failed: RuntimeError(") for m in messages
    ), messages
    assert "coroutine 'Release.uninstall' was never awaited" in messages
    # task_init's prerequisite check, and uninstall's --wait flag when sample_init cleans
    # up after the failure: no helm command went through asyncio
    assert cluster.helm == [["helm", "version", "--short"]] * 2
    assert cluster.release is None
