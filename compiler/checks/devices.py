"""Devices: E309 unknown device, E307 precision the device cannot run."""

from __future__ import annotations

from .. import catalog
from .context import CheckContext


def check(ctx: CheckContext) -> None:
    train, serve = ctx.ir.train, ctx.ir.serve
    if train is not None:
        device = _known(ctx, train.cluster.device, "train.cluster.device")
        if device is not None and train.precision == "bf16" and not device.bf16:
            ctx.diags.error(
                "E307",
                ctx.spans.attribute("train.precision"),
                f"{device.name} does not support bf16",
                label=f'precision = "bf16" on {device.name}',
                help='use precision = "fp16" (with loss scaling) or "fp32", or a device with bf16 such as A100-80GB',
                proposals=[(("train.precision", "fp16"),), (("train.precision", "fp32"),)],
            )
    if serve is not None:
        _known(ctx, serve.device, "serve.device")


def _known(ctx: CheckContext, name: str, path: str):
    device = catalog.get(name)
    if device is None:
        from ..suggest import closest

        names = catalog.names()
        guess = closest(name, names)
        ctx.diags.error(
            "E309",
            ctx.spans.value(path),
            f'unknown device "{name}"',
            label=f'did you mean "{guess}"?' if guess else "not in the device catalog",
            help="known devices: " + ", ".join(names),
        )
    return device
