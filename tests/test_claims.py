"""src/claims.py: a claim prints one line saying whether it holds here, records it for run_course, never raises;
run_course fails a full run on the course's own config when a claim of the text does not hold."""

import json

import pytest
import torch

from src import run_course
from src.claims import claim, failed


def test_a_claim_that_holds_and_one_that_does_not_are_one_line_each(capsys, monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "0")
    assert claim("small changes are amplified", 3.2 > 1.5, "ratio 3.2 at s = 0.02, 16 seeds") is True
    assert claim("large changes are compressed", torch.tensor(1.3) < 1, "ratio 1.30 at s = 0.5") is False
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["✓ holds here: small changes are amplified (ratio 3.2 at s = 0.02, 16 seeds)",
                     "✗ does not hold with these settings: large changes are compressed, because ratio 1.30 at s = 0.5"]


def test_an_undecidable_claim_is_one_line_not_a_traceback(capsys, monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "0")
    assert claim("both halves agree", torch.tensor([True, False]), "two values") is False
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "could not be decided" in out and "Traceback" not in out


def test_smoke_mode_does_not_judge_the_text(capsys, monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    claim("guidance sharpens digits", False, "accuracy 0.4 on 4 samples")
    assert capsys.readouterr().out.startswith("· smoke mode, not checked: guidance sharpens digits")


def test_claims_are_recorded_for_run_course(tmp_path, monkeypatch, capsys):
    record = tmp_path / "03.claims.jsonl"
    monkeypatch.setenv("COURSE_CLAIMS", str(record))
    monkeypatch.setenv("COURSE_FAST", "0")
    claim("a", True, "1")
    claim("b", False, "2")
    assert [r["statement"] for r in failed(record)] == ["b"]
    assert len(record.read_text().splitlines()) == 2
    assert failed(tmp_path / "none.jsonl") == []


@pytest.mark.parametrize("own, fast, fails", [(True, False, True), (False, False, False), (True, True, False)])
def test_run_course_fails_only_for_the_courses_own_config_in_full_mode(tmp_path, monkeypatch, capsys, own, fast,
                                                                        fails):
    nb = tmp_path / "03_similar_noise.ipynb"
    (tmp_path / "03_similar_noise.claims.jsonl").write_text(json.dumps(
        {"notebook": None, "statement": "small changes are amplified", "holds": False, "smoke": fast,
         "measured": "ratio 0.9"}) + "\n")
    monkeypatch.setattr(run_course, "own_config", lambda: own)
    assert run_course.report_claims([nb], tmp_path, fast) is fails
    out = capsys.readouterr().out
    assert ("small changes are amplified (ratio 0.9)" in out) is (not fast)


def test_the_shipped_config_holds_the_defaults(monkeypatch):
    """config.yaml as shipped is the course's own config: run_course judges the text's claims only there."""
    from src.config import load_config, non_default_keys

    monkeypatch.setenv("COURSE_FAST", "0")
    monkeypatch.delenv("COURSE_CONFIG", raising=False)
    assert non_default_keys(load_config()) == []
