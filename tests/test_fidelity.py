"""Issue 11: recipes and analyses as the authors' code runs them (SPEC §1.4, §3), each checked
against an independent computation: PyTorch's and Keras's BatchNorm conventions, the label-smoothed
cross-entropy written out, SGD's weight-decay update by hand, torchvision's own resize-and-crop,
brute-force threshold searches, Pillow's posterize bit masks, and replica means of BN statistics."""
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from coded_lib.models import MODELS, build_model
from coded_lib.train import data
from coded_lib.train.loop import build_model_for, make_optimizer, train_step
from coded_lib.train.presets import get_config

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# --- item 1: ImageNet BatchNorm momentum --------------------------------------------------------

def test_imagenet_bn_momentum_is_the_papers_0_9_in_keras_convention():
    """The paper's 0.9 weighs the old running statistic (Keras): new = 0.9 * old + 0.1 * batch."""
    for preset in ("imagenet", "imagenet150"):
        assert get_config(preset).bn_momentum == 0.1
    model = build_model_for(get_config("imagenet150"))
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.momentum == 0.1 for m in bns)
    bn = bns[0].train()
    old = torch.randn(bn.num_features)
    bn.running_mean.copy_(old)
    x = torch.randn(4, bn.num_features, 5, 5)
    bn(x)
    torch.testing.assert_close(bn.running_mean, 0.9 * old + 0.1 * x.mean(dim=(0, 2, 3)))


# --- item 2: label smoothing --------------------------------------------------------------------

def test_imagenet_loss_has_label_smoothing_0_1(monkeypatch, tmp_path):
    """Eq. 6 with timm's LabelSmoothingCrossEntropy(0.1): (1 - e) * NLL + e * mean over classes of -log p."""
    assert get_config("imagenet").label_smoothing == get_config("imagenet150").label_smoothing == 0.1
    assert get_config("cifar10").label_smoothing == get_config("cifar100").label_smoothing == 0.0
    cfg = get_config("smoke", p_drop=0.0, lr=1e-9, lr_min=0.0)
    torch.manual_seed(0)
    model = build_model_for(cfg)
    opt, _ = make_optimizer(model, cfg)
    x, y = torch.randn(6, 1, 28, 28), torch.tensor([0, 1, 2, 3, 4, 5])
    loss, _ = train_step(model, x, y, opt, mu=2.0, label_smoothing=0.1)
    with torch.no_grad():
        out = model(x, y)  # training mode: the same batch statistics, weights moved by ~1e-9
    logp = torch.log_softmax(out.logits.double(), 1)
    ref = (0.9 * -logp[range(6), y] + 0.1 * -logp.mean(1)).mean() + 2.0 * out.code_loss.double()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)

    # and the training loop hands the preset's value to train_step
    from coded_lib.train import loop

    seen = set()

    def spy(*args, **kwargs):
        seen.add(kwargs.get("label_smoothing"))
        return train_step(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", spy)
    loop.train("smoke", tmp_path / "run", progress=False, epochs=1,
               train_subset=32, val_subset=16, batch_size=16, label_smoothing=0.1)
    assert seen == {0.1}


# --- item 3: weight decay -----------------------------------------------------------------------

def test_weight_decay_skips_bn_and_biases_on_imagenet_only():
    """One SGD step with zero gradients moves each parameter by -lr * wd * p exactly where it decays."""
    assert get_config("imagenet").filter_bias_and_bn and get_config("imagenet150").filter_bias_and_bn
    assert not any(get_config(p).filter_bias_and_bn for p in ("cifar10", "cifar100", "fashion_mnist"))
    for filtered in (True, False):
        cfg = get_config("smoke", filter_bias_and_bn=filtered, weight_decay=0.1, lr=0.5, lr_min=0.0, momentum=0.0,
                         nesterov=False)
        torch.manual_seed(0)
        model = build_model_for(cfg)
        model.head.bias = torch.nn.Parameter(torch.ones(model.num_classes))  # a bias, to see it spared too
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        opt, _ = make_optimizer(model, cfg)
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        bn_params = {f"{mn}.{pn}" for mn, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)
                     for pn in ("weight", "bias")}
        for n, p in model.named_parameters():
            spared = filtered and (n in bn_params or n.endswith(".bias"))
            expected = before[n] if spared else before[n] * (1 - 0.5 * 0.1)
            torch.testing.assert_close(p.detach(), expected, msg=n)


# --- item 4: evaluation size of the 150-epoch recipe -------------------------------------------

