"""The Keras front end: load a model, walk its layer calls in topological order (nested
models inlined), and turn each call into graph entries (one builder per layer family)."""
