"""The Triton Python-backend model of `llmc serve`: the local repository's
`1/model.py` re-exports TritonPythonModel, which Triton's stub process loads.

It opens the gated model with backends.open_model (the config's `model_path`
parameter) and answers each batch Triton's dynamic batcher hands it in one call to
the model: the valid requests' rows are run together, and a request handlers.py
rejects gets its own error (pb_utils.TritonError, which Triton returns as HTTP 400)
while the others are answered. Only Triton's stub imports this module.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..backends import open_model
from ..folders import read_meta
from .handlers import RequestError, handler_for


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in (config.get("parameters") or {}).items()}
        path = params["model_path"]
        self.handler = handler_for(read_meta(path), open_model(path))
        # One warm-up row: the first call pays for lazy initialisation, not a caller.
        self._warm_up()

    def _warm_up(self) -> None:
        first = self.handler.inputs[0]
        if first.data_type == "TYPE_STRING":
            sample = {first.name: np.array([[b"1"]], dtype=np.object_)}
        else:
            sample = {first.name: np.zeros((1, *first.dims), dtype=np.float32)}
        self.handler.answer(self.handler.rows(sample))

    def _error(self, message: str, internal: bool = False) -> Any:
        """A request's error: INVALID_ARG (HTTP 400) for the caller's mistake, INTERNAL (500) for the model's."""
        error = self.pb.TritonError
        return error(message, error.INTERNAL if internal else error.INVALID_ARG)

    def execute(self, requests: list[Any]) -> list[Any]:
        pb = self.pb
        parsed: list[list[Any] | None] = []
        errors: list[str | None] = []
        for request in requests:
            try:
                tensors = {}
                for t in self.handler.inputs:
                    tensor = pb.get_input_tensor_by_name(request, t.name)
                    if tensor is None:
                        raise RequestError(f"missing input {t.name!r}")
                    tensors[t.name] = tensor.as_numpy()
                parsed.append(self.handler.rows(tensors))
                errors.append(None)
            except RequestError as exc:
                parsed.append(None)
                errors.append(str(exc))
        rows = [row for request_rows in parsed if request_rows for row in request_rows]
        answers: dict[str, np.ndarray] = {}
        failure = None
        if rows:
            try:
                answers = self.handler.answer(rows)
            except Exception as exc:  # the model failed: every request of the batch is told why
                failure = f"the model failed: {type(exc).__name__}: {exc}"
        responses = []
        start = 0
        for request_rows, error in zip(parsed, errors):
            if error is not None or request_rows is None:
                responses.append(pb.InferenceResponse(output_tensors=[], error=self._error(error or "bad request")))
                continue
            end = start + len(request_rows)
            if failure is not None:
                responses.append(pb.InferenceResponse(output_tensors=[], error=self._error(failure, internal=True)))
            else:
                outputs = [pb.Tensor(t.name, answers[t.name][start:end]) for t in self.handler.outputs]
                responses.append(pb.InferenceResponse(output_tensors=outputs))
            start = end
        return responses
