"""Options of the labgrid executor (settings `labgrid:` or a pool's options; docs/boards.md)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from gpufleet.domain import ValidationError, parse_duration

# place tags that become node labels as they are (the rest too, under their own names)
LABEL_TAGS = ("soc", "board", "carrier", "jetpack", "l4t", "gpu")


@dataclass(frozen=True)
class LabgridConfig:
    coordinator: str = "127.0.0.1:20408"  # the labgrid-coordinator (gRPC), HOST:PORT
    identity: str = "gpufleet"  # the labgrid user gpufleet acquires places as (host/identity)
    places: tuple[str, ...] = ()  # the places that are gpufleet's nodes (empty: every place)
    ssh_key: str = ""  # private key for the boards' NetworkService (SSHDriver keyfile)
    ssh_timeout_s: int = 60  # how long a board may take to answer SSH after power-on/flash
    power_cycle: bool = False  # power-cycle every board before each job (a spec's board.power_cycle wins)
    power_off_after: bool = False  # power the board off when a job ends (else leave it as it is)
    # the flashing strategy: a command run by the job's runner on this host, with {place}, {image},
    # {board} ({board}: the place's "board" tag), between power off and power on; for a Jetson:
    # recovery lines + the L4T flash.sh on the exporter host (docs/boards.md)
    flash_command: str = ""
    flash_timeout_s: int = 1800
    serial: bool = True  # capture the place's NetworkSerialPort into the job's log
    # board health (health.py): a golden check on every idle board each golden_every_s (and on a
    # board health drained), e.g. "grep -q 'R36 (release), REVISION: 3' /etc/nv_tegra_release && tegrastats --interval 500 | head -n 1";
    # empty: no golden checks
    golden_command: str = ""
    golden_every_s: int = 6 * 3600
    golden_timeout_s: int = 300
    golden_power_cycle: bool = True
    # remediation of a board the health loop drained (services/health.py): reflash with this image
    # through `flash_command`, then the golden check again; empty: power-cycle instead of reflashing
    golden_image: str = ""
    arch: str = "aarch64"  # a node's arch unless its place has an `arch` tag
    timeout_s: float = 10.0  # one call to the coordinator
    extra: Mapping[str, Any] = field(default_factory=dict)


def parse_config(options: Mapping[str, Any]) -> LabgridConfig:
    """Validated options; a bad one raises ValidationError naming labgrid.<key>."""
    known = {f.name for f in fields(LabgridConfig)} - {"extra"}
    values: dict[str, Any] = {}
    for key, value in (options or {}).items():
        if key not in known:
            raise ValidationError(f"labgrid.{key}", f"unknown option (known: {', '.join(sorted(known))})")
        values[key] = value
    for key in ("ssh_timeout_s", "flash_timeout_s", "golden_every_s", "golden_timeout_s"):
        if key in values:
            values[key] = parse_duration(values[key], f"labgrid.{key}")
            if not values[key]:
                raise ValidationError(f"labgrid.{key}", "must be a positive duration")
    for key in ("power_cycle", "power_off_after", "serial", "golden_power_cycle"):
        if key in values and not isinstance(values[key], bool):
            raise ValidationError(f"labgrid.{key}", "must be true or false")
    if "places" in values:
        p = values["places"]
        if isinstance(p, str):
            p = [x for x in p.split(",") if x]
        if not isinstance(p, (list, tuple)) or not all(isinstance(x, str) and x for x in p):
            raise ValidationError("labgrid.places", "must be a list of place names")
        values["places"] = tuple(p)
    for key in ("coordinator", "identity", "ssh_key", "flash_command", "arch", "golden_command",
                "golden_image"):
        if key in values and not isinstance(values[key], str):
            raise ValidationError(f"labgrid.{key}", "must be a string")
    if "/" in values.get("identity", "x") or not values.get("identity", "x"):
        raise ValidationError("labgrid.identity", "a user name without '/'")
    return LabgridConfig(**values)
