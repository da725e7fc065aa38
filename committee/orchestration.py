"""The Ray layer: connect, place, train the members concurrently, predict, score.

Everything Ray-specific lives here; the pieces it runs (``training``, ``prediction``,
``scoring``) work without Ray.

Flow of :func:`run_members`::

    driver: data arrays --ray.put once--> object store
            one TensorflowTrainer per member, fit() from a thread each -> run concurrently
              worker: train_loop_per_worker(config) -> per-epoch ray.train.report(metrics, ckpt)
            one predict task per member (loads the final checkpoint) -> val/test probabilities
            one committee task gathers all probabilities -> scores (retried if its worker dies)
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
import time
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from committee import runfolder
from committee.errors import CommitteeError
from committee.members import TTA_MODES, MemberSpec
from committee.training import (MODEL_FILE, STATE_FILE, TrainState, check_keras_archive,
                                configure_tensorflow,
                                load_checkpoint, recent_pace, save_checkpoint, say, set_sink,
                                train_member)

# Ray's TensorFlow backend sets TF_USE_LEGACY_KERAS=1 in workers; this project uses Keras 3
# explicitly (``import keras``), never ``tf.keras``.


_DISPLAY = None  # the live display (progress.Display) while a run shows one


def log(message: str) -> None:
    """One line from the driver, above the live display's bars when there are some."""
    if _DISPLAY is not None:
        _DISPLAY.message(f"[committee] {message}")
    else:
        print(f"[committee] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def displaying(display):
    """Send :func:`log`'s lines to ``display`` (a progress.Display, or None) for the block."""
    global _DISPLAY
    _DISPLAY = display
    try:
        yield display
    finally:
        _DISPLAY = None
        if display is not None:
            display.close()


@contextlib.contextmanager
def quiet_stderr(quiet: bool = True):
    """Send this process's file descriptor 2 to /dev/null for the block: TensorFlow's C++
    start-up lines (CUDA probing, oneDNN) are written there before its logging can be set."""
    if not quiet:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# --------------------------------------------------------------------------- cluster

# Ray's own switch (ray_constants.ENABLE_RAY_CLUSTER) for a single-machine Ray: with it off,
# the node's IP is 127.0.0.1 instead of the routable address, and every server of the local Ray
# (GCS, raylet, object manager, workers, agents, metrics) binds to loopback only.
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
TCP_TIMEOUT_S = 5.0  # a TCP connect to the address
PROBE_TIMEOUT_S = 10.0  # one gRPC call that only a Ray GCS (or Ray Client server) answers


def connect(address: str | None = None, num_cpus: int | None = None,
            verbose: bool = False) -> None:
    """Join the cluster at ``address`` / RAY_ADDRESS, or start a private local Ray.

    A joined address must answer as a Ray head within seconds (:func:`check_ray_head`), else
    ConnectionError. A local Ray binds every listener to 127.0.0.1 and turns token auth on by
    default (README, Security). Unless ``verbose``, the workers' output stays in Ray's own
    log files (members report to the driver through :func:`run_members`' queue) and Ray's
    driver-side notices below errors are not shown.
    """
    import logging

    import ray

    from committee.address import resolve

    if ray.is_initialized():
        return
    address, source = resolve(address)  # ValueError naming --address or RAY_ADDRESS
    if address:
        check_ray_head(address, source)
        try:
            ray.init(address=address, log_to_driver=verbose,
                     logging_level=logging.INFO if verbose else logging.ERROR)
        except (ConnectionError, TimeoutError, RuntimeError) as exc:
            raise ConnectionError(f"could not connect to the Ray cluster at {address} (from "
                                  f"{source}): "
                                  f"{str(exc).splitlines()[0] if str(exc) else exc!r}") from None
        return
    from ray._private import ray_constants

    # The dashboard (loopback only) also serves the State API that Ray Train's
    # placement-group cleaner polls to learn that a trainer is gone (e.g. a trial stopped
    # by ASHA) and free its workers' CPUs. The cleaner runs in a worker process that would
    # otherwise look the API up through /tmp/ray/ray_current_cluster, which names whatever
    # cluster `ray start` last made on this machine (often a dead one): then nothing is
    # ever freed and later trials wait forever. So the port is chosen here and handed to
    # every process of this Ray: its raylet inherits the driver's environment at start
    # and passes it on to the workers it spawns; the driver's own is restored after.
    # The same way, every process of this Ray gets the loopback switch (_LOOPBACK_ENV); the
    # driver reads it once at import (ray_constants), so its copy is set for ray.init too.
    port = free_port()
    saved = {name: os.environ.get(name) for name in ("RAY_API_SERVER_ADDRESS", _LOOPBACK_ENV)}
    saved_cluster = ray_constants.ENABLE_RAY_CLUSTER
    os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
    os.environ[_LOOPBACK_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=True,
                 dashboard_host="127.0.0.1", dashboard_port=port,
                 _node_ip_address="127.0.0.1", log_to_driver=verbose,
                 logging_level=logging.INFO if verbose else logging.ERROR,
                 # Each member brings a controller, a worker and short tasks: on 2 CPUs the
                 # raylet's default (one startup per CPU) warns of "too many workers".
                 _system_config={"worker_maximum_startup_concurrency": 4})
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_cluster
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_ray_head(address: str, source: str, tcp_timeout_s: float = TCP_TIMEOUT_S,
                   probe_timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Fail in bounded time, with one line naming ``source``, unless a Ray head answers at
    ``address`` (host:port of a GCS, ray://host:port of a Ray Client server, or auto).

    A TCP connect first, then one gRPC call with a deadline through Ray's own channel (TLS
    and token auth as Ray sets them up): the GCS's GetClusterId, or Ray Client's PING (what
    Ray Client itself sends on connecting). An HTTP server or any other non-Ray port fails
    here, where ``ray.init`` would retry for minutes.
    """
    import socket

    from committee.address import split_host_port

    where = f"{address} (from {source})"
    if address == "auto":
        from ray._private import services
        try:
            address = services.canonicalize_bootstrap_address("auto")
        except (ConnectionError, ValueError) as exc:
            address, detail = None, str(exc).splitlines()[0]
        else:
            detail = "no address recorded"
        if address is None:
            raise ConnectionError(f"{where} found no Ray head on this machine ({detail}); "
                                  "expected a running Ray head (ray start --head)")
        where = f"{address} (auto, from {source})"
    client = address.startswith("ray://")
    target = address.removeprefix("ray://")
    host, port = split_host_port(target)
    try:
        with socket.create_connection((host, port), timeout=tcp_timeout_s):
            pass
    except OSError as exc:
        raise ConnectionError(f"could not connect to the Ray cluster at {where}: {exc}; "
                              f"expected a running Ray head (ray start --head)") from None
    code, detail = _probe(target, client, probe_timeout_s)
    if code is None:
        return
    if code.name == "UNAUTHENTICATED":
        raise ConnectionError(
            f"the Ray head at {where} refused this client's token ({detail}); expected "
            "RAY_AUTH_MODE=token with RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH naming the head's "
            "token")
    if code.name == "DEADLINE_EXCEEDED":
        detail = f"no answer within {probe_timeout_s:g} s"
    raise ConnectionError(
        f"no Ray head answered at {where}: gRPC {code.name}: {detail}; expected a running "
        "Ray head (ray start --head)"
        + ("; for Ray Client, its port (default 10001)" if client else
           "; give its GCS port (default 6379), not the dashboard's"))


def _probe(target: str, client: bool, timeout_s: float):
    """``(None, "")`` if a Ray GCS (or Ray Client server) answered, else ``(grpc code,
    first line of the details)``."""
    import grpc
    from ray._private.gcs_utils import create_gcs_channel

    channel = create_gcs_channel(target)
    try:
        if client:
            from ray.core.generated import ray_client_pb2, ray_client_pb2_grpc
            ray_client_pb2_grpc.RayletDriverStub(channel).ClusterInfo(
                ray_client_pb2.ClusterInfoRequest(type=ray_client_pb2.ClusterInfoType.PING),
                timeout=timeout_s)
        else:
            from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc
            gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(
                gcs_service_pb2.GetClusterIdRequest(), timeout=timeout_s)
    except grpc.RpcError as exc:
        code = exc.code() if callable(getattr(exc, "code", None)) else grpc.StatusCode.UNKNOWN
        details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
        return code, (details or "").splitlines()[0] if details else code.name.lower()
    finally:
        channel.close()
    return None, ""


@dataclass(frozen=True)
class Placement:
    """Resources each member's single training worker asks for."""

    cpus: float
    gpus: float

    @property
    def use_gpu(self) -> bool:
        return self.gpus > 0

    @property
    def threads(self) -> int:
        """TensorFlow CPU threads: as many as CPUs given, at least one."""
        return max(1, int(self.cpus + 0.5))

    def describe(self) -> str:
        return f"{self.cpus:g} CPU" + (f", {self.gpus:g} GPU" if self.gpus else "")


def _floor4(x: float) -> float:
    return math.floor(x * 10_000) / 10_000  # Ray's resource granularity is 1e-4


def plan_placement(n_members: int, nodes: list[dict[str, float]],
                   cpus: float | None = None, gpus: float | None = None) -> Placement:
    """Choose per-member resources so that all members can run at the same time.

    ``nodes``: each alive node's total resources (``{"CPU": .., "GPU": ..}``).
    Defaults: CPUs shared evenly (at most one node's worth); with >= n_members GPUs one GPU
    per member, with fewer GPUs an even fraction of them, with none CPU only. Raises
    ValueError — before anything is launched — if no node could ever host one member.
    """
    if n_members < 1:
        raise ValueError(f"{n_members} members; expected at least one")
    total_cpu = sum(n.get("CPU", 0.0) for n in nodes)
    total_gpu = sum(n.get("GPU", 0.0) for n in nodes)
    max_cpu = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
    if gpus is None:
        gpus = 0.0 if total_gpu == 0 else (1.0 if total_gpu >= n_members
                                           else _floor4(total_gpu / n_members))
    if cpus is None:
        cpus = _floor4(min(max_cpu, max(total_cpu / n_members, 0.1)))
    if cpus <= 0 or gpus < 0:
        raise ValueError(f"{cpus} CPU / {gpus} GPU per member; expected CPU > 0 and GPU >= 0")
    fits = [n for n in nodes if n.get("CPU", 0.0) >= cpus and n.get("GPU", 0.0) >= gpus]
    if not fits:
        largest = max(nodes, key=lambda n: (n.get("GPU", 0.0), n.get("CPU", 0.0)), default={})
        raise ValueError(
            f"each member asks for {cpus:g} CPU and {gpus:g} GPU on one node, but no node of "
            f"this cluster offers that (largest: {largest.get('CPU', 0.0):g} CPU, "
            f"{largest.get('GPU', 0.0):g} GPU; cluster total {total_cpu:g} CPU, "
            f"{total_gpu:g} GPU); lower --cpus-per-member / --gpus-per-member")
    return Placement(cpus=cpus, gpus=gpus)


def cluster_nodes() -> list[dict[str, float]]:
    import ray
    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]


# --------------------------------------------------------------------------- worker side

def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train loop for ONE member: resume if a checkpoint exists, report every epoch."""
    import ray
    import ray.train

    configure_tensorflow(threads=config["threads"])
    spec = MemberSpec(**config["spec"])
    data = ray.get(config["data"])  # zero-copy views of the arrays put once by the driver
    progress = config.get("progress")  # the driver's display queue, or None (verbose, tune)
    if progress is not None:
        set_sink(lambda text: progress.put_nowait({"member": spec.name, "kind": "line",
                                                   "text": text}))

    resume = _load_resume_point(spec.name, ray.train.get_checkpoint(),
                                config.get("member_storage"))
    if resume is not None:
        say(f"[{spec.name}] resuming after epoch {resume[1].epoch}")

    reported, durations, last = [], [], [time.time()]

    def report(epoch: int, logs: dict, model, state: TrainState) -> None:
        metrics = {"member": spec.name, "epoch": epoch + 1, **logs,
                   "stopped_early": state.stopped_early}
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(tmp, model, state)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        reported.append(epoch)
        durations.append(time.time() - last[0])  # the epoch and its checkpoint
        last[0] = time.time()
        if progress is not None:
            progress.put_nowait({"member": spec.name, "kind": "epoch", "epoch": epoch + 1,
                                 "planned": state.total_epochs(spec),
                                 "seconds": recent_pace(durations),
                                 "metrics": {k: float(v) for k, v in logs.items()}})

    model, state = train_member(
        spec, data["x_train"], data["y_train"], data["x_val"], data["y_val"],
        seed=config["seed"], resume=resume, on_epoch_end=report,
        steps_per_execution=config["steps_per_execution"],
        time_budget_s=config.get("time_budget_s"), predict_images=config.get("predict_images", 0),
        verbose=0 if progress is not None else 2, callbacks=_tensorboard(config))
    if state.diverged is not None:  # the non-finite weights are never saved
        # Ray Train's result carries only metrics reported with a checkpoint, so the news
        # goes with one holding nothing but the record (checkpoints.repair drops it later).
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "diverged.json").write_text(json.dumps(state.diverged))
            ray.train.report({"member": spec.name, "epoch": state.diverged["epoch"],
                              "diverged": state.diverged},
                             checkpoint=ray.train.Checkpoint.from_directory(tmp))
    elif resume is not None and not reported:  # resumed after its last epoch: record that
        report(state.epoch - 1, {k: v[-1] for k, v in state.history.items()}, model, state)


def _tensorboard(config: dict[str, Any]) -> list:
    """Keras' TensorBoard callback writing to ``config["tensorboard"]``, if given: losses,
    metrics, the learning rate and the time budget's planned epochs, per epoch."""
    if not config.get("tensorboard"):
        return []
    import keras
    return [keras.callbacks.TensorBoard(log_dir=config["tensorboard"], write_graph=False,
                                        profile_batch=0)]


def _load_resume_point(name: str, checkpoint, member_storage: str | None):
    """``(model, state)`` from the newest checkpoint that loads, or None to start afresh.

    Tries Ray's latest checkpoint, then every other checkpoint folder in the member's storage
    newest first (Ray keeps two; a torn or refused newest one falls back to the one before,
    and a snapshot file removed by checkpoints.repair still leaves them to resume from). Each
    one that fails is named in one warning line."""
    import ray.train

    from committee import checkpoints

    candidates = [] if checkpoint is None else [checkpoint]
    if member_storage:
        fs, member_dir = checkpoints.filesystem(member_storage)
        seen = {c.path for c in candidates}
        candidates += [ray.train.Checkpoint(path, filesystem=fs)
                       for path in checkpoints.checkpoint_paths(fs, member_dir) if path not in seen]
    for candidate in candidates:
        try:
            with candidate.as_directory() as folder:
                return load_checkpoint(folder)
        except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is skipped alike
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:200]
            say(f"[{name}] warning: checkpoint {candidate.path}/{MODEL_FILE} could not be "
                f"loaded ({type(exc).__name__}: {why}); trying an older one")
    if candidates:
        say(f"[{name}] warning: no checkpoint could be loaded; training from the start")
    return None


