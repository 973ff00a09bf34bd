"""The model against independent computations: a naive per-path block, Eq. 3 and Eq. 5 written
out by hand, the paper's parameter counts (Table 1 / SPEC §1.3) and torchvision's ResNeXt-50."""
import pytest
import torch
import torch.nn.functional as F
import torchvision

from coded_lib.coding import paper_scheme
from coded_lib.losses import coding_loss
from coded_lib.models import (ResNeXtBlock, build_model, coded_resnext29_cifar10, coded_resnext29_cifar100,
                              coded_resnext50_imagenet, coded_resnext_mini, resnext50_imagenet, resnext_mini,
                              stage_parameters)


def naive_block(block, x, keep, drop):
    """Materialise every path t_n (N x C_out), normalize by Eq. 3, sum: the authors' way."""
    n, d = block.n, block.d
    h = block.hidden(x)
    w = block.conv3.weight
    ts = [F.conv2d(h[:, i * d:(i + 1) * d], w[:, i * d:(i + 1) * d]) * keep[:, i, None, None, None] for i in range(n)]
    energy = torch.stack([t.pow(2).mean(dim=(1, 2, 3)) for t in ts], dim=1)  # Eq. 2
    norm = energy.mean(dim=1).sqrt()  # sqrt((1/N) sum_i E(t_i)), Eq. 3
    total = sum(t / norm[:, None, None, None] * drop[:, i, None, None, None] for i, t in enumerate(ts))
    identity = x if block.downsample is None else block.downsample(x)
    return F.relu(block.bn3(total) + identity), energy / norm[:, None] ** 2


def make_block(**kw):
    torch.manual_seed(0)
    block = ResNeXtBlock(12, 20, 3, 10, stride=2, scheme=paper_scheme("cifar10", "3/10"), **kw).double()
    for p in block.parameters():  # non-trivial BN and a non-zero last gamma
        p.data.normal_(0, 0.5)
    for bn in (block.bn1, block.bn2):  # positive shifts: no path is silenced by its ReLU
        bn.bias.data.uniform_(0.1, 0.5)
    return block


def test_gram_energies_match_naive_paths_values_and_gradients():
    block = make_block()
    x = torch.randn(4, 12, 6, 6, dtype=torch.float64)
    keep = torch.ones(4, 10, dtype=torch.float64)
    keep[0, [1, 7]] = 0
    keep[2, 3] = 0
    drop = (torch.rand(4, 10) > 0.2).double() / 0.8
    out, energy = block(x, keep=keep, drop=drop)
    energy = energy.flatten(1)  # a block's energies are [B, N, 1, 1, 1]
    ref_out, ref_energy = naive_block(block, x, keep, drop)
    assert torch.allclose(energy.double(), ref_energy, atol=1e-12, rtol=1e-10)
    assert torch.allclose(out, ref_out, atol=1e-10)

    g = torch.randn_like(out)
    grads = torch.autograd.grad((out * g).sum() + energy.pow(2).sum(), list(block.parameters()))
    ref_grads = torch.autograd.grad((ref_out * g).sum() + ref_energy.pow(2).sum(), list(block.parameters()))
    for a, b in zip(grads, ref_grads):  # float64: equal to rounding
        assert torch.allclose(a, b, atol=1e-10, rtol=1e-9)


def test_energies_sum_to_n_and_removed_paths_are_zero():
    block = make_block()
    x = torch.randn(3, 12, 6, 6, dtype=torch.float64)
    keep = torch.ones(3, 10, dtype=torch.float64)
    keep[1, [0, 4, 9]] = 0
    _, energy = block(x, keep=keep)
    energy = energy.flatten(1)  # a block's energies are [B, N, 1, 1, 1]
    assert torch.allclose(energy.sum(dim=1), torch.full((3,), 10.0, dtype=energy.dtype))
    assert (energy[1, [0, 4, 9]] == 0).all()
    assert (energy[0] > 0).all()


