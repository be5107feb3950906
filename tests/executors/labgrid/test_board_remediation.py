"""Boards in the health loop, on the real labgrid farm of scripts/dev-boards.sh: a board whose golden
check fails is drained, reflashed with the golden image (the marker changes back), checked again
and resumed; a board that keeps failing gets a ticket after N rounds (a real local HTTP receiver,
as in tests/health). The same Remediator, tables and tickets as the servers'; the control loop's
node sync is played by `cycle()`."""

from __future__ import annotations

import subprocess
import time

import pytest

from gpufleet.domain import NodeState
from gpufleet.executors.labgrid import create
from gpufleet.services import Ctx
from gpufleet.services.health import build_health_service
from gpufleet.services.tenants import bootstrap
from gpufleet.store import Store, make_engine, migrate
from tests.health.receiver import Receiver

pytestmark = [pytest.mark.boards, pytest.mark.e2e]


class World:
    def __init__(self, farm, tmp_path, golden_command: str, health: dict, every_s: int = 3600):
        self.farm = farm
        self.golden = tmp_path / "golden.img"
        self.golden.write_text(f"golden-l4t-{time.time_ns()}\n")
        golden_command = golden_command.format(golden=self.golden.read_text().strip())
        # a fresh home: the first golden check is due at once, the next one every_s after the last
        self.ex = create(farm.options(places=["board2"], golden_command=golden_command, golden_every_s=every_s,
                                      golden_power_cycle=False, golden_image=str(self.golden),
                                      serial=False), tmp_path / "home")  # serial: tested in test_boards.py
        self.store = Store(make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"))
        migrate(self.store.engine)
        self.ctx = Ctx(self.store, self.ex)
        self.store.sync_nodes(self.ex.nodes(), keep_state=False)
        bootstrap(self.ctx, [])
        self.health = build_health_service(self.ctx, {"nvml": "off", "interval": "1s", **health})
        self.health.add_boards(self.ex.board_health)
        self.seen: list[tuple[str, str]] = []  # (state, reason) of board2 as the store had it

    def cycle(self) -> None:
        """What the server's loops do: the control loop's node sync, then a health tick."""
        self.store.sync_nodes(self.ex.nodes(), keep_state=False, prune=False)
        self.health.tick()
        n = self.store.get_node("board2")
        if not self.seen or self.seen[-1] != (n.state.value, n.reason):
            self.seen.append((n.state.value, n.reason))

    def until(self, what, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while not (found := what()):
            assert time.monotonic() < deadline, f"timed out; board2 was {self.seen}"
            self.cycle()
            time.sleep(0.2)
        return found

    def remediation(self, outcome: str):
        rems = self.health.repo.remediations("board2")
        return rems[0] if rems and rems[0].outcome == outcome else None

    def marker(self) -> str:
        return (self.farm.dir / "board2" / "marker").read_text().strip()

    def close(self) -> None:
        if self.health.workers is not None:
            self.health.workers.wait(timeout=60)
        self.health.close()
        self.ex.resume("board2")
        self.ex.close()


@pytest.fixture
def bad_image(farm, tmp_path):
    """board2 "boots" an image that is not the golden one (flashed by the farm's own tool)."""
    bad = tmp_path / "bad.img"
    bad.write_text(f"broken-l4t-{time.time_ns()}\n")
    subprocess.run(farm.flash.format(place="board2", image=str(bad)), shell=True, check=True,
                   capture_output=True)
    return bad.read_text().strip()


def test_a_failing_golden_check_drains_reflashes_rechecks_and_resumes_the_board(farm, tmp_path, bad_image):
    w = World(farm, tmp_path, 'test "$(cat $BOARD_DIR/marker)" = {golden}', {})
    try:
        assert w.marker() == bad_image
        rem = w.until(lambda: w.remediation("resumed"))
        assert [(s.phase.value, s.ok) for s in rem.steps] == [
            ("drain", True), ("wait_idle", True), ("runbook", True), ("burn_in", True), ("recheck", True),
            ("resume", True)], rem.to_dict()
        assert rem.steps[2].message == f"reflashed with {w.golden}"
        assert rem.reason.startswith("health: golden: golden check failed: exited with 1")
        assert w.marker() == w.golden.read_text().strip()  # the golden image is back on the board
        assert ("drain", "board health: golden check failed: exited with 1") in w.seen  # drained with the reason
        w.cycle()
        node = w.store.get_node("board2")
        assert node.state is NodeState.UP and w.ex._drains() == {}
        # flakiness history per board, as for servers: the failing verdict, then the passing re-check
        shown = w.health.show("board2")
        assert [(r["check"], r["status"]) for r in shown["history"]][-2:] == [("golden", "ok"), ("golden", "fail")]
        assert sum(shown["failures_per_week"].values()) == 1
        assert farm.acquired("board2") is None
    finally:
        w.close()


def test_a_board_that_keeps_failing_gets_a_ticket_after_n_rounds_and_stays_drained(farm, tmp_path):
    broken = farm.dir / "board2" / "golden-fail"
    with Receiver(routes={("POST", "/tickets"): lambda req: (201, {"id": "LAB-12", "url": "http://t/LAB-12"})}) as rx:
        broken.touch()
        w = World(farm, tmp_path, f"test ! -e {broken}",  # a check would be due each second, if it ran
                  {"remediation": {"max_rounds": 2}, "ticket": {"kind": "webhook", "url": f"{rx.url}/tickets"}},
                  every_s=1)
        try:
            rem = w.until(lambda: w.remediation("escalated"), timeout=45)
            phases = [(s.round, s.phase.value, s.ok) for s in rem.steps]
            assert phases == [(1, "drain", True), (1, "wait_idle", True), (1, "runbook", True), (1, "burn_in", True),
                              (1, "recheck", False), (2, "runbook", True), (2, "burn_in", True),
                              (2, "recheck", False), (2, "ticket", True)], phases
            (req,) = [r for r in rx.requests if r.path == "/tickets"]
            assert req.body["node"] == "board2" and req.body["rounds"] == 2
            assert req.body["reason"].startswith("health: golden: golden check failed")
            assert rem.ticket.id == "LAB-12"
            for _ in range(3):  # later cycles: no check, no new remediation, still drained
                w.cycle()
                time.sleep(0.4)
            assert w.store.get_node("board2").state is NodeState.DRAIN
            assert len(w.health.repo.remediations("board2")) == 1 and not w.ex.golden.running()
            assert sum(w.health.show("board2")["failures_per_week"].values()) == 3  # first check + 2 re-checks
        finally:
            broken.unlink(missing_ok=True)
            w.close()
    assert farm.acquired("board2") is None
