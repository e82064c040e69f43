"""Packaging beyond pyproject.toml: the built-in ``methods/`` and ``tasks/`` ship inside the wheel.

The source tree keeps one file per method or task in top-level folders (the design card); in a wheel
they become ``simcrop_bench/builtin/methods`` and ``simcrop_bench/builtin/tasks``, where the registry
looks when no source checkout is next to the package. pyproject.toml cannot map extra folders into a
package while finding the package's own subpackages, hence this file.
"""

from setuptools import find_namespace_packages, setup

BUILTIN = {"simcrop_bench.builtin.methods": "methods", "simcrop_bench.builtin.tasks": "tasks"}

setup(
    packages=find_namespace_packages(include=["simcrop_bench", "simcrop_bench.*"], exclude=["*.__pycache__"])
    + list(BUILTIN),
    package_dir=BUILTIN,
)