def test_concat_variant_matches_naive():
    block = make_block(combine="concat")
    x = torch.randn(2, 12, 6, 6, dtype=torch.float64)
    out, energy = block(x)
    energy = energy.flatten(1)  # a block's energies are [B, N, 1, 1, 1]
    h = block.hidden(x)
    per = block.conv3(h).reshape(2, 10, 2, 3, 3)  # C_out = 20 -> 2 channels per path
    e = per.pow(2).mean(dim=(2, 3, 4))
    assert torch.allclose(energy.double(), e / e.mean(dim=1, keepdim=True))


def test_subnn_outputs_materialise_the_normalized_paths():
    block = make_block()
    x = torch.randn(2, 12, 6, 6, dtype=torch.float64)
    t = block.subnn_outputs(x)
    _, energy = block(x)
    energy = energy.flatten(1)  # a block's energies are [B, N, 1, 1, 1]
    assert t.shape == (2, 10, 20, 3, 3)
    assert torch.allclose(t.pow(2).mean(dim=(2, 3, 4)).double(), energy.double(), atol=1e-5)


def test_coding_loss_is_eq5_by_hand():
    torch.manual_seed(1)
    e = torch.rand(5, 10) * 3
    w = torch.zeros(5, 10)
    w[:, :3] = 1
    r = 0.3
    for exponent, f in ((4, lambda v: v ** 4), (2, lambda v: v ** 2), ("abs", abs)):
        by_hand = sum(f(r * e[b, n].item() - w[b, n].item()) for b in range(5) for n in range(10)) / 50
        assert coding_loss(e, w, r, exponent).item() == pytest.approx(by_hand, rel=1e-5)
    with pytest.raises(ValueError, match="allowed"):
        coding_loss(e, w, r, 3)


def test_model_output_interface_and_code_loss():
    torch.manual_seed(0)
    model = coded_resnext_mini().eval()
    x = torch.randn(4, 1, 28, 28)
    y = torch.tensor([0, 3, 5, 9])
    out = model(x, y)
    assert out.logits.shape == (4, 10)
    assert len(out.energies) == len(model.coded_blocks) == 4
    by_hand = 0.0
    for blk, e in zip(model.coded_blocks, out.energies):
        assert torch.allclose(e.sum(1), torch.full((4,), 10.0), atol=1e-4)
        words = torch.tensor(blk.scheme.table, dtype=torch.float32)[y]
        by_hand += ((blk.n_act / blk.n * e - words) ** 4).mean().item()
    assert out.code_loss.item() == pytest.approx(by_hand, rel=1e-5)
    assert model(x).code_loss.item() == 0.0
    base = resnext_mini()
    bout = base(x, y)
    assert base.plain and bout.energies == [] and bout.code_loss.item() == 0.0


def test_dropsubnn_shares_one_mask_per_run_of_blocks_with_one_scheme():
    torch.manual_seed(0)
    model = coded_resnext_mini(p_drop=0.5).train()
    seen = []
    for b in model.coded_blocks:
        b.register_forward_pre_hook(lambda m, args, kwargs: seen.append(kwargs["drop"]), with_kwargs=True)
    model(torch.randn(8, 1, 28, 28), torch.arange(8))
    # blocks 0,1 use 5/10, blocks 2,3 use 3/10 (c3, c4)
    assert torch.equal(seen[0], seen[1]) and torch.equal(seen[2], seen[3])
    assert not torch.equal(seen[1], seen[2])
    assert set(seen[0].unique().tolist()) <= {0.0, 2.0}
    model.eval()
    seen.clear()
    model(torch.randn(2, 1, 28, 28))
    assert all(s is None for s in seen)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropsubnn_drops_each_subnn_with_probability_p(p):
    """A fraction p of the (sample, subNN) entries of the mask is 0, the others 1/(1-p) (SPEC §1.1)."""
    torch.manual_seed(0)
    model = coded_resnext_mini(p_drop=p).train()
    seen = []
    model.coded_blocks[0].register_forward_pre_hook(lambda m, a, kw: seen.append(kw["drop"]), with_kwargs=True)
    model(torch.randn(1000, 1, 12, 12), torch.arange(1000) % 10)
    mask = seen[0].reshape(1000, -1)
    assert mask.shape[1] == 10
    # 10 000 Bernoulli(p) draws: the standard deviation of the fraction is at most 0.005
    assert (mask == 0).float().mean().item() == pytest.approx(p, abs=0.02)
    assert torch.allclose(mask[mask != 0], torch.tensor(1 / (1 - p)))


