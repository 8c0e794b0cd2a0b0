"""llmc's compiler: .llm specs in, diagnostics, derived facts and artifacts out.

Phases, one module each: parse -> compose -> typecheck (schema) -> plan -> checks
-> targets -> render. The compiler never imports an ML framework or a Kubernetes
client; those belong to the generated artifacts and to llmc.runtime.
"""

__version__ = "0.1.0"
