"""Compose files as providers read them: parsing, extensions, round trips, hostile files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from corral.sandboxes._compose import MAX_COMPOSE_DEPTH, MAX_COMPOSE_NODES
from corral.util import (
    ComposeBuild,
    ComposeConfig,
    ComposeHealthcheck,
    ComposeService,
    ComposeVolumeMount,
    is_compose_yaml,
    is_dockerfile,
    parse_compose_yaml,
)

#: A file with what the k8s and podman providers read: build, image, healthcheck,
#: both volume syntaxes, x- extensions at every level, anchors and a merge key.
REALISTIC = """\
version: "3.8"
x-base: &base
  environment:
    PYTHONUNBUFFERED: 1
    EMPTY:
  init: true
services:
  default:
    <<: *base
    build:
      context: ./agent
      dockerfile: agent.Dockerfile
      x-cache: registry
    image: agent:latest
    command: ["tail", "-f", "/dev/null"]
    working_dir: /work
    user: "1000"
    x-default: true
    x-k8s:
      resources: {limits: {memory: 1Gi}}
    healthcheck:
      test: ["CMD", "curl", "-f", "http://localhost"]
      interval: 5s
      timeout: 2s
      start_period: 10s
      retries: 3
      x-note: probe
    volumes:
      - ./data:/data:ro
      - type: bind
        source: ./src
        target: /src
        read_only: true
        bind: {propagation: rprivate, create_host_path: true}
      - {type: tmpfs, target: /scratch, tmpfs: {size: 1000000}}
    ports: ["8080:80", 9000]
    networks: [inner]
    restart: no
    deploy:
      resources:
        limits: {cpus: 2, memory: 2g}
        reservations:
          devices: [{driver: nvidia, count: all, capabilities: [gpu]}]
  victim:
    image: nginx
    build: ./victim
    environment: ["A=1", "B"]
    depends_on: [default]
volumes:
  data: {}
networks:
  inner: {driver: bridge}
