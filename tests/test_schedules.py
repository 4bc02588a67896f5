"""training.method.schedules: alpha and pi at their boundaries, the label mix and its rate, R2D-C helpers."""

from __future__ import annotations

import math
import random

import pytest
import torch

from r2d.config import Stage2Config
from training.method.schedules import (
    ConfidenceThreshold,
    alpha_at,
    gated_probability,
    gumbel_temperature,
    mix_labels,
    sampling_probability,
    warmup_steps,
)

MAX_STEPS = 1000
PAPER = Stage2Config()  # alpha 0.7 over 5%; pi ramps from 5% towards 1 at 65%, capped at 0.9


@pytest.mark.parametrize(
    "step, expected",
    [
        (0, 0.0),  # explain loss only at the very start
        (25, 0.35),  # half-way through the warm-up
        (49, 0.7 * 49 / 50),  # W - 1
        (50, 0.7),  # W = 5% of max_steps: the full weight
        (650, 0.7),
        (MAX_STEPS, 0.7),
    ],
)
def test_alpha_warmup_boundaries(step, expected):
    assert alpha_at(step, MAX_STEPS, PAPER) == pytest.approx(expected)


def test_alpha_with_a_one_step_warmup_still_starts_at_zero():
    s = Stage2Config()  # 5% of 20 steps: W = 1
    assert [alpha_at(t, 20, s) for t in (0, 1, 2)] == [0.0, pytest.approx(0.7), pytest.approx(0.7)]


def test_alpha_without_warmup_is_constant():
    s = Stage2Config(alpha_warmup_fraction=0.0, alpha=0.4)
    assert alpha_at(0, MAX_STEPS, s) == 0.4


@pytest.mark.parametrize(
    "step, expected",
    [
        (0, 0.0),
        (49, 0.0),  # before the start: gold labels only
        (50, 0.0),  # the ramp starts from 0
        (350, 0.5),  # (350 - 50) / (650 - 50)
        (589, 539 / 600),  # still on the ramp
        (590, 0.9),  # (590 - 50) / 600 = 0.9: the cap is reached
        (650, 0.9),  # 65%: the ramp would be at 1, the cap holds
        (MAX_STEPS, 0.9),
    ],
)
def test_sampling_probability_boundaries(step, expected):
    assert sampling_probability(step, MAX_STEPS, PAPER) == pytest.approx(expected)


def test_sampling_probability_is_monotone_and_capped():
    values = [sampling_probability(t, MAX_STEPS, PAPER) for t in range(MAX_STEPS + 1)]
    assert all(a <= b for a, b in zip(values, values[1:]))
    assert max(values) == pytest.approx(PAPER.sampling_cap)
    assert min(values) == 0.0


def test_empty_sampling_ramp_jumps_to_cap():
    s = Stage2Config(sampling_start_fraction=0.2, sampling_end_fraction=0.2, sampling_cap=0.5)
    assert sampling_probability(199, MAX_STEPS, s) == 0.0
    assert sampling_probability(200, MAX_STEPS, s) == 0.5


@pytest.mark.parametrize(
    "confidence, threshold, expected",
    [
        (0.6, 0.6, 0.45),  # at the threshold the gate is one half
        (1.0, 0.0, 0.9 / (1 + math.exp(-10))),
        (0.0, 1.0, 0.9 / (1 + math.exp(10))),
    ],
)
def test_gated_probability(confidence, threshold, expected):
    assert gated_probability(0.9, confidence, threshold, sharpness=10.0) == pytest.approx(expected)


def test_gated_probability_survives_extreme_sharpness():
    assert gated_probability(0.5, 1.0, 0.0, sharpness=1e6) == pytest.approx(0.5)
    assert gated_probability(0.5, 0.0, 1.0, sharpness=1e6) == pytest.approx(0.0)


@pytest.mark.parametrize(
    "step, expected",
    [
        (0, 1.0),
        (250, 2**-0.25),  # 0.8409
        (500, 0.7071067811865476),  # mid-run: exp(-ln2 / 2) = 1/sqrt(2), the authors' value (linear would be 0.75)
        (1000, 0.5),  # exp(-ln2) = 0.5: the floor is met at the last step
        (5000, 0.5),  # and held
    ],
)
def test_gumbel_temperature_is_the_authors_exponential(step, expected):
    assert gumbel_temperature(step, MAX_STEPS, 1.0, 0.5) == pytest.approx(expected, abs=1e-12)