def _predict(checkpoint, data: dict, test: dict, threads: int,
             tta: str = "none") -> dict[str, np.ndarray]:
    """Ray task body: load a member's final checkpoint; return its val and test probabilities
    (``tta``: the views averaged, see prediction.tta_views)."""
    from committee.prediction import predict_proba

    configure_tensorflow(threads=threads)
    with checkpoint.as_directory() as folder:
        model, _ = load_checkpoint(folder)
    return {"val": predict_proba(model, data["x_val"], tta=tta),
            "test": predict_proba(model, test["x_test"], tta=tta)}


def _score(names: list[str], y_test, y_val, *predictions) -> tuple[dict, dict]:
    """Ray task body: the committee. Pure function of its inputs, so retrying it is safe."""
    from committee.scoring import score_committee
    test = {n: p["test"] for n, p in zip(names, predictions)}
    val = {n: p["val"] for n, p in zip(names, predictions)}
    return score_committee(test, y_test, val, y_val)


# --------------------------------------------------------------------------- driver side

STOPPING = threading.Event()  # set when the driver is interrupted


def run_concurrently(calls: list, poll_s: float = 0.5, on_tick=None) -> list:
    """Run each call in its own daemon thread; return their results in order.

    Waits in short joins so SIGINT/SIGTERM reach the main thread at once, and the threads
    (each blocked in a trainer's fit()) never keep an interrupted driver alive. The first
    failure is raised as soon as it happens. ``on_tick()`` runs between joins (the display).
    """
    results: list = [None] * len(calls)
    errors: list = []

    def target(index: int) -> None:
        try:
            results[index] = calls[index]()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,), daemon=True, name=f"member-{i}")
               for i in range(len(calls))]
    for thread in threads:
        thread.start()
    try:
        while any(t.is_alive() for t in threads):
            if errors:
                raise errors[0]
            threads[[t.is_alive() for t in threads].index(True)].join(poll_s)
            if on_tick is not None:
                on_tick()
    except BaseException:
        STOPPING.set()  # threads still running must not save anything from here on
        raise
    if errors:
        raise errors[0]
    return results


