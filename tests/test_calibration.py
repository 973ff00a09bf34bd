"""Calibration (T-calib): ECE/MCE against their definitions and torchmetrics; temperature scaling
(Eq. 10) and its early-decoder extension (Eq. 11) recovering temperatures planted in synthetic data."""
import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

from coded_lib.calibration import (aug_temperature, calibration_errors, calibration_experiment, class_balanced_split,
                                   fit_aug_temperature, fit_temperature, reliability_table)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def naive_ece_mce(conf, correct, M):
    """The definitions of Guo et al. (appendix C): bins I_m = ((m-1)/M, m/M], one loop per bin."""
    conf, correct = np.asarray(conf, float), np.asarray(correct, float)
    edges = np.linspace(0, 1, M + 1)
    ece, mce = 0.0, 0.0
    for m in range(M):
        lo, hi = edges[m], edges[m + 1]
        in_bin = (conf > lo) & (conf <= hi) if m > 0 else (conf >= lo) & (conf <= hi)
        if in_bin.sum() == 0:
            continue
        gap = abs(correct[in_bin].mean() - conf[in_bin].mean())
        ece += in_bin.sum() / len(conf) * gap
        mce = max(mce, gap)
    return ece, mce


def planted(n, K, T0, seed=0, scale=2.0):
    """Labels drawn from softmax(z); the model reports z * T0 (over-confident when T0 > 1),
    so the NLL-optimal temperature is T0 up to sampling noise."""
    g = torch.Generator().manual_seed(seed)
    z = scale * torch.randn(n, K, generator=g, dtype=torch.float64)
    y = torch.multinomial(z.softmax(1), 1, generator=g).squeeze(1)
    return z * T0, y


def nll(logits, y, T):
    return torch.nn.functional.cross_entropy(logits / T, y).item()


@pytest.mark.parametrize("M", [15, 7])
def test_ece_mce_match_naive_definition(M):
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.1, 1.0, 3000) ** 0.5
    correct = rng.uniform(size=3000) < conf - 0.1  # over-confident, by about 10 points
    ece, mce = calibration_errors(conf, correct, M)
    ref_ece, ref_mce = naive_ece_mce(conf, correct, M)
    assert ece == pytest.approx(ref_ece, abs=1e-12)
    assert mce == pytest.approx(ref_mce, abs=1e-12)
    assert 0.05 < ece < 0.15


def test_ece_mce_match_torchmetrics_multiclass():
    g = torch.Generator().manual_seed(1)
    probs = (3 * torch.randn(2000, 10, generator=g)).softmax(1)
    target = torch.randint(0, 10, (2000,), generator=g)
    conf, pred = probs.max(1)
    ece, mce = calibration_errors(conf, pred == target, 15)
    assert ece == pytest.approx(multiclass_calibration_error(probs, target, 10, n_bins=15, norm="l1").item(), abs=1e-5)
    assert mce == pytest.approx(multiclass_calibration_error(probs, target, 10, n_bins=15, norm="max").item(), abs=1e-5)


def test_ece_mce_match_torchmetrics_binary():
    g = torch.Generator().manual_seed(2)
    p = torch.rand(1500, generator=g)
    target = (torch.rand(1500, generator=g) < p ** 2).long()
    # torchmetrics' binary version scores P(y = 1), i.e. confidence p and "correct" = target
    ece, mce = calibration_errors(p, target, 15)
    assert ece == pytest.approx(binary_calibration_error(p, target, n_bins=15, norm="l1").item(), abs=1e-5)
    assert mce == pytest.approx(binary_calibration_error(p, target, n_bins=15, norm="max").item(), abs=1e-5)


def test_bin_edges_are_right_closed_unlike_torchmetrics():
    # A confidence exactly on an edge m/M belongs to bin m (right-closed, as in the paper and in Guo
    # et al.'s code); torchmetrics puts it in bin m+1 and gives 1.0 a bin of its own. Only exact
    # edge values differ, which softmax outputs practically never hit.
    conf = torch.tensor([0.2, 0.2, 0.25, 1.0, 0.95], dtype=torch.float64)
    correct = torch.tensor([1, 0, 1, 0, 1])
    ece, mce = calibration_errors(conf, correct, 5)
    # bins (0, .2]: {.2, .2}, (.2, .4]: {.25}, (.8, 1]: {1.0, .95}
    assert ece == pytest.approx((2 * 0.3 + 0.75 + 2 * 0.475) / 5)
    assert (ece, mce) == pytest.approx(naive_ece_mce(conf.numpy(), correct.numpy(), 5), abs=1e-12)
    table = reliability_table(conf, correct, 5)
    assert table["count"].tolist() == [2, 1, 0, 0, 2]
    # torchmetrics: [.2, .4): {.2, .2, .25}, [.8, 1): {.95}, [1, 1]: {1.0}
    tm = binary_calibration_error(conf.float(), correct, n_bins=5, norm="l1").item()
    assert tm == pytest.approx((3 * abs(2 / 3 - 0.65 / 3) + 0.05 + 1.0) / 5, abs=1e-6)
    assert abs(tm - ece) > 0.01