def test_gumbel_temperature_floor_and_rate_do_not_depend_on_each_other():
    # the authors' decay rate is ln2 / T whatever the start; a higher floor is simply reached earlier
    assert gumbel_temperature(500, MAX_STEPS, 2.0, 0.5) == pytest.approx(2 / math.sqrt(2))
    assert gumbel_temperature(500, MAX_STEPS, 1.0, 0.8) == 0.8


@pytest.mark.parametrize("max_steps", [1, 0])
def test_gumbel_temperature_of_a_one_step_run(max_steps):
    # T = 1 halves the temperature in its one step; T = 0 (no max_steps known) is read as 1, not a division by 0
    assert gumbel_temperature(1, max_steps, 1.0, 0.1) == pytest.approx(0.5)


def test_warmup_steps_round_down_as_the_authors():
    assert warmup_steps(1000, PAPER) == 50
    assert warmup_steps(30_000, PAPER) == 1500
    assert warmup_steps(39, PAPER) == 1  # int(1.95)


# --- mix_labels ---------------------------------------------------------------------------------

GOLD = ["1"] * 1000
PREDICTED = ["5"] * 1000  # always different from gold, so a replaced label is visible


@pytest.mark.parametrize("make_generator", [lambda: torch.Generator().manual_seed(0), lambda: random.Random(0)])
def test_pi_zero_keeps_gold_and_pi_one_takes_predictions(make_generator):
    labels, used = mix_labels(GOLD, PREDICTED, 0.0, make_generator())
    assert labels == GOLD and not any(used)
    labels, used = mix_labels(GOLD, PREDICTED, 1.0, make_generator())
    assert labels == PREDICTED and all(used)


@pytest.mark.parametrize("pi", [0.1, 0.5, 0.9])
def test_predicted_labels_replace_gold_at_rate_pi(pi):
    n = 20_000
    labels, used = mix_labels(["1"] * n, ["5"] * n, pi, torch.Generator().manual_seed(1234))
    rate = labels.count("5") / n
    # binomial sd of the rate is sqrt(pi(1-pi)/n) <= 0.0036; 0.02 is over 5 sd (a false failure < 1e-7)
    assert rate == pytest.approx(pi, abs=0.02)
    assert sum(used) == labels.count("5")


def test_per_example_probabilities():
    labels, used = mix_labels(["a", "b", "c", "d"], ["w", "x", "y", "z"], [0.0, 1.0, 0.0, 1.0], random.Random(3))
    assert labels == ["a", "x", "c", "z"]
    assert used == [False, True, False, True]


def test_same_seed_same_mix_and_global_rng_untouched():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    py_before = random.getstate()
    first = mix_labels(GOLD, PREDICTED, 0.5, torch.Generator().manual_seed(7))
    second = mix_labels(GOLD, PREDICTED, 0.5, torch.Generator().manual_seed(7))
    assert first == second
    assert torch.equal(torch.get_rng_state(), before)
    assert random.getstate() == py_before


@pytest.mark.parametrize(
    "predicted, pi, message",
    [
        (["5"], 0.5, "must align"),
        (["5", "5"], [0.5], "must align"),
        (["5", "5"], 1.5, r"\[0, 1\]"),
        (["5", "5"], [0.1, -0.1], r"\[0, 1\]"),
    ],
)
def test_mix_labels_rejects_bad_input(predicted, pi, message):
    with pytest.raises(ValueError, match=message):
        mix_labels(["1", "2"], predicted, pi, random.Random(0))


def test_mix_labels_rejects_global_rng_stand_ins():
    with pytest.raises(TypeError, match="generator"):
        mix_labels(["1"], ["2"], 0.5, None)
    with pytest.raises(TypeError, match="got int$"):  # the message names what was passed
        mix_labels(["1"], ["2"], 0.5, 7)


