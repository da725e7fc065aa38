"""The Ray cluster: join or start one, check an address answers as a Ray head, and place the
members on it (:class:`Placement`: the resources each member's one worker or task asks for).

Orchestration layer (Ray code).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from dataclasses import dataclass


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


# Ray's own switch (ray_constants.ENABLE_RAY_CLUSTER) for a single-machine Ray: with it off,
# the node's IP is 127.0.0.1 instead of the routable address, and every server of the local Ray
# (GCS, raylet, object manager, workers, agents, metrics) binds to loopback only.
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# Token authentication of a private Ray: RAY_AUTH_MODE unset (or empty) or "token" turns it on,
# "disabled" (said in so many words) off; Ray itself takes any other value as off, silently.
AUTH_ENV = "RAY_AUTH_MODE"
AUTH_MODES = ("token", "disabled")
TOKEN_ENVS = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")  # a token the user names
TCP_TIMEOUT_S = 5.0  # a TCP connect to the address
PROBE_TIMEOUT_S = 10.0  # one gRPC call that only a Ray GCS (or Ray Client server) answers


# A private Ray's Unix sockets: <temp>/ray/session_<date>_<time>_<µs>_<pid>/sockets/<name>,
# the longest of them (a dashboard module's, Ray 2.60) as below, with the largest pid Linux
# gives (pid_max 4194304); Linux caps a Unix socket's path at 107 bytes.
_SOCKET_UNDER_TEMP = "/ray/session_2026-01-01_00-00-00_000000_4194304/sockets/dash_TaskEventsHead"
SOCKET_PATH_MAX = 107
TEMP_DIR_MAX = SOCKET_PATH_MAX - len(_SOCKET_UNDER_TEMP)


def check_ray_temp_dir(environ=os.environ) -> None:
    """Raise ValueError naming ``RAY_TMPDIR`` (else ``TMPDIR``, which Ray takes on Linux) if a
    private local Ray could not start under the folder it names: empty, not a folder, or
    longer than :data:`TEMP_DIR_MAX` bytes (Ray makes Unix sockets under it, and their paths
    would exceed the 107 bytes Linux allows). Unset: Ray uses /tmp, nothing to check."""
    name = next((n for n in ("RAY_TMPDIR", "TMPDIR") if n in environ), None)
    if name is None or (name == "TMPDIR" and not sys.platform.startswith("linux")):
        return
    path = environ[name]
    fix = f"set RAY_TMPDIR to a short folder such as /tmp (or unset {name})"
    if not path:
        raise ValueError(f"{name} is set but empty; expected the folder for Ray's files: {fix}")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{name} {path!r} is not a folder; expected one for Ray's files: {fix}")
    size = len(os.fsencode(path))
    if size > TEMP_DIR_MAX:
        raise ValueError(
            f"{name} {path!r} is {size} bytes long; expected at most {TEMP_DIR_MAX}: the Unix "
            f"sockets a private Ray makes under it would exceed the {SOCKET_PATH_MAX} bytes "
            f"Linux allows a socket's path: {fix}"
        )


def connect(address: str | None = None, num_cpus: int | None = None, verbose: bool = False) -> None:
    """Join the cluster at ``address`` / RAY_ADDRESS, or start a private local Ray.

    A joined address must answer as a Ray head within seconds (:func:`check_ray_head`), else
    ConnectionError. A local Ray binds every listener to 127.0.0.1 and turns token auth on by
    default (README, Security). Unless ``verbose``, the workers' output stays in Ray's own
    log files (members report to the driver through :func:`run_members`' queue) and Ray's
    driver-side notices below errors are not shown. The process's SIGINT and SIGTERM
    handlers are those it had before (``ray.init`` replaces SIGTERM's).
    """
    import ray

    if ray.is_initialized():
        return
    with _signal_handlers_kept(), _daemons_in_own_session():
        _connect(address, num_cpus, verbose)


@contextlib.contextmanager
def _signal_handlers_kept():
    """For the block, ``ray.init``'s: the process's SIGINT and SIGTERM handlers as they were
    before it, also while it runs. Ray's driver replaces SIGTERM's with one that exits at once
    (status 15), from wherever the driver is, and a command's own (KeyboardInterrupt, one
    line, exit 143) would then be lost."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # only it has handlers
        yield
        return
    ray_utils = sys.modules.get("ray._private.utils")  # imported with ray, before ray.init

    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    # While ray.init starts Ray, its own SIGTERM handler would end the process with
    # sys.exit(15), no line said; kept out, a SIGTERM then stops the command as one sent later.
    with contextlib.ExitStack() as stack:
        if getattr(ray_utils, "set_sigterm_handler", None) is not None:
            stack.enter_context(_replaced(ray_utils, "set_sigterm_handler", lambda handler: None))
        stack.callback(_put_back, saved)
        yield


def _put_back(handlers: dict) -> None:
    """Install ``handlers`` (signal number: Python handler) again, also where Python still
    reports them but something below it replaced them."""
    import signal

    for signum, handler in handlers.items():
        if handler is not None:  # None: set outside Python, cannot be put back
            signal.signal(signum, handler)


@contextlib.contextmanager
def _replaced(owner, name: str, value):
    """For the block, ``owner.name`` (a module's or an object's attribute) is ``value``;
    afterwards what it was, or the class's again where ``owner`` had none of its own."""
    had, old = name in vars(owner), vars(owner).get(name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        if had:
            setattr(owner, name, old)
        else:
            delattr(owner, name)


@contextlib.contextmanager
def _daemons_in_own_session():
    """For the block: every process Ray starts (GCS, raylet, dashboard; the raylet's workers
    inherit it) starts in a session of its own. A signal to this command's process group
    (``kill %1``, a job runner's stop) then reaches the command alone, which shuts its Ray
    down in order; delivered to the raylet as well it killed it under the running command,
    whose core worker then ended the process with status 1 from its own thread. Ray's
    daemons still die with this process: on Linux each asks the kernel for that
    (``PR_SET_PDEATHSIG``), which sessions do not change. Where the kernel cannot, Ray
    reaps them through the process group, so they stay in it."""
    services = sys.modules.get("ray._private.services")
    ray_utils = sys.modules.get("ray._private.utils")
    popen = getattr(services, "ConsolePopen", None)
    if (
        popen is None
        or ray_utils is None
        or not sys.platform.startswith("linux")
        or not ray_utils.detect_fate_sharing_support()
    ):
        yield
        return

    class _NewSessionPopen(popen):
        def __init__(self, *args, **kwargs):
            kwargs["start_new_session"] = True
            super().__init__(*args, **kwargs)

    with _replaced(services, "ConsolePopen", _NewSessionPopen):
        yield


def kill_private_ray() -> None:
    """SIGKILL every process in the sessions that this process's children lead: its private
    Ray's (:func:`_daemons_in_own_session`: the GCS, the raylet with its agents and workers,
    the dashboard). For a process about to end without ``ray.shutdown``: the kernel would kill
    its direct children with it, but the raylet's agents and idle workers then linger for up
    to a minute. Linux only (its /proc); elsewhere nothing."""
    import signal

    me = os.getpid()
    processes = list(_processes())
    leaders = {pid for pid, ppid, sid in processes if ppid == me and sid == pid and _rays(pid)}
    for pid, _, sid in processes:
        if sid in leaders:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:  # gone meanwhile
                pass


def _rays(pid: int) -> bool:
    """Whether process ``pid`` runs a program of Ray's package (its GCS, raylet, dashboard or
    log monitor), by its command line."""
    ray = sys.modules.get("ray")
    if ray is None:
        return False
    package = os.fsencode(os.path.dirname(ray.__file__) + os.sep)
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return package in handle.read()
    except OSError:
        return False


def _processes():
    """(pid, parent's pid, session id) of each process /proc shows."""
    try:
        entries = [entry for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:  # no /proc
        return
    for entry in entries:
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rpartition(")")[2].split()  # after "pid (comm)"
            yield int(entry), int(fields[1]), int(fields[3])
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue


def disconnect() -> None:
    """Shut down this process's Ray (a private local one stops; a joined cluster is left
    running), if it started one; else nothing."""
    ray = sys.modules.get("ray")  # not imported: no Ray to shut down
    if ray is not None and ray.is_initialized():
        with _signal_handlers_back_after_core_worker():
            ray.shutdown()


@contextlib.contextmanager
def _signal_handlers_back_after_core_worker():
    """For a ``ray.shutdown()`` in the block: the process's SIGINT and SIGTERM handlers are
    installed again as soon as Ray's core worker is gone, and at the end. Destroyed, the core
    worker sets SIGTERM's action back to the system's default (its C++ failure-signal handler
    uninstalls itself so) while Python still reports its own handler: a SIGTERM while Ray then
    stops the private Ray's processes (about a second), or any time after, would kill the
    process by the signal, with no line and no exit status of the command's."""
    import signal
    import threading

    state = getattr(sys.modules.get("ray._private.state"), "state", None)
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    with contextlib.ExitStack() as stack:
        # ray.shutdown's next step after destroying the core worker
        disconnect_state = getattr(state, "disconnect", None)
        if disconnect_state is not None:

            def disconnect_then_reinstall(*args, **kwargs):
                try:
                    return disconnect_state(*args, **kwargs)
                finally:
                    _put_back(handlers)

            stack.enter_context(_replaced(state, "disconnect", disconnect_then_reinstall))
        stack.callback(_put_back, handlers)
        yield


def _connect(address: str | None, num_cpus: int | None, verbose: bool) -> None:
    import logging

    import ray

    from committee.distributed.address import resolve

    address, source = resolve(address)  # ValueError naming --address or RAY_ADDRESS
    if address:
        check_ray_head(address, source)
        try:
            ray.init(
                address=address,
                log_to_driver=verbose,
                logging_level=logging.INFO if verbose else logging.ERROR,
            )
        except (ConnectionError, TimeoutError, RuntimeError) as exc:
            raise ConnectionError(
                f"could not connect to the Ray cluster at {address} (from "
                f"{source}): "
                f"{str(exc).splitlines()[0] if str(exc) else exc!r}"
            ) from None
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
    # Token authentication too travels in the environment (private_auth_env).
    auth = private_auth_env()
    if not auth:
        from committee.log import logger

        logger.warning(
            f"{AUTH_ENV}=disabled: this run's private Ray has no token authentication; any "
            "process on this machine can reach it and run code in it"
        )
    port = free_port()
    values = {"RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{port}", _LOOPBACK_ENV: "0", **auth}
    saved_cluster = ray_constants.ENABLE_RAY_CLUSTER
    with scoped_environ(values):
        ray_constants.ENABLE_RAY_CLUSTER = False
        try:
            if auth:
                from ray._private.authentication.authentication_token_setup import (
                    _enable_token_auth,
                )
                from ray._raylet import AuthenticationTokenLoader

                _enable_token_auth()  # this process's cached RayConfig reads the mode again
                AuthenticationTokenLoader.instance().reset_cache()  # and the token
            ray.init(
                address="local",
                num_cpus=num_cpus,
                include_dashboard=True,
                dashboard_host="127.0.0.1",
                dashboard_port=port,
                _node_ip_address="127.0.0.1",
                log_to_driver=verbose,
                logging_level=logging.INFO if verbose else logging.ERROR,
                # Each member brings a controller, a worker and short tasks: on 2 CPUs the
                # raylet's default (one startup per CPU) warns of "too many workers".
                _system_config={"worker_maximum_startup_concurrency": 4},
            )
        finally:
            ray_constants.ENABLE_RAY_CLUSTER = saved_cluster


@contextlib.contextmanager
def scoped_environ(values: dict[str, str]):
    """For the block, this process's environment with ``values`` set; afterwards each of
    those variables as it was before (unset again where it was unset)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def auth_mode(environ=os.environ) -> str:
    """A private Ray's authentication: ``RAY_AUTH_MODE``, "token" when unset or empty.
    Raises ValueError, naming the variable, for any value but those of :data:`AUTH_MODES`."""
    value = environ.get(AUTH_ENV) or "token"
    if value not in AUTH_MODES:
        raise ValueError(
            f"{AUTH_ENV} {value!r} is unknown; expected one of {', '.join(AUTH_MODES)}"
        )
    return value


def private_auth_env(environ=os.environ) -> dict[str, str]:
    """The environment that gives a private local Ray (and each of its processes, which
    inherit it) token authentication: ``RAY_AUTH_MODE=token`` and, unless the user names a
    token (:data:`TOKEN_ENVS`), a new random one held in memory for this Ray only, not
    written to ``~/.ray/auth_token`` (which needs a writable home). ``{}`` when
    ``RAY_AUTH_MODE=disabled``; ValueError for an unknown mode (:func:`auth_mode`)."""
    import secrets

    if auth_mode(environ) == "disabled":
        return {}
    env = {AUTH_ENV: "token"}
    if not any(environ.get(name) for name in TOKEN_ENVS):
        env["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    return env


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_ray_head(
    address: str,
    source: str,
    tcp_timeout_s: float = TCP_TIMEOUT_S,
    probe_timeout_s: float = PROBE_TIMEOUT_S,
) -> None:
    """Fail in bounded time, with one line naming ``source``, unless a Ray head answers at
    ``address`` (host:port of a GCS, ray://host:port of a Ray Client server, or auto).

    A TCP connect first, then one gRPC call with a deadline through Ray's own channel (TLS
    and token auth as Ray sets them up): the GCS's GetClusterId, or Ray Client's PING (what
    Ray Client itself sends on connecting). An HTTP server or any other non-Ray port fails
    here, where ``ray.init`` would retry for minutes.
    """
    import socket

    from committee.distributed.address import split_host_port

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
            raise ConnectionError(
                f"{where} found no Ray head on this machine ({detail}); "
                "expected a running Ray head (ray start --head)"
            )
        where = f"{address} (auto, from {source})"
    client = address.startswith("ray://")
    target = address.removeprefix("ray://")
    host, port = split_host_port(target)
    try:
        with socket.create_connection((host, port), timeout=tcp_timeout_s):
            pass
    except OSError as exc:
        raise ConnectionError(
            f"could not connect to the Ray cluster at {where}: {exc}; "
            f"expected a running Ray head (ray start --head)"
        ) from None
    code, detail = _probe(target, client, probe_timeout_s)
    if code is None:
        return
    if code.name == "UNAUTHENTICATED":
        raise ConnectionError(
            f"the Ray head at {where} refused this client's token ({detail}); expected "
            "RAY_AUTH_MODE=token with RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH naming the head's "
            "token"
        )
    if code.name == "DEADLINE_EXCEEDED":
        detail = f"no answer within {probe_timeout_s:g} s"
    raise ConnectionError(
        f"no Ray head answered at {where}: gRPC {code.name}: {detail}; expected a running "
        "Ray head (ray start --head)"
        + (
            "; for Ray Client, its port (default 10001)"
            if client
            else "; give its GCS port (default 6379), not the dashboard's"
        )
    )


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
                timeout=timeout_s,
            )
        else:
            from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

            gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(
                gcs_service_pb2.GetClusterIdRequest(), timeout=timeout_s
            )
    except grpc.RpcError as exc:
        code = exc.code() if callable(getattr(exc, "code", None)) else grpc.StatusCode.UNKNOWN
        details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
        return code, (details or "").splitlines()[0] if details else code.name.lower()
    finally:
        channel.close()
    return None, ""


@dataclass(frozen=True)
class Placement:
    """Resources each member's single training worker asks for (and its predict task, and
    its batch-inference actor)."""

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

    def scaling_config(self):
        """Ray Train's ScalingConfig for one member: one worker with these resources."""
        from ray.train import ScalingConfig

        return ScalingConfig(
            num_workers=1,
            use_gpu=self.use_gpu,
            resources_per_worker={"CPU": self.cpus, **({"GPU": self.gpus} if self.use_gpu else {})},
        )

    def runtime_env(self, backend: str) -> dict:
        """Ray's runtime environment for a process of one member on Keras' ``backend``: its
        variables (backend.process_env) for this placement's threads and GPU share."""
        from committee.training.backend import process_env

        return {"env_vars": process_env(backend, self.threads, self.gpus)}

    def task_resources(self) -> dict[str, float]:
        """``num_cpus`` (and ``num_gpus`` when there are GPUs) for a Ray task or actor."""
        return {"num_cpus": self.cpus, **({"num_gpus": self.gpus} if self.use_gpu else {})}


def floor_resource(x: float) -> float:
    """``x`` rounded down to Ray's resource granularity (1e-4)."""
    return math.floor(x * 10_000) / 10_000


def plan_placement(
    n_members: int,
    nodes: list[dict[str, float]],
    cpus: float | None = None,
    gpus: float | None = None,
) -> Placement:
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
        gpus = (
            0.0
            if total_gpu == 0
            else (1.0 if total_gpu >= n_members else floor_resource(total_gpu / n_members))
        )
    if cpus is None:
        cpus = floor_resource(min(max_cpu, max(total_cpu / n_members, 0.1)))
    if cpus <= 0 or gpus < 0:
        raise ValueError(f"{cpus} CPU / {gpus} GPU per member; expected CPU > 0 and GPU >= 0")
    fits = [n for n in nodes if n.get("CPU", 0.0) >= cpus and n.get("GPU", 0.0) >= gpus]
    if not fits:
        largest = max(nodes, key=lambda n: (n.get("GPU", 0.0), n.get("CPU", 0.0)), default={})
        raise ValueError(
            f"each member asks for {cpus:g} CPU and {gpus:g} GPU on one node, but no node of "
            f"this cluster offers that (largest: {largest.get('CPU', 0.0):g} CPU, "
            f"{largest.get('GPU', 0.0):g} GPU; cluster total {total_cpu:g} CPU, "
            f"{total_gpu:g} GPU); lower --cpus-per-member / --gpus-per-member"
        )
    return Placement(cpus=cpus, gpus=gpus)


def cluster_nodes() -> list[dict[str, float]]:
    import ray

    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]