x-top: {owner: tests}
"""


def write(tmp_path: Path, text: str | bytes, name: str = "compose.yaml") -> str:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return str(path)


# -- a real file -----------------------------------------------------------------------------


def test_parses_the_fields_providers_read(tmp_path: Path) -> None:
    config = parse_compose_yaml(write(tmp_path, REALISTIC))
    assert list(config.services) == ["default", "victim"]
    web = config.services["default"]
    assert web.image == "agent:latest"
    assert isinstance(web.build, ComposeBuild)
    assert (web.build.context, web.build.dockerfile) == ("./agent", "agent.Dockerfile")
    assert web.build.extensions == {"x-cache": "registry"}
    assert web.command == ["tail", "-f", "/dev/null"]
    assert (web.working_dir, web.user, web.init) == ("/work", "1000", True)
    assert web.x_default is True
    assert web.extensions == {"x-k8s": {"resources": {"limits": {"memory": "1Gi"}}}}
    assert web.healthcheck is not None
    assert web.healthcheck.test == ["CMD", "curl", "-f", "http://localhost"]
    assert (web.healthcheck.interval, web.healthcheck.timeout) == ("5s", "2s")
    assert (web.healthcheck.start_period, web.healthcheck.retries) == ("10s", 3)
    assert web.healthcheck.extensions == {"x-note": "probe"}
    assert web.volumes is not None
    short, bind, tmpfs = web.volumes
    assert short == "./data:/data:ro"
    assert isinstance(bind, ComposeVolumeMount)
    assert (bind.type, bind.source, bind.target, bind.read_only) == ("bind", "./src", "/src", True)
    assert bind.bind is not None
    assert (bind.bind.propagation, bind.bind.create_host_path) == ("rprivate", True)
    assert isinstance(tmpfs, ComposeVolumeMount)
    assert tmpfs.tmpfs is not None
    assert tmpfs.tmpfs.size == 1000000
    assert web.ports == ["8080:80", 9000]
    assert web.networks == ["inner"]
    assert web.deploy is not None
    assert web.deploy.resources is not None
    limits, reservations = web.deploy.resources.limits, web.deploy.resources.reservations
    assert limits is not None
    assert (limits.cpus, limits.memory) == ("2", "2g")  # a number of CPUs becomes text
    assert reservations is not None
    assert reservations.devices is not None
    assert reservations.devices[0].count == "all"
    victim = config.services["victim"]
    assert (victim.image, victim.build, victim.environment) == ("nginx", "./victim", ["A=1", "B"])
    assert victim.depends_on == ["default"]
    assert victim.x_default is None
    assert victim.extensions == {}
    assert config.volumes == {"data": {}}
    assert config.networks == {"inner": {"driver": "bridge"}}
    assert config.extensions == {
        "x-base": {"environment": {"PYTHONUNBUFFERED": 1, "EMPTY": None}, "init": True},
        "x-top": {"owner": "tests"},
    }


def test_yaml_1_1_and_compose_disagreements_are_settled_as_compose_does(tmp_path: Path) -> None:
    config = parse_compose_yaml(write(tmp_path, REALISTIC))
    web = config.services["default"]
    assert web.restart == "no"  # YAML 1.1 reads a bare no as False
    assert web.environment == {"PYTHONUNBUFFERED": "1", "EMPTY": None}  # numbers become text


def test_unquoted_base_60_ports_are_numbers_as_yaml_1_1_has_them(tmp_path: Path) -> None:
    """The reason the docs say to quote ports: ``safe_load`` reads YAML 1.1."""
    config = parse_compose_yaml(write(tmp_path, 'services: {a: {ports: ["22:22", 22:22]}}\n'))
    assert config.services["a"].ports == ["22:22", 1342]


def test_the_obsolete_version_key_is_accepted_and_dropped(tmp_path: Path) -> None:
    config = parse_compose_yaml(write(tmp_path, 'version: "3"\nservices: {a: {image: x}}\n'))
    assert "version" not in config.model_dump(by_alias=True)
    assert config == ComposeConfig(services={"a": ComposeService(image="x")})


def test_a_path_object_is_accepted(tmp_path: Path) -> None:
    path = Path(write(tmp_path, "services: {}\n"))
    assert parse_compose_yaml(path).services == {}


def test_services_may_be_limited_to_one(tmp_path: Path) -> None:
    one = write(tmp_path, "services: {a: {image: x}}\n", "one.yaml")
    assert list(parse_compose_yaml(one, multiple_services=False).services) == ["a"]
    two = write(tmp_path, REALISTIC)
    with pytest.raises(ValueError, match=r"has 2 services \(default, victim\).*only one") as info:
        parse_compose_yaml(two, multiple_services=False)
    assert two in str(info.value)


# -- round trips -----------------------------------------------------------------------------


def test_round_trip_through_yaml_as_the_providers_write_it(tmp_path: Path) -> None:
    """k8s and podman dump with ``by_alias=True, exclude_none=True`` and re-read the file."""
    config = parse_compose_yaml(write(tmp_path, REALISTIC))
    dumped = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert dumped["services"]["default"]["x-default"] is True
    assert dumped["services"]["default"]["x-k8s"] == {"resources": {"limits": {"memory": "1Gi"}}}
    assert "x_default" not in dumped["services"]["default"]
    again = parse_compose_yaml(write(tmp_path, yaml.safe_dump(dumped), "again-compose.yaml"))
    assert again == config
    assert hash(again) == hash(config)
    assert ComposeConfig.model_validate(dumped) == config


def test_models_built_in_python_dump_like_parsed_ones(tmp_path: Path) -> None:
    built = ComposeConfig(
        services={
            "default": ComposeService(
                build=ComposeBuild(context=str(tmp_path), dockerfile="Dockerfile"),
                healthcheck=ComposeHealthcheck(test="true", retries=1),
                x_default=True,
            )
        }
    )
    dumped = built.model_dump(by_alias=True, exclude_none=True)
    assert dumped == {
        "services": {
            "default": {
                "build": {"context": str(tmp_path), "dockerfile": "Dockerfile"},
                "healthcheck": {"test": "true", "retries": 1},
                "x-default": True,
            }
        }
    }
    assert parse_compose_yaml(write(tmp_path, yaml.safe_dump(dumped))) == built


def test_equality_and_hash_follow_the_contents() -> None:
    one = ComposeConfig(services={"a": ComposeService(image="x")})
    same = ComposeConfig.model_validate({"services": {"a": {"image": "x"}}})
    other = ComposeConfig(services={"a": ComposeService(image="y")})
    assert one == same
    assert hash(one) == hash(same)
    assert one != other
    assert len({one, same, other}) == 2
    ordered = ComposeConfig.model_validate({"services": {}, "x-a": {"p": 1, "q": [2]}, "x-b": 3})
    reordered = ComposeConfig.model_validate({"x-b": 3, "x-a": {"q": [2], "p": 1}, "services": {}})
    assert ordered == reordered
    assert hash(ordered) == hash(reordered)
    assert one != {"services": {"a": {"image": "x"}}}


def test_a_union_with_a_provider_model_picks_compose_only_for_compose_dicts() -> None:
    """k8s's ``config_deserialize`` validates ``K8sConfig | ComposeConfig``."""

    class ChartConfig(BaseModel):
        model_config = ConfigDict(extra="forbid")
        chart: str | None = None

    adapter: TypeAdapter[ChartConfig | ComposeConfig] = TypeAdapter(ChartConfig | ComposeConfig)
    assert isinstance(adapter.validate_python({"services": {"a": {"image": "x"}}}), ComposeConfig)
    assert isinstance(adapter.validate_python({"chart": "c"}), ChartConfig)
    with pytest.raises(ValidationError):
        adapter.validate_python({"services": {}, "chart": "c"})


