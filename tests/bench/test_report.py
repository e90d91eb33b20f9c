"""bench.report on fixture result files: the README block it writes, and what it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import report
from bench.common import Headline, write_result

README = f"# x\n\nbefore\n\n{report.BEGIN}\nstale table\n{report.END}\n\nafter\n"


def fixture(tmp_path: Path) -> tuple[Path, Path]:
    results = tmp_path / "results"
    write_result("aggregation", {"headlines": [
        Headline("fedavg N=10, validation + rule", 8.0, "ms", 30.0, "Flower, same inputs", 3.75, 3.0, "x").doc(),
        Headline("fedavg N=10 alone, read rate", 5.0, "GB/s", 12.5, "memory-copy bandwidth", 0.4, 0.5).doc(),
    ]}, results)
    write_result("wal", {"rows": []}, results)
    (results / "summary.json").write_text(json.dumps({"benches": {}}))
    readme = tmp_path / "README.md"
    readme.write_text(README)
    return results, readme


def test_the_readme_block_is_rebuilt_from_the_result_files_and_nothing_else_changes(tmp_path: Path) -> None:
    results, readme = fixture(tmp_path)
    assert report.main(["--results", str(results), "--write-readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# x\n\nbefore\n\n" + report.BEGIN) and text.endswith(report.END + "\n\nafter\n")
    block = text[text.index(report.BEGIN) + len(report.BEGIN): text.index(report.END)]
    lines = [line for line in block.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(lines) == 4 and "stale" not in block and "summary" not in block
    fedavg, read, wal = lines[1:]
    assert "| 8.00 ms |" in fedavg and "30.0 ms (Flower, same inputs)" in fedavg and "| 3.75x | 3.00x | yes |" in fedavg
    assert "| 40% | 50% | **no** |" in read
    assert wal.startswith("| wal | (no headline figures")
    assert report.main(["--results", str(results), "--write-readme", str(readme)]) == 0
    assert readme.read_text() == text  # a second run with the same files changes nothing


def test_a_readme_without_markers_or_a_broken_result_file_is_refused_and_left_alone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results, readme = fixture(tmp_path)
    readme.write_text("no markers here\n")
    assert report.main(["--results", str(results), "--write-readme", str(readme)]) == 2
    assert readme.read_text() == "no markers here\n" and "no '<!-- bench-results:begin" in capsys.readouterr().err
    readme.write_text(README)
    (results / "broken.json").write_text("{not json")
    assert report.main(["--results", str(results), "--write-readme", str(readme)]) == 2
    assert readme.read_text() == README and "broken.json" in capsys.readouterr().err
