"""Deployment: W801 when there is no deploy block."""

from __future__ import annotations

from . import CheckContext


def check(ctx: CheckContext) -> None:
    if ctx.ir.deploy is None and ctx.ir.serve is not None:
        name = ctx.ir.model.name
        ctx.diags.warning("W801", ctx.spans.key("serve"), "no deploy block: manifests use namespace `default`",
                          label=f'and the image "{name}:latest"',
                          help=f'add `deploy {{ namespace = "..." image = "registry/{name}:TAG" }}`')