@dataclass
class MemberOutcome:
    name: str
    history: dict[str, list[float]]
    epochs_run: int
    stopped_early: bool
    started_at: float
    finished_at: float
    val_proba: np.ndarray
    test_proba: np.ndarray
    resumed_at: list[int]  # epoch counts at which training resumed from a checkpoint
    reused: bool = False  # finished in an earlier, interrupted run and not retrained
    epochs_planned: int | None = None  # the time budget's plan, when one applied
    seed: int | None = None
    precision: str | None = None  # the dtype policy it trained with (training.effective_precision)
    device: dict | None = None  # {"cpu": model, "gpus": [names]} of the worker it trained on


class MemberDiverged(CommitteeError):
    """A member's loss became NaN or infinite; it was stopped and not saved."""


class DiskFull(OSError):
    """No space was left where the run writes; what finished is kept for a rerun."""


def _member_paths(run_dir: Path, name: str) -> tuple[Path, Path, Path]:
    return (run_dir / "models" / f"{name}.keras", run_dir / "members" / f"{name}.json",
            run_dir / "members" / f"{name}.npz")


def load_finished_member(run_dir: Path, name: str, identity: dict,
                         n_val: int, n_test: int) -> MemberOutcome | None:
    """A member saved by an earlier run of this folder with the same ``identity`` (see
    identity.member_identity), or None: none saved, saved with another identity, or its files
    damaged (one warning line; the member is then predicted again from its checkpoint).
    ``n_val`` / ``n_test``: the rows its probabilities must have."""
    model_path, info_path, probs_path = _member_paths(run_dir, name)
    if not (model_path.is_file() and info_path.is_file() and probs_path.is_file()):
        return None
    try:
        info = runfolder.read_json(info_path)
        if info.get("identity") != identity:
            log(f"{name}: the member saved in {info_path} was trained with other settings; "
                f"training it again")
            return None
        with np.load(probs_path, allow_pickle=False) as probs:
            val, test = probs["val"], probs["test"]
        for part, array, rows in (("val", val, n_val), ("test", test, n_test)):
            if array.shape != (rows, 10) or not np.all(np.isfinite(array)):
                raise ValueError(f"'{part}' has shape {array.shape}, expected ({rows}, 10) "
                                 f"finite probabilities")
        check_keras_archive(model_path)
        state = TrainState.from_dict({  # the same fields, checked the same way
            "epoch": info["epochs_run"], "history": info["history"],
            "stopped_early": info["stopped_early"], "resumed_at": info["resumed_at"],
            "started_at": info["started_at"], "finished_at": info["finished_at"],
            "epochs_planned": info.get("epochs_planned"), "precision": info.get("precision"),
            "device": info.get("device")})
        if state.started_at is None or state.finished_at is None:
            raise ValueError("started_at / finished_at missing")
        return MemberOutcome(name=name, history=info["history"], epochs_run=info["epochs_run"],
                             stopped_early=info["stopped_early"], started_at=info["started_at"],
                             finished_at=info["finished_at"], resumed_at=info["resumed_at"],
                             epochs_planned=info.get("epochs_planned"), val_proba=val,
                             test_proba=test, reused=True, seed=identity["seed"],
                             precision=info.get("precision"), device=info.get("device"))
    except Exception as exc:  # noqa: BLE001 - any damage is handled alike: predict again
        why = (str(exc).strip().splitlines() or [""])[0][:200]
        log(f"warning: {name}: its saved files are damaged ({type(exc).__name__}: {why}); "
            f"predicting it again from its checkpoint")
        return None