def naive_detach_block(block, x, targets, drop):
    """The authors' T-detach (their ImageNet ``mask_grads``) on materialised paths: normalize (Eq. 3),
    then x = a * x + (1 - a) * x.detach() with a the codeword of the sample's class, then DropSubNN, sum."""
    n, d = block.n, block.d
    h = block.hidden(x)
    w = block.conv3.weight
    t = torch.stack([F.conv2d(h[:, i * d:(i + 1) * d], w[:, i * d:(i + 1) * d]) for i in range(n)], 1)
    energy = t.pow(2).mean(dim=(2, 3, 4))
    norm = energy.mean(dim=1).sqrt()
    t = t / norm[:, None, None, None, None]
    a = torch.tensor(block.scheme.table, dtype=t.dtype)[targets][:, :, None, None, None]
    t = (a * t + (1 - a) * t.detach()) * drop[:, :, None, None, None]
    identity = x if block.downsample is None else block.downsample(x)
    return F.relu(block.bn3(t.sum(1)) + identity), energy / norm[:, None] ** 2


def test_detach_is_the_authors_after_the_normalization():
    """issue 11 item 8: gradients blocked on the inactive subNNs' normalized outputs only; they still
    flow through Eq. 3's mean energy and through the coding loss (which T-detach keeps)."""
    block = make_block(coding="detach").train()
    x = torch.randn(4, 12, 6, 6, dtype=torch.float64)
    y = torch.tensor([0, 3, 3, 9])
    drop = (torch.rand(4, 10) > 0.2).double() / 0.8
    out, energy = block(x, drop=drop, targets=y)
    ref_out, ref_energy = naive_detach_block(block, x, y, drop)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(energy.flatten(1), ref_energy)
    g = torch.randn_like(out)
    params = list(block.parameters())
    grads = torch.autograd.grad((out * g).sum() + energy.pow(2).sum(), params, retain_graph=True)
    ref_grads = torch.autograd.grad((ref_out * g).sum() + ref_energy.pow(2).sum(), params)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)
    # the detach changes the gradient (without it, the same block learns otherwise) ...
    block.coding = "loss"
    plain = torch.autograd.grad((block(x, drop=drop)[0] * g).sum(), block.conv3.weight)[0]
    assert not torch.allclose(plain, torch.autograd.grad((out * g).sum(), block.conv3.weight, retain_graph=True)[0])
    # ... and a path inactive for every sample still gets a gradient, through the normalizer
    inactive = ~torch.tensor(block.scheme.table)[y].any(0)
    assert inactive.any()
    g1 = torch.autograd.grad((out * g).sum(), block.conv1.weight)[0].reshape(10, 3, -1)
    assert (g1[inactive].abs().sum(dim=(1, 2)) > 1e-6).all()
    # the whole network keeps the coding loss with coding="detach"
    model = coded_resnext_mini(coding="detach").train()
    assert model(torch.randn(2, 1, 28, 28), torch.tensor([1, 2])).code_loss.item() > 0


@pytest.mark.parametrize("builder,stages,total", [
    (coded_resnext29_cifar10, {"c2": 0.2, "c3": 0.9, "c4": 3.5}, 4.7),
    (coded_resnext29_cifar100, {"c2": 0.2, "c3": 0.9, "c4": 3.5}, 4.7),
    (coded_resnext50_imagenet, {"c2": 0.2, "c3": 1.2, "c4": 7.0, "c5": 14.5}, 25.0),
])
def test_parameters_per_stage_match_table1(builder, stages, total):
    model = builder()
    counts = stage_parameters(model)
    for name, millions in stages.items():
        assert counts[name] / 1e6 == pytest.approx(millions, abs=0.06), name
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(total, abs=0.1)


