"""`llmc serve`: the model the last successful `llmc run` gated, served by a real
Triton server (the `tritonserver` of the nvidia-pytriton wheel, Python backend) on
127.0.0.1, with dynamic batching and a queue policy from the bundle's serving plan.

    runs.py              which run's model to serve (the last one evaluate passed)
    settings.py          the serving numbers read from the bundle; config.pbtxt's text
    local_repository.py  runs/<spec>/serve/: the model repository, the Python backend
    handlers.py          requests -> model inputs -> responses (framework-free)
    triton_model.py      the TritonPythonModel the repository's model.py re-exports
    server.py            tritonserver: ports, start, readiness, stop, shared memory
    session.py           the served model for the length of a `with` block: start, ready, stop
    command.py           the command: progress lines, signals, exit status

`llmc loadtest` (docs/serving.md, "Load test"):

    loadgen.py           open-loop Poisson load, timed from each request's scheduled send
    loadreport.py        statistics, the verdict against the SLA, the sweep, table, report, plots
    loadtest.py          the command and the serve stage of `llmc run` (the bundle's
                         loadtest/loadtest.py): unloaded latency, the load, the sweep

docs/serving.md has the contract (tensors, curl examples, errors, exit status).
"""