def _save_member(run_dir: Path, spec: MemberSpec, checkpoint, state: TrainState,
                 probs: dict[str, np.ndarray], identity: dict) -> MemberOutcome:
    model_path, info_path, probs_path = _member_paths(run_dir, spec.name)
    with checkpoint.as_directory() as folder:
        runfolder.copy_file(Path(folder) / MODEL_FILE, model_path)
    runfolder.write_npz(probs_path, val=probs["val"], test=probs["test"])
    outcome = MemberOutcome(name=spec.name, history=state.history, epochs_run=state.epoch,
                            stopped_early=state.stopped_early, started_at=state.started_at,
                            finished_at=state.finished_at or time.time(),
                            resumed_at=state.resumed_at, epochs_planned=state.epochs_planned,
                            val_proba=probs["val"], test_proba=probs["test"],
                            seed=identity["seed"], precision=state.precision,
                            device=state.device)
    runfolder.write_json(info_path, {"identity": identity, "spec": spec.to_dict(),
                                     "history": state.history,
                                     "epochs_run": state.epoch,
                                     "stopped_early": state.stopped_early,
                                     "started_at": outcome.started_at,
                                     "finished_at": outcome.finished_at,
                                     "resumed_at": outcome.resumed_at,
                                     "epochs_planned": outcome.epochs_planned,
                                     "precision": outcome.precision, "device": outcome.device})
    return outcome


