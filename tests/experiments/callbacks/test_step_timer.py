"""``StepTimer``: the training step's time, without the first steps and validations."""

from __future__ import annotations

import pytest

from experiments.callbacks.step_timer import StepTimer


def run(timer: StepTimer, ends: list[float], pause_before: tuple[int, ...] = ()) -> StepTimer:
    """End one step at each of ``ends`` (seconds), pausing before the steps numbered in ``pause_before``."""
    for number, now in enumerate(ends, start=1):
        if number in pause_before:
            timer.pause()
        timer.step_ended(now)
    return timer


def test_first_steps_are_left_out():
    """Steps 1..skip_first are not timed: step 1 has no interval, 2..3 are the warm-up."""
    timer = run(StepTimer(skip_first=3), [10.0, 20.0, 25.0, 26.0, 28.0])
    assert (timer.steps, timer.seconds) == (2, pytest.approx(3.0))
    assert timer.mean() == pytest.approx(1.5)


def test_an_interval_with_a_validation_is_left_out():
    """A validation between steps 3 and 4 takes 100 s: the interval ending at step 4 is not counted."""
    timer = run(StepTimer(skip_first=1), [0.0, 1.0, 2.0, 103.0, 104.0], pause_before=(4,))
    assert (timer.steps, timer.mean()) == (3, pytest.approx(1.0))


def test_too_short_a_run_has_no_step_time():
    assert run(StepTimer(skip_first=5), [0.0, 1.0, 2.0]).mean() is None


def test_resume_adds_to_the_earlier_attempts_and_warms_up_again():
    """A new process restores the totals and skips its own first steps again."""
    first = run(StepTimer(skip_first=2), [0.0, 1.0, 2.0])  # one timed step of 1 s
    resumed = StepTimer(skip_first=2)
    resumed.load_state_dict(first.state_dict())
    run(resumed, [50.0, 60.0, 63.0])  # warm-up interval of 10 s left out, then one of 3 s
    assert (resumed.steps, resumed.seconds) == (2, pytest.approx(4.0))
