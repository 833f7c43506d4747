"""unmask: reinforcement-learning post-training for masked diffusion language models.

The packages are ``unmask.rewards``, ``unmask.rollouts``, ``unmask.tasks``, ``unmask.eval`` and ``unmask.rl``
(the repository's top-level folders; see the README's Layout section). Importing ``unmask`` itself stays
cheap (no torch), so the ``unmask`` command answers ``--help`` at once.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("unmask")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