def _read_state(checkpoint) -> TrainState:
    with checkpoint.as_directory() as folder:
        return TrainState.from_dict(json.loads((Path(folder) / STATE_FILE).read_text()))


def storage_for(run_dir: Path, storage: str | None, instance: str) -> str:
    """Ray Train storage: ``<run_dir>/train`` by default, else ``<storage>/<run name>/<instance>``
    (a path or URI such as s3://…): the run's ``instance`` id keeps an ``--overwrite`` from
    resuming the checkpoints of the run it replaces."""
    if storage is None:
        return str((run_dir / "train").resolve())
    if "://" in storage:
        return f"{storage.rstrip('/')}/{run_dir.name}/{instance}"
    return str(Path(storage).expanduser().resolve() / run_dir.name / instance)


def _no_space(error: BaseException | str | None) -> str | None:
    """The path in a 'No space left on device' error (or "" if it names none), else None."""
    import re
    text = "" if error is None else str(error)
    if isinstance(error, BaseException):
        cause = error
        while cause is not None:  # a remote error wraps the worker's OSError
            text += f"\n{cause!r}"
            cause = cause.__cause__ or cause.__context__
    if "No space left on device" not in text and "Errno 28" not in text:
        return None
    named = re.search(r"No space left on device\W+(?:\[[^]]*\]\s*)?'?(/[^'\s\n]+)", text)
    return named.group(1) if named else ""


