"""What a notebook imports: set-up, the parameter echo, and the few names every notebook uses.

    from src.course import load_config, load_model, setup_notebook, describe
    setup_notebook()             # threads, quiet diffusers bars, CourseError shown as one sentence
    cfg = load_config()          # config.yaml (src/config.py)
    model = load_model(cfg)      # the UNet, its DDIM scheduler and its schedule (src/models.py)

The work itself lives elsewhere: the math in src/functions.py, figures in src/figures.py, files in
src/files.py. This module only gathers what a notebook's first cell needs, so its imports stay short.
"""

from __future__ import annotations

import os
import sys

import torch

from src.classifier import classify, load_classifier  # noqa: F401 - re-exported for notebooks 04-06
from src.config import BUNDLED_MODEL, CourseError, is_fast, load_config  # noqa: F401 - re-exported
from src.mnist import NUM_CLASSES, load_mnist  # noqa: F401 - re-exported
from src.models import CourseModel, image_side, is_bundled, load_model  # noqa: F401 - re-exported
from src.trace import LARGE_IMAGE_PIXELS


# --- notebooks -----------------------------------------------------------------------------------

def _one_sentence(shell, etype, value, tb, tb_offset=None):
    """IPython custom exception handler: a CourseError is shown as its sentence, without a stack trace.

    It is shown through the shell's own error display, so the cell still counts as failed
    (nbclient/nbmake raise CellExecutionError, "Run all" stops there) and the output is an error.
    """
    stb = [f"\x1b[0;31m{etype.__name__}\x1b[0m: {value}"]
    show = getattr(shell, "_showtraceback", None)  # ipykernel: an "error" output; terminal IPython: prints it
    if show is not None:
        show(etype, value, stb)
    else:
        print(f"{etype.__name__}: {value}", file=sys.stderr)
    return stb


_chose_threads = False  # True once setup_notebook picked the thread count itself (use_all_cores may raise it)


def setup_notebook(threads=None):
    """Once per notebook: CPU threads, quiet diffusers bars, and course errors shown as one sentence."""
    global _chose_threads
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()
    if threads is None and "OMP_NUM_THREADS" not in os.environ:
        threads = max(1, (os.cpu_count() or 2) - 1)  # leave a core for Jupyter; all cores spin-wait badly
        _chose_threads = True
    if threads:
        torch.set_num_threads(threads)
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is not None:
        ip.set_custom_exc((CourseError,), _one_sentence)


def use_all_cores(model):
    """Every CPU core for a model of large images (128x128 and more), where setup_notebook chose the threads.

    setup_notebook leaves a core free because a small model's operations are short, and torch's threads
    spin-wait for each other between them: with the other core busy, a tiny UNet ran 26x slower on 2 threads
    than on 1 (shared/ECOSYSTEM.md). A 256-px UNet's operations are long. Measured with the architecture of
    google/ddpm-celebahq-256 on this 2-core CPU, one call: 4.3-4.7 s on 1 thread, 2.5-2.6 s on 2; with the
    other core busy, 4.7-5.1 s on 1 and 5.2-6.2 s on 2. So it gains 1.75x when the laptop is idle and loses
    1.2x when it is not. A thread count set by OMP_NUM_THREADS or by the caller is left as it is.
    Returns True where the model runs on every core for this reason.
    """
    cores = os.cpu_count() or 1
    size = image_side(model.unet)
    if not _chose_threads or next(model.unet.parameters()).device.type != "cpu" or size * size < LARGE_IMAGE_PIXELS:
        return False
    if torch.get_num_threads() < cores:
        torch.set_num_threads(cores)
    return True


def note_on_text(model):
    """After load_model: on any model but the bundled one, one sentence on whose the text's digits and numbers are.

    A notebook's markdown cannot change with the model: it was written for, and its numbers measured on, the
    course's digit model. The cells' output follows the model (figures, printed results, the claims' checks), and
    the sections that need digits or class labels say so when they run.
    """
    if is_bundled(model.name):
        return
    print(f"Model {model.name}: the text between the cells was written for the course's digit model "
          f"({BUNDLED_MODEL}), so where it speaks of digits or quotes a number, that is the digit model's; the "
          f"figures and printed results below are {model.name}'s, and each section that needs digits or class "
          f"labels says so when it runs.")


def describe(cfg, keys):
    """One line per knob a notebook uses: `key = value`, for the parameter cell's echo."""
    return "\n".join(f"{k:>22} = {cfg[k]!r}" for k in keys) + ("\n(COURSE_FAST=1: smoke mode)" if cfg["fast"] else "")
