"""wandb as a source: real offline runs that ``train`` writes read back equal to the store; the
online API through a stub client (there is no network here)."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis import frames as F
from analysis.load import load
from analysis.sources.run_data import SkippedFileWarning
from experiments.config import load_config
from experiments.store import RunStore, find_runs
from experiments.train import train

KEY_COLUMNS = [c for c in F.RUN_COLUMNS if c not in (F.SOURCE, F.PATH)]
STEPS = ["trainer.max_steps=12", "trainer.val_every_n_steps=5", "trainer.log_every_n_steps=3",
         "trainer.layer_stats_every_n_steps=5", "logger.wandb=offline", "task=vision", "size=tiny"]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """Two real runs (AdamW, and LARC over SGD for trust ratios) with offline wandb logging."""
    out = tmp_path_factory.mktemp("runs")
    for optimizer in ("adamw", "larc_sgd"):
        train(load_config([*STEPS, f"optimizer.name={optimizer}", f"out_dir={out}", "study=s"]))
    return out / "s"


def _sorted(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    frame = frame.copy()
    for column in frame.select_dtypes("category"):
        frame[column] = frame[column].astype(str)
    return frame.sort_values(by).reset_index(drop=True)


def _assert_same_runs(a, b) -> None:
    config = sorted(c for c in a.runs if c.startswith(F.CONFIG_PREFIX))
    pd.testing.assert_frame_equal(_sorted(a.runs[KEY_COLUMNS + config], [F.RUN_ID]),
                                  _sorted(b.runs[KEY_COLUMNS + config], [F.RUN_ID]))
    keys = [F.RUN_ID, F.METRIC, F.STEP]
    pd.testing.assert_frame_equal(_sorted(a.metrics, keys), _sorted(b.metrics, keys))


@pytest.mark.slow
def test_offline_folders_read_back_equal_to_the_store(study, tmp_path):
    """The same runs read from the store and from their wandb folders give equal frames: the
    runs' key columns and config, every metric value at its step, the layer statistics."""
    store = load([study], cache_dir=tmp_path / "cache")
    folders = [str(run / "wandb") for run in find_runs(study)]
    from_wandb = load(folders, cache_dir=tmp_path / "cache")
    assert set(from_wandb.runs[F.SOURCE]) == {"wandb"} and len(from_wandb.runs) == 2
    _assert_same_runs(store, from_wandb)
    assert set(store.metrics[F.METRIC].astype(str)) >= {"train/loss", "lr", "throughput", "val/acc"}
    keys = [F.RUN_ID, F.STEP, F.LAYER]
    pd.testing.assert_frame_equal(_sorted(store.layers, keys), _sorted(from_wandb.layers, keys))
    assert store.layers.trust_ratio.notna().any()


@pytest.mark.slow
def test_force_rerun_logs_to_a_new_wandb_run(study, tmp_path):
    """--force starts a new wandb run (<study>-<run_id>-2); a resume would append to the first."""
    out = tmp_path / "runs"
    config = load_config([*STEPS, "trainer.max_steps=2", f"out_dir={out}", "study=t"])
    train(config)
    train(config, force=True)
    (run,) = find_runs(out)
    (aside,) = out.glob("t/*.replaced-*")
    assert [p.name for p in aside.glob("wandb/offline-run-*/*.wandb")] == [f"run-t-{run.name}.wandb"]
    assert [p.name for p in run.glob("wandb/offline-run-*/*.wandb")] == [f"run-t-{run.name}-2.wandb"]


@pytest.mark.slow
def test_a_corrupt_wandb_file_is_skipped_with_one_warning(study, tmp_path):
    """A flipped byte inside a record fails its checksum: the file is left out, named."""
    (real,) = next(iter(find_runs(study))).glob("wandb/offline-run-*/*.wandb")
    folder = tmp_path / "wandb" / "offline-run-20250101_000000-broken"
    folder.mkdir(parents=True)
    data = bytearray(real.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "run-broken.wandb").write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load([tmp_path / "wandb"], cache_dir=None)
    skipped = [w for w in caught if issubclass(w.category, SkippedFileWarning)]
    assert len(skipped) == 1 and "run-broken.wandb" in str(skipped[0].message)


class StubRun(SimpleNamespace):
    """What ``wandb.Api().runs()`` yields, built from a store run as optbench logs it to wandb.
    It has no ``history()``: the sampled history must never be used."""

    def scan_history(self):
        return iter(self.rows)


class StubApi:
    def __init__(self, runs: list[StubRun]) -> None:
        self.runs_ = runs
        self.calls: list[tuple] = []

    def runs(self, path, filters=None):
        self.calls.append((path, filters))
        return [r for r in self.runs_ if not filters or r.group == filters["group"]]


def _stub_run(root: Path) -> StubRun:
    store = RunStore(root)
    history = []
    for number, row in enumerate(store.rows("metrics.jsonl")):
        values = {k: v for k, v in row.items() if k != "step"}
        history.append({"trainer/global_step": row["step"], "_step": number, "_runtime": 1.0, **values,
                        "layers/update_ratio": {"_type": "histogram", "values": [1]}})
    summary = {**store.summary(), "_wandb": {"runtime": 1}, "val/acc": 0.1}
    return StubRun(id=f"{store.study}-{store.run_id}", name=store.run_id, group=store.study, project="optbench",
                   state="finished", config={**yaml.safe_load(store.config_path.read_text()), "_wandb": {}},
                   summary_metrics=summary, rows=history, heartbeatAt="2026-01-01T00:00:00", historyLineCount=len(history))


