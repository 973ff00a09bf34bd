"""Early decoders, removal and binary classifiers against hand-made values and the masked model."""
import math

import pytest
import torch

from coded_lib.coding import paper_scheme
from coded_lib.decoders import (binary_logit, class_mask, early_decode, early_scores, extract_binary_classifier,
                                parameter_fractions, removal_mask)
from coded_lib.models import coded_resnext29_cifar10, coded_resnext_mini, resnext_mini


def trained_like(model):
    """Random BN statistics and gammas, so that masks and slices matter in every layer."""
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def test_early_decoder_on_hand_made_energies():
    scheme = paper_scheme("cifar10", "3/10")
    words = torch.tensor(scheme.table, dtype=torch.float32)
    # energies of a perfectly coded block for classes 7 and 2 (active subNNs share N = 10 equally)
    e = words[[7, 2]] * 10 / 3
    assert early_decode(e, scheme).tolist() == [7, 2]
    assert early_decode(e, scheme, codewords=words).tolist() == [7, 2]  # the table given, as the loop gives a block's buffer
    # a noisy sample nearest to class 5's codeword: distances computed by hand
    v = words[5] * 0.8 + 0.2 * words[0]
    e = (v / v.sum() * 10)[None]
    v_norm = v / v.sum() * 3
    dists = [math.dist(v_norm.tolist(), w.tolist()) for w in words]
    assert early_decode(e, scheme).item() == min(range(10), key=dists.__getitem__) == 5
    scores = early_scores(e, scheme)
    by_hand = [math.exp(-d) for d in dists]  # softmax of minus the distances, written out
    assert scores[0].tolist() == pytest.approx([s / sum(by_hand) for s in by_hand], rel=1e-5)
    assert scores.argmax().item() == 5
    with pytest.raises(ValueError, match="N=10"):
        early_decode(torch.ones(2, 8), scheme)


def test_removal_mask_removes_k_of_the_right_set():
    model = coded_resnext_mini()
    y = torch.arange(10).repeat(3)
    g = torch.Generator().manual_seed(0)
    for kind in ("active", "inactive"):
        for k in (0, 1, 3):
            mask = removal_mask(model, y, block=3, k=k, kind=kind, generator=g)[3]
            words = torch.tensor(model.coded_blocks[3].scheme.table, dtype=torch.float32)[y]
            removed = 1 - mask
            assert (removed.sum(1) == k).all()
            pool = words if kind == "active" else 1 - words
            assert (removed <= pool).all()
    with pytest.raises(ValueError, match="0 <= k <= 3"):
        removal_mask(model, y, block=3, k=4, kind="active")
    with pytest.raises(ValueError, match="kind"):
        removal_mask(model, y, block=3, k=1, kind="both")
    with pytest.raises(ValueError, match="coded blocks 0..3"):
        removal_mask(model, y, block=4, k=1)
    with pytest.raises(ValueError, match="plain"):
        removal_mask(resnext_mini(), y, block=0, k=1)


def test_removal_mask_draws_uniformly_from_the_pool():
    """Each subNN of the pool is removed with probability k / |pool| (not always the first ones)."""
    model = coded_resnext_mini()
    b = model.coded_blocks[3]  # 3/10
    y = torch.full((3000,), 4)
    words = torch.tensor(b.scheme.table[4], dtype=torch.bool)
    g = torch.Generator().manual_seed(0)
    for kind, k, pool in (("active", 1, words), ("inactive", 2, ~words)):
        removed = 1 - removal_mask(model, y, block=3, k=k, kind=kind, generator=g)[3]
        freq = removed.mean(0)
        expected = k / int(pool.sum())
        # 3000 draws: the binomial standard deviation of a frequency is below 0.01
        assert torch.allclose(freq[pool], torch.full((int(pool.sum()),), expected), atol=0.04), (kind, freq)
        assert (freq[~pool] == 0).all()
    # another generator state, other masks
    a = removal_mask(model, y[:50], 3, 2, "inactive", torch.Generator().manual_seed(1))[3]
    c = removal_mask(model, y[:50], 3, 2, "inactive", torch.Generator().manual_seed(2))[3]
    assert not torch.equal(a, c)


