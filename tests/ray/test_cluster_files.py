"""Offline checks of the cluster launch files in cluster/ (no cluster, no cloud, no network).

* cluster/aws-gpu.yaml goes through Ray's own launcher config code, the part of `ray up` that
  runs before any AWS call: ``prepare_config`` (merges ray/autoscaler/aws/defaults.yaml, merges
  setup commands, checks the docker section, fills per-node-type min/max workers) and then
  ``validate_config`` (ray-schema.json plus Ray's cross-field checks). The raw file alone fails
  ``validate_config`` (defaults such as ``cluster_synced_files`` are missing until prepared).
* cluster/kuberay-rayjob.yaml is checked for the RayJob fields KubeRay needs.
* Every ``python jobs/train_committee.py ...`` command line (RayJob entrypoint, README) is
  parsed with the project's own option parser, so a renamed or misspelt option fails here.
"""

from __future__ import annotations

import argparse
import copy
import re
import shlex
from pathlib import Path

import pytest
import yaml

from committee.app.cli import add_run_arguments

ROOT = Path(__file__).resolve().parents[2]


CLUSTER = ROOT / "cluster"


AWS_YAML = CLUSTER / "aws-gpu.yaml"


RAYJOB_YAML = CLUSTER / "kuberay-rayjob.yaml"


README = CLUSTER / "README.md"


RAY_VERSION = "2.60.0"


JOB_SCRIPT = "jobs/train_committee.py"


GPU_INSTANCE_PREFIXES = ("g4dn.", "g5.", "g6.", "g6e.", "p3.", "p4d.", "p5.")


def _job_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="train_committee.py", exit_on_error=False)
    add_run_arguments(parser)
    return parser


def _parse_job_args(args: list[str]) -> argparse.Namespace:
    """Parse job options like jobs/train_committee.py does; fail the test on a bad option."""
    try:
        return _job_parser().parse_args(args)
    except SystemExit as exc:  # argparse exits on unknown options even with exit_on_error=False
        if exc.code not in (0, None):
            pytest.fail(f"job options {args!r} rejected by the job's parser (exit {exc.code})")
        raise
    except argparse.ArgumentError as exc:
        pytest.fail(f"job options {args!r} rejected by the job's parser: {exc}")


def _args_after_script(command: str) -> list[str]:
    """The options after ``python jobs/train_committee.py`` in a shell command line."""
    words = shlex.split(command, comments=True)
    for i in range(len(words) - 1):
        if words[i] in ("python", "python3") and words[i + 1] == JOB_SCRIPT:
            return words[i + 2 :]
    raise AssertionError(f"no 'python {JOB_SCRIPT}' in {command!r}")


def _readme_job_commands() -> list[str]:
    """Every command line of the README (fenced blocks and inline code) that runs the job."""
    text = README.read_text()
    commands: list[str] = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        block = re.sub(r"\\\n\s*", " ", block)  # join backslash continuations
        commands += [line.strip() for line in block.splitlines() if f"python {JOB_SCRIPT}" in line]
    outside = re.sub(r"```.*?```", "", text, flags=re.S)
    commands += [
        span for span in re.findall(r"`([^`\n]+)`", outside) if f"python {JOB_SCRIPT}" in span
    ]
    return commands


@pytest.fixture(scope="module")
def aws_raw() -> dict:
    return yaml.safe_load(AWS_YAML.read_text())


@pytest.fixture(scope="module")
def aws_prepared(aws_raw) -> dict:
    from ray.autoscaler._private.util import prepare_config

    return prepare_config(copy.deepcopy(aws_raw))


@pytest.fixture(scope="module")
def rayjob() -> dict:
    return yaml.safe_load(RAYJOB_YAML.read_text())


