"""The static HTML leaderboard in a real headless Chromium (Debian's `chromium`, which .ci/run installs): it loads
with no script or console error, `#sort=` and the sort order change the row order, and each section's scatter has
one point per run of each row; a page whose chart library is missing is caught by the same error check."""
import os
import re
import shutil
import subprocess

import pytest

from bench.leaderboard import write_leaderboard
from test_leaderboard import fake_record, fill

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
if BROWSER is None and os.environ.get("BENCH_CI_BROWSER"):
    raise RuntimeError("CI installed no chromium, yet the browser tests must run there")
pytestmark = pytest.mark.skipif(BROWSER is None, reason="needs Debian's chromium (apt-get install chromium)")


def dom(page, fragment=""):
    """The page's DOM after its scripts ran (load event plus 5 s of virtual time for timers)."""
    done = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                           "--dump-dom", page.resolve().as_uri() + fragment], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def rows(text):
    return [(label, float(value)) for label, value in re.findall(r'<tr data-label="([^"]+)"[^>]*?data-ood_avg="([-0-9.e]+)"', text)]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("html")
    fill(root / "runs", [fake_record("ft", s, 80.0 + s, [40 + s] * 5) for s in range(3)]
         + [fake_record("lp", s, 70.0, [30 + 2 * s] * 5, hparams={"c": 1.0}) for s in range(2)]
         + [fake_record("zeroshot", 0, 60.0, [55] * 5, hparams={"x": 0})])
    write_leaderboard(root / "runs", root / "LB.md", plots=False)
    return root / "leaderboard" / "index.html"


def test_the_page_loads_without_errors_and_plots_one_point_per_run(page):
    text = dom(page)
    assert 'data-ready="1"' in text and 'data-errors="[]"' in text
    assert len(re.findall(r'class="point"', text)) == 3 + 2 + 1  # ft's 3 seeds, lp's 2, zero-shot's 1
    assert "ft" in text and "Dataset" in text and (page.parent / "plotly.min.js").is_file()


def test_sorting_changes_the_row_order(page):
    up, down = rows(dom(page, "#sort=ood_avg:asc")), rows(dom(page, "#sort=ood_avg:desc"))
    assert [v for _, v in up] == sorted(v for _, v in up) and len(up) == 3
    assert down == up[::-1] and up[0][0] == "lp" and down[0][0] == "zeroshot"
    by_n = rows(dom(page, "#sort=n:desc"))
    assert by_n[0][0] == "ft"  # 3 runs


def test_a_script_error_is_caught_by_the_check(page, tmp_path):
    broken = tmp_path / "index.html"
    broken.write_text(page.read_text().replace('src="plotly.min.js"', 'src="missing.js"'))
    text = dom(broken)
    assert 'data-errors="[]"' not in text and "Plotly is not defined" in text
