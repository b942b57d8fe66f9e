"""The published tables are what the committed results render to (tools/render_docs.py), and the tool itself:
a block is re-rendered from its own command, and a block that drifts from its data is named."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from test_old_store import FIXTURE, old_store  # noqa: F401  (the old store, as a fixture)

ROOT = Path(__file__).resolve().parent.parent


def _tool():
    spec = importlib.util.spec_from_file_location("render_docs", ROOT / "tools" / "render_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def doc(tmp_path: Path, old_store: Path) -> Path:
    db = old_store
    path = tmp_path / "doc.md"
    path.write_text(f"# Results\n\nprose stays\n\n<!-- generated: budgetsched report {db} --format md -->\nstale\n"
                    "<!-- end generated -->\n\nmore prose\n")
    return path


def test_render_writes_the_commands_output_and_check_then_passes(doc, capsys):
    tool = _tool()
    assert tool.main(["--check", str(doc)]) == 1  # "stale" is not the report
    assert "differs from what its results render to" in capsys.readouterr().err
    assert tool.main([str(doc)]) == 0
    text = doc.read_text()
    body = text.split("-->\n", 1)[1].split("<!-- end generated -->")[0]
    assert body == (FIXTURE / "report.md").read_text()  # the report's own md output, byte for byte
    assert text.startswith("# Results\n\nprose stays\n") and text.endswith("<!-- end generated -->\n\nmore prose\n")
    assert tool.main(["--check", str(doc)]) == 0


def test_check_names_a_tampered_table(doc, capsys):
    tool = _tool()
    tool.main([str(doc)])
    text = doc.read_text()
    doc.write_text(text.replace("| rex", "| REX", 1))
    assert tool.main(["--check", str(doc)]) == 1
    err = capsys.readouterr().err
    assert "budgetsched report" in err and "REX" in err


def test_only_budgetsched_commands_run(tmp_path):
    path = tmp_path / "doc.md"
    path.write_text("<!-- generated: rm -rf / -->\nx\n<!-- end generated -->\n")
    with pytest.raises(SystemExit, match="must run a budgetsched command"):
        _tool().main([str(path)])



def test_published_results_render_to_the_committed_tables():
    """docs/results.md's tables are re-rendered from results/ (the committed suite rows) and must match."""
    assert _tool().main(["--check", str(ROOT / "docs" / "results.md")]) == 0
