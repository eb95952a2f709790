"""Two trainings at once on one machine: OpenMP threads that spin against threads that wait passively.

Run: python benchmarks/concurrent_trainings.py [--steps 30]

The test suite runs on one pytest-xdist worker per core, and each test's Snakemake job takes every
core (--cores 2), so two jobs' PyTorch threads share each core. PyTorch's OpenMP runtime lets a
thread spin while it waits for the others at the end of each parallel region (OMP_WAIT_POLICY
unset, i.e. active), which takes the core from the other job's threads. This times training steps
of the demo model (depth 3, 16 channels, 188 -> 100 tiles, batch 2, Adam, the weighted loss and
the package's own step, as the tests train it) in a
process alone, and in two processes started together, with the policy unset and PASSIVE, each
process using as many threads as the machine has cores. One process per measurement, so that the
OpenMP runtime reads the policy at start.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from common import machine

STEPS_CODE = """
import sys, time, torch
from unetflow.methods.architectures import ModelConfig
from unetflow.methods.losses import weighted_cross_entropy
from unetflow.model import UNet
from unetflow.optimisation import make_optimizer, optimisation_step
torch.set_num_threads({threads})
torch.manual_seed(0)
model = UNet(ModelConfig(depth=3, base_channels=16))
optimizer = make_optimizer(model, optimizer="adam", lr=2e-3, momentum=0.99, weight_decay=0.0)
scaler = torch.amp.GradScaler("cpu", enabled=False)
images, labels = torch.randn(2, 1, 188, 188), torch.randint(0, 2, (2, 100, 100))
weights = torch.rand(2, 100, 100) + 0.5
for step in range({steps} + 3):
    if step == 3:
        started = time.perf_counter()  # the first steps allocate
    optimisation_step(model, optimizer, scaler, weighted_cross_entropy(model(images), labels, weights))
print((time.perf_counter() - started) / {steps})
"""

def seconds_per_step(processes: int, policy: str | None, steps: int) -> list[float]:
    """Seconds per training step of each of ``processes`` trainings started together."""
    environment = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    if policy:
        environment["OMP_WAIT_POLICY"] = policy
    code = STEPS_CODE.format(threads=os.cpu_count(), steps=steps)
    running = [subprocess.Popen([sys.executable, "-c", code], env=environment, stdout=subprocess.PIPE, text=True)
               for _ in range(processes)]
    return [float(process.communicate()[0]) for process in running]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    steps = parser.parse_args().steps
    print(f"{machine()}; {os.cpu_count()} threads per training, {steps} steps")
    alone = {policy: seconds_per_step(1, policy, steps)[0] for policy in (None, "PASSIVE")}
    together = {policy: max(seconds_per_step(2, policy, steps)) for policy in (None, "PASSIVE")}
    for policy in (None, "PASSIVE"):
        print(f"OMP_WAIT_POLICY {policy or 'unset'}: alone {alone[policy]:.3f} s/step, "
              f"two at once {together[policy]:.3f} s/step (slower of the two)")
    print(f"two at once, unset / PASSIVE: {together[None] / together['PASSIVE']:.2f}x; "
          f"PASSIVE two at once / alone: {together['PASSIVE'] / alone['PASSIVE']:.2f}x "
          "(2.0x would be a perfect share of the cores)")


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"({time.perf_counter() - started:.0f} s)")
