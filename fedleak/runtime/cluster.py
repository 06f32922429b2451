"""Where the attackers run: the Ray instance Flower starts on this machine, or a Ray cluster the user already has.

``executor.address`` (else Ray's own ``RAY_ADDRESS`` variable) names an existing cluster. fedleak then connects
before Flower's simulation starts, so Flower's backend finds Ray initialised and joins the same cluster; when the
run ends Flower's ``ray.shutdown()`` only disconnects this driver: a cluster fedleak did not start is never
stopped, and the attacker actors, owned by this driver, go with it (the pool also kills them itself).

Placement: every attacker actor asks for one unit of a custom resource (``executor.resource``, default
``fedleak_attacker``) besides ``num_cpus=0`` and its GPU share. On a real cluster, give that resource to the
nodes meant for attacks (``ray start ... --resources '{"fedleak_attacker": 4}'``) and Flower's virtual clients,
which ask for CPUs only, never crowd them out. On a local run fedleak declares ``executor.workers`` units itself.
"""

from __future__ import annotations

import os
import socket

from fedleak.errors import UserError

DEFAULT_RESOURCE = "fedleak_attacker"
#: Seconds to wait for the cluster's head before giving up (the whole check stays well under 30 s).
CONNECT_TIMEOUT_S = 10.0


def cluster_address(configured: str | None) -> str | None:
    """The cluster to join: the scenario's ``executor.address``, else ``RAY_ADDRESS``, else None (local)."""
    return configured or os.environ.get("RAY_ADDRESS") or None


def _check_reachable(address: str) -> None:
    """Fail fast on a host:port nothing listens on: ray.init would retry for a minute before saying so."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"executor.address {address!r}: write HOST:PORT of the cluster's head (e.g. 127.0.0.1:6379), "
                        f"'auto', or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise UserError(f"executor.address {address}: no Ray cluster answers there ({exc}); start one with "
                        f"'ray start --head' or fix the address") from None


def connect(address: str) -> None:
    """Join the Ray cluster at ``address``; an unreachable one is one UserError naming it and Ray's error."""
    # lazy (start-up): Ray takes seconds to import; only Ray runs need it
    import ray

    _check_reachable(address)
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    except Exception as exc:  # noqa: BLE001 — any failure to join is the user's address or cluster
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"executor.address {address}: cannot join the Ray cluster: {first}") from None


def check_resource(resource: str, address: str) -> None:
    """The joined cluster must offer ``resource``, or attacker actors would wait forever: say which nodes exist."""
    # lazy (start-up): Ray takes seconds to import; only Ray runs need it
    import ray

    if ray.cluster_resources().get(resource, 0) >= 1:
        return
    nodes = []
    for node in ray.nodes():
        if node.get("Alive"):
            offered = ", ".join(f"{k} {v:g}" for k, v in sorted(node["Resources"].items())
                                if not k.startswith(("node:", "memory", "object_store_memory")))
            nodes.append(f"{node['NodeManagerAddress']} ({offered})")
    ray.shutdown()  # disconnect only: the cluster stays up
    raise UserError(f"executor.resource {resource!r}: no node of the cluster at {address} offers it; nodes: "
                    f"{'; '.join(nodes) or 'none'}; start attack nodes with --resources '{{\"{resource}\": N}}'")