def test_online_project_through_a_stub_client(study, tmp_path):
    """``wandb:ENTITY/PROJECT/GROUP`` maps the API's runs (config, summary, full history) onto the
    same frames as the store; the group is passed as a filter; the cache keeps the read runs."""
    api = StubApi([_stub_run(root) for root in find_runs(study)])
    online = load(["wandb:me/optbench/s"], cache_dir=tmp_path / "cache", api=api)
    assert api.calls == [("me/optbench", {"group": "s"})]
    _assert_same_runs(load([study], cache_dir=None), online)
    assert online.runs[F.PATH].str.startswith("wandb:me/optbench/s-").all()
    for run in api.runs_:
        run.rows = []  # unchanged key: the cached history is used, not scanned again
    again = load(["wandb:me/optbench/s"], cache_dir=tmp_path / "cache", api=api)
    pd.testing.assert_frame_equal(again.metrics, online.metrics)


def test_bad_wandb_spec_is_a_one_line_error():
    with pytest.raises(ValueError, match="wandb:ENTITY/PROJECT"):
        load(["wandb:only-entity"], cache_dir=None, api=StubApi([]))




def _folder(root: Path, run_id: str) -> Path:
    folder = root / "wandb" / f"offline-run-20250101_000000-{run_id}"
    folder.mkdir(parents=True)
    return folder


def test_history_rows_of_every_shape_read_alike(tmp_path):
    """Rows of wandb's own items (one nested key, one JSON value) come from the one merged parse;
    rows with an older wandb's key, a value in a typed field, or a nested key (media) from their
    own; all land at their row, in order, and a row's media is an object, not a column."""
    from wandb.proto import wandb_internal_pb2 as pb

    from analysis.sources.wandb_log import write_records

    def row(step, *items):
        return pb.Record(num=step + 10, history=pb.HistoryRecord(
            item=[pb.HistoryItem(nested_key=["trainer/global_step"], value_json=str(step)), *items]))

    records = [
        pb.Record(num=1, run=pb.RunRecord(run_id="shapes", project="p")),
        row(10, pb.HistoryItem(nested_key=["val_acc"], value_json="0.5")),
        row(20, pb.HistoryItem(key="val_acc", value_json="0.6")),  # an older wandb's key
        row(30, pb.HistoryItem(nested_key=["val_acc"], number=0.7)),  # a typed value
        row(40, pb.HistoryItem(nested_key=["val_acc"], value_json="NaN"),
            pb.HistoryItem(nested_key=["media", "path"], value_json='"m.json"')),
        row(50, pb.HistoryItem(nested_key=["val_acc"], value_json="0.9")),
        pb.Record(num=99, exit=pb.RunExitRecord(exit_code=0)),
    ]
    write_records(_folder(tmp_path, "shapes") / "run-shapes.wandb", [r.SerializeToString() for r in records])
    frames = load([tmp_path / "wandb"], cache_dir=None)
    values = frames.metrics[frames.metrics[F.METRIC] == "val_acc"].sort_values(F.STEP)
    assert values[F.STEP].tolist() == [10, 20, 30, 40, 50]
    assert values[F.VALUE].tolist()[:3] == [0.5, 0.6, 0.7] and np.isnan(values[F.VALUE].iloc[3])
    assert set(frames.metrics[F.METRIC].astype(str)) == {"val_acc"}
    run = frames.runs.iloc[0]
    assert (run[F.STATUS], run[F.METRIC], run[F.BEST], run[F.FINAL]) == ("completed", "val_acc", 0.9, 0.9)


def test_records_framed_as_wandb_frames_them(study, tmp_path):
    """``chunks`` and ``write_records`` are inverses, byte for byte on a file wandb wrote, and
    across block boundaries (a record split over FIRST, MIDDLE and LAST fragments)."""
    from analysis.sources.wandb_log import chunks, write_records

    (real,) = next(iter(find_runs(study))).glob("wandb/offline-run-*/*.wandb")
    write_records(tmp_path / "copy.wandb", chunks(real)[0])
    assert (tmp_path / "copy.wandb").read_bytes() == real.read_bytes()
    big = [bytes([n % 251]) * size for n, size in enumerate((10, 40_000, 5, 32_760, 70_000, 0, 3))]
    write_records(tmp_path / "big.wandb", big)
    assert chunks(tmp_path / "big.wandb")[0] == big


def test_many_wandb_runs_read_in_processes_equal_those_read_in_threads(tmp_path, monkeypatch):
    """Many runs of a wandb folder are read in forked processes (reading a .wandb file holds the
    GIL): the frames equal a threaded read's, and a corrupt file's warning reaches the caller."""
    import analysis.load
    from analysis.run_map import parse_map
    from analysis.sources.wandb_log import write_records
    from experiments.bench.analysis_speed import FOREIGN_MAP, generate_foreign

    generate_foreign(tmp_path, runs=6, steps=100)
    broken = _folder(tmp_path, "broken")
    write_records(broken / "run-broken.wandb", [b"\x08\x01\x12\x00"])
    data = bytearray((broken / "run-broken.wandb").read_bytes())
    data[-1] ^= 0xFF
    (broken / "run-broken.wandb").write_bytes(bytes(data))
    run_map = parse_map(FOREIGN_MAP)
    threads = load([tmp_path / "wandb"], cache_dir=None, workers=1, run_map=run_map)
    monkeypatch.setattr(analysis.load, "PROCESSES_FROM", 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        processes = load([tmp_path / "wandb"], cache_dir=None, workers=2, run_map=run_map)
    skipped = [w for w in caught if issubclass(w.category, SkippedFileWarning)]
    assert len(skipped) == 1 and "run-broken.wandb" in str(skipped[0].message)
    assert len(processes.runs) == 7 and len(processes.metrics) == 6 * (3 * 100 + 2)
    for name in ("runs", "metrics", "layers"):
        pd.testing.assert_frame_equal(getattr(processes, name), getattr(threads, name))
