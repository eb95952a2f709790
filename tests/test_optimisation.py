import copy
import math

import pytest
import torch
from torch import nn

from unetflow.optimisation import (
    DivergenceGuard,
    StepOutcome,
    StepStats,
    divergence_error,
    make_optimizer,
    optimisation_step,
)


def small_network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))


def loss_of(network: nn.Module, scale: float = 1.0) -> torch.Tensor:
    inputs = torch.linspace(-1, 1, 24).reshape(4, 6)
    return scale * network(inputs).square().mean()


def flat(network: nn.Module) -> torch.Tensor:
    return torch.cat([parameter.detach().flatten() for parameter in network.parameters()])


def true_gradient_norm(network: nn.Module, scale: float) -> float:
    probe = copy.deepcopy(network)
    loss_of(probe, scale).backward()
    return float(torch.cat([p.grad.flatten() for p in probe.parameters()]).norm())


def plain_sgd(network: nn.Module) -> torch.optim.Optimizer:
    return make_optimizer(network, optimizer="sgd", lr=1.0, momentum=0.0, weight_decay=0.0)


@pytest.mark.parametrize("loss_scaling", [False, True])
def test_clipping_bounds_the_update_to_grad_clip(loss_scaling):
    network = small_network()
    gradient_norm = true_gradient_norm(network, scale=1000.0)
    assert gradient_norm > 10
    before = flat(network)
    # a grad scaler multiplies the loss by 2**16: clipping must see the unscaled gradient
    scaler = torch.amp.GradScaler("cpu", enabled=loss_scaling)
    outcome = optimisation_step(network, plain_sgd(network), scaler, loss_of(network, 1000.0), grad_clip=2.5)
    assert outcome.applied
    assert float(outcome.grad_norm) == pytest.approx(gradient_norm, rel=1e-4)  # logged before clipping
    assert float((flat(network) - before).norm()) == pytest.approx(2.5, rel=1e-4)  # lr 1: update = gradient


def test_without_clipping_the_whole_gradient_is_applied():
    network = small_network()
    gradient_norm = true_gradient_norm(network, scale=1000.0)
    before = flat(network)
    outcome = optimisation_step(network, plain_sgd(network), torch.amp.GradScaler("cpu", enabled=False),
                                loss_of(network, 1000.0), grad_clip=None)
    assert float((flat(network) - before).norm()) == pytest.approx(gradient_norm, rel=1e-4)
    assert float(outcome.grad_norm) == pytest.approx(gradient_norm, rel=1e-4)


@pytest.mark.parametrize("fused", [False, True], ids=["host-decided", "fused-on-device"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_step_leaves_weights_and_optimiser_state_untouched(optimizer, bad, fused):
    network = small_network()
    chosen = make_optimizer(network, optimizer=optimizer, lr=0.01, momentum=0.99, weight_decay=1e-4, fused=fused)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    for _ in range(3):  # momentum buffers / Adam moments now hold something
        assert optimisation_step(network, chosen, scaler, loss_of(network), grad_clip=1.0).applied
    weights, state = copy.deepcopy(network.state_dict()), copy.deepcopy(chosen.state_dict())
    outcome = optimisation_step(network, chosen, scaler, loss_of(network) * bad, grad_clip=1.0)
    assert not outcome.applied and not math.isfinite(outcome.loss)
    assert all(torch.equal(weights[name], value) for name, value in network.state_dict().items())
    after = chosen.state_dict()["state"]
    for index, saved in state["state"].items():
        for key, value in saved.items():
            assert torch.equal(value, after[index][key]), (index, key)
    assert all(parameter.grad is None for parameter in network.parameters())  # nothing left for the next step
    assert optimisation_step(network, chosen, scaler, loss_of(network), grad_clip=1.0).applied  # training goes on


def outcome(loss: float, applied: bool) -> StepOutcome:
    return StepOutcome(torch.tensor(loss), torch.tensor(2 * loss), torch.tensor(applied))


def test_step_stats_add_up_on_the_device_and_the_guard_counts_skipped_steps_in_a_row():
    stats, guard = StepStats(torch.device("cpu")), DivergenceGuard(max_in_a_row=3)
    for loss in (0.5, math.nan, math.nan, 1.5, math.nan):
        stats.add(outcome(loss, math.isfinite(loss)))
    figures = stats.read()
    assert figures["loss"] == pytest.approx(1.0) and figures["grad_norm"] == pytest.approx(2.0)
    assert figures["grad_norm_max"] == pytest.approx(3.0) and figures["skipped_steps"] == 3
    guard.record(figures)
    assert (guard.in_a_row, guard.total, guard.diverged) == (1, 3, False)
    for _ in range(2):  # the run of skipped steps goes on across the report
        stats.add(outcome(math.nan, False))
    guard.record(stats.read())
    assert guard.in_a_row == 3 and guard.total == 5 and guard.diverged
    stats.add(outcome(0.25, True))
    figures = stats.read()
    assert figures["in_a_row"] == 0 and figures["most_in_a_row"] == 3 and figures["loss"] == 0.25  # run reached in


def test_the_divergence_message_offers_fp32_only_under_mixed_precision():
    options = {"iteration": 101, "lr": 3.4e-3, "grad_clip": None, "problem": "p", "kept": "k"}
    mixed = str(divergence_error("paper", precision="auto (bfloat16)", mixed_precision=True, **options))
    assert "training of model 'paper' diverged at iteration 101 (learning rate 0.0034, precision auto (bfloat16))" in mixed
    assert ("Fix: lower the learning rate (models.paper.train.lr, or train.lr for every model), or set "
            "train.grad_clip (e.g. 12), or train in precision: fp32; then rerun") in mixed
    single = str(divergence_error("paper", precision="fp32 (float32)", mixed_precision=False, **options))
    assert "precision: fp32" not in single