def _submit_commands(path: Path) -> list[str]:
    """The ``ray job submit ... -- python jobs/train_committee.py ...`` and ``committee submit
    ... -- ...`` command lines of a README."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())  # join backslash continuations
    return [
        line.strip()
        for line in text.splitlines()
        if ("ray job submit" in line and f"python {JOB_SCRIPT}" in line)
        or line.strip().startswith("committee submit ")
    ]


def _submission(command: str) -> tuple[str, list[str]]:
    """``(what comes before the job's options, the job's options)`` of a submit command."""
    if command.startswith("committee submit "):
        before, _, after = command.partition(" -- ")
        return before, shlex.split(after)
    before, _, _ = command.partition(f"python {JOB_SCRIPT}")
    return before, _args_after_script(command)


def test_aws_config_passes_rays_launcher_validation(aws_prepared):
    from ray.autoscaler._private.util import validate_config

    validate_config(aws_prepared)  # raises on a schema or cross-field error


def test_aws_raw_file_is_not_enough_for_validate_config(aws_raw):
    """Documents why the test prepares first: validate_config wants a prepared config."""
    from ray.autoscaler._private.util import validate_config

    with pytest.raises(RuntimeError, match="cluster_synced_files"):
        validate_config(copy.deepcopy(aws_raw))


def test_aws_provider_and_node_types(aws_raw, aws_prepared):
    assert aws_raw["provider"]["type"] == "aws"
    assert aws_raw["provider"]["region"]
    types = aws_prepared["available_node_types"]
    head_name = aws_prepared["head_node_type"]
    head = types[head_name]
    workers = {name: t for name, t in types.items() if name != head_name}
    assert workers, "no worker node type"

    # Head: no GPU, so training lands on the workers.
    assert head["resources"].get("GPU", 0) == 0
    assert not head["node_config"]["InstanceType"].startswith(GPU_INSTANCE_PREFIXES)
    assert head["max_workers"] == 0

    gpu_types = {
        name: t
        for name, t in workers.items()
        if t["resources"].get("GPU", 0) >= 1
        or t["node_config"]["InstanceType"].startswith(GPU_INSTANCE_PREFIXES)
    }
    assert gpu_types, "no GPU worker node type"
    for t in gpu_types.values():
        assert t["resources"].get("GPU", 0) >= 1
        assert 0 <= t["min_workers"] <= t["max_workers"] <= 3
    assert aws_raw["max_workers"] >= max(t["max_workers"] for t in gpu_types.values())
    # Both node types set an explicit AMI (Ray's default one is too old for TF 2.21 + CUDA 12).
    for t in types.values():
        assert t["node_config"].get("ImageId"), "set ImageId explicitly"


def test_aws_docker_image_is_ray_2_60_gpu(aws_raw):
    docker = aws_raw["docker"]
    images = [docker["image"]] + [docker[k] for k in ("head_image", "worker_image") if k in docker]
    for image in images:
        repo, tag = image.rsplit(":", 1)
        assert repo == "rayproject/ray", image
        assert tag.startswith(RAY_VERSION + "-"), image
    assert docker["image"].endswith("-gpu")
    assert docker.get("container_name")


def test_aws_setup_installs_tensorflow_and_this_project(aws_raw, aws_prepared):
    commands = " ; ".join(aws_raw["setup_commands"])
    assert re.search(r"pip install[^;]*tensorflow\[and-cuda\]==2\.21", commands)
    mounts = aws_raw["file_mounts"]
    project_remote = [remote for remote, local in mounts.items() if local in (".", "./")]
    assert project_remote, "the checkout is not copied to the nodes"
    assert any("pip install" in c and project_remote[0] in c for c in aws_raw["setup_commands"])
    # After prepare_config, both head and workers run the common setup commands.
    for key in ("head_setup_commands", "worker_setup_commands"):
        assert any("tensorflow" in c for c in aws_prepared[key])


def test_aws_dashboard_is_not_exposed_and_token_auth_is_on(aws_prepared):
    head = " ; ".join(aws_prepared["head_start_ray_commands"])
    worker = " ; ".join(aws_prepared["worker_start_ray_commands"])
    for commands in (head, worker):
        assert "0.0.0.0" not in commands
        assert "RAY_AUTH_MODE=token" in commands
    assert "--dashboard-host=127.0.0.1" in head
    assert "ray start --head" in head
    assert "$RAY_HEAD_IP" in worker
    # The token reaches every node through file_mounts.
    assert "~/.ray/auth_token" in aws_prepared["file_mounts"]


def test_rayjob_kind_and_required_fields(rayjob):
    assert rayjob["apiVersion"] == "ray.io/v1"
    assert rayjob["kind"] == "RayJob"
    assert rayjob["metadata"]["name"]
    spec = rayjob["spec"]
    assert spec["entrypoint"].strip()
    assert spec["submissionMode"] == "K8sJobMode"
    assert spec["shutdownAfterJobFinishes"] is True
    assert isinstance(spec["ttlSecondsAfterFinished"], int)

    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == RAY_VERSION
    head = cluster["headGroupSpec"]
    head_container = head["template"]["spec"]["containers"][0]
    assert head_container["image"].startswith(f"rayproject/ray:{RAY_VERSION}")
    # No public exposure: no LoadBalancer/NodePort head Service.
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    assert head_container["resources"]["limits"].get("nvidia.com/gpu", 0) == 0

    groups = cluster["workerGroupSpecs"]
    assert groups
    for group in groups:
        assert group["groupName"]
        assert "rayStartParams" in group
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        container = group["template"]["spec"]["containers"][0]
        assert container["image"].startswith(f"rayproject/ray:{RAY_VERSION}")
        assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1


def test_rayjob_runtime_env_parses(rayjob):
    runtime_env = yaml.safe_load(rayjob["spec"]["runtimeEnvYAML"])
    assert isinstance(runtime_env, dict)
    assert set(runtime_env) <= {
        "working_dir",
        "pip",
        "env_vars",
        "py_modules",
        "uv",
        "conda",
        "excludes",
        "config",
    }
    assert any(p.startswith("tensorflow") for p in runtime_env.get("pip", []))
    for key, value in (runtime_env.get("env_vars") or {}).items():
        assert isinstance(value, str), f"env var {key} must be a string"


def test_rayjob_shared_volume_is_mounted_where_the_job_writes(rayjob):
    spec = rayjob["spec"]
    output = _parse_job_args(_args_after_script(spec["entrypoint"])).output
    pods = [spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]]
    pods += [g["template"]["spec"] for g in spec["rayClusterSpec"]["workerGroupSpecs"]]
    for pod in pods:
        mounts = [m["mountPath"] for c in pod["containers"] for m in c.get("volumeMounts", [])]
        assert any(output == m or output.startswith(m.rstrip("/") + "/") for m in mounts), (
            f"--output {output} is not on a mounted volume in every pod"
        )


def test_rayjob_entrypoint_options_exist(rayjob):
    entrypoint = rayjob["spec"]["entrypoint"]
    words = shlex.split(entrypoint)
    assert words[:2] == ["python", JOB_SCRIPT]
    assert (ROOT / JOB_SCRIPT).is_file()
    args = _parse_job_args(words[2:])
    assert args.preset == "seed"
    # A fixed run name: re-applying the RayJob after a failure resumes the run folder instead
    # of starting a new timestamped one.
    assert args.run_name, "the RayJob entrypoint has no --run-name"


def test_readme_job_commands_use_existing_options():
    commands = _readme_job_commands()
    assert len(commands) >= 3, commands
    for command in commands:
        args = _args_after_script(command)
        if "--help" in args:
            continue
        _parse_job_args(args)


@pytest.mark.parametrize("path", [README, ROOT / "README.md"], ids=["cluster", "top"])
def test_readme_submit_commands_name_their_run(path):
    """A resubmission after a failure resumes only with a fixed --run-name; the submission id
    names the job after its run."""
    commands = _submit_commands(path)
    assert commands, f"no ray job submit example in {path}"
    for command in commands:
        before, job_args = _submission(command)
        run_name = _parse_job_args(job_args).run_name
        assert run_name, f"no --run-name in {command!r}"
        words = shlex.split(before)
        assert "--submission-id" in words, f"no --submission-id in {command!r}"
        assert words[words.index("--submission-id") + 1].startswith(run_name), command


def test_readme_lists_every_job_option():
    text = README.read_text()
    options = {
        opt
        for action in _job_parser()._actions
        for opt in action.option_strings
        if opt.startswith("--") and opt != "--help"
    }
    missing = sorted(opt for opt in options if f"`{opt}`" not in text)
    assert not missing, f"cluster/README.md does not mention {missing}"


def test_readme_covers_the_workflow():
    text = README.read_text()
    for needle in (
        "ray up cluster/aws-gpu.yaml",
        "ray dashboard cluster/aws-gpu.yaml",
        "ray rsync-down cluster/aws-gpu.yaml",
        "ray down cluster/aws-gpu.yaml",
        "kubectl apply -f cluster/kuberay-rayjob.yaml",
        "kubectl port-forward",
        "RAY_AUTH_MODE=token",
        "--gpus-per-member 0.33",
        "--storage s3://",
        "offline",
    ):
        assert needle in text, needle


def test_parser_rejects_unknown_options():
    """The option check above would catch a misspelt option."""
    with pytest.raises(pytest.fail.Exception):
        _parse_job_args(["--preset", "seed", "--no-such-option"])
    with pytest.raises(pytest.fail.Exception):
        _parse_job_args(["--preset", "no-such-preset"])
