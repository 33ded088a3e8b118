"""A third-party freeapi provider plugin, as a pip-installable distribution:

    pip install ./tests/plugin_example

registers the `example` provider type through the `freeapi` entry-point group; freeapi's
own code is not touched. The test suite registers the same entry point without installing
(tests/test_plugins.py).
"""

from setuptools import setup

setup(
    name="freeapi-example-plugin",
    version="0.1.0",
    py_modules=["freeapi_example"],
    install_requires=["freeapi"],
    entry_points={"freeapi": ["example = freeapi_example"]},
)
