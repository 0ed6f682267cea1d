"""Task data for rmtzoo: pure generators for the paper's algorithmic tasks (``synthetic``)."""
