"""Claims: each sentence a notebook states about what it measured is also a line of code, checked on every run.

    claim("small changes in x_T are amplified", ratio > 1.5, f"d_out / d_in = {ratio:.2f} at s = 0.02, 16 seeds")

prints one line, whatever the settings:

    ✓ holds here: small changes in x_T are amplified (d_out / d_in = 3.21 at s = 0.02, 16 seeds)
    ✗ does not hold with these settings: small changes in x_T are amplified, because d_out / d_in = 0.93 ...

so a student who changes the seed, the model or a knob sees at once which sentences of the text still describe
what they got. In smoke mode (COURSE_FAST=1: few steps, few samples) claims are printed as "(smoke mode, not
checked)" results: the text describes the full settings. Every result is also appended, as one JSON line, to the
file named by $COURSE_CLAIMS when it is set: `python -m src.run_course` sets it, and exits non-zero, naming the
claim, when a claim fails on the course's own config in full mode.
"""

from __future__ import annotations

import json
import os


def claim(statement, holds, measured, notebook=None):
    """Print whether `statement` holds with the current settings, with the measurement behind it; returns holds.

    statement: the sentence, as the markdown says it; holds: a bool computed from this run's numbers;
    measured: the numbers, with their n (and spread), in a few words. Never raises for a false claim.
    """
    try:
        holds = bool(holds)
    except Exception as e:  # noqa: BLE001 - a NaN tensor or an ambiguous array: say so, in one line
        holds, measured = False, f"{measured} (could not be decided: {type(e).__name__})"
    smoke = os.environ.get("COURSE_FAST", "").strip() not in ("", "0", "false", "False")
    if holds:
        line = f"✓ holds here: {statement} ({measured})"
    elif smoke:
        line = f"· smoke mode, not checked: {statement} ({measured}; the text describes the full settings)"
    else:
        line = f"✗ does not hold with these settings: {statement}, because {measured}"
    print(line)
    record = os.environ.get("COURSE_CLAIMS")
    if record:
        with open(record, "a", encoding="utf-8") as f:
            f.write(json.dumps({"notebook": notebook, "statement": statement, "holds": holds, "smoke": smoke,
                                "measured": measured}) + "\n")
    return holds


def failed(path):
    """The claims recorded in a $COURSE_CLAIMS file that did not hold (a list of dicts; [] if none or no file)."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [r for r in map(json.loads, filter(str.strip, f)) if not r["holds"]]
