"""Calibration (T-calib): ECE/MCE against their definitions and torchmetrics; temperature scaling
(Eq. 10) and its early-decoder extension (Eq. 11) recovering temperatures planted in synthetic data."""
import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

from coded_lib.calibration import (_weighted_errors, aug_temperature, bootstrap_changes, calibration_errors,
                                   calibration_experiment, calibration_splits, class_balanced_split, fit_aug_temperature,
                                   fit_temperature, reliability_table)


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


# --- the bootstrap over the images (T-calib's SE) ---------------------------------------------------

def grouped(n, seed):
    """Float32 logits over-confident by 3 where early decoder 0 agrees and by 1.5 elsewhere (h_aug has
    something to fit), labels, and two early decoders' predictions."""
    logits, y = planted(n, 10, 1.0, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    agree = torch.rand(n, 2, generator=g) < 0.6
    logits = logits * (1.5 * (1 + agree[:, 0].double()))[:, None]
    pred = logits.argmax(1)
    early = torch.where(agree, pred[:, None], (pred[:, None] + 1 + torch.arange(2)) % 10)
    return logits.float(), y, early


def test_weighted_errors_are_those_of_the_duplicated_sample():
    rng = np.random.default_rng(8)
    conf = rng.uniform(0.05, 1.0, 300) ** 0.5
    correct = rng.uniform(size=300) < conf - 0.1
    counts = rng.poisson(1.0, size=(4, 300))  # zeros, ones and repeats, as a bootstrap draws them
    ece, mce = _weighted_errors(counts.astype(float), conf, correct, 15)
    for b in range(4):
        dup = np.repeat(np.arange(300), counts[b])  # sample j written counts[b, j] times
        assert (ece[b], mce[b]) == pytest.approx(calibration_errors(conf[dup], correct[dup], 15), abs=1e-12)
        assert (ece[b], mce[b]) == pytest.approx(naive_ece_mce(conf[dup], correct[dup], 15), abs=1e-12)


def test_bootstrap_with_weights_one_is_the_mean_change_over_the_splits():
    logits, y, early = grouped(600, seed=9)
    splits = calibration_splits(logits, y, early, (0.25, 0.5), n_splits=4, steps=80, seed=3)
    per = splits.pivot_table(index=["fit_fraction", "split"], columns="method", values=["ece", "mce"])
    boot = bootstrap_changes(logits, y, early, (0.25, 0.5), n_splits=4, steps=80, seed=3, weights=np.ones((2, 600)))
    for frac in (0.25, 0.5):
        b = boot[boot.fit_fraction == frac]
        for m in ("ece", "mce"):
            mean = (per[(m, "h_aug")] - per[(m, "h_T")])[frac].mean()
            assert abs(mean) > 1e-4  # a real difference, not 0 = 0
            assert b[f"{m}_change"].tolist() == pytest.approx([mean, mean], abs=1e-9)


def test_bootstrap_matches_a_naive_loop_over_repeated_images():
    # independently: one fit per split, T_aug by its formula, and per replicate calibration_errors of
    # each split's test images written as many times as the replicate drew them
    logits, y, early = grouped(120, seed=10)
    rng = np.random.default_rng(11)
    counts = np.vstack([rng.multinomial(120, np.full(120, 1 / 120), size=3), np.ones(120, int)])
    boot = bootstrap_changes(logits, y, early, (0.25, 0.5), n_splits=3, steps=40, seed=5, weights=counts)
    gen = torch.Generator().manual_seed(5)
    agree = early == logits.argmax(1)[:, None]
    correct = (logits.argmax(1) == y).numpy()
    for frac in (0.25, 0.5):
        sums = np.zeros((len(counts), 2))
        for _ in range(3):
            fit, test = class_balanced_split(y, frac, gen)
            T = fit_temperature(logits[fit], y[fit], steps=40)
            T_a, tau = fit_aug_temperature(logits[fit], y[fit], agree[fit], steps=40)
            t_aug = T_a * (1 + agree[test].float().numpy() @ tau)
            conf_t = (logits[test] / T).softmax(1).amax(1).numpy()
            conf_a = (logits[test] / torch.from_numpy(t_aug)[:, None]).softmax(1).amax(1).numpy()
            for b, c in enumerate(counts):
                dup = np.repeat(test.numpy(), c[test.numpy()])
                rows = [calibration_errors(conf[np.searchsorted(test.numpy(), dup)], correct[dup])
                        for conf in (conf_t, conf_a)]
                sums[b] += np.subtract(rows[1], rows[0])
        b = boot[boot.fit_fraction == frac]
        assert b.ece_change.to_numpy() == pytest.approx(sums[:, 0] / 3, abs=1e-6)
        assert b.mce_change.to_numpy() == pytest.approx(sums[:, 1] / 3, abs=1e-6)


def test_bootstrap_spread_shrinks_with_the_number_of_images():
    sd = {}
    for n in (400, 6400):
        logits, y, early = grouped(n, seed=12)
        boot = bootstrap_changes(logits, y, early, (0.5,), n_splits=4, n_boot=300, steps=60, boot_seed=1)
        sd[n] = boot.ece_change.std()
        assert len(boot) == 300 and boot.replicate.tolist() == list(range(300))
    # an SE over images: about √16 = 4 (2.8 to 4.0 over seeds 12 to 15; ECE's |·| makes it a little less)
    assert 2.2 < sd[400] / sd[6400] < 6


def test_bootstrap_is_seeded_and_checks_its_weights():
    logits, y, early = grouped(200, seed=13)
    args = dict(fit_fractions=(0.5,), n_splits=2, n_boot=20, steps=10)
    a, b = bootstrap_changes(logits, y, early, **args), bootstrap_changes(logits, y, early, **args)
    assert a.equals(b) and not a.equals(bootstrap_changes(logits, y, early, **args, boot_seed=1))
    # the draws are the docstring's: n_boot multinomial counts over the 200 images, one set for all splits
    counts = np.random.default_rng(0).multinomial(200, np.full(200, 1 / 200), size=20)
    assert np.allclose(a[["ece_change", "mce_change"]], bootstrap_changes(logits, y, early, **args, weights=counts)
                       [["ece_change", "mce_change"]], atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="weights"):
        bootstrap_changes(logits, y, early, **args, weights=np.ones((3, 199)))
