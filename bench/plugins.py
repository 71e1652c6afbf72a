"""Load a researcher's method (or dataset) file: `bench run --plugin my_method.py --method mine`."""
from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

from bench.errors import BenchError


def load_plugin(path: str | Path) -> None:
    path = Path(path)
    if not path.is_file() or path.suffix != ".py":
        raise BenchError(f"plugin {path} is not a Python file; pass the path of a .py file that registers a method")
    name = f"bench_plugin_{path.stem}_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BenchError:
        del sys.modules[name]
        raise
    except SystemExit as exc:  # a plugin must not end the program silently
        del sys.modules[name]
        raise BenchError(f"plugin {path} called sys.exit({exc.code!r}) while being imported; a plugin only defines "
                         "and registers classes")
    except Exception as exc:
        del sys.modules[name]
        line = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise BenchError(f"plugin {path} failed to import: {type(exc).__name__}: {line}")