def test_removal_zeroes_the_chosen_paths_in_the_forward():
    model = trained_like(coded_resnext_mini())
    x, y = torch.randn(6, 1, 28, 28), torch.arange(6)
    mask = removal_mask(model, y, block=2, k=2, kind="active", generator=torch.Generator().manual_seed(1))
    out = model(x, subnn_mask=mask)
    removed = mask[2] == 0
    assert (out.energies[2][removed] == 0).all() and (out.energies[2][~removed] > 0).all()
    # same as removing those paths' hidden channels by hand (zeroing their conv1 rows) for one sample
    blk = model.coded_blocks[2]
    ref_model = trained_like(coded_resnext_mini())
    ref_model.load_state_dict(model.state_dict())
    ref_blk = ref_model.coded_blocks[2]
    for n in removed[0].nonzero().flatten().tolist():
        ref_blk.bn2.weight.data[n * blk.d:(n + 1) * blk.d] = 0
        ref_blk.bn2.bias.data[n * blk.d:(n + 1) * blk.d] = 0
    with torch.no_grad():
        assert torch.allclose(ref_model(x[:1]).logits, out.logits[:1], atol=1e-5)


def test_extracted_binary_classifier_equals_masked_model_and_is_smaller():
    model = trained_like(coded_resnext_mini())
    x = torch.randn(5, 1, 28, 28)
    for c in (0, 3, 9):
        small = extract_binary_classifier(model, c)
        with torch.no_grad():
            assert torch.allclose(small(x), binary_logit(model, x, c), atol=1e-5)
            # and masking really changes the logit: the test would catch an unmasked extraction
            assert not torch.allclose(model(x).logits[:, c], binary_logit(model, x, c), atol=1e-3)
        assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
    mask = class_mask(model, 3, 5)
    assert all(m.shape == (5, 10) and m.sum(1).eq(b.n_act).all() for b, m in zip(model.coded_blocks, mask.values()))
    with pytest.raises(ValueError, match="0..9"):
        extract_binary_classifier(model, 10)


def test_parameter_fractions_by_hand_on_cifar10():
    model = coded_resnext29_cifar10()
    frac = parameter_fractions(model, 0)
    # residual paths by hand: path params of a block are proportional to the paths kept (conv1, bn1,
    # conv2, bn2, conv3 all split by path); c2 keeps 10/10, c3 5/10, c4 3/10
    full = kept = 0
    for b in model.blocks:
        p = sum(q.numel() for m in (b.conv1, b.bn1, b.conv2, b.bn2, b.conv3) for q in m.parameters())
        full += p
        kept += p * b.n_act / b.n
    assert frac["residual_paths"] == pytest.approx(kept / full, rel=1e-9)
    assert frac["residual_paths"] < frac["whole"] < 0.5


def test_extraction_copies_only_what_the_classifier_keeps(monkeypatch):
    """Issue 9: no deep copy of the whole model first; the sliced blocks carry no codeword table."""
    model = trained_like(coded_resnext_mini())
    copied = []
    for cls in (torch.Tensor, torch.nn.Parameter):  # parameters have their own __deepcopy__
        def counting(self, memo, original=cls.__deepcopy__):
            copied.append(self.numel())
            return original(self, memo)
        monkeypatch.setattr(cls, "__deepcopy__", counting)
    small = extract_binary_classifier(model, 4)
    monkeypatch.undo()
    kept = sum(t.numel() for t in small.state_dict().values())
    assert sum(copied) <= kept  # the old code copied all of the model's tensors first
    full = sum(t.numel() for t in model.state_dict().values())
    assert kept < full
    for b in small.net.blocks:
        assert "codewords" not in dict(b.named_buffers())
    x = torch.randn(3, 1, 28, 28)
    assert torch.allclose(small(x), binary_logit(model, x, 4), atol=1e-5)


def test_count_parameters_counts_shared_weights_once():
    from coded_lib.models import count_parameters
    a, b = torch.nn.Linear(3, 4), torch.nn.Linear(3, 4)  # 3*4 + 4 = 16 each
    assert count_parameters(a) == 16
    assert count_parameters(a, b) == 32
    assert count_parameters(a, a) == 16
