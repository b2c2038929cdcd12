"""The ``ottsliced`` command line: ``ottsliced demo`` and ``ottsliced bench``, on top of the experiments.

:mod:`~ottsliced.cli.main` dispatches to :mod:`~ottsliced.cli.demo` and
:mod:`~ottsliced.cli.bench` (imported when called); both take their shared
argument types from :mod:`~ottsliced.cli.args`, so nothing imports in a circle.
"""

from ottsliced.cli.main import main

__all__ = ["main"]