# -- the extension policy ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (ComposeConfig, {"services": {}, "name": "project"}),
        (ComposeService, {"image": "x", "labels": {"a": "b"}}),
        (ComposeBuild, {"context": ".", "args": {}}),
        (ComposeHealthcheck, {"test": "true", "disable": True}),
        (ComposeVolumeMount, {"target": "/x", "targett": "/y"}),
    ],
)
def test_unknown_fields_are_refused_and_x_fields_kept(model: type[BaseModel], data: Any) -> None:
    unknown = next(key for key in data if key not in model.model_fields)
    with pytest.raises(ValidationError, match=f"unknown field '{unknown}'"):
        model.model_validate(data)
    kept = model.model_validate({**{k: v for k, v in data.items() if k != unknown}, "x-y": [1]})
    assert kept.model_extra == {"x-y": [1]}


def test_x_default_is_set_by_alias_or_by_name() -> None:
    assert ComposeService.model_validate({"x-default": True}).x_default is True
    assert ComposeService(x_default=True).x_default is True
    assert ComposeService(x_default=True).extensions == {}


# -- hostile files ---------------------------------------------------------------------------

_BILLION_LAUGHS = "\n".join(
    [
        "services: {}",
        "l0: &l0 [a, a, a, a, a, a, a, a, a, a]",
        *(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9)),
    ]
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "must be a mapping with a 'services' key, but it is empty"),
        ("- a\n- b\n", "must be a mapping .* but it is a list"),
        ("just text\n", "must be a mapping .* but it is a str"),
        ("image: x\n", "has no 'services' key"),
        ("services: [a]\n", r"services: Input should be a valid dictionary \(got \['a'\]\)"),
        ("services: {web: null}\n", "services.web: Input should be a valid dictionary"),
        ("services: {web: {image: 5}}\n", r"services.web.image: .*valid string \(got 5\)"),
        (
            "services: {web: {healthcheck: {retries: three}}}\n",
            r"services.web.healthcheck.retries: .*valid integer.*\(got 'three'\)",
        ),
        ("services: {web: {labels: {}}}\n", "services.web: unknown field 'labels'"),
        ("name: p\nservices: {}\n", "the top level: unknown field 'name'"),
        ("1: x\nservices: {}\n", "the top level: unknown field 1"),
        ("services: {1: {}}\n", r"services.1 \(the key\): .*valid string"),
        (
            "services: {web: {volumes: [{type: bind, targett: /x}]}}\n",
            r"\(1 problem\):\n  services.web.volumes\[0\]: unknown field 'targett'; a Co\w+ takes "
            r"only its own fields and 'x-' extensions\Z",
        ),
        (
            "services: {web: {volumes: [{target: [x]}]}}\n",
            r"\(1 problem\):\n  services.web.volumes\[0\].target: .*valid string \(got \['x'\]\)\Z",
        ),
        (
            "services: {web: {build: 7}}\n",
            r"services.web.build: .*ComposeBuild; or: .*valid string \(got 7\)",
        ),
        ("services: {web: {environment: {A: yes}}}\n", r"environment.A: .*\(got True\)"),
        ("services: {web: {image: 'a'\n", "not valid YAML at line 2, column 1"),
        ("services: !!python/object:os.system {}\n", "not valid YAML.*python/object"),
        ("a: &a [*a]\nservices: {}\n", r"refers to itself at a\[0\]"),
        (_BILLION_LAUGHS, f"expands to more than {MAX_COMPOSE_NODES:,} values"),
        (
            "services: {}\nx: " + "[" * (MAX_COMPOSE_DEPTH + 1) + "]" * (MAX_COMPOSE_DEPTH + 1),
            f"nests more than {MAX_COMPOSE_DEPTH} levels deep at x",
        ),
        ("services: {}\nx: " + "[" * 5000 + "]" * 5000, "nests too deeply to parse"),
    ],
    ids=lambda value: value[:30] if isinstance(value, str) else None,
)
def test_bad_files_are_value_errors_naming_the_file_and_the_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    file = write(tmp_path, text)
    with pytest.raises(ValueError, match=expected) as info:
        parse_compose_yaml(file)
    assert f"compose file {file!r}" in str(info.value)
    assert not isinstance(info.value, ValidationError)  # pydantic's wording stays inside


