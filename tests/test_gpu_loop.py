"""issue 13: the coded block in few operators, torch.compile without graph breaks, the training loop
without a host sync per step, on-device augmentation, and the XLA path's constant compilations.

Counts of operators and compilations are behaviour (what runs), not time: the timings are in benchmarks/.
"""
import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.gpu_loop import step_ops, xla_compilations  # noqa: E402
from coded_lib.train.loop import train_step  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_coded_training_step_runs_at_most_1_67_times_the_operators_of_plain():
    """The whole step as train_step runs it (forward, Eq. 6 loss, backward, SGD), batch 2, with SGD's
    foreach (multi-tensor) update, as on a GPU: the coded ResNeXt-29's six coded blocks, DropSubNN and
    coding loss against plain ResNeXt-29's operators (SGD's CPU default, a loop over the parameters,
    adds ~465 operators to both and makes it 1,045 vs 818, 1.28x). Issue 13's target is 1.3x; eagerly
    not met: 580 vs 353 (1.64x; 1.67 the bound this test holds); compiled, met (the next test). The gap: each coded block's CodedConv adds 12
    operators to the forward (energy conv, Eq. 3's mean, floor, division, rsqrt, masks, 3 views between
    the [B, N*d] and [B, N, d] layouts) and 18 to the backward; the Gram matrices (7 per stage of 3
    coded blocks), DropSubNN, the concatenated energies and Eq. 5 add ~41. Same count on every run."""
    plain, coded = step_ops("resnext29_cifar10"), step_ops("coded_resnext29_cifar10")
    assert coded == step_ops("coded_resnext29_cifar10")
    assert coded / plain <= 1.67, (coded, plain)


@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")), reason="inductor's CPU code needs a C++ compiler")
def test_compiled_coded_training_step_launches_at_most_1_3_times_the_kernels_of_plain():
    """Issue 13's target (coded / plain <= 1.3) on the step as compile=true runs it: the forward and
    loss compiled by inductor, its backward, foreach SGD; counted are the aten operators still called
    and the kernels inductor generated, each a launch on a device (1.18 when written: 286 vs 243).
    Eager, the coded step stays at 1.64 (the test above): there each of the coded block's energy,
    normalization and mask operators is a launch of its own, and inductor fuses them."""
    from benchmarks.gpu_loop import compiled_step_kernels

    plain, coded = compiled_step_kernels("resnext29_cifar10"), compiled_step_kernels("coded_resnext29_cifar10")
    # the profiler saw inductor's kernels (a count of aten operators alone would leave the fused work out)
    assert plain["inductor"] > 0 and coded["inductor"] > plain["inductor"], (plain, coded)
    # fewer launches than eager: the fusion happened
    assert coded["total"] < step_ops("coded_resnext29_cifar10")
    assert coded["total"] / plain["total"] <= 1.3, (coded, plain)


def test_coded_block_keeps_channels_last_without_copies():
    """Channels-last in, channels-last out (forward and gradient), and no copy of an activation
    (a batch-sized tensor) made by the coded block's own operators: the only ones on a CPU are those
    its convolution backend makes per group at tiny batch sizes (oneDNN at larger ones makes none)."""
    from coded_lib.models import coded_resnext_mini

    torch.manual_seed(0)
    model = coded_resnext_mini().train().to(memory_format=torch.channels_last)
    block = model.coded_blocks[-1]
    x = torch.randn(3, block.conv1.in_channels, 4, 4).to(memory_format=torch.channels_last).requires_grad_()
    drop = torch.full((3, block.n, 1, 1, 1), 1.0)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        out, energies = block(x, drop=drop)
        (out.square().sum() + energies.square().sum()).backward()
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert x.grad.is_contiguous(memory_format=torch.channels_last)

    def inside_a_convolution(e):
        while e is not None:
            if e.name.startswith(("aten::convolution", "aten::_convolution")):
                return True
            e = e.cpu_parent
        return False

    copies = [e.input_shapes for e in prof.events() if e.name in ("aten::contiguous", "aten::clone")
              and not inside_a_convolution(e) and e.input_shapes[0][:1] == [3]]
    assert copies == []


# --- on-device data --------------------------------------------------------------------------------

def test_resident_batches_are_the_host_crop_and_flip_of_their_draws():
    """Each image of a device batch is data.PadCropFlip's crop and flip (the host's transform) of the
    drawn sample, at the drawn offsets, normalized as data.ToFloat does; an epoch's draws depend on
    (seed, epoch) only, and a flip is drawn half of the time."""
    from coded_lib.train import data
    from coded_lib.train.resident import ResidentBatches

    ds, _ = data.get_datasets("digits", train_subset=96)
    images, labels = (torch.stack([ds.dataset.images[i] for i in ds.indices]),
                      torch.tensor([ds.dataset.targets[i] for i in ds.indices]))
    for name in ("digits", "fashion_mnist"):  # digits: never flipped; the grey sets: flipped
        batches = ResidentBatches(ds, name, 16, seed=3, device="cpu")
        batches.set_epoch(2)
        draws = batches.draws()
        assert torch.equal(draws, batches.draws())  # (seed, epoch) alone
        batches.set_epoch(3)
        assert not torch.equal(draws, batches.draws())
        batches.set_epoch(2)
        assert sorted(draws[0].tolist()) == list(range(96))  # every sample once (96 = 6 batches of 16)
        assert (draws[3] == 0).all() if name == "digits" else 0.2 < draws[3].float().mean() < 0.8
        to_float = data.ToFloat(data.INFO[name].mean, data.INFO[name].std)
        for step, (x, y) in enumerate(batches):
            for k in range(16):
                i, r, c, f = draws[:, step * 16 + k].tolist()
                crop = torch.nn.functional.pad(images[i], (2,) * 4)[:, r:r + 28, c:c + 28]
                torch.testing.assert_close(x[k], to_float(crop.flip(-1) if f else crop))
                assert y[k] == labels[i]


