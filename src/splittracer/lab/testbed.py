"""The lab as one object: :class:`Testbed` builds, checks and removes it from its parts.

``Testbed(state_dir).up(hosts=N, bandwidth="10mbit")`` (root, Linux) makes the bridge and,
for each host, its namespace and veth (:mod:`.network`), its link shaping (:mod:`.shaping`),
its user and sshd (:mod:`.sshd`), then saves what it made (:mod:`.state`) and, unless
``ready=False``, pairs the hosts in its registry and gives them a runtime (:mod:`.ready`),
so ``splittracer run`` can use them at once. ``status()``
checks each host again; ``down()`` stops every process in the lab's namespaces (sshd and
the sessions it started), deletes the namespaces, veths and bridge, the users it made and
its files. It finds them by name as well as from the state, so it also clears what an
interrupted ``up`` left; it is idempotent.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..devices.limits import ResourceLimits
from ..devices.registry import Device, Registry
from .errors import TestbedError
from .hostlimits import HostCgroups, remove_host_cgroups
from .network import (
    HOST_IFACE,
    LabNetwork,
    add_bridge,
    add_host_link,
    check_free,
    check_host_count,
    leftover_links,
    namespace_pids,
    namespaces,
    remove_links,
    remove_namespaces,
)
from .ready import authorize_client_key, make_client_key, make_runtimes, remove_runtime, runtime_dir
from .shaping import is_shaped, netem_available, parse_bandwidth, shape_host, tbf_burst_bytes
from .sshd import (
    SSH_PORT,
    SshdFiles,
    add_authorized_key,
    lab_users,
    make_host_key,
    make_privsep_dir,
    make_user,
    read_ssh_banner,
    remove_privsep_dir,
    remove_users,
    sshd_has_penalties,
    start_sshd,
    write_sshd_config,
)
from .state import (
    CLIENT_KEY_FILE,
    KNOWN_HOSTS_FILE,
    REGISTRY_FILE,
    STATE_FILE,
    HostStatus,
    LabHost,
    TestbedState,
    TestbedStatus,
    default_state_dir,
    load_state,
    paired_entry,
    remove_state_files,
    save_state,
    state_files,
)
from .system import Progress, check_environment, check_platform

__all__ = ["Testbed"]


def _quiet(_: str) -> None:
    return


class Testbed:
    """Build, inspect and remove the lab whose state lives in ``state_dir``."""

    __test__ = False

    def __init__(self, state_dir: Path | None = None, network: LabNetwork | None = None) -> None:
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self.network = network or LabNetwork()
        # Set as soon as sshd's directory is made, so a failed ``up`` still removes it.
        self._privsep_created: Path | None = None
        self._cgroups = HostCgroups(self.network.prefix)
        self._limits: list[ResourceLimits] = []

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE

    def read_state(self) -> TestbedState | None:
        """The saved state, or ``None`` when no lab is up from this state directory."""
        return load_state(self.state_file)

    # ---- up

    def up(
        self,
        hosts: int,
        bandwidth: str | None = None,
        *,
        progress: Progress | None = None,
        ready: bool = True,
        limits: Sequence[ResourceLimits] = (),
    ) -> TestbedState:
        """Build ``hosts`` lab hosts, their links shaped to ``bandwidth`` when given.

        ``ready``: pair them as root in the lab's registry and give them a runtime
        (:mod:`.ready`); without it the registry names each host's own user, unpaired.
        ``limits``: one per host (see :func:`.hostlimits.parse_host_limits`), each
        enforced on everything its sshd starts (:mod:`.hostlimits`).
        """
        say = progress or _quiet
        count, rate = check_host_count(hosts), parse_bandwidth(bandwidth)
        sshd = check_environment(shaping=rate is not None)
        self._refuse_if_up()
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._limits = list(limits) or [ResourceLimits()] * count
        if len(self._limits) != count:
            raise TestbedError(f"{len(self._limits)} host limits given for {count} hosts")
        try:
            state = self._build(count, bandwidth, rate, sshd, say, ready)
            if ready:
                make_runtimes(state.registry, state.hosts, say)
            return state
        except BaseException:
            with contextlib.suppress(Exception):
                self.down()
            with contextlib.suppress(Exception):
                self._cgroups.remove()
            raise

    def _refuse_if_up(self) -> None:
        hint = "run 'splittracer testbed down' (with the same --state-dir) first"
        if self.state_file.exists():
            raise TestbedError(f"a testbed is already up from {self.state_dir}", hint=hint)
        check_free(self.network, hint)

    def _build(
        self, count: int, bandwidth: str | None, rate: float | None, sshd: Path, say: Progress, ready: bool
    ) -> TestbedState:
        net = self.network
        say(f"bridge {net.bridge} {net.bridge_address}/24")
        add_bridge(net)
        penalties = sshd_has_penalties(sshd)
        password = secrets.token_urlsafe(12)
        built = []
        for index in range(1, count + 1):
            say(f"host {net.namespace(index)} {net.address(index)}")
            built.append(self._build_host(index, rate, password, sshd, penalties))
        key = make_client_key(self.state_dir) if ready else None
        if key is not None:
            authorize_client_key(key, built)
        runtime = runtime_dir()
        state = TestbedState(
            state_dir=self.state_dir,
            prefix=net.prefix,
            subnet=net.subnet,
            bridge=net.bridge,
            bridge_address=net.bridge_address,
            bandwidth=bandwidth,
            rate_bps=rate,
            tbf_burst=tbf_burst_bytes(rate) if rate is not None else None,
            password=password,
            hosts=tuple(built),
            registry=self.state_dir / REGISTRY_FILE,
            known_hosts=self.state_dir / KNOWN_HOSTS_FILE,
            netem=netem_available(),
            privsep_dir_created=self._privsep_created,
            created_at=time.time(),
            client_key=key,
            runtime_created=runtime if ready and not runtime.exists() else None,
            cgroup_parents=tuple(str(p) for p in self._cgroups.parents),
        )
        save_state(state, self.state_file)
        return state

    def _build_host(
        self, index: int, rate: float | None, password: str, sshd: Path, penalties: bool
    ) -> LabHost:
        net = self.network
        name, address, user = net.namespace(index), net.address(index), net.user(index)
        files = SshdFiles(self.state_dir / name)
        files.directory.mkdir(mode=0o700, exist_ok=True)
        add_host_link(net, index)
        if rate is not None:
            shape_host(net, index, rate)
        home = make_user(user, name, password)
        host_key, fingerprint = make_host_key(files, name)
        write_sshd_config(files, name=name, address=address, user=user, penalties=penalties)
        self._privsep_created = make_privsep_dir(sshd, files.config) or self._privsep_created
        limits = self._limits[index - 1]
        cgroup = self._cgroups.create(name, limits)
        pid = start_sshd(sshd, name, files, address, wrap=cgroup.wrap if cgroup is not None else None)
        if cgroup is not None:
            cgroup.throttle()
        return LabHost(
            name=name,
            index=index,
            address=address,
            port=SSH_PORT,
            namespace=name,
            interface=HOST_IFACE,
            bridge_veth=net.bridge_veth(index),
            user=user,
            home=home,
            authorized_keys=home / ".ssh" / "authorized_keys",
            root_authorized_keys=files.root_keys,
            sshd_pid=pid,
            sshd_config=files.config,
            sshd_log=files.log,
            host_key=host_key,
            host_key_fingerprint=fingerprint,
            cpu_limit=limits.cpu,
            memory_limit_bytes=limits.memory_bytes,
            cgroup_dirs=tuple(str(d) for _, d in cgroup.dirs.values()) if cgroup is not None else (),
        )

    # ---- keys

    def authorize_key(self, host: str, public_key: str, *, user: str | None = None) -> Path:
        """Let ``public_key`` (an ``authorized_keys`` line) log in to ``host`` as its user or ``root``.

        Returns the keys file written, so a test can restore it.
        """
        lab_host = self._require_state().host(host)
        if user not in (None, lab_host.user, "root"):
            raise TestbedError(f"lab host {lab_host.name} accepts only {lab_host.user} and root, not {user}")
        if user == "root":
            add_authorized_key(lab_host.root_authorized_keys, public_key, owner=None)
            return lab_host.root_authorized_keys
        add_authorized_key(lab_host.authorized_keys, public_key, owner=lab_host.user)
        return lab_host.authorized_keys

    def pair_as_root(
        self, registry: Path, names: Sequence[str] | None = None, *, python: str | None = None
    ) -> Registry:
        """A device registry at ``registry`` with every host paired as root by the lab's own key.

        What ``up(ready=True)`` writes, under names of the caller's choice (``names``, one per
        host in order; default the hosts' names) and without making a runtime: each entry runs
        ``python`` (default this machine's) and listens at its host's address. The key is the
        lab's (made in the state folder when ``up`` did not make one), removed by ``down``.
        """
        state = self._require_state()
        labels = list(names) if names is not None else [h.name for h in state.hosts]
        if len(labels) != len(state.hosts):
            raise TestbedError(f"{len(labels)} device names for {len(state.hosts)} lab hosts")
        key = self.state_dir / CLIENT_KEY_FILE
        if not key.exists():
            make_client_key(self.state_dir)
        authorize_client_key(key, state.hosts)
        devices = Registry(registry)
        for label, host in zip(labels, state.hosts):
            devices.put(Device.model_validate({**paired_entry(host, key, python), "name": label}))
        return devices

    def _require_state(self) -> TestbedState:
        state = self.read_state()
        if state is None:
            raise TestbedError(
                f"no testbed is up from {self.state_dir}", hint="run 'splittracer testbed up --hosts 2'"
            )
        return state

    # ---- status

    def status(self) -> TestbedStatus:
        """The saved state and, for each host, whether its namespace, sshd and shaping are there."""
        state = self.read_state()
        if state is None:
            return TestbedStatus(state=None, hosts=())
        present = set(namespaces())
        with ThreadPoolExecutor(max_workers=min(16, len(state.hosts) or 1)) as pool:
            found = tuple(pool.map(lambda h: _host_status(h, h.namespace in present), state.hosts))
        return TestbedStatus(state=state, hosts=found)

    # ---- down

    def down(self, *, progress: Progress | None = None) -> list[str]:
        """Remove everything the lab made; return what was removed (empty when nothing was up)."""
        say = progress or _quiet
        state = self.read_state() if self.state_file.exists() else None
        net = state.network if state is not None else self.network
        check_platform()
        removed = remove_namespaces(net, say)
        if state is not None:
            host_dirs = [d for h in state.hosts for d in h.cgroup_dirs]
            removed += remove_host_cgroups(host_dirs, list(state.cgroup_parents))
        removed += remove_links(net)
        removed += remove_users(net, say)
        privsep = state.privsep_dir_created if state is not None else self._privsep_created
        removed += remove_privsep_dir(privsep)
        removed += remove_runtime(state.runtime_created if state is not None else None)
        removed += remove_state_files(self.state_dir, net)
        return removed

    def leftovers(self) -> list[str]:
        """What of this lab still exists (namespaces, links, users, state files); empty after ``down``."""
        net = self.network
        found = leftover_links(net)
        found += [f"user {u}" for u in lab_users(net)]
        found += [f"file {f}" for f in state_files(self.state_dir)]
        return found


def _host_status(host: LabHost, has_namespace: bool) -> HostStatus:
    running = has_namespace and host.sshd_pid in namespace_pids(host.namespace)
    return HostStatus(
        name=host.name,
        address=host.address,
        namespace=has_namespace,
        sshd_running=running,
        banner=read_ssh_banner(host.address, host.port) if running else None,
        shaped=has_namespace and is_shaped(host.namespace, host.interface),
    )
