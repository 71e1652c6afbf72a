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


def test_did_you_mean():
    reg = Registry("thing", Base)
    reg.add("finetune", type("F", (Base,), {}))
    with pytest.raises(BenchError, match="did you mean finetune"):
        reg.get("fintune")
    assert suggest("zzzz", ["ft"]) == ""


def test_a_new_file_in_the_package_is_discovered_without_any_list(tmp_path, monkeypatch):
    import sys

    pkg = tmp_path / "fakepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "newone.py").write_text("from tests_base import Base\n\n@register_thing('brand-new')\nclass NewOne(Base):\n    pass\n")
    (tmp_path / "tests_base.py").write_text("class Base:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import tests_base

    reg = Registry("thing", tests_base.Base)
    assert reg.discover("fakepkg", "register_thing") == ["brand-new"]
    assert "fakepkg" in sys.modules and "fakepkg.newone" not in sys.modules  # found by reading, not importing
    with pytest.raises(NameError):  # importing it runs the file (whose decorator this toy package lacks)
        reg.get("brand-new")


def test_every_builtin_method_and_dataset_file_is_discovered():
    from bench.datasets import BUILTIN_DATASETS
    from bench.methods import BUILTIN_METHODS

    assert set(BUILTIN_METHODS) == {"zeroshot", "lp", "ft", "lpft", "l2sp", "l1sp", "kd", "lora", "wiseft", "flyp",
                                    "ftp", "autoft", "lipsum", "tpgm", "lines", "soup-uniform", "soup-greedy",
                                    "modelstock", "vrf", "spd", "carot", "r-adapter"}
    assert set(BUILTIN_DATASETS) == {"tinyshift", "iwildcam", "fmow", "domainnet", "imagenet"}


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
