"""Pick the compute device: CUDA when present, else CPU.

Defined in chapter "Learning in the benign setting, and the threat model"; used wherever torch trains.
"""

from __future__ import annotations

import os

__all__ = ["get_device"]


def get_device(prefer: str | None = None):
    """Return the :class:`torch.device` to compute on.

    Order: the ``prefer`` argument, then the ``POISONING_DEVICE`` environment variable (e.g. ``cpu`` to
    force the CPU on a GPU machine), then ``cuda`` when a GPU is visible, else ``cpu``.

    Raises ``ValueError`` for a device torch does not know and ``RuntimeError`` when CUDA is asked for
    but not available.
    """
    import torch  # imported lazily: the numpy-only modules must not pay for torch

    name = prefer or os.environ.get("POISONING_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"unknown device {name!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available on this machine")
    return device
