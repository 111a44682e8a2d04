"""Checkpoint files: atomic writes that keep the previous checkpoint, and the choice of what a run
resumes from when some are torn (real files, cut short or damaged as a kill, a full disk or a bad
copy leaves them). Whole runs resumed past a torn checkpoint are in ``test_resume.py``."""

from __future__ import annotations

import pytest
import torch

from experiments.checkpoints import AtomicCheckpointIO, choose_resume, unreadable_reason
from experiments.store import RunStore


def save(io: AtomicCheckpointIO, store: RunStore, step: int) -> None:
    io.save_checkpoint({"global_step": step, "weights": torch.full((1000,), float(step))},
                       store.checkpoints / "last.ckpt")


def step_of(path) -> int:
    return torch.load(path, weights_only=True)["global_step"]


def cut_short(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def damage(path) -> None:
    """Flip bytes in the middle of the file (inside a tensor's data): the size stays."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(255 - b for b in data[middle:middle + 16])
    path.write_bytes(bytes(data))


def test_a_save_keeps_the_checkpoint_it_replaces(tmp_path) -> None:
    store, io = RunStore(tmp_path / "run"), AtomicCheckpointIO()
    save(io, store, 20)
    assert sorted(p.name for p in store.checkpoints.iterdir()) == ["last.ckpt"]
    save(io, store, 40)
    save(io, store, 60)
    assert sorted(p.name for p in store.checkpoints.iterdir()) == ["last.ckpt", "last.previous.ckpt"]
    assert step_of(store.checkpoints / "last.ckpt") == 60
    assert step_of(store.checkpoints / "last.previous.ckpt") == 40
    assert store.resume_checkpoints() == [store.checkpoints / "last.ckpt", store.checkpoints / "last.previous.ckpt"]


def test_a_save_that_fails_part_way_leaves_both_checkpoints_whole(tmp_path) -> None:
    store, io = RunStore(tmp_path / "run"), AtomicCheckpointIO()
    save(io, store, 20)
    save(io, store, 40)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("write failed part-way")

    with pytest.raises(RuntimeError, match="write failed part-way"):  # after the tensors' bytes went out
        io.save_checkpoint({"weights": torch.zeros(1000), "last": Unpicklable()}, store.checkpoints / "last.ckpt")
    assert sorted(p.name for p in store.checkpoints.iterdir()) == ["last.ckpt", "last.previous.ckpt"]  # no temporary left
    assert step_of(store.checkpoints / "last.ckpt") == 40 and step_of(store.checkpoints / "last.previous.ckpt") == 20


@pytest.mark.parametrize("tear, reason", [
    (cut_short, "BadZipFile: File is not a zip file"),
    (lambda path: path.write_bytes(b""), "BadZipFile: File is not a zip file"),
    (damage, "bad CRC-32 for "),
])
def test_a_torn_checkpoint_is_unreadable_and_says_why(tear, reason, tmp_path) -> None:
    store, io = RunStore(tmp_path / "run"), AtomicCheckpointIO()
    save(io, store, 20)
    path = store.checkpoints / "last.ckpt"
    assert unreadable_reason(path) is None
    tear(path)
    assert unreadable_reason(path).startswith(reason)


def test_damaged_bytes_load_silently_but_read_as_unreadable(tmp_path) -> None:
    """torch.load checks no CRC: a damaged tensor loads as other numbers, and a resume from it
    would train on. The zip check catches it."""
    store = RunStore(tmp_path / "run")
    save(AtomicCheckpointIO(), store, 20)
    path = store.checkpoints / "last.ckpt"
    damage(path)
    assert not torch.equal(torch.load(path, weights_only=True)["weights"], torch.full((1000,), 20.0))
    assert unreadable_reason(path).startswith("bad CRC-32 for ")


def test_a_run_resumes_from_the_newest_readable_checkpoint_and_sets_the_torn_ones_aside(tmp_path) -> None:
    store, io = RunStore(tmp_path / "run"), AtomicCheckpointIO()
    for step in (20, 40):
        save(io, store, step)
    cut_short(store.checkpoints / "last.ckpt")
    looked = choose_resume(store, set_aside=False)  # another rank: reads, moves nothing
    assert looked.path == store.checkpoints / "last.previous.ckpt" and (store.checkpoints / "last.ckpt").is_file()

    resume = choose_resume(store, set_aside=True)
    assert resume.path == store.checkpoints / "last.previous.ckpt" and step_of(resume.path) == 20
    assert resume.unreadable == {"checkpoints/last.ckpt": "BadZipFile: File is not a zip file"}
    assert resume.notice(store) == ("checkpoints/last.ckpt (BadZipFile: File is not a zip file) is unreadable, set "
                                    "aside in checkpoints/unreadable/; resuming from checkpoints/last.previous.ckpt")
    assert resume.meta(store) == {"unreadable_checkpoints": {"checkpoints/last.ckpt": "BadZipFile: File is not a zip file"},
                                  "resumed_from": "checkpoints/last.previous.ckpt"}
    assert not (store.checkpoints / "last.ckpt").exists() and (store.checkpoints / "unreadable" / "last.ckpt").is_file()
    save(io, store, 60)  # the next save does not rotate the torn file into "previous"
    assert step_of(store.checkpoints / "last.previous.ckpt") == 20


def test_with_every_checkpoint_torn_the_run_starts_again_from_step_0(tmp_path) -> None:
    store, io = RunStore(tmp_path / "run"), AtomicCheckpointIO()
    for step in (20, 40):
        save(io, store, step)
    cut_short(store.checkpoints / "last.ckpt")
    damage(store.checkpoints / "last.previous.ckpt")
    resume = choose_resume(store, set_aside=True)
    assert resume.path is None and list(resume.unreadable) == ["checkpoints/last.ckpt", "checkpoints/last.previous.ckpt"]
    assert resume.notice(store).endswith(" are unreadable, set aside in checkpoints/unreadable/; no readable "
                                         "checkpoint left: the run starts again from step 0")
    assert resume.meta(store)["resumed_from"] is None
    assert store.resume_checkpoints() == []


def test_whole_checkpoints_leave_no_note(tmp_path) -> None:
    store = RunStore(tmp_path / "run")
    assert choose_resume(store, set_aside=True).path is None
    save(AtomicCheckpointIO(), store, 20)
    resume = choose_resume(store, set_aside=True)
    assert resume.path == store.checkpoints / "last.ckpt" and resume.unreadable == {} and resume.meta(store) == {}
