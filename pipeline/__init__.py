"""The staged, cached pipeline: configuration, stages, cache, runner and CLI."""
