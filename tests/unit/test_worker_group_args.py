"""Worker group arguments (`worker.group`): checked before any process starts, with errors in the
flags' own words; the group's shape as the registry carries it to `/v1/models` and the admin view."""

from __future__ import annotations

import json
import re

import pytest

from app.api.routes.models import _shapes
from app.cli import main as cli
from app.core.config import Settings
from app.core.registry import WorkerInfo
from app.core.schemas import ModelInfo, WorkerShape
from worker.group import GroupShape, parse_shape, rank_env, shape_of


def test_a_valid_group() -> None:
    shape = parse_shape("cuda:0, cuda:1,cuda:2,cuda:3", 2, True)
    assert shape == GroupShape(("cuda:0", "cuda:1", "cuda:2", "cuda:3"), 2, True)
    assert shape.world_size == 4
    assert shape.describe() == {
        "devices": ["cuda:0", "cuda:1", "cuda:2", "cuda:3"],
        "world_size": 4,
        "ulysses": 2,
        "cfg_parallel": True,
    }
    assert parse_shape("cpu,cpu", 2, False).devices == ("cpu", "cpu")  # CPU ranks may repeat
    assert parse_shape("cpu,cpu", 1, True).cfg_parallel


@pytest.mark.parametrize(
    ("devices", "ulysses", "cfg", "expert", "msg"),
    [
        ("cpu,cpu", 3, False, "", "--ulysses 3 x cfg 1 = 3 ranks, but --devices names 2"),
        ("cpu,cpu", 2, True, "", "--ulysses 2 x cfg 2 = 4 ranks, but --devices names 2"),
        ("cpu,cpu,cpu", 1, False, "", "= 1 ranks, but --devices names 3"),
        ("cuda:0,cuda:0", 2, False, "", "each GPU once"),
        ("cuda:0,cpu", 2, False, "", "all cpu or all cuda:N"),
        ("tpu:0,tpu:1", 2, False, "", "all cpu or all cuda:N"),
        ("cpu,,cpu", 3, False, "", "comma-separated list"),
        ("cpu,cpu", 0, False, "", "--ulysses must be >= 1"),
        ("cuda:0,cuda:1", 2, False, "cuda:0,cuda:1", "--expert-devices runs one process per job"),
    ],
)
def test_bad_groups_say_what_is_wrong(devices: str, ulysses: int, cfg: bool, expert: str, msg: str) -> None:
    with pytest.raises(ValueError, match=re.escape(msg)):
        parse_shape(devices, ulysses, cfg, expert)


def test_settings_describe_one_process_or_a_group() -> None:
    assert shape_of(Settings(devices="")) is None
    assert shape_of(Settings(devices="cpu,cpu", ulysses=2)) == GroupShape(("cpu", "cpu"), 2, False)
    with pytest.raises(ValueError, match="give them with --devices"):
        shape_of(Settings(ulysses=2))
    assert shape_of(Settings(expert_devices="cuda:0,cuda:1")) is None  # one process, two devices
    with pytest.raises(ValueError, match="--expert-devices takes two devices"):
        shape_of(Settings(expert_devices="cuda:0"))


def test_the_cli_refuses_a_bad_group_before_starting_anything() -> None:
    with pytest.raises(SystemExit, match=re.escape("--ulysses 3 x cfg 1 = 3 ranks, but --devices names 2")):
        cli.main(["worker", "--devices", "cpu,cpu", "--ulysses", "3"])
    with pytest.raises(SystemExit, match="give them with --devices"):
        cli.main(["worker", "--cfg-parallel"])
    argv = ["worker", "--devices", "cuda:0,cuda:1", "--ulysses", "1", "--cfg-parallel"]
    args = cli.build_parser().parse_args([*argv, "--expert-devices", "0,1"])
    assert (args.devices, args.ulysses, args.cfg_parallel, args.expert_devices) == (
        "cuda:0,cuda:1",
        1,
        True,
        "0,1",
    )


def test_each_rank_gets_its_device_and_the_group_one_worker_id() -> None:
    settings = Settings(worker_id="gpu-box")
    shape = parse_shape("cuda:0,cuda:1", 1, True)
    envs = [rank_env(settings, shape, r) for r in range(2)]
    assert [e["WANSERVE_DEVICE"] for e in envs] == ["cuda:0", "cuda:1"]
    assert {e["WANSERVE_WORKER_ID"] for e in envs} == {"gpu-box"}
    assert envs[0]["WANSERVE_CFG_PARALLEL"] == "true" and envs[0]["WANSERVE_DEVICES"] == "cuda:0,cuda:1"


def _worker(wid: str, group: dict[str, object] | None) -> WorkerInfo:
    preset = ModelInfo(
        model_id="m",
        task="t2v",
        image_input="none",
        sizes=[(32, 32)],
        default_size=(32, 32),
        default_num_frames=5,
        min_num_frames=1,
        max_num_frames=9,
        fps=8,
        default_num_steps=4,
        max_num_steps=50,
        default_shift=5.0,
        default_guidance_scale=[5.0],
    )
    extra = {} if group is None else {"group": json.dumps(group)}
    return WorkerInfo(wid, "m", "ready", "cpu", None, 0.0, preset, extra=extra)


def test_models_count_the_workers_of_each_shape() -> None:
    group = {"devices": ["cpu", "cpu"], "world_size": 2, "ulysses": 2, "cfg_parallel": False, "pids": [1, 2]}
    workers = [_worker("a", None), _worker("b", group), _worker("c", group)]
    assert workers[1].group == group and workers[0].group is None
    assert _shapes(workers) == [
        WorkerShape(world_size=1, ulysses=1, cfg_parallel=False, workers=1),
        WorkerShape(world_size=2, ulysses=2, cfg_parallel=False, workers=2),
    ]
    bad = WorkerInfo("d", "m", "ready", "cpu", None, 0.0, workers[0].preset, extra={"group": "{not json"})
    assert bad.group is None and bad.shape() == (1, 1, False)
