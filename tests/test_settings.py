from pathlib import Path

import pytest

from gpufleet.domain import ValidationError
from gpufleet.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]


def test_example_server_config_loads_and_flags_win():
    s = load_settings(str(ROOT / "examples" / "server.yaml"), port=9999, policy="las")
    assert s.port == 9999 and s.scheduler.policy == "las" and s.scheduler.backfill is True
    assert s.health["interval"] == "5m" and s.executor == "local"
    assert s.launch_concurrency == 8


@pytest.mark.parametrize("text,field", [
    ("colour: red\n", "config.colour"),
    ("scheduler: {speed: 11}\n", "config.scheduler.speed"),
    ("executor: mesos\n", "executor"),
    ("scheduler: {policy: random}\n", "policy"),
    ("port: 0\n", "port"),
    ("accounts: [alice]\n", "accounts"),
    ("accounts: {alice: ../etc}\n", "accounts"),
    ("admin_group: 7\n", "admin_group"),
    ("pools: {boards: {executor: mesos}}\n", "pools.boards.executor"),
    ("pools: {boards: {executor: local}}\n", "pools.boards.executor"),
    ("pools: {default: {executor: slurm}}\n", "pools"),
    ("pools: [boards]\n", "pools"),
    ("launch_concurrency: 0\n", "launch_concurrency"),
    ("launch_concurrency: many\n", "launch_concurrency"),
    ("launch_concurrency: true\n", "launch_concurrency"),
])
def test_bad_config_names_the_setting(tmp_path, text, field):
    f = tmp_path / "s.yaml"
    f.write_text(text)
    with pytest.raises(ValidationError) as e:
        load_settings(str(f))
    assert e.value.field == field


def test_inventory_and_fake_gpus_are_exclusive():
    with pytest.raises(ValidationError) as e:
        load_settings(None, inventory="x.yaml", fake_gpus=2)
    assert e.value.field == "inventory"


def test_accounts_and_socket_settings(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("accounts: {alice: asmith}\nadmin_group: gpuadmins\npeer_tenant: null\nsocket: 'off'\n")
    s = load_settings(str(f))
    assert (s.accounts, s.admin_group, s.peer_tenant, s.socket) == ({"alice": "asmith"}, "gpuadmins", None, "off")
    d = load_settings(None)
    assert (d.accounts, d.admin_group, d.peer_tenant, d.socket) == ({}, None, "default", None)


def test_pools_default_to_none_and_load_with_their_options(tmp_path):
    assert load_settings().pools == {} and load_settings().executor == "local"
    f = tmp_path / "s.yaml"
    f.write_text("executor: local\npools:\n  boards: {executor: labgrid, coordinator: 127.0.0.1:20408}\n")
    s = load_settings(str(f))
    assert s.pools == {"boards": {"executor": "labgrid", "coordinator": "127.0.0.1:20408"}}