def test_imagenet150_evaluates_at_160_px_as_the_authors_notebook():
    """timm's evaluation transform at 160 px: bicubic resize to int(160 / 0.875) = 182, centre crop 160."""
    assert get_config("imagenet150").eval_size == 160 and get_config("imagenet").eval_size == 224
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 260, 3), dtype=np.uint8))
    info = data.INFO["imagenet"]
    ref = T.Compose([T.Resize(182, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(160), T.ToTensor(),
                     T.Normalize(info.mean, info.std)])
    ours = data.make_transform("imagenet", False, eval_size=get_config("imagenet150").eval_size)
    torch.testing.assert_close(ours(img), ref(img))


# --- item 9: the final layer and the schedule --------------------------------------------------

@pytest.mark.parametrize("name", sorted(MODELS))
def test_final_linear_layer_has_no_bias(name):
    """As all of the authors' networks: logits are the pooled features times the weights, nothing added."""
    model = build_model(name)
    head = model.head
    assert head.bias is None and sum(p.numel() for p in head.parameters()) == head.in_features * model.num_classes
    f = torch.randn(3, head.in_features)
    torch.testing.assert_close(head(f), f @ head.weight.T)


# --- item 5: BN running statistics averaged over replicas --------------------------------------

BN_WORKER = """
import sys, torch
from coded_lib.train import loop
out, rank = sys.argv[1], sys.argv[2]
average = loop.average_bn_stats

def spy(model, place):  # each replica's statistics before and after the epoch-end averaging
    stats = lambda: {n: b.clone() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var"))}
    before = stats()
    average(model, place)
    torch.save({"before": before, "after": stats()}, f"{out}/bn{rank}.pt")

loop.average_bn_stats = spy
loop.train("smoke", out + "/run", progress=False, epochs=1, train_subset=64, val_subset=32, batch_size=16)
"""


def test_bn_statistics_are_the_replicas_mean_after_an_epoch(tmp_path):
    """Two gloo processes train one epoch; then both hold, and the checkpoint keeps, the mean of their statistics."""
    from coded_lib.train.checkpoint import load_checkpoint

    script = tmp_path / "worker.py"
    script.write_text(BN_WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(30500 + os.getpid() % 1000)}
    env.pop("CODED_RUNS", None)
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path), str(r)], cwd=REPO,
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    r0, r1 = (torch.load(tmp_path / f"bn{r}.pt", weights_only=True) for r in range(2))
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]
    assert len(r0["before"]) > 0
    assert any(not torch.equal(r0["before"][n], r1["before"][n]) for n in r0["before"])  # each saw its own batches
    for n in r0["before"]:
        mean = (r0["before"][n].double() + r1["before"][n].double()) / 2
        for got in (r0["after"][n], r1["after"][n], saved[n]):
            torch.testing.assert_close(got.double(), mean, rtol=1e-6, atol=1e-7, msg=n)


# --- item 7: CIFAR augmentation -----------------------------------------------------------------

def _op(ra, name):
    (op,) = {op.name: op for op in ra.ops}[name],
    op.prob = 1.0  # forced on
    return op


def test_posterize_keeps_timms_bits_and_0_bits_is_black():
    """timm keeps int(0.4 * M) bits: CIFAR-10's M = 4 keeps 1 bit (the top one), CIFAR-100's M = 2 none."""
    arr = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    one_bit = _op(data._randaugment("rand-m4-n3", 32, data.INFO["cifar10"].mean), "Posterize")(img)
    assert np.array_equal(np.asarray(one_bit), arr & 0b1000_0000)
    zero_bits = _op(data._randaugment("rand-m2-n1", 32, data.INFO["cifar100"].mean), "Posterize")(img)
    assert np.array_equal(np.asarray(zero_bits), np.zeros_like(arr))
    grey = Image.fromarray(arr[..., 0])
    assert np.array_equal(np.asarray(_op(data._randaugment("rand-m2-n1", 28, (0.5,)), "Posterize")(grey)),
                          np.zeros_like(arr[..., 0]))


def test_cifar_randaugment_runs_before_the_crop_with_the_authors_constants():
    """With Invert forced on, a grey 128 image becomes 127 and the crop's zero padding stays 0 (black):
    RandAugment after the crop would have inverted the padding to 255."""
    mean, std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
    assert (data.INFO["cifar10"].mean, data.INFO["cifar10"].std) == (mean, std)
    tf = data.make_transform("cifar10", True, randaugment="rand-m4-n3")
    (ra,) = [t for t in tf.transforms if hasattr(t, "ops")]
    ra.ops = [_op(ra, "Invert")]
    img = Image.new("RGB", (32, 32), (128, 128, 128))
    seen = set()
    torch.manual_seed(0)
    for _ in range(20):
        x = tf(img) * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)  # undo Normalize
        seen |= set((x * 255).round().int().unique().tolist())
    assert seen == {0, 127}


# --- item 6: binary-classifier thresholds -------------------------------------------------------