def block_parameters(c_in, c_out, d, n, projection):
    """Parameters of one ResNeXt block from Table 1's widths, term by term (SPEC §1.1)."""
    hidden = n * d
    count = c_in * hidden + 2 * hidden  # 1x1 conv C_in -> N·d, BN
    count += hidden * d * 9 + 2 * hidden  # grouped 3x3 conv (N groups of d -> d), BN
    count += hidden * c_out + 2 * c_out  # 1x1 conv N·d -> C_out, BN
    return count + (c_in * c_out + 2 * c_out if projection else 0)  # 1x1 conv + BN on the skip


@pytest.mark.parametrize("builder, stem, stages", [
    # Table 1: (name, C_out, d, N, depth); CIFAR stem 64, ImageNet stem 64
    (coded_resnext29_cifar10, 64, [("c2", 256, 11, 10, 3), ("c3", 512, 22, 10, 3), ("c4", 1024, 44, 10, 3)]),
    (coded_resnext29_cifar100, 64, [("c2", 256, 6, 20, 3), ("c3", 512, 12, 20, 3), ("c4", 1024, 24, 20, 3)]),
    (coded_resnext50_imagenet, 64, [("c2", 256, 4, 32, 3), ("c3", 512, 8, 32, 4), ("c4", 1024, 16, 32, 6),
                                    ("c5", 2048, 32, 32, 3)]),
])
def test_parameters_per_stage_exactly_from_table1_widths(builder, stem, stages):
    counts = stage_parameters(builder())
    c_in = stem
    for name, c_out, d, n, depth in stages:
        # every stage's first block changes the width (or the stride): a projection on its skip
        expected = block_parameters(c_in, c_out, d, n, True) + (depth - 1) * block_parameters(c_out, c_out, d, n, False)
        assert counts[name] == expected, name
        c_in = c_out


def test_resnext50_equals_torchvision():
    ours = resnext50_imagenet().eval()
    ref = torchvision.models.resnext50_32x4d().eval()
    ref.fc = torch.nn.Linear(2048, 1000, bias=False)  # the authors' head has no bias; the rest is torchvision's
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    ref_state = list(ref.state_dict().values())
    our_keys = list(ours.state_dict().keys())
    assert len(ref_state) == len(our_keys)
    torch.manual_seed(0)
    for t in ref_state:  # random BN statistics, so that the check is not trivially about zeros
        if t.is_floating_point():
            t.copy_(torch.rand_like(t) + 0.5 if t.ndim == 1 else torch.randn_like(t) * 0.05)
    ours.load_state_dict(dict(zip(our_keys, ref_state)))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x).logits, ref(x), atol=1e-4, rtol=1e-4)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet18")
    with pytest.raises(ValueError, match="allowed"):
        coded_resnext_mini(combine="max")
    with pytest.raises(ValueError, match="allowed"):
        coded_resnext_mini(coding="gates")
    with pytest.raises(ValueError, match="allowed"):
        coded_resnext_mini(loss_exponent=3)
    with pytest.raises(ValueError, match="divisible"):
        coded_resnext29_cifar10(combine="concat")
    with pytest.raises(ValueError, match="p_drop"):
        coded_resnext_mini(p_drop=1.0)
    with pytest.raises(ValueError, match="stage"):
        coded_resnext_mini(ratios={"c9": "3/10"})
    with pytest.raises(ValueError, match="N_act/10"):
        coded_resnext_mini(ratios={"c3": "3/7"})
    model = coded_resnext_mini().eval()
    with pytest.raises(ValueError, match="coded blocks"):
        model(torch.randn(1, 1, 28, 28), subnn_mask={7: torch.ones(1, 10)})


def test_ratio_overrides_build_other_schemes():
    model = coded_resnext_mini(ratios={"c3": "4/10", "c4": "2/10"})
    assert [b.n_act for b in model.coded_blocks] == [4, 4, 2, 2]
    assert all(b.scheme.table.sum(1).tolist() == [b.n_act] * 10 for b in model.coded_blocks)
    plain_c4 = coded_resnext_mini(ratios={"c4": "10/10"})
    assert len(plain_c4.coded_blocks) == 2
