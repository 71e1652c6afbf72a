"""Fine-tuning methods, registered by name: one class per file, decorated `@register_method("name")`. The files of
this package are discovered by reading them (nothing imported until a method is used), so a new built-in method is
one new file; third-party methods come in through `bench run --plugin file.py` or the `bench.methods` entry-point
group of an installed package."""
from bench.methods.base import Method
from bench.registry import Registry

METHODS: Registry[Method] = Registry("method", Method, entry_point_group="bench.methods")
BUILTIN_METHODS = tuple(METHODS.discover("bench.methods", "register_method"))  # the leaderboard lists them unrun too


def register_method(name: str):
    """Class decorator: `@register_method("mymethod")` makes `bench run --method mymethod` work."""
    return METHODS.register(name)
