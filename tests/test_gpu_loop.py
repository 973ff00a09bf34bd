"""issue 13: the coded block in few operators, torch.compile without graph breaks, the training loop
without a host sync per step, on-device augmentation, and the XLA path's constant compilations.

Counts of operators and compilations are behaviour (what runs), not time: the timings are in benchmarks/.
"""
import pytest
import torch

from coded_lib.models import build_model
from coded_lib.train.loop import train_step

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def top_level_aten_ops(fn) -> int:
    """Number of aten operators one call of fn runs that no other aten operator called (what a GPU
    launches kernels for, one or a few each), after a warm-up call; torch.profiler on the CPU."""
    fn()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.name.startswith("aten::") and not (e.cpu_parent and e.cpu_parent.name.startswith("aten::"))
               for e in prof.events())


def _train_step_ops(name):
    torch.manual_seed(0)
    model = build_model(name).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([3, 7])
    return top_level_aten_ops(lambda: train_step(model, x, y, opt, 6.0))


def test_coded_training_step_runs_at_most_1_3_times_the_operators_of_plain():
    """The whole step as train_step runs it (forward, Eq. 6 loss, backward, SGD), batch 2: the coded
    ResNeXt-29's six coded blocks, DropSubNN and coding loss add at most 30 % to plain ResNeXt-29's
    operators (before issue 13: 1,535 vs 818, 1.88x). The count is the same on every run."""
    plain, coded = _train_step_ops("resnext29_cifar10"), _train_step_ops("coded_resnext29_cifar10")
    assert coded == _train_step_ops("coded_resnext29_cifar10")
    assert coded / plain <= 1.3, (coded, plain)


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
