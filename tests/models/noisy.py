"""Tiny models that make the exporters talk: tests check that convert keeps that chatter off the user's terminal
unless -v (each one really triggers it, which the -v half of the test proves)."""

import torch


class _Base(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3 * 32 * 32, 10)
        self.register_buffer("table", torch.linspace(-1, 1, 60).reshape(6, 10))
        self.pretrained_cfg = {"input_size": (3, 32, 32), "mean": (0.5,) * 3, "std": (0.5,) * 3}


class SplitConstant(_Base):
    def forward(self, x):
        a, b = torch.split(self.table, 3)  # a two-output op on a constant: onnxscript "Skipping constant folding"
        return self.proj(x.flatten(1)) + a.sum(0) + b.sum(0)


class DataDependentBranch(_Base):
    def forward(self, x):
        y = self.proj(x.flatten(1))
        # Control flow on a value: torch.export cannot trace it, prints its partial graph and convert falls
        # back to the TorchScript exporter (which records the branch taken on the example input).
        return y if y.sum() > -1e9 else -y


def split_constant():
    return SplitConstant()


def data_dependent_branch():
    return DataDependentBranch()
