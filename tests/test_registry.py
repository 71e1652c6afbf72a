import pytest

from bench.errors import BenchError
from bench.methods import METHODS, Method
from bench.registry import Registry, suggest


class Base:
    pass


def test_register_get_and_name():
    reg = Registry("thing", Base)

    @reg.register("alpha")
    class Alpha(Base):
        pass

    assert reg.get("alpha") is Alpha
    assert Alpha.name == "alpha"
    assert reg.names() == ["alpha"]


def test_conflicting_duplicate_is_an_error_but_reregistering_same_class_is_not():
    reg = Registry("thing", Base)

    class A(Base):
        pass

    class B(Base):
        pass

    reg.add("x", A)
    reg.add("x", A)
    with pytest.raises(BenchError, match="already registered"):
        reg.add("x", B)


def test_did_you_mean_and_planned_names():
    reg = Registry("thing", Base)
    reg.add("finetune", type("F", (Base,), {}))
    reg.plan("autoft", "issue #3")
    with pytest.raises(BenchError, match="did you mean finetune"):
        reg.get("fintune")
    with pytest.raises(BenchError, match="not available yet .issue #3"):
        reg.get("autoft")
    assert suggest("zzzz", ["ft"]) == ""


def test_non_subclass_rejected():
    reg = Registry("thing", Base)
    with pytest.raises(TypeError):
        reg.add("bad", int)


def test_lazy_builtin_is_imported_on_first_get():
    cls = METHODS.get("wiseft")
    assert issubclass(cls, Method) and cls.name == "wiseft"
    assert cls.reported_alpha == 0.5


def test_entry_point_group_is_read(monkeypatch):
    from importlib import metadata

    class FakeEP:
        name, value = "ep_method", "bench.methods.ft:FineTune"

    monkeypatch.setattr(metadata, "entry_points", lambda group: [FakeEP()] if group == "bench.methods" else [])
    reg = Registry("method", Method, entry_point_group="bench.methods")
    assert reg.names() == ["ep_method"]
    assert reg.get("ep_method").__name__ == "FineTune"
    assert METHODS.get("ft").name == "ft"  # the alias did not rename the built-in class
