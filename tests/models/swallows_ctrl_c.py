"""A model whose forward pass swallows a Ctrl-C, as some exporter internals do: it interrupts itself with
SIGINT and catches the KeyboardInterrupt (tests/test_atomic.py)."""

import os
import signal

import torch


class SwallowsCtrlC(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(3, 4)

    def forward(self, x):
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except KeyboardInterrupt:
            pass  # the point: the interrupt never reaches vit-edge as an exception
        return self.head(x.mean((2, 3)))


def make_model():
    return SwallowsCtrlC()
