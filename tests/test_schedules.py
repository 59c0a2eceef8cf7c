"""Learning-rate schedules against their formulas, and the values they refuse."""

import math

import pytest

from backends import XpnetError
from nn import SCHEDULES, Schedule

BASE, EPOCHS, DECAY = 0.03, 7, 0.8
PROGRESS = (0.0, 0.25, 0.999, 1.0, 2.5, 3.0, 5.75, 6.99, 7.0)


def test_the_three_kinds_are_offered():
    assert set(SCHEDULES) == {"constant", "exponential", "cosine"}


def test_constant():
    s = Schedule("constant", BASE, EPOCHS)
    assert [s(p) for p in PROGRESS] == [BASE] * len(PROGRESS)


def test_exponential_steps_once_per_epoch():
    s = Schedule("exponential", BASE, EPOCHS, decay=DECAY)
    for p in PROGRESS:
        assert s(p) == pytest.approx(BASE * DECAY ** math.floor(p), rel=1e-12), p
    # flat within an epoch, a factor DECAY between epochs
    assert s(2.0) == s(2.9)
    assert s(3.0) == pytest.approx(DECAY * s(2.9), rel=1e-12)


def test_cosine_follows_half_a_cosine_from_base_to_zero():
    s = Schedule("cosine", BASE, EPOCHS)
    for p in PROGRESS:
        assert s(p) == pytest.approx(BASE * (1 + math.cos(math.pi * p / EPOCHS)) / 2, rel=1e-12, abs=1e-15), p
    assert s(0.0) == BASE
    assert s(EPOCHS / 2) == pytest.approx(BASE / 2, rel=1e-12)
    assert abs(s(EPOCHS)) < 1e-12 * BASE
    values = [s(EPOCHS * i / 50) for i in range(51)]
    assert all(a >= b for a, b in zip(values, values[1:])), "cosine must never rise"


def test_cosine_stays_at_zero_after_the_last_epoch():
    s = Schedule("cosine", BASE, EPOCHS)
    assert abs(s(EPOCHS + 0.5)) < 1e-12 * BASE and abs(s(2 * EPOCHS)) < 1e-12 * BASE


def test_decay_of_one_is_constant():
    s = Schedule("exponential", BASE, EPOCHS, decay=1.0)
    assert [s(p) for p in PROGRESS] == [BASE] * len(PROGRESS)


@pytest.mark.parametrize("lr", [-1.0, 0.0, math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("kind", SCHEDULES)
def test_bad_learning_rates_raise(kind, lr):
    with pytest.raises(XpnetError, match="--lr"):
        Schedule(kind, lr, EPOCHS)


@pytest.mark.parametrize("decay", [0.0, -0.5, 1.5, math.nan])
def test_bad_decay_raises(decay):
    with pytest.raises(XpnetError, match="--lr-decay"):
        Schedule("exponential", BASE, EPOCHS, decay=decay)


def test_unknown_kind_names_the_choices():
    with pytest.raises(XpnetError, match="constant, exponential, cosine"):
        Schedule("linear", BASE, EPOCHS)


@pytest.mark.parametrize("epochs", [0, -3])
def test_a_schedule_needs_at_least_one_epoch(epochs):
    with pytest.raises(XpnetError, match="--epochs"):
        Schedule("cosine", BASE, epochs)
