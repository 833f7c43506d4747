"""unmask: reinforcement-learning post-training for masked diffusion language models.

The packages are ``unmask.rewards``, ``unmask.rollouts``, ``unmask.tasks``, ``unmask.eval`` and ``unmask.rl``
(the repository's top-level folders; see the README's Layout section). Importing ``unmask`` itself stays
cheap (no torch), so the ``unmask`` command answers ``--help`` at once; the Python API (``RLTrainer``:
``unmask.rl.api``, and the torch-free ``RLConfig``) loads on first use.
"""

import sys
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("unmask")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

# Registration of the native LLaDA and Dream classes with transformers' Auto classes
# (unmask.rollouts.models.hf), run once transformers' auto module that holds each registry has loaded — at
# once if it already has, else by a sys.meta_path finder — so that after `import unmask`,
# `transformers.AutoModel.from_pretrained(dir)` loads them, while importing unmask alone loads neither torch
# nor transformers.
_REGISTER_WHEN_LOADED = {
    "transformers.models.auto.configuration_auto": "register_configs",
    "transformers.models.auto.modeling_auto": "register_auto_classes",
}


def _register(function: str) -> None:
    try:
        from unmask.rollouts.models import hf
        getattr(hf, function)()
    except Exception as e:  # never break the user's transformers import; say why the Auto classes lack unmask's
        import warnings
        warnings.warn(f"unmask could not register its models with transformers' Auto classes "
                      f"({type(e).__name__}: {e}); load them with unmask.rollouts.adapter.load_model", stacklevel=2)


class _RegisterOnImport:
    """A ``sys.meta_path`` finder for the watched modules only: it finds the real spec with the other finders
    and wraps its loader's ``exec_module`` to run the registration once the module has executed."""

    def __init__(self, watched: dict[str, str]):
        self.watched = dict(watched)

    def find_spec(self, fullname, path=None, target=None):
        function = self.watched.get(fullname)
        if function is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            self.watched.pop(fullname, None)
            if not self.watched and self in sys.meta_path:
                sys.meta_path.remove(self)
            _register(function)

        loader.exec_module = exec_then_register
        return spec


def _install_registration_hook() -> None:
    if any(type(finder).__name__ == _RegisterOnImport.__name__ for finder in sys.meta_path):  # even after a reload
        return
    pending = {}
    for module, function in _REGISTER_WHEN_LOADED.items():
        if module in sys.modules:
            _register(function)
        else:
            pending[module] = function
    if pending:
        sys.meta_path.insert(0, _RegisterOnImport(pending))


_install_registration_hook()


_API = {"RLTrainer": "unmask.rl.api", "RLConfig": "unmask.rl.config.flat"}
__all__ = ["RLConfig", "RLTrainer", "__version__"]


def __getattr__(name: str):
    """``from unmask import RLTrainer``: the API's modules (torch and all) load when first asked for."""
    if name in _API:
        import importlib
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'unmask' has no attribute {name!r}")