def test_perfect_calibration_has_zero_error():
    conf = np.repeat([0.25, 0.5, 1.0], 4)
    correct = np.array([1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1])
    assert calibration_errors(conf, correct, 15) == pytest.approx((0.0, 0.0), abs=1e-12)


@pytest.mark.parametrize("bad", [dict(n_bins=0), dict(confidence=[1.5])])
def test_calibration_errors_rejects_bad_input(bad):
    args = {"confidence": [0.5], "correct": [1], "n_bins": 15, **bad}
    with pytest.raises(ValueError):
        calibration_errors(**args)


@pytest.mark.parametrize("T0", [2.0, 0.6])
def test_fit_temperature_recovers_planted_temperature(T0):
    logits, y = planted(4000, 10, T0)
    T = fit_temperature(logits, y)
    grid = np.linspace(0.3, 4.0, 741)
    T_grid = grid[np.argmin([nll(logits, y, t) for t in grid])]
    assert T == pytest.approx(T_grid, abs=0.02)  # 600 GD steps reach the NLL minimum
    assert T == pytest.approx(T0, rel=0.1)  # which is the planted temperature


def test_aug_temperature_formula():
    T = torch.tensor(2.0, dtype=torch.float64)
    tau = torch.tensor([0.5, -0.25, 1.0], dtype=torch.float64)
    agree = torch.tensor([[1, 1, 0], [0, 0, 0], [1, 1, 1]], dtype=torch.bool)
    expected = [2 * (1 + 0.5 - 0.25), 2.0, 2 * (1 + 0.5 - 0.25 + 1.0)]
    assert aug_temperature(T, tau, agree).tolist() == pytest.approx(expected)
    assert aug_temperature(T, torch.zeros(3, dtype=torch.float64), agree).tolist() == [2.0] * 3


def test_h_aug_without_agreement_equals_h_T():
    logits, y = planted(2000, 10, 1.7, seed=3)
    T = fit_temperature(logits, y)
    T_aug, tau = fit_aug_temperature(logits, y, torch.zeros(2000, 4, dtype=torch.bool))
    assert T_aug == pytest.approx(T, abs=1e-12)  # tau gets no gradient: the same descent as h_T
    assert np.all(tau == 0)


def test_h_aug_recovers_planted_per_group_temperatures():
    # samples where early decoder 0 agrees are over-confident by 3, the others by 1.5:
    # T = 1.5 and tau_0 = 1 fit exactly, decoder 1 (random agreement) should get tau_1 near 0
    logits, y = planted(6000, 10, 1.0, seed=4)
    g = torch.Generator().manual_seed(5)
    agree = torch.rand(6000, 2, generator=g) < 0.5
    temps = 1.5 * (1 + 1.0 * agree[:, 0].double())
    T, tau = fit_aug_temperature(logits * temps[:, None], y, agree)
    assert T == pytest.approx(1.5, rel=0.1)
    assert tau[0] == pytest.approx(1.0, abs=0.2)
    assert abs(tau[1]) < 0.1


def test_class_balanced_split():
    targets = torch.tensor([0] * 40 + [1] * 20 + [2] * 8)
    fit, test = class_balanced_split(targets, 0.25, torch.Generator().manual_seed(0))
    assert torch.bincount(targets[fit]).tolist() == [10, 5, 2]
    assert sorted(torch.cat([fit, test]).tolist()) == list(range(68))
    fit2, _ = class_balanced_split(targets, 0.25, torch.Generator().manual_seed(1))
    assert not torch.equal(fit, fit2)
    with pytest.raises(ValueError):
        class_balanced_split(targets, 1.0)


def test_calibration_experiment_table():
    logits, y = planted(800, 10, 2.5, seed=6)
    early = torch.randint(0, 10, (800, 3), generator=torch.Generator().manual_seed(7))
    table = calibration_experiment(logits, y, early, fit_fractions=(0.25, 0.5), n_splits=3, steps=200)
    assert len(table) == 6 and set(table["method"]) == {"uncalibrated", "h_T", "h_aug"}
    assert (table["n_splits"] == 3).all()
    by = table.set_index(["fit_fraction", "method"])["ece_pct"]
    # the planted over-confidence is large: temperature scaling must cut the ECE
    assert by[(0.5, "h_T")] < by[(0.5, "uncalibrated")] / 2
    assert by[(0.25, "h_aug")] < by[(0.25, "uncalibrated")] / 2
