"""Package data: Jinja templates, one folder per target."""
