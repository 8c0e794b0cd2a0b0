"""Package data: the documentation shipped with llmc (error explanations for `llmc explain`)."""