def test_every_problem_of_a_file_is_listed(tmp_path: Path) -> None:
    text = "services:\n" + "".join(f"  s{i}: {{image: {i}}}\n" for i in range(12))
    with pytest.raises(ValueError, match=r"\(12 problems\)") as info:
        parse_compose_yaml(write(tmp_path, text))
    message = str(info.value)
    assert "services.s0.image" in message
    assert "services.s9.image" in message
    assert "services.s10.image" not in message
    assert message.endswith("... and 2 more")


def test_undecodable_bytes_are_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"not valid YAML at byte 24: invalid start byte"):
        parse_compose_yaml(write(tmp_path, b"services: {web: {image: \xff}}\n"))


def test_a_missing_file_is_file_not_found_naming_it(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope" / "compose.yaml")
    with pytest.raises(FileNotFoundError, match="compose file not found") as info:
        parse_compose_yaml(missing)
    assert info.value.filename == missing


def test_a_directory_is_is_a_directory_error(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError) as info:
        parse_compose_yaml(str(tmp_path))
    assert info.value.filename == str(tmp_path)


@pytest.mark.parametrize("file", [None, 3, b"compose.yaml"])
def test_file_must_be_a_path(file: Any) -> None:
    with pytest.raises(TypeError, match="file must be a path to a compose file"):
        parse_compose_yaml(file)


# -- recognising file names ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        ("compose.yaml", True),
        ("compose.yml", True),
        ("docker-compose.yaml", True),
        ("docker-compose.yml", True),
        ("/tasks/ctf/compose.yaml", True),
        ("relative/docker-compose.yml", True),
        (".compose.yaml", True),
        ("web-compose.yaml", True),
        ("dir/web.compose.yaml", True),
        ("web-compose.yml", False),  # the variants are .yaml only, as in inspect_ai
        ("mycompose.yaml", False),
        ("compose.yaml.bak", False),
        ("compose.yaml/values.yaml", False),
        ("Compose.yaml", False),
        ("values.yaml", False),
        ("Dockerfile", False),
        ("", False),
        (Path("compose.yaml"), False),  # only strings, as the type guard promises
        (None, False),
        (3, False),
    ],
)
def test_is_compose_yaml(file: object, expected: bool) -> None:
    assert is_compose_yaml(file) is expected


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        ("Dockerfile", True),
        ("/tasks/ctf/Dockerfile", True),
        ("Dockerfile.dev", True),
        ("web.Dockerfile", True),
        ("images/web.Dockerfile", True),
        ("dockerfile", False),
        ("Dockerfile.dev.bak", False),
        ("MyDockerfile", False),
        ("Dockerfile/compose.yaml", False),
        ("compose.yaml", False),
        ("", False),
        (Path("Dockerfile"), False),
        (None, False),
    ],
)
def test_is_dockerfile(file: object, expected: bool) -> None:
    assert is_dockerfile(file) is expected
