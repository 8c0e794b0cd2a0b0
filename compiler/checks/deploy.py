"""Deployment: W801 when there is no deploy block."""

from __future__ import annotations

from . import CheckContext


def check(ctx: CheckContext) -> None:
    if ctx.ir.deploy is None and ctx.ir.serve is not None:
        name = ctx.ir.model.name
        ctx.diags.warning("W801", ctx.spans.key("serve"),
                          f"no deploy block: manifests use namespace `default` and image `{name}:latest`",
                          label="served without a deploy block",
                          help=f'add a `deploy` block with `namespace = "..."` and `image = "registry/{name}:TAG"`, each on its own line')
