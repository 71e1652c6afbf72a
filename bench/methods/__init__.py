"""Fine-tuning methods, registered by name: one class per file. Third-party methods come in through
`bench run --plugin file.py` or the `bench.methods` entry-point group of an installed package."""
from bench.methods.base import Method
from bench.registry import Registry

METHODS: Registry[Method] = Registry("method", Method, entry_point_group="bench.methods")
BUILTIN = {
    "zeroshot": "bench.methods.zeroshot:ZeroShot",
    "lp": "bench.methods.lp:LinearProbe",
    "ft": "bench.methods.ft:FineTune",
    "lpft": "bench.methods.lpft:LPFT",
    "l2sp": "bench.methods.l2sp:L2SP",
    "l1sp": "bench.methods.l1sp:L1SP",
    "kd": "bench.methods.kd:KD",
    "lora": "bench.methods.lora:LoRA",
    "wiseft": "bench.methods.wiseft:WiSEFT",
    "flyp": "bench.methods.flyp:FLYP",
    "ftp": "bench.methods.ftp:FTP",
    "autoft": "bench.methods.autoft:AutoFT",
    "lipsum": "bench.methods.lipsum:LipsumFT",
    "tpgm": "bench.methods.tpgm:TPGM",
    "lines": "bench.methods.lines:LiNeS",
    "soup-uniform": "bench.methods.soups:UniformSoup",
    "soup-greedy": "bench.methods.soups:GreedySoup",
    "modelstock": "bench.methods.modelstock:ModelStock",
}
BUILTIN_METHODS = tuple(BUILTIN)  # the leaderboard lists these even when they have not been run
for _name, _target in BUILTIN.items():
    METHODS.add(_name, _target)


def register_method(name: str):
    """Class decorator: `@register_method("mymethod")` makes `bench run --method mymethod` work."""
    return METHODS.register(name)
