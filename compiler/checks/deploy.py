"""Deployment: E801 values Kubernetes would reject, W801 no deploy block."""

import re

from . import CheckContext

# Kubernetes' own rules (k8s.io/apimachinery/pkg/util/validation).
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")  # at most 63
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")  # at most 253
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")  # at most 63
# An image reference: [registry[:port]/]path[:tag][@digest], lower-case path components.
IMAGE = re.compile(r"([a-zA-Z0-9.-]+(:[0-9]+)?/)?[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*"
                   r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?")


def check(ctx: CheckContext) -> None:
    deploy, spans = ctx.ir.deploy, ctx.spans
    if deploy is None:
        if ctx.ir.serve is not None:
            name = ctx.ir.model.name
            ctx.diags.warning("W801", spans.key("serve"),
                              f"no deploy block: manifests use namespace `default` and image `{name}:latest`",
                              label="served without a deploy block",
                              help=f'add a `deploy` block with `namespace = "..."` and `image = "registry/{name}:TAG"`, each on its own line')
            if not IMAGE.fullmatch(f"{name}:latest"):
                _reject(ctx, "model.name", f"the default image `{name}:latest` is not a valid image reference",
                        "image names are lower-case letters, digits and . _ - /",
                        "add a deploy block with an explicit `image`")
        return
    if not (DNS_LABEL.fullmatch(deploy.namespace) and len(deploy.namespace) <= 63):
        _reject(ctx, "deploy.namespace", f"namespace `{deploy.namespace}` is not a valid Kubernetes namespace",
                "a namespace is a DNS label: lower-case letters, digits and `-`, at most 63, starting and ending alphanumeric")
    sa = deploy.service_account
    if sa is not None and not (DNS_SUBDOMAIN.fullmatch(sa) and len(sa) <= 253):
        _reject(ctx, "deploy.service_account", f"service account `{sa}` is not a valid Kubernetes name",
                "a service account name is a DNS subdomain: lower-case letters, digits, `-` and `.`")
    if deploy.image is not None and not IMAGE.fullmatch(deploy.image):
        _reject(ctx, "deploy.image", f"`{deploy.image}` is not a valid image reference",
                "write `registry/path:tag`: no spaces; the path in lower case")
    for key, value in deploy.labels.items():
        if not (LABEL_VALUE.fullmatch(key) and key and len(key) <= 63):
            _reject(ctx, f"deploy.labels.{key}", f"label key `{key}` is not a valid Kubernetes label name",
                    "a label name is at most 63 letters, digits, `-`, `_` or `.`, starting and ending alphanumeric",
                    key_span=True)
        if not (LABEL_VALUE.fullmatch(value) and len(value) <= 63):
            _reject(ctx, f"deploy.labels.{key}", f"label value `{value}` is not a valid Kubernetes label value",
                    "a label value is empty or at most 63 letters, digits, `-`, `_` or `.`, starting and ending alphanumeric")


def _reject(ctx: CheckContext, path: str, message: str, rule: str, help: str = "", key_span: bool = False) -> None:
    span = ctx.spans.key(path) if key_span else ctx.spans.value(path)
    ctx.diags.error("E801", span, message, label="Kubernetes would reject this", help=help or rule)