def disk_full(error, where: str) -> DiskFull:
    """The one-line error for a full disk; ``where`` is the folder written when no path is
    known."""
    if isinstance(error, DiskFull):
        return error
    if isinstance(error, OSError) and error.filename:
        where = str(error.filename)
    return DiskFull(28, f"no space left on device writing {_no_space(error) or where}; free "
                        f"space and rerun with the same --run-name to resume (finished members "
                        f"and checkpoints are kept)")


def run_members(
    specs: list[MemberSpec], split, x_test: np.ndarray, y_test: np.ndarray, run_dir: Path, *,
    identity: dict, placement: Placement, storage: str, max_failures: int = 1,
    steps_per_execution: int = 1, time_budget_s: float | None = None, display=None,
    tensorboard: Path | None = None,
) -> tuple[list[MemberOutcome], dict, dict[str, np.ndarray]]:
    """Train every member concurrently on Ray, predict, and score the committee.

    ``identity``: the run's (identity.run_identity); each member trains with its seed and is
    reused from an earlier run of the folder only if its own identity is unchanged.
    ``storage``: Ray Train's storage path or URI (:func:`storage_for`).
    ``time_budget_s``: each member's budget for training and predicting
    (see training.train_member). ``display``: a progress.Display the members' events go to
    (through a Ray queue); None leaves their output to Ray's log forwarding.
    ``tensorboard``: a folder where each member writes TensorBoard event files
    (``<tensorboard>/<member>``; on a multi-node cluster, a path every node shares).

    Returns ``(outcomes, results, committee_probas)``. Raises :class:`MemberDiverged` when a
    member's loss stops being finite and :class:`DiskFull` when the storage fills up.
    """
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.util.queue import Queue
    with quiet_stderr(display is not None):  # it imports TensorFlow
        from ray.train.tensorflow import TensorflowTrainer

    from committee import checkpoints

    STOPPING.clear()  # a process may run several jobs (a notebook, a service)
    progress = None if display is None else Queue(actor_options={"num_cpus": 0})

    def drain() -> None:
        if progress is not None:
            size = progress.qsize()
            for event in progress.get_nowait_batch(size) if size else []:
                display.event(event)
    data_ref = ray.put({"x_train": split.x_train, "y_train": split.y_train,
                        "x_val": split.x_val, "y_val": split.y_val})
    test_ref = ray.put({"x_test": x_test})

    predict = ray.remote(_predict).options(num_cpus=placement.cpus, num_gpus=placement.gpus,
                                           max_retries=2)

    def run_one(spec: MemberSpec) -> MemberOutcome:
        member = identity["members"][spec.name]
        done = load_finished_member(run_dir, spec.name, member, len(split.y_val), len(y_test))
        if done is not None:
            log(f"{spec.name}: finished in an earlier run of this folder, reusing it")
            return done
        member_storage = f"{storage.rstrip('/')}/{spec.name}"
        try:
            checkpoints.repair(member_storage, log=lambda line: log(f"{spec.name}: {line}"))
        except OSError as exc:
            if _no_space(exc) is not None:
                raise disk_full(exc, member_storage) from None
            raise
        trainer = TensorflowTrainer(
            train_loop_per_worker=train_loop_per_worker,
            train_loop_config={"spec": spec.to_dict(), "data": data_ref,
                               "seed": member["seed"], "threads": placement.threads,
                               "steps_per_execution": steps_per_execution,
                               "time_budget_s": time_budget_s,
                               "member_storage": member_storage, "progress": progress,
                               "tensorboard": None if tensorboard is None else
                               str((tensorboard / spec.name).resolve()),
                               "predict_images": TTA_MODES[spec.tta] * (
                                   len(split.y_val) + len(y_test))},
            scaling_config=ScalingConfig(
                num_workers=1, use_gpu=placement.use_gpu,
                resources_per_worker={"CPU": placement.cpus,
                                      **({"GPU": placement.gpus} if placement.use_gpu else {})}),
            run_config=RunConfig(
                name=spec.name, storage_path=storage,
                failure_config=FailureConfig(max_failures=max_failures),
                checkpoint_config=CheckpointConfig(num_to_keep=2)),
        )
        log(f"{spec.name}: training on Ray Train ({placement.describe()}, up to "
            f"{spec.epochs} epochs"
            f"{'' if time_budget_s is None else f' within {time_budget_s / 60:g} min'}, batch "
            f"{spec.batch_size}, {spec.optimizer} lr {spec.learning_rate:g}, "
            f"seed {member['seed']})")
        try:
            result = trainer.fit()
        except Exception as exc:  # noqa: BLE001 - a full disk is named; the rest re-raised
            if _no_space(exc) is not None:
                raise disk_full(exc, member_storage) from None
            raise
        diverged = (result.metrics or {}).get("diverged")
        if diverged:
            raise MemberDiverged(
                f"member {spec.name} diverged in epoch {diverged['epoch']} at learning rate "
                f"{diverged['learning_rate']:g} (loss {diverged['loss']}); it was stopped and "
                f"not saved: lower --learning-rate and rerun with --overwrite")
        if result.error is not None or result.checkpoint is None:
            if _no_space(result.error) is not None:
                raise disk_full(result.error, member_storage)
            raise RuntimeError(f"member {spec.name} failed: {result.error}")
        state = _read_state(result.checkpoint)
        probs = ray.get(predict.remote(result.checkpoint, data_ref, test_ref, placement.threads,
                                        spec.tta))
        if STOPPING.is_set():  # interrupted meanwhile: leave the member to resume later
            raise KeyboardInterrupt
        try:
            outcome = _save_member(run_dir, spec, result.checkpoint, state, probs, member)
        except OSError as exc:
            if _no_space(exc) is not None:
                raise disk_full(exc, str(run_dir)) from None
            raise
        planned = ("" if outcome.epochs_planned is None else
                   f" (time budget: {outcome.epochs_planned} of {spec.epochs} planned)")
        log(f"{spec.name}: done after {outcome.epochs_run} epochs{planned}"
            f"{' (early stop)' if outcome.stopped_early else ''}")
        return outcome

    try:
        outcomes = run_concurrently([lambda s=s: run_one(s) for s in specs], on_tick=drain)
    finally:
        with contextlib.suppress(Exception):  # the last lines, even after a failure
            drain()

    score = ray.remote(_score).options(num_cpus=min(1.0, placement.cpus), max_retries=3)
    results, committee_probas = ray.get(score.remote(
        [o.name for o in outcomes], y_test, split.y_val,
        *[ray.put({"val": o.val_proba, "test": o.test_proba}) for o in outcomes]))
    return outcomes, results, committee_probas


