"""Native implementations of the dLLM architectures unmask trains (no remote code): transformers
``PreTrainedModel``s with their ``PretrainedConfig``s, registered with transformers' Auto classes by ``hf.py``.
Importing this package imports nothing (the registration hook in ``unmask/__init__.py`` relies on it)."""
