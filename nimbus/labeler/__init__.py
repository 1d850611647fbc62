"""The labelling web tool: a local server and a static page for hand-labelling samples."""

__all__: list[str] = []
