"""freeapi's built-in provider plugins, each registered through the `freeapi` entry point
group in setup.py exactly as a third-party package would register its own."""