# --------------------------------------------------------------------------- batch inference

class MemberLoadError(CommitteeError):
    """A member's .keras file did not load (in its batch-inference actor)."""


def _member_load_error(exc: BaseException) -> MemberLoadError | None:
    """The :class:`MemberLoadError` inside a Ray (Data) error, or None. Ray wraps an actor's
    error in its own types (``cause``, ``__cause__``) and sometimes only in their text."""
    import re
    stack, seen = [exc], set()
    while stack:
        error = stack.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, MemberLoadError):
            return MemberLoadError(str(error))
        stack += [error.__cause__, error.__context__, getattr(error, "cause", None)]
    found = re.search(r"MemberLoadError: (models/.*)", str(exc))
    return MemberLoadError(found.group(1)) if found else None


class MemberPredictor:
    """Ray Data callable class: one member's model, loaded once per actor of its pool.

    ``model_bytes``: the member's ``.keras`` file (sent by value, so a node that cannot see
    the run folder can still load it), written to a private temporary file and loaded in
    Keras' safe mode. ``tta``: the member's test-time augmentation (prediction.tta_views).
    """

    def __init__(self, name: str, model_bytes: bytes, tta: str, threads: int):
        from committee.prediction import load_model

        configure_tensorflow(threads=threads)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{name}.keras"
            path.write_bytes(model_bytes)
            try:
                self.model = load_model(path)
            except Exception as exc:  # noqa: BLE001 - any unloadable file is reported alike
                why = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:200]
                raise MemberLoadError(f"models/{name}.keras could not be loaded in Keras' safe "
                                      f"mode ({type(exc).__name__}: {why}); expected the member's "
                                      f"trained model as committee run saved it") from None
        self.column, self.tta = f"{name}_proba", tta

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``batch["data"]``: float32 ``(b, 28, 28)``; adds this member's float32 ``(b, 10)``
        probabilities as column ``<name>_proba`` and passes every other column on."""
        from committee.prediction import predict_proba

        x = np.asarray(batch["data"], dtype=np.float32)[..., np.newaxis]  # (b, 28, 28, 1)
        return {**batch, self.column: predict_proba(self.model, x, tta=self.tta)}


def predict_members(images: np.ndarray, members: dict[str, tuple[bytes, str]],
                    placement: Placement, batch_size: int = 1024) -> dict[str, np.ndarray]:
    """Every member's probabilities of ``images`` (float32 ``(n, 28, 28)`` in [0, 1]) by Ray
    Data batch inference: one ``map_batches`` stage per member, each an actor pool of one
    actor with the member's share of the cluster (``placement``), the stages streaming
    batches into one another so that all members run at once.

    ``members``: name -> (``.keras`` file bytes, TTA mode). Returns name -> float32
    ``(n, 10)``, rows in the order of ``images``. Raises :class:`MemberLoadError` (a
    ValueError, one line) when a member's file does not load.
    """
    import ray
    import ray.data

    context = ray.data.DataContext.get_current()
    saved = (context.execution_options.preserve_order, context.enable_progress_bars)
    context.execution_options.preserve_order = True  # rows come back in the input order
    context.enable_progress_bars = sys.stderr.isatty()
    try:
        dataset = ray.data.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        for name, (model_bytes, tta) in members.items():
            dataset = dataset.map_batches(
                MemberPredictor, batch_format="numpy", batch_size=batch_size,
                fn_constructor_kwargs={"name": name, "model_bytes": model_bytes,
                                       "tta": tta, "threads": placement.threads},
                compute=ray.data.ActorPoolStrategy(size=1), num_cpus=placement.cpus,
                **({"num_gpus": placement.gpus} if placement.use_gpu else {}))
        columns = [f"{name}_proba" for name in members]
        batches = list(dataset.select_columns(columns).iter_batches(batch_format="numpy",
                                                                    batch_size=None))
    except Exception as exc:
        load_error = _member_load_error(exc)
        if load_error is None:
            raise
        raise load_error from None
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = saved
    probas = {name: np.concatenate([b[f"{name}_proba"] for b in batches]).astype(np.float32)
              for name in members}
    for name, proba in probas.items():
        if proba.shape != (len(images), 10):
            raise RuntimeError(f"member {name} returned probabilities of shape {proba.shape}; "
                               f"expected ({len(images)}, 10)")
    return probas