class FixedDraws(random.Random):
    """A generator whose every draw is `value`, to test the comparison at its edge."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize(
    "draw, pi, uses_prediction",
    [
        (0.0, 0.0, False),  # draws are in [0, 1): pi = 0 never takes a prediction, even at draw 0
        (0.5, 0.5, False),  # a draw takes the prediction when it is below pi, so P(prediction) = pi
        (0.4999, 0.5, True),
    ],
)
def test_a_draw_takes_the_prediction_only_below_pi(draw, pi, uses_prediction):
    labels, used = mix_labels(["1"], ["5"], pi, FixedDraws(draw))
    assert used == [uses_prediction] and labels == (["5"] if uses_prediction else ["1"])


# --- R2D-C threshold -------------------------------------------------------------------------------


def feed(threshold: ConfidenceThreshold, steps: range, confidence) -> list[float]:
    return [threshold.update(t, [confidence(t)]) for t in steps]


def test_threshold_is_calibrated_on_the_warmup_at_step_w():
    th = ConfidenceThreshold(warmup_steps=50, window_steps=1000)
    before = feed(th, range(0, 50), lambda t: 0.2 if t % 2 else 0.4)
    assert before == [1.0] * 50  # before W: the authors' "never" value (pi = 0 anyway)
    at_w = th.update(50, [0.3])
    assert at_w == pytest.approx(0.3)  # mean of steps 0..50: 25 x 0.2, 25 x 0.4, one 0.3


def test_threshold_is_the_mean_of_each_1000_step_window():
    th = ConfidenceThreshold(warmup_steps=50, window_steps=1000)
    feed(th, range(0, 51), lambda t: 0.3)  # calibrated to 0.3 at W = 50
    # the window after W: steps 51..1050, half at 0.5 and half at 0.9 (mean 0.7)
    in_window = feed(th, range(51, 1051), lambda t: 0.5 if t % 2 else 0.9)
    assert in_window == [pytest.approx(0.3)] * 1000  # the threshold in force, boundary step included
    assert th.update(1051, [0.0]) == pytest.approx(0.7)  # the refreshed mean from the next step on
    # the next window forgets the previous one: steps 1051..2050 all at 0.1 (the 0.0 above included)
    feed(th, range(1052, 2051), lambda t: 0.1)
    assert th.update(2051, [0.5]) == pytest.approx((0.0 + 999 * 0.1) / 1000)


def test_threshold_refreshes_once_per_boundary_under_gradient_accumulation():
    th = ConfidenceThreshold(warmup_steps=0, window_steps=2)
    assert th.update(0, [0.4]) == pytest.approx(0.4)  # W = 0: calibrated on the first batch
    assert th.update(0, [0.8]) == pytest.approx(0.4)  # a second micro-batch of step 0 opens the next window
    th.update(1, [0.2])
    assert th.update(2, [0.5]) == pytest.approx(0.4)  # boundary: gated with the old value, then refreshed
    assert th.update(2, [0.9]) == pytest.approx(0.5)  # mean(0.8, 0.2, 0.5); no second refresh at step 2
    th.update(3, [0.1])
    assert th.update(4, [0.2]) == pytest.approx(0.5)
    assert th.update(5, [0.0]) == pytest.approx(0.4)  # mean(0.9, 0.1, 0.2)


def test_threshold_with_a_one_step_window_refreshes_every_step():
    th = ConfidenceThreshold(warmup_steps=0, window_steps=1)
    assert th.update(0, [0.4]) == pytest.approx(0.4)
    assert th.update(1, [0.6]) == pytest.approx(0.4)  # gated with the value in force, then refreshed
    assert th.update(2, [0.2]) == pytest.approx(0.6)


def test_threshold_without_confidences_stays_at_never():
    # nothing to calibrate on at W: the threshold stays 1.0, the authors' "never use a prediction"
    th = ConfidenceThreshold(warmup_steps=0, window_steps=10)
    assert th.update(0, []) == 1.0
    assert th.threshold == 1.0


def test_threshold_after_a_gap_refreshes_at_the_next_boundary():
    # steps can jump (a resumed run): a gap over several windows moves the next refresh to the first
    # window boundary after the step, not one window after the old boundary
    th = ConfidenceThreshold(warmup_steps=0, window_steps=10)
    th.update(0, [0.5])  # calibrated at W = 0; next boundary 10
    assert th.update(35, [0.1]) == pytest.approx(0.5)  # past 10, 20 and 30: refreshed once, to 0.1
    assert th.update(39, [0.3]) == pytest.approx(0.1)  # no refresh before 40
    assert th.update(40, [0.7]) == pytest.approx(0.1)  # the boundary: refreshed to mean(0.3, 0.7)
    assert th.update(41, [0.0]) == pytest.approx(0.5)


def test_threshold_rejects_zero_window():
    with pytest.raises(ValueError, match="window_steps"):
        ConfidenceThreshold(0, 0)