def _brute_threshold(pos, neg, draw=None, draws=1):
    """The authors' search written out with loops: grid from median(pos) by (median(neg) - median(pos)) / 100
    while short of median(neg); TP: positives > t, TN: negatives < t; the first best grid value per draw."""
    lo, hi = float(np.median(pos)), float(np.median(neg))
    step = (hi - lo) / 100
    grid, t = [], lo
    k = 0
    while (t < hi) if step > 0 else (t > hi):
        grid.append(t)
        k += 1
        t = lo + k * step
    best = []
    for _ in range(draws):
        top, top_t = -1.0, None
        for t in grid:
            negs = neg if draw is None else draw()
            tp = sum(1 for p in pos if p > t)
            tn = sum(1 for n in negs if n < t)
            f1 = 2 * tp / (2 * tp + (len(pos) - tp) + (len(negs) - tn))
            if f1 > top:
                top, top_t = f1, t
        best.append(top_t)
    return sum(best) / len(best)


def test_threshold_grid_by_hand():
    """pos 4, 3, 2 and neg 2.5, 0, -1, -2: grid 3, 2.965, ... (step -0.035); F1 is 6/7 once t < 2, first at
    t = 3 - 29 * 0.035 = 1.985 (and 0.8 on (2.5, 3), 2/3 on (2, 2.5))."""
    from coded_lib.analysis import best_f1_threshold

    scores, labels = [4, 2.5, 3, 0, 2, -1, -2], [1, 0, 1, 0, 1, 0, 0]
    t, f1 = best_f1_threshold(scores, labels)
    assert t == pytest.approx(1.985) and f1 == pytest.approx(6 / 7)
    assert _brute_threshold([4, 3, 2], [2.5, 0, -1, -2]) == pytest.approx(1.985)


def test_threshold_search_against_brute_force():
    """All negatives (CIFAR-10), then 9x the positives redrawn at every grid value and the threshold
    averaged over 10 searches (CIFAR-100), on made-up scores with ties and with a score on the grid."""
    from coded_lib.analysis import best_f1_threshold

    rng = np.random.default_rng(0)
    pos = np.round(rng.normal(2.0, 1.0, 15), 1)
    neg = np.round(rng.normal(0.0, 1.0, 300), 1)
    scores, labels = np.r_[pos, neg], np.r_[np.ones(15, bool), np.zeros(300, bool)]
    assert best_f1_threshold(scores, labels)[0] == pytest.approx(_brute_threshold(pos, neg))
    sampler = np.random.default_rng(7)
    ref = _brute_threshold(pos, neg, draw=lambda: sampler.choice(neg, 9 * 15, replace=False), draws=10)
    assert best_f1_threshold(scores, labels, neg_ratio=9, seed=7)[0] == pytest.approx(ref)
    # redrawn negatives move the best grid value from draw to draw: the mean is not the one-search threshold
    assert ref != pytest.approx(_brute_threshold(pos, neg))


def test_precision_recall_counts_a_score_at_the_threshold_against_the_classifier():
    """TP: positives > t; FP: negatives not < t. Scores 2, 1 (positive) and 1, 0 (negative) at t = 1: TP 1, FP 1."""
    from coded_lib.analysis import precision_recall

    assert precision_recall([2, 1, 1, 0], [1, 1, 0, 0], 1.0) == pytest.approx((0.5, 0.5))


def test_negatives_subsampled_where_the_authors_did():
    """9x the positives on CIFAR-100 and ImageNet; every negative on the 10-class sets (CIFAR-10, Fashion-MNIST)."""
    from coded_lib.analysis import neg_ratio_for

    assert [neg_ratio_for(d) for d in ("cifar10", "cifar100", "imagenet", "fashion_mnist", "digits")] == \
        [None, 9, 9, None, None]


def test_threshold_loader_is_the_training_loader_as_used_for_training(tmp_path):
    """The notebooks' training loader gives the run's augmented images (two passes differ), validation does not."""
    from coded_lib.companion.notebook import Run

    run = Run(dir=tmp_path, config=get_config("smoke"), model=None)
    train, val = run.loaders(n_train=32, n_val=16)
    torch.manual_seed(0)
    a, b = (torch.cat([x for x, _ in train]) for _ in range(2))
    assert a.shape == b.shape == (32, 1, 28, 28) and not torch.equal(a, b)
    assert torch.equal(torch.cat([x for x, _ in val]), torch.cat([x for x, _ in val]))


def test_threshold_loader_draws_the_same_augmentation_whatever_ran_before(tmp_path):
    """A chapter's thresholds do not depend on the global generator's state before it opened its
    loaders (a run trained in the same kernel, or found finished): the first augmented pass is the same."""
    from coded_lib.companion.notebook import Run

    run = Run(dir=tmp_path, config=get_config("smoke"), model=None)
    passes = []
    for before in (0, 7):
        torch.manual_seed(before)
        torch.rand(before)  # other work consuming the generator
        train, _ = run.loaders(n_train=32, n_val=16)
        passes.append(torch.cat([x for x, _ in train]))
    assert torch.equal(*passes)