# --- torch.compile ------------------------------------------------------------------------------------

def test_model_and_loss_compile_to_one_graph():
    """torch._dynamo.explain of the forward pass and Eq. 6's loss (what compile=true compiles), in
    training (DropSubNN, coding loss) and in evaluation: one graph, no break (before issue 13: 9 graphs)."""
    from coded_lib.models import coded_resnext_mini
    from coded_lib.train.loop import model_loss

    torch._dynamo.reset()
    model = coded_resnext_mini()
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([1, 2, 3, 9])
    for mode in (model.train(), model.eval()):
        explained = torch._dynamo.explain(model_loss)(mode, x, y, 6.0)
        assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


def test_compiled_loop_compiles_once_per_mode_and_equals_eager(monkeypatch):
    """Through train_step and evaluate as the loop calls them: the graphs compiled for the first
    training step and the first evaluation step serve every later step (the last, smaller validation
    batch runs eagerly); the compiled step makes the eager step's update (float32 tolerance)."""
    import copy

    from torch._dynamo.utils import counters

    from coded_lib.models import coded_resnext_mini
    from coded_lib.train.loop import Place, compiled, evaluate, model_loss
    from coded_lib.train.presets import get_config

    monkeypatch.setenv("CODED_COMPILE_BACKEND", "aot_eager")  # dynamo's graphs and AOT autograd, no code generation
    torch._dynamo.reset()
    counters.clear()
    cfg = get_config("smoke", compile=True)
    torch.manual_seed(0)
    model = coded_resnext_mini()
    eager = copy.deepcopy(model)
    loss_fn, forward = compiled(model_loss, cfg, "cpu"), compiled(model, cfg, "cpu")
    opts = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (model, eager)]
    g = torch.Generator().manual_seed(1)
    val = [(torch.randn(8, 1, 28, 28, generator=g), torch.randint(0, 10, (8,), generator=g)) for _ in range(2)]
    val.append((val[0][0][:3], val[0][1][:3]))  # a smaller last batch
    place = Place(torch.device("cpu"), "cpu")
    graphs = []
    for step in range(4):
        x, y = torch.randn(8, 1, 28, 28, generator=g), torch.randint(0, 10, (8,), generator=g)
        model.train(), eager.train()
        torch.manual_seed(step)
        loss, _ = train_step(model, x, y, opts[0], 6.0, loss_fn=loss_fn)
        torch.manual_seed(step)
        ref, _ = train_step(eager, x, y, opts[1], 6.0)
        torch.testing.assert_close(loss, ref, rtol=1e-4, atol=1e-5)
        evaluate(model, val, place, forward=forward)
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[0] >= 2 and graphs == graphs[:1] * 4, graphs
    for a, b in zip(model.parameters(), eager.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


# --- XLA ----------------------------------------------------------------------------------------------

def _after_3_steps_on_cpu(cfg, run_dir, monkeypatch):
    from coded_lib.train import loop

    states, real_step = [], loop.train_step

    def step(model, *args, **kwargs):
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        return real_step(model, *args, **kwargs)

    monkeypatch.setattr(loop, "train_step", step)
    loop.train(cfg, run_dir, progress=False, device="cpu")
    return states[0], states[3]


@pytest.mark.skipif(__import__("importlib.util").util.find_spec("torch_xla") is None, reason="torch_xla is not installed")
def test_xla_loop_compiles_two_step_graphs_and_makes_the_cpu_update(tmp_path, monkeypatch):
    """torch_xla on its CPU device (PJRT_DEVICE=CPU), float32, one epoch of 6 steps of the loop as it
    runs: the number of XLA compilations stops growing after the second step (the first creates the
    momentum buffers), and the weights after 3 steps are the CPU loop's (same data order and crops:
    the on-device batches' draws come from (seed, epoch); no DropSubNN, whose masks XLA draws itself):
    every tensor's 3-step update within 2 % of its size. This tiny network on 8 images is touchy:
    after 3 steps float32 and float64 on one CPU differ by 0.25 % of the update with mu = 0, by 6 %
    with the coding loss's 4th power (mu = 1), hence mu = 0 here (the energies still normalize)."""
    from coded_lib.train.checkpoint import load_checkpoint
    from coded_lib.train.presets import get_config

    cfg = get_config("smoke", amp=False, p_drop=0.0, mu=0.0, epochs=1, batch_size=8, train_subset=48, val_subset=16,
                     lr=0.01)
    xla_run = tmp_path / "xla"
    compilations = xla_compilations(cfg, xla_run)["before_steps"]
    assert len(compilations) == 6 and compilations[2] > 0
    assert compilations[2:] == [compilations[2]] * 4, compilations
    assert load_checkpoint(xla_run / "checkpoint.pt")["epoch"] == 1
    a = torch.load(xla_run / "after3.pt", weights_only=True)
    init, b = _after_3_steps_on_cpu(cfg, tmp_path / "cpu", monkeypatch)
    for k in a:
        update = (b[k] - init[k]).abs().max().item()
        assert (a[k] - b[k]).abs().max().item() <= 0.02 * update + 1e-7, (k, update)
    assert any((b[k] - init[k]).abs().max() > 1e-3 for k in b)
