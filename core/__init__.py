"""Cross-cutting pieces every layer uses: the exception tree, secret references, configuration."""
