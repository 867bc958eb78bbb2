"""The documents: their tables agree with the committed runs, and they describe the software, not its making."""

import glob
import json
import os
import re
import shutil

import pytest

import report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_table_agrees_with_the_runs(capsys):
    assert report.main(["--check"]) == 0, capsys.readouterr().out


def test_check_names_a_number_changed_by_hand(tmp_path, capsys):
    runs = tmp_path / "full"
    shutil.copytree(os.path.join(ROOT, "docs", "full"), runs)
    path = runs / "fig2_gpu_50_epochs" / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["fig2_rts_mnist"]["test_classification_error"] = 0.0333
    path.write_text(json.dumps(metrics))
    assert report.main(["--check", "--runs", str(runs), "--docs", os.path.join(ROOT, "docs", "results.md")]) == 1
    said = capsys.readouterr().out
    assert "figures_1_2_gpu" in said and "'test error'" in said and "'1.14 %'" in said and "'3.33 %'" in said


def test_a_table_is_rendered_from_the_runs_and_read_back():
    headers, rows = report.figure_4(report.Runs(os.path.join(ROOT, "docs", "full")))
    text = report.markdown(headers, rows)
    assert report.cells(text) == [headers] + rows
    assert report.first_difference("figure_4", text, text) is None


# What tells how the project was made rather than what it does (docs and README).
MAKING = {
    "an internal issue number": r"\b[Ii]ssues? #?\d+\b",
    "a work item's closing words": r"\bDone when\b",
    "a commit hash": r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b",
    "a date of the work": r"\b\d{1,2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\b|\b20\d\d-\d\d-\d\d\b",
    "a sitting of work": r"\bsessions?\b|\bsitting\b",
    "a work-log phrase": r"\bthe two hours asked\b|\bbefore \(commit\b",
}


def making_of(text):
    """The lines of `text` that talk of the project's making, with what each says."""
    return [(n, what) for n, line in enumerate(text.splitlines(), 1) for what, pattern in MAKING.items()
            if re.search(pattern, line)]


@pytest.mark.parametrize("line", [
    "Measured in issue 21.", "Done when the table is green.", "before (commit 4d4f25b, a git worktree)",
    "run on 30 Nov 2026", "found in the third session", "the machine development sessions are lent", "(the two hours asked)",
])
def test_the_search_finds_work_log_words(line):
    assert making_of(line)


def test_the_search_leaves_the_softwares_own_words():
    assert not making_of("keras-team/keras#20585; 1,000 test images; a 3x3 filter; fig2_rts_mnist at 50 epochs; 0.4.0")


def test_readme_and_docs_do_not_tell_how_the_project_was_made():
    paths = [os.path.join(ROOT, "README.md")] + [
        p for ext in ("md", "sh", "py") for p in glob.glob(os.path.join(ROOT, "docs", "**", f"*.{ext}"), recursive=True)]
    found = []
    for path in paths:
        with open(path) as f:
            found += [f"{os.path.relpath(path, ROOT)}:{n}: {what}" for n, what in making_of(f.read())]
    assert not found, "\n".join(found)
