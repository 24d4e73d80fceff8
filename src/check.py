"""Checkers for the notebooks' "write it yourself" exercises: one sentence back, never a traceback.

In a notebook:

    def my_forward_jump(x0, t, alphas_cumprod, noise):
        ...                                   # the student's code
    check.forward_jump(my_forward_jump)       # prints one sentence, returns a Result
    check.hint("forward_jump")                # the next hint, one per call
    check.solution("forward_jump")            # the course's own code (src/functions.py and friends)

Each exercise is one `Exercise` (section 4, notebook by notebook): the course's function as the
reference, seeded inputs that expose the usual mistakes (a batch with t = 0 and t = T - 1 side by
side, odd image sizes), and the usual mistakes themselves, each a small function with a sentence
that names it. One engine (section 3) runs the student's function on those inputs, compares its
answer with the reference's and, when they differ, with each mistake's, and says which it is, with
the size of the error. Whatever the function does (raises, returns None, NaN, the wrong shape, dtype
or device, changes its input, runs slowly) becomes that one sentence; an untouched stub is "not
attempted yet". stub_source(name) gives the stub's code for a notebook cell.

diffusers is imported only when an exercise of notebook 06 first needs its tiny UNet.
Messages use the code's notation (abar_t = alphas_cumprod[t], eps, x0-hat; see src/functions.py).
"""

from __future__ import annotations

import copy
import importlib
import inspect
import math
import numbers
import time
from dataclasses import dataclass
from typing import Callable

import torch

from src import editing
from src import functions as F

STUB_MESSAGE = "your code here"  # what an untouched stub raises: NotImplementedError("your code here")
SLOW_SECONDS = 1.0  # a student's function slower than this (all inputs together) is told so


# --- 1. What a checker returns -------------------------------------------------------------------

@dataclass(frozen=True)
class Result:
    """A checker's verdict. `message` is the one sentence it printed; a Result is truthy only when right.

    status: "right"; "mistake" (a known mistake, named in `mistake`); "wrong" (no known mistake fits);
    "problem" (it raised, or returned the wrong kind of thing); "not attempted" (an untouched stub);
    "internal" (the checker itself failed: a bug in the course, not in the student's code).
    """

    exercise: str
    status: str
    message: str
    mistake: str | None = None
    max_error: float | None = None
    seconds: float = 0.0

    @property
    def ok(self):
        return self.status == "right"

    def __bool__(self):
        return self.ok

    def _ipython_display_(self):
        """Show nothing in a notebook: the checker has printed its sentence already."""


# --- 2. How an exercise is described -------------------------------------------------------------

@dataclass(frozen=True)
class Mistake:
    """A usual wrong answer: `fn` computes it (called like the stub); `says` names it to the student."""

    name: str
    says: str
    fn: Callable


@dataclass(frozen=True)
class Exercise:
    """One "write it yourself" exercise: the stub's signature, the inputs, the reference and the mistakes.

    kind says what the stub returns: "tensor"; "tensors" (a tuple, named by `outputs`); "int";
    "ints" (timesteps); "loss" (a 0-d tensor with a gradient); "step" (a training step: its loss, and
    the parameter update that `collect(case)` reads off the UNet afterwards).
    """

    name: str  # check.<name>(fn) checks it; the stub is my_<name>
    notebook: str  # "01" ... "06"
    summary: str  # the stub's docstring summary: what it computes, which equation
    args: tuple  # the stub's arguments, in the order the checker passes them
    details: str  # the rest of the stub's docstring: shapes, what to return
    about: str  # the inputs, in words, for the "right" sentence
    cases: Callable  # () -> list of {argument: value}; seeded, so the same every call
    reference: Callable  # the course's answer, called like the stub
    shows: tuple  # "module:function" whose source solution() prints
    mistakes: tuple
    hints: tuple
    kind: str = "tensor"
    outputs: tuple = ()  # names of the returned values, for kind "tensors"
    expandable: tuple = ()  # those that may come back broadcast to a larger shape (a variance)
    mutates: tuple = ()  # arguments the function is meant to change (the UNet, the optimizer)
    collect: Callable | None = None  # kind "step": case -> (parameter update,)
    case_labels: tuple = ()  # how a sentence names each case, where its arguments do not say
    rtol: float = 1e-4
    atol: float = 1e-5
    batched: bool = True  # a (B, C, H, W) batch with a per-image abar_t: broadcasting advice applies


# --- 3. The engine: run, validate, compare, one sentence -----------------------------------------

def check_answer(name, fn, quiet=False):
    """Check `fn` against exercise `name`: print the one-sentence verdict (unless quiet), return a Result.

    Never raises (but for KeyboardInterrupt): whatever fn does becomes the sentence.
    """
    try:
        if name not in EXERCISES:
            result = Result(str(name), "internal", f"There is no exercise {name!r}: check.list_exercises() lists them.")
        else:
            result = _check(EXERCISES[name], fn)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - a checker must never stop a notebook
        result = Result(str(name), "internal", f"The checker for {name} failed itself ({_error_text(e)}): "
                                               f"that is a bug in the course, not in your code.")
    if not quiet:
        print(result.message)
    return result


def _check(ex, fn):
    """The verdict on fn, as a Result (the work behind check_answer)."""
    who = getattr(fn, "__name__", "<lambda>")
    who = "your function" if who == "<lambda>" else who
    if not callable(fn):
        return Result(ex.name, "problem", f"Not yet: check.{ex.name} needs your function itself, as in "
                                          f"check.{ex.name}(my_{ex.name}), not {_kind_of(fn)}.")
    reference_cases = ex.cases()
    expected = [_reference_answer(ex, case) for case in reference_cases]
    got, seconds, trouble = _attempt(ex, fn, ex.cases(), expected)
    slow = (f"; it took {seconds:.1f} s, though, where a check should take well under a second"
            if seconds > SLOW_SECONDS else "")
    if trouble is not None:
        status, phrase = trouble
        if status == "not attempted":
            return Result(ex.name, status, f"Not attempted yet: {who} is still the stub; write its body and run "
                                           f"this cell again (check.hint({ex.name!r}) gives a first hint).")
        return Result(ex.name, status, f"Not yet: {who} {phrase}{slow}.", seconds=seconds)
    return _verdict(ex, who, got, expected, reference_cases, seconds, slow)


def _verdict(ex, who, got, expected, reference_cases, seconds, slow):
    """The sentence for answers of the right kind: right, a named mistake, NaN, or off by how much where."""
    answers = [answer for _, answer in expected]
    error, ok, where = _error(got, answers, ex.rtol, ex.atol)
    size = dict(max_error=error, seconds=seconds)
    if ok:
        allowed = ("exactly" if ex.kind in ("int", "ints")
                   else f"within the allowed {ex.atol:.0e} + {ex.rtol:.0e} |value|")
        return Result(ex.name, "right", f"Right: {who} matches the course's answer on {ex.about} "
                                        f"(max error {_number(error)}, {allowed}){slow}.", **size)
    mistake = _matching_mistake(ex, got, expected)
    if mistake is not None:
        nan = ", and NaN in places" if _has_nan(got) else ""
        return Result(ex.name, "mistake", f"Not yet: {mistake.says} (max error {_number(error)} from the course's "
                                          f"answer{nan}){slow}.", mistake=mistake.name, **size)
    at = _where(ex, reference_cases, where, got, answers)
    if _has_nan(got):
        return Result(ex.name, "problem", f"Not yet: {who} returned NaN {at}; perhaps a square root of a negative "
                                          f"number, or 0 / 0{slow}.", **size)
    return Result(ex.name, "wrong", f"Not yet: {who} is off by up to {_number(error)} {at}, and that is none of the "
                                    f"usual mistakes; check.hint({ex.name!r}) gives a hint{slow}.", **size)


def _reference_answer(ex, case):
    """(what the course's function returns, that as the tuple of float64/int64 tensors compared)."""
    with torch.enable_grad():
        raw = ex.reference(*case.values())
    phrase, answer = _validate(ex, raw, raw, case)
    if phrase:
        raise RuntimeError(f"the course's answer itself {phrase}")
    return raw, answer


def _attempt(ex, fn, cases, expected):
    """Run fn on every case: (answers, seconds, None), or (None, seconds, (status, phrase)) at the first trouble."""
    answers, seconds = [], 0.0
    for c, (case, (want, _)) in enumerate(zip(cases, expected)):
        before = {k: v.clone() for k, v in case.items() if torch.is_tensor(v) and k not in ex.mutates}
        start = time.perf_counter()
        try:
            with torch.enable_grad():
                returned = fn(*case.values())
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # noqa: BLE001 - SystemExit and the like become a sentence too
            stub = isinstance(e, NotImplementedError) and str(e) in ("", STUB_MESSAGE)
            return None, seconds + time.perf_counter() - start, ("not attempted", "") if stub else (
                "problem", _raised(ex, e))
        seconds += time.perf_counter() - start
        if returned is Ellipsis:
            return None, seconds, ("not attempted", "")
        changed = [k for k, v in before.items() if not _same(case[k], v)]
        if changed:
            return None, seconds, ("problem", f"changed its argument {changed[0]} in place: work on a copy "
                                              f"({changed[0]}.clone()) or build a new tensor")
        phrase, answer = _validate(ex, returned, want, case)
        if phrase:
            label = f" ({_case_label(ex, cases, c)})" if len(cases) > 1 else ""
            return None, seconds, ("problem", phrase + label)
        answers.append(answer)
    return answers, seconds, None


def _matching_mistake(ex, got, expected):
    """The known mistake whose answers fit `got` best (to the exercise's tolerance), or None."""
    best, best_error = None, math.inf
    for mistake in ex.mistakes:
        try:
            answers, _, trouble = _attempt(ex, mistake.fn, ex.cases(), expected)
        except Exception:  # noqa: BLE001 - a mistake that cannot run on these inputs fits nothing
            continue
        if trouble is None:
            error, ok, _ = _error(got, answers, ex.rtol, ex.atol)
            if ok and error < best_error:
                best, best_error = mistake, error
    return best


def _has_nan(answers):
    """Whether any value of any case's answer is NaN."""
    return any(bool(a.isnan().any()) for case in answers for a in case if a.is_floating_point())


def _same(now, before):
    """Whether a tensor argument is unchanged (NaN counts as equal to NaN)."""
    def plain(x):
        return x.nan_to_num(0.0) if x.is_floating_point() else x

    return now.shape == before.shape and now.dtype == before.dtype and torch.equal(plain(now), plain(before))


# Advice for the errors students meet most, keyed by a piece of the error message.
_ADVICE = (
    ("must match the size of tensor", "a per-image value such as alphas_cumprod[t] has shape (B,) and needs "
                                      ".view(-1, 1, 1, 1) to broadcast over a (B, C, H, W) batch"),
    ("only one element tensors can be converted", "t holds one step per image, so it cannot become one Python "
                                                  "number: index with the whole tensor, alphas_cumprod[t]"),
    ("positional argument", "the checker calls it as {call}"),
    ("unexpected keyword argument", "the checker calls it as {call}"),
    ("does not require grad", "loss.backward() needs a loss with a gradient: no torch.no_grad(), .detach() or "
                              ".item() on the way to it"),
    ("out of bounds", "an index is out of range: code counts t from 0 to T - 1, with T = len(alphas_cumprod)"),
    ("out of range", "an index is out of range: code counts t from 0 to T - 1, with T = len(alphas_cumprod)"),
)


def _raised(ex, e):
    """'raised TypeError: ...; advice' for an exception from the student's function."""
    if isinstance(e, SystemExit):
        return "called exit() (SystemExit): return the answer instead"
    text = _error_text(e)
    for piece, advice in _ADVICE:
        if piece in str(e) and (ex.batched or "per-image" not in advice):
            return f"raised {text}; " + advice.format(call=f"my_{ex.name}({', '.join(ex.args)})")
    return f"raised {text}"


def _error_text(e):
    """'TypeError: first line of the message', kept short and without a final full stop."""
    lines = str(e).strip().splitlines()
    message = lines[0].strip().rstrip(".") if lines else ""
    message = message if len(message) <= 160 else message[:157] + "..."
    return f"{type(e).__name__}: {message}" if message else type(e).__name__


def _number(x):
    """An error for a sentence: 1000 for a whole number, else two significant digits (0.31, 2.4e-07)."""
    return str(int(x)) if math.isfinite(x) and x == int(x) and abs(x) < 1e6 else f"{x:.2g}"


def _kind_of(x):
    """A few words for what a value is: 'None', 'a float (0.5)', 'a float32 tensor of shape (4,)'."""
    if x is None:
        return "None"
    if torch.is_tensor(x):
        return f"a {_dtype(x)} tensor of shape {tuple(x.shape)}"
    if isinstance(x, (bool, numbers.Number)):
        return f"a {type(x).__name__} ({x!r})"
    if isinstance(x, (tuple, list)):
        return f"a {type(x).__name__} of {len(x)} values"
    name = type(x).__name__
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


def _dtype(x):
    return str(x.dtype).replace("torch.", "")


def _validate(ex, got, want, case):
    """(phrase, None) saying what is wrong with `got`, or (None, answer): got as a tuple of float64/int64 tensors."""
    if got is None:
        return "returned None: the return statement is missing", None
    if ex.kind == "tensor":
        phrase = _tensor_phrase(ex, got, want, None)
        return (phrase, None) if phrase else (None, (got.detach().double(),))
    if ex.kind == "tensors":
        n, names = len(ex.outputs), ", ".join(ex.outputs)
        if not isinstance(got, (tuple, list)) or len(got) != n:
            what = f"{len(got)} values" if isinstance(got, (tuple, list)) else _kind_of(got)
            return f"returned {what}, where {n} values belong: ({names})", None
        phrase = next(filter(None, (_tensor_phrase(ex, g, w, name) for name, g, w in zip(ex.outputs, got, want))), None)
        return (phrase, None) if phrase else (None, tuple(g.detach().double() for g in got))
    if ex.kind == "int":
        value = _as_int(got)
        if value is None:
            return f"returned {_kind_of(got)}, not a whole number: return an int", None
        return None, (torch.tensor([value]),)
    if ex.kind == "ints":
        values = _as_ints(got)
        if values is None:
            return (f"returned {_kind_of(got)}: return whole-number timesteps (a torch.long tensor or a list "
                    f"of ints), which can index alphas_cumprod"), None
        if len(values) != len(want):
            return f"returned {len(values)} timesteps, where {len(want)} belong", None
        return None, (torch.tensor(values, dtype=torch.long),)
    return _loss_phrase(ex, got, want, case)


def _tensor_phrase(ex, got, want, name):
    """What is wrong with one returned tensor (None if nothing): its type, shape, dtype or device."""
    what = name or "a tensor"
    if not torch.is_tensor(got):
        return f"returned {_kind_of(got)}" + (f" as {name}" if name else "") + ", not a torch tensor"
    expand = name in ex.expandable and _broadcasts(want.shape, got.shape)
    if got.shape != want.shape and not expand:
        grew = got.numel() > want.numel() or got.shape == want.shape[:1]  # what a missing .view(-1, 1, 1, 1) gives
        batch = ("; a per-image value such as alphas_cumprod[t] must have shape (B, 1, 1, 1) to broadcast over "
                 "the batch") if ex.batched and grew else ""
        return f"returned {what} of shape {tuple(got.shape)}, where {tuple(want.shape)} belongs{batch}"
    if got.dtype != want.dtype:
        return f"returned {what} of dtype {_dtype(got)}, where {_dtype(want)} belongs, like the inputs'"
    if got.device != want.device:
        return f"returned {what} on {got.device}, where the inputs are on {want.device}"
    return None


def _loss_phrase(ex, got, want, case):
    """Validation for kinds "loss" (a 0-d tensor with a gradient) and "step" (the loss of one training step)."""
    if isinstance(got, numbers.Real) and not isinstance(got, bool):
        if ex.kind == "loss":
            return ("returned a Python number: return the loss tensor itself (no .item() or float()), so that "
                    "loss.backward() can run"), None
        loss = torch.tensor(float(got), dtype=torch.float64)
    elif not torch.is_tensor(got) or got.numel() != 1 or not got.is_floating_point():
        return f"returned {_kind_of(got)}, where the loss belongs: one number, the mean over the batch", None
    elif ex.kind == "loss" and not got.requires_grad:
        return ("returned a loss without a gradient: compute it without torch.no_grad() or .detach(), so that "
                "loss.backward() can run"), None
    elif ex.kind == "loss" and got.dtype != want.dtype:
        return f"returned a loss of dtype {_dtype(got)}, where {_dtype(want)} belongs", None
    else:
        loss = got.detach().double().reshape(())
    return None, (loss, *(ex.collect(case) if ex.collect else ()))


def _broadcasts(small, large):
    """Whether shape `small` broadcasts to shape `large` (e.g. a (B, 1, 1, 1) variance to (B, C, H, W))."""
    try:
        return torch.broadcast_shapes(small, large) == torch.Size(large)
    except RuntimeError:
        return False


def _as_int(x):
    """x as a Python int, or None where it is not one whole number (a float, a bool, several values)."""
    if isinstance(x, numbers.Integral) and not isinstance(x, bool):  # int, and NumPy's integers
        return int(x)
    if torch.is_tensor(x) and x.numel() == 1 and _integer_dtype(x):
        return int(x.item())
    return None


def _as_ints(x):
    """x as a list of ints (a 1-D integer tensor, or a list/tuple of whole numbers), or None."""
    if torch.is_tensor(x):
        return [int(v) for v in x.tolist()] if x.dim() == 1 and _integer_dtype(x) else None
    if isinstance(x, (list, tuple)):
        values = [_as_int(v) for v in x]
        return None if any(v is None for v in values) else values
    return None


def _integer_dtype(x):
    return not (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool)


def _error(got, want, rtol, atol):
    """(max |got - want|, whether every value is within atol + rtol |want|, where the worst value is), all cases.

    NaN counts as equal to NaN only, so a mistake that gives NaN can be named. The max is over the values
    that are not NaN (or inf); `where` is (case, output, index) of the worst value, a NaN first.
    """
    worst, worst_any, ok, where = -1.0, -1.0, True, None
    for c, (got_case, want_case) in enumerate(zip(got, want)):
        for k, (g, w) in enumerate(zip(got_case, want_case)):
            g, w = torch.broadcast_tensors(g.double(), w.double())
            diff = torch.where((g == w) | (g.isnan() & w.isnan()), 0.0,
                               (g - w).abs().nan_to_num(nan=math.inf, posinf=math.inf))
            ok = ok and bool((diff <= atol + rtol * w.abs().nan_to_num(nan=0.0, posinf=0.0)).all())
            if diff.numel() and (where is None or float(diff.max()) > worst_any):
                worst_any = float(diff.max())
                where = (c, k, tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape)))
            finite = diff[diff.isfinite()]
            worst = max(worst, float(finite.max())) if finite.numel() else worst
    return max(worst, 0.0), ok, where


def _case_label(ex, cases, c):
    """How a sentence names case c: its label, or its number-valued arguments ('with eta = 0.7')."""
    if ex.case_labels:
        return ex.case_labels[c]
    values = [f"{k} = {v}" for k, v in cases[c].items() if isinstance(v, numbers.Real) and not isinstance(v, bool)]
    return "with " + ", ".join(values) if values else f"in case {c + 1}"


def _where(ex, cases, where, got, want):
    """'at [2, 0, 3, 4] (0.53 where 0.41 belongs), with eta = 0.7': where the largest error is."""
    c, k, index = where
    g, w = torch.broadcast_tensors(got[c][k], want[c][k])
    shown = (lambda v: f"{v:.4g}") if g.is_floating_point() else str
    spot = f"at position {index[0]}" if ex.kind == "ints" else f"at {list(index)}" if index else ""
    names = ex.outputs or (("the loss", "the parameter update") if ex.kind == "step" else ())
    output = f" in {names[k]}" if len(names) > 1 else ""
    label = f", {_case_label(ex, cases, c)}" if len(cases) > 1 else ""
    return f"{spot}{output} ({shown(g[index].item())} where {shown(w[index].item())} belongs){label}".strip()


# --- 4. The exercises ----------------------------------------------------------------------------
# Inputs are seeded and small. A batch holds t = 0 and t = T - 1 beside middle values, in no order, so an
# off-by-one index, a missing broadcast or one t for the whole batch all show; images are 3x5x7 (odd, and
# no side equal to the batch size, so a wrong broadcast raises instead of quietly giving numbers).

TIMES = (0, 999, 10, 500)  # one t per image of the batch
SHAPE = (4, 3, 5, 7)  # (B, C, H, W)
REPLAY_SEED = 11  # noise handed to the student is what the course's function draws from a generator of this seed


def _generator(seed):
    return torch.Generator().manual_seed(seed)


def _noise(shape, seed):
    """N(0, I) noise, seeded."""
    return torch.randn(shape, generator=_generator(seed))


def _images(shape, seed):
    """Uniform values in [-1, 1], seeded: stand-ins for images x_0."""
    return torch.rand(shape, generator=_generator(seed)) * 2 - 1


def _schedule(name="linear", T=1000):
    """abar_0 ... abar_{T-1} of one of the course's schedules."""
    return F.alphas_cumprod_from_betas(F.make_betas(name, T))


def _at(values, t):
    """values[t] shaped (B, 1, 1, 1), one per image; t = -1 gives 1, which stands for abar_{-1}."""
    t = torch.as_tensor(t)
    return torch.where(t >= 0, values[t.clamp(min=0)], torch.ones(())).view(-1, 1, 1, 1)


def _jump(x0, alpha_prod_t, noise):
    """sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (DDPM Eq. 4), for the mistakes to build on."""
    return alpha_prod_t.sqrt() * x0 + (1 - alpha_prod_t).sqrt() * noise


# --- 01 The forward process ---

FORWARD_JUMP = Exercise(
    name="forward_jump", notebook="01", args=("x0", "t", "alphas_cumprod", "noise"),
    summary="Jump x_0 -> x_t in one go (DDPM Eq. 4): x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps.",
    details="x0, noise: (B, C, H, W); t: (B,) integer steps, one per image; alphas_cumprod: (T,) abar.\n"
            "Returns x_t, shaped like x0.",
    about="4 images of 3x5x7 with t = 0, 999, 10, 500",
    cases=lambda: [dict(x0=_images(SHAPE, 1), t=torch.tensor(TIMES), alphas_cumprod=_schedule(),
                        noise=_noise(SHAPE, 2))],
    reference=lambda x0, t, alphas_cumprod, noise: F.forward_jump(x0, t, alphas_cumprod, noise=noise),
    shows=("src.functions:forward_jump",),
    mistakes=(
        Mistake("abar_for_sqrt_abar", "you used abar_t where sqrt(abar_t) belongs, in front of x_0",
                lambda x0, t, a, noise: _at(a, t) * x0 + (1 - _at(a, t)).sqrt() * noise),
        Mistake("variance_for_std", "you used 1 - abar_t where sqrt(1 - abar_t) belongs, in front of the noise",
                lambda x0, t, a, noise: _at(a, t).sqrt() * x0 + (1 - _at(a, t)) * noise),
        Mistake("one_minus_sqrt", "you wrote 1 - sqrt(abar_t) for sqrt(1 - abar_t), in front of the noise",
                lambda x0, t, a, noise: _at(a, t).sqrt() * x0 + (1 - _at(a, t).sqrt()) * noise),
        Mistake("index_t_minus_1", "you used abar_{t-1} (index t - 1) where abar_t belongs: code counts t from 0, "
                                   "and alphas_cumprod[t] is already abar_t",
                lambda x0, t, a, noise: _jump(x0, a[t - 1].view(-1, 1, 1, 1), noise)),
        Mistake("noise_sign", "you subtracted the noise term; Eq. 4 adds sqrt(1 - abar_t) eps",
                lambda x0, t, a, noise: _jump(x0, _at(a, t), -noise)),
        Mistake("one_t_for_all", "you used the first image's t for the whole batch: each image has its own t, so "
                                 "take alphas_cumprod[t] and reshape it to (B, 1, 1, 1)",
                lambda x0, t, a, noise: _jump(x0, a[t[0]], noise))),
    hints=("alphas_cumprod[t] picks abar_t for every image at once: t is a (B,) tensor, so it has shape (B,).",
           "Reshape it with .view(-1, 1, 1, 1), so that each image is multiplied by its own number.",
           "x_t = sqrt(abar_t) * x0 + sqrt(1 - abar_t) * noise: both are square roots (.sqrt())."))


def _step(x_prev, beta_t, noise):
    """sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps (DDPM Eq. 2), for the mistakes to build on."""
    return (1 - beta_t).sqrt() * x_prev + beta_t.sqrt() * noise


FORWARD_STEP = Exercise(
    name="forward_step", notebook="01", args=("x_prev", "t", "betas", "noise"),
    summary="One forward step x_{t-1} -> x_t (DDPM Eq. 2): x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps.",
    details="x_prev, noise: (B, C, H, W); t: (B,) integer steps, one per image; betas: (T,) beta.\n"
            "Returns x_t, shaped like x_prev.",
    about="4 images of 3x5x7 with t = 0, 999, 10, 500",
    cases=lambda: [dict(x_prev=_noise(SHAPE, 1), t=torch.tensor(TIMES), betas=F.make_betas("linear", 1000),
                        noise=_noise(SHAPE, 2))],
    reference=lambda x_prev, t, betas, noise: F.forward_step(x_prev, t, betas, noise=noise),
    shows=("src.functions:forward_step",),
    mistakes=(
        Mistake("alpha_no_sqrt", "you used 1 - beta_t where sqrt(1 - beta_t) belongs, in front of x_{t-1}",
                lambda x, t, b, noise: (1 - _at(b, t)) * x + _at(b, t).sqrt() * noise),
        Mistake("beta_no_sqrt", "you used beta_t where sqrt(beta_t) belongs, in front of the noise",
                lambda x, t, b, noise: (1 - _at(b, t)).sqrt() * x + _at(b, t) * noise),
        Mistake("abar_for_alpha", "you used abar_t, the jump from x_0 (Eq. 4), where one step's alpha_t = "
                                  "1 - beta_t belongs: no cumprod in a single step",
                lambda x, t, b, noise: _jump(x, _at(torch.cumprod(1 - b, 0), t), noise)),
        Mistake("index_t_minus_1", "you used beta_{t-1} (index t - 1) where beta_t belongs: betas[t] is already "
                                   "beta_t", lambda x, t, b, noise: _step(x, b[t - 1].view(-1, 1, 1, 1), noise)),
        Mistake("noise_sign", "you subtracted the noise term; Eq. 2 adds sqrt(beta_t) eps",
                lambda x, t, b, noise: _step(x, _at(b, t), -noise))),
    hints=("betas[t] is beta_t for each image; reshape it to (B, 1, 1, 1) to broadcast over the batch.",
           "One step keeps sqrt(1 - beta_t) of x_{t-1} and adds sqrt(beta_t) of the noise: the variances add to 1.",
           "Use betas alone: a cumprod would be the jump from x_0 (Eq. 4), not one step."))


def _schedules(*names):
    return lambda: [dict(alphas_cumprod=_schedule(name)) for name in names]


LOG_SNR = Exercise(
    name="log_snr", notebook="01", args=("alphas_cumprod",),
    summary="log SNR_t for every t (Kingma et al. 2021): SNR_t = abar_t / (1 - abar_t).",
    details="alphas_cumprod: (T,) abar.\nReturns the (T,) natural log of SNR_t.",
    about="the linear and cosine schedules (T = 1000)", cases=_schedules("linear", "cosine"),
    case_labels=("for the linear schedule", "for the cosine schedule"), batched=False,
    reference=lambda alphas_cumprod: F.snr(alphas_cumprod).log(),
    shows=("src.functions:snr",),
    mistakes=(
        Mistake("log_abar", "you took log(abar_t) alone; the SNR divides the signal's variance abar_t by the "
                            "noise's, 1 - abar_t", lambda a: a.log()),
        Mistake("inverted", "you inverted the ratio: SNR_t = abar_t / (1 - abar_t), signal over noise",
                lambda a: ((1 - a) / a).log()),
        Mistake("log10", "you used log10; the course's log SNR is the natural log (torch.log)",
                lambda a: (a / (1 - a)).log10()),
        Mistake("no_log", "you returned SNR_t itself; the exercise asks for its log", lambda a: a / (1 - a)),
        Mistake("std_ratio", "you took the log of sqrt(abar_t) / sqrt(1 - abar_t), a ratio of standard "
                             "deviations; the SNR is the ratio of variances, abar_t / (1 - abar_t)",
                lambda a: (a.sqrt() / (1 - a).sqrt()).log())),
    hints=("SNR_t = abar_t / (1 - abar_t): the signal's variance over the noise's.",
           "torch.log is the natural log; the answer has one value per t, shape (T,)."))


def _first_negative_log_snr(alphas_cumprod):
    """The first t with log SNR_t < 0: SNR_t = abar_t / (1 - abar_t) < 1, i.e. abar_t < 1/2."""
    return int(torch.nonzero(F.snr(alphas_cumprod) < 1)[0])


SNR_CROSSING = Exercise(
    name="snr_crossing", notebook="01", args=("alphas_cumprod",),
    summary="The first t at which log SNR_t < 0, i.e. where the noise starts to outweigh the signal.",
    details="alphas_cumprod: (T,) abar.\nReturns that t as a Python int.",
    about="the linear, cosine and sigmoid schedules (T = 1000)", cases=_schedules("linear", "cosine", "sigmoid"),
    case_labels=("for the linear schedule", "for the cosine schedule", "for the sigmoid schedule"),
    kind="int", batched=False,
    reference=_first_negative_log_snr,
    shows=("src.functions:snr", "src.check:_first_negative_log_snr"),
    mistakes=(
        Mistake("last_positive", "you returned the last t where log SNR_t is still above 0, one before the first "
                                 "t where it is below", lambda a: _first_negative_log_snr(a) - 1),
        Mistake("one_past", "you returned one t too many (counting from 1, as the papers do?); code counts t "
                            "from 0", lambda a: _first_negative_log_snr(a) + 1),
        Mistake("sqrt_abar_half", "you looked for sqrt(abar_t) < 1/2; log SNR_t < 0 means abar_t < 1/2",
                lambda a: int(torch.nonzero(a.sqrt() < 0.5)[0])),
        Mistake("counted", "you counted the steps with log SNR_t < 0; the exercise asks for the first such t",
                lambda a: int((a / (1 - a) < 1).sum()))),
    hints=("log SNR_t < 0 exactly where abar_t / (1 - abar_t) < 1, that is where abar_t < 1/2.",
           "torch.nonzero(mask)[0] is the first index where a (T,) boolean tensor is True; int() makes it an int."))


# --- 02 The reverse process ---

PREDICT_X0 = Exercise(
    name="predict_x0", notebook="02", args=("x_t", "pred_epsilon", "alpha_prod_t"),
    summary="x0-hat from the noise prediction (DDPM Eq. 15): (x_t - sqrt(1 - abar_t) eps-hat) / sqrt(abar_t).",
    details="x_t, pred_epsilon: (B, C, H, W); alpha_prod_t: (B, 1, 1, 1) abar_t, one per image.\n"
            "Returns x0-hat, shaped like x_t.",
    about="4 images of 3x5x7 at t = 0, 999, 10, 500",
    cases=lambda: [dict(x_t=_noise(SHAPE, 3), pred_epsilon=_noise(SHAPE, 4), alpha_prod_t=_at(_schedule(), TIMES))],
    reference=lambda x_t, pred_epsilon, alpha_prod_t: F.predict_x0(x_t, pred_epsilon, alpha_prod_t),
    shows=("src.functions:predict_x0",),
    mistakes=(
        Mistake("abar_for_sqrt_abar", "you divided by abar_t where sqrt(abar_t) belongs",
                lambda x, eps, a: (x - (1 - a).sqrt() * eps) / a),
        Mistake("variance_for_std", "you used 1 - abar_t where sqrt(1 - abar_t) belongs, in front of eps-hat",
                lambda x, eps, a: (x - (1 - a) * eps) / a.sqrt()),
        Mistake("one_minus_sqrt", "you wrote 1 - sqrt(abar_t) for sqrt(1 - abar_t), in front of eps-hat",
                lambda x, eps, a: (x - (1 - a.sqrt()) * eps) / a.sqrt()),
        Mistake("eps_sign", "you added the noise term; x0-hat subtracts sqrt(1 - abar_t) eps-hat from x_t",
                lambda x, eps, a: (x + (1 - a).sqrt() * eps) / a.sqrt()),
        Mistake("no_division", "you forgot to divide by sqrt(abar_t): x_t - sqrt(1 - abar_t) eps-hat is only "
                               "sqrt(abar_t) x_0", lambda x, eps, a: x - (1 - a).sqrt() * eps),
        Mistake("multiplied", "you multiplied by sqrt(abar_t) where Eq. 15 divides by it",
                lambda x, eps, a: (x - (1 - a).sqrt() * eps) * a.sqrt())),
    hints=("Solve x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (Eq. 4) for x_0, with eps-hat in place of eps.",
           "alpha_prod_t is already shaped (B, 1, 1, 1): it broadcasts over the batch as it is.",
           "(x_t - (1 - alpha_prod_t).sqrt() * pred_epsilon) / alpha_prod_t.sqrt()"))


def _posterior(x_t, x0, a_t, a_prev, x0_coeff=None, x_t_coeff=None, variance=None):
    """mu~_t and beta~_t (DDPM Eq. 7) with one part swapped for a usual mistake; each part gets (a_t, a_prev)."""
    beta_t = 1 - a_t / a_prev
    c0 = a_prev.sqrt() * beta_t / (1 - a_t) if x0_coeff is None else x0_coeff(a_t, a_prev)
    ct = (a_t / a_prev).sqrt() * (1 - a_prev) / (1 - a_t) if x_t_coeff is None else x_t_coeff(a_t, a_prev)
    var = (1 - a_prev) / (1 - a_t) * beta_t
    return c0 * x0 + ct * x_t, var if variance is None else variance(var, beta_t)


POSTERIOR_MEAN_VARIANCE = Exercise(
    name="posterior_mean_variance", notebook="02", args=("x_t", "x0", "alpha_prod_t", "alpha_prod_t_prev"),
    summary="Mean mu~_t and variance beta~_t of q(x_{t-1} | x_t, x_0) (DDPM Eq. 6-7).",
    details="x_t, x0: (B, C, H, W); alpha_prod_t, alpha_prod_t_prev: (B, 1, 1, 1) abar_t and abar_{t-1}\n"
            "(abar_{-1} = 1). alpha_t = abar_t / abar_{t-1}, beta_t = 1 - alpha_t.\n"
            "Returns (posterior_mean, posterior_variance).",
    about="4 images of 3x5x7 at t = 0, 999, 10, 500",
    cases=lambda: [dict(x_t=_noise(SHAPE, 3), x0=_images(SHAPE, 1), alpha_prod_t=_at(_schedule(), TIMES),
                        alpha_prod_t_prev=_at(_schedule(), torch.tensor(TIMES) - 1))],
    kind="tensors", outputs=("posterior_mean", "posterior_variance"), expandable=("posterior_variance",),
    reference=lambda x_t, x0, a_t, a_prev: F.posterior_mean_variance(x_t, x0, a_t, a_prev),
    shows=("src.functions:posterior_mean_variance",),
    mistakes=(
        Mistake("variance_beta", "you returned beta_t as the variance; the posterior's is "
                                 "beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t",
                lambda *args: _posterior(*args, variance=lambda var, beta_t: beta_t)),
        Mistake("variance_as_std", "you returned sqrt(beta~_t), a standard deviation; the variance is beta~_t "
                                   "itself", lambda *args: _posterior(*args, variance=lambda var, beta_t: var.sqrt())),
        Mistake("x0_coeff_no_sqrt", "you used abar_{t-1} where sqrt(abar_{t-1}) belongs, in front of x_0",
                lambda *args: _posterior(*args, x0_coeff=lambda a, p: p * (1 - a / p) / (1 - a))),
        Mistake("abar_for_alpha", "you used abar_t where alpha_t = abar_t / abar_{t-1} belongs, in front of x_t",
                lambda *args: _posterior(*args, x_t_coeff=lambda a, p: a.sqrt() * (1 - p) / (1 - a))),
        Mistake("alpha_no_sqrt", "you used alpha_t where sqrt(alpha_t) belongs, in front of x_t",
                lambda *args: _posterior(*args, x_t_coeff=lambda a, p: (a / p) * (1 - p) / (1 - a))),
        Mistake("swapped_coefficients", "you swapped the two coefficients: sqrt(abar_{t-1}) beta_t / (1 - abar_t) "
                                        "multiplies x_0, and sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t",
                lambda x_t, x0, a, p: _posterior(x0, x_t, a, p))),
    hints=("The inputs are the two abar's: alpha_t = alpha_prod_t / alpha_prod_t_prev and beta_t = 1 - alpha_t.",
           "mu~_t = sqrt(abar_{t-1}) beta_t / (1 - abar_t) * x0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) * x_t.",
           "beta~_t = (1 - abar_{t-1}) / (1 - abar_t) * beta_t is a variance: no square root."))


def _ddim_cases():
    """An S = 50 sampler's steps t -> t - 20, the last one to abar = 1; deterministic and stochastic."""
    abar, t = _schedule(), torch.tensor([999, 500, 20, 0])
    tensors = dict(x_t=_noise(SHAPE, 3), pred_epsilon=_noise(SHAPE, 4), alpha_prod_t=_at(abar, t),
                   alpha_prod_t_prev=_at(abar, t - 20))
    return [dict(tensors, eta=eta, noise=_noise(SHAPE, 5)) for eta in (0.0, 0.7)]


def _ddim(x_t, eps, a_t, a_prev, eta, noise, sign=1, x0_coeff=None, sigma=None, in_direction=None, noise_term=True):
    """A DDIM step (DDIM Eq. 12, sigma_t from Eq. 16) with one part swapped for a usual mistake."""
    pred_original_sample = (x_t - sign * (1 - a_t).sqrt() * eps) / a_t.sqrt()
    std_dev_t = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).sqrt() if sigma is None else sigma(a_t, a_prev)
    taken = std_dev_t**2 if in_direction is None else in_direction(std_dev_t)
    prev = (a_prev.sqrt() if x0_coeff is None else x0_coeff) * pred_original_sample + (1 - a_prev - taken).sqrt() * eps
    return prev + std_dev_t * noise if noise_term else prev


DDIM_STEP = Exercise(
    name="ddim_step", notebook="02", args=("x_t", "pred_epsilon", "alpha_prod_t", "alpha_prod_t_prev", "eta", "noise"),
    summary="One DDIM step x_t -> x_{t-1} (DDIM Eq. 12, with sigma_t(eta) from Eq. 16).",
    details="x_t, pred_epsilon, noise: (B, C, H, W); alpha_prod_t, alpha_prod_t_prev: (B, 1, 1, 1) abar at this\n"
            "step and at the next one the sampler visits; eta: 0 (DDIM) ... 1.\n"
            "Returns x_{t-1} = sqrt(abar_{t-1}) x0-hat + sqrt(1 - abar_{t-1} - sigma_t^2) eps-hat + sigma_t noise.",
    about="4 images of 3x5x7 stepping t = 999, 500, 20, 0 to t - 20, with eta = 0 and 0.7", cases=_ddim_cases,
    reference=lambda x_t, eps, a_t, a_prev, eta, noise: F.ddim_step(x_t, eps, a_t, a_prev, eta=eta, noise=noise)[0],
    shows=("src.functions:ddim_sigma", "src.functions:ddim_step"),
    mistakes=(
        Mistake("returned_x0_hat", "you returned x0-hat, the predicted x_0, instead of x_{t-1}",
                lambda x, eps, a, p, eta, noise: (x - (1 - a).sqrt() * eps) / a.sqrt()),
        Mistake("sigma_for_sigma2", "you used sigma_t where sigma_t^2 belongs, in sqrt(1 - abar_{t-1} - sigma_t^2)",
                lambda *args: _ddim(*args, in_direction=lambda s: s)),
        Mistake("no_noise_term", "you left out the random term sigma_t * noise (it matters when eta > 0)",
                lambda *args: _ddim(*args, noise_term=False)),
        Mistake("sigma_without_eta", "your sigma_t leaves out the factor eta: eta = 0 must give sigma_t = 0",
                lambda *args: _ddim(*args, sigma=lambda a, p: ((1 - p) / (1 - a) * (1 - a / p)).sqrt())),
        Mistake("beta_for_beta_tilde", "you used beta_t = 1 - abar_t / abar_{t-1} inside sigma_t where beta~_t "
                                       "belongs: Eq. 16 also has the factor (1 - abar_{t-1}) / (1 - abar_t)",
                lambda x, eps, a, p, eta, noise: _ddim(x, eps, a, p, eta, noise,
                                                       sigma=lambda a, p: eta * (1 - a / p).sqrt())),
        Mistake("abar_for_sqrt_abar", "you used abar_{t-1} where sqrt(abar_{t-1}) belongs, in front of x0-hat",
                lambda x, eps, a, p, eta, noise: _ddim(x, eps, a, p, eta, noise, x0_coeff=p)),
        Mistake("eps_sign", "you added the noise term in x0-hat; it is (x_t - sqrt(1 - abar_t) eps-hat) / "
                            "sqrt(abar_t)", lambda *args: _ddim(*args, sign=-1))),
    hints=("First x0-hat = (x_t - sqrt(1 - abar_t) eps-hat) / sqrt(abar_t) (DDPM Eq. 15).",
           "sigma_t = eta * sqrt((1 - abar_{t-1}) / (1 - abar_t)) * sqrt(1 - abar_t / abar_{t-1}) (DDIM Eq. 16).",
           "x_{t-1} = sqrt(abar_{t-1}) x0-hat + sqrt(1 - abar_{t-1} - sigma_t^2) eps-hat + sigma_t noise; "
           "return it alone."))

DDIM_TIMESTEPS = Exercise(
    name="ddim_timesteps", notebook="02", args=("num_inference_steps", "num_train_timesteps"),
    summary="The timesteps tau_S > ... > tau_1 an S-step sampler visits ('leading' spacing).",
    details="Every (T // S)-th step, from the top down to 0, with S = num_inference_steps, T = num_train_timesteps.\n"
            "Returns S integer timesteps (a torch.long tensor), largest first.",
    about="S = 10, 7, 1000 and 1 with T = 1000",
    cases=lambda: [dict(num_inference_steps=S, num_train_timesteps=1000) for S in (10, 7, 1000, 1)],
    kind="ints", batched=False,
    reference=lambda S, T: F.ddim_timesteps(num_inference_steps=S, num_train_timesteps=T),
    shows=("src.functions:ddim_timesteps",),
    mistakes=(
        Mistake("ascending", "your timesteps run upwards; the sampler visits them from the noisiest down to t = 0",
                lambda S, T: torch.arange(S) * (T // S)),
        Mistake("trailing", "you stepped down from T - 1 ('trailing' spacing); the course's 'leading' "
                            "spacing is every (T // S)-th step counted up from 0",
                lambda S, T: F.ddim_timesteps(S, T, timestep_spacing="trailing")),
        Mistake("linspace", "you spread them evenly from T - 1 to 0 (linspace); the course's spacing is every "
                            "(T // S)-th step counted up from 0",
                lambda S, T: F.ddim_timesteps(S, T, timestep_spacing="linspace")),
        Mistake("from_one", "your timesteps are one step of T // S too high (counting from 1, as the papers do?): "
                            "the last one the sampler visits is t = 0", lambda S, T: torch.arange(S, 0, -1) * (T // S)),
        Mistake("fractional_step", "you stepped by T / S and rounded down; the course's step is the whole number "
                                   "T // S", lambda S, T: (torch.arange(S - 1, -1, -1) * (T / S)).long())),
    hints=("The step is the whole number num_train_timesteps // num_inference_steps.",
           "They run downwards, from (S - 1) * step to 0: torch.arange(S - 1, -1, -1) * step."))


# --- 03 Similar noise ---

MIX_NOISE = Exercise(
    name="mix_noise", notebook="03", args=("noise", "s", "other"),
    summary="A noise that stays N(0, I): sqrt(1 - s^2) noise + s other.",
    details="noise, other: two independent (B, C, H, W) N(0, I) noises; s: a number in [0, 1].\n"
            "Returns the mix, shaped like noise.",
    about="two 3x5x7 noises with s = 0.3 and 0.8", batched=False,
    cases=lambda: [dict(noise=_noise((2, 3, 5, 7), 1), s=s, other=_noise((2, 3, 5, 7), 2)) for s in (0.3, 0.8)],
    reference=lambda noise, s, other: F.mix_noise(noise, s, other=other),
    shows=("src.functions:mix_noise",),
    mistakes=(
        Mistake("linear", "you mixed linearly, (1 - s) noise + s other: its variance (1 - s)^2 + s^2 is below 1, "
                          "so it is not N(0, I)", lambda n, s, o: (1 - s) * n + s * o),
        Mistake("variance_weights", "you weighted by sqrt(1 - s) and sqrt(s): that is N(0, I) too, but the "
                                    "course's s is other's weight, not its share of the variance",
                lambda n, s, o: (1 - s) ** 0.5 * n + s**0.5 * o),
        Mistake("no_sqrt", "you left out the square root: (1 - s^2) noise + s other has a variance below 1",
                lambda n, s, o: (1 - s**2) * n + s * o),
        Mistake("swapped", "you swapped the weights: s = 0 must give noise itself, so s multiplies other",
                lambda n, s, o: s * n + (1 - s**2) ** 0.5 * o)),
    hints=("For independent N(0, I) noises a and b, c1 a + c2 b is N(0, (c1^2 + c2^2) I).",
           "With c2 = s, the weight c1 = sqrt(1 - s^2) keeps the variance at 1."))


def _patch_cases():
    """Two patches; `fresh` is what F.patch_noise draws for the patch from a generator seeded REPLAY_SEED."""
    return [dict(noise=_noise((2, 3, 7, 9), 1), patch_size=size, x=x, y=y,
                 fresh=torch.randn((2, 3, size, size), generator=_generator(REPLAY_SEED)))
            for size, x, y in ((3, 2, 4), (2, 1, 5))]


def _patched(noise, patch_size, x, y, fresh, rows_first=True, add=False, base=None):
    """A patched copy with a usual mistake: x and y swapped, the patch added, or zeros outside it."""
    out = noise.clone() if base is None else base(noise)
    r, c = (y, x) if rows_first else (x, y)
    part = (..., slice(r, r + patch_size), slice(c, c + patch_size))
    out[part] = out[part] + fresh if add else fresh
    return out


PATCH_NOISE = Exercise(
    name="patch_noise", notebook="03", args=("noise", "patch_size", "x", "y", "fresh"),
    summary="A copy of `noise` whose square patch [y:y+size, x:x+size] is replaced by `fresh`.",
    details="noise: (B, C, H, W); x: the patch's left column, y: its top row; fresh: (B, C, size, size) values.\n"
            "Returns the new noise; `noise` itself stays as it was.",
    about="noises of 3x7x9 with patches of 3 at (x, y) = (2, 4) and of 2 at (1, 5)", cases=_patch_cases,
    batched=False,
    reference=lambda noise, patch_size, x, y, fresh: F.patch_noise(noise, patch_size, x, y, fresh=fresh),
    shows=("src.functions:patch_noise",),
    mistakes=(
        Mistake("x_y_swapped", "you swapped x and y: x is the column (last axis), y the row, so the patch is "
                               "[..., y:y + size, x:x + size]", lambda *args: _patched(*args, rows_first=False)),
        Mistake("added", "you added fresh to the old values; the patch must be replaced by fresh",
                lambda *args: _patched(*args, add=True)),
        Mistake("zeros_outside", "you started from zeros: outside the patch the noise must stay as it was "
                                 "(start from noise.clone())", lambda *args: _patched(*args, base=torch.zeros_like))),
    hints=("Start from a copy, noise.clone(): the rest stays identical and the input is left alone.",
           "x is the column and y the row: the patch is [..., y:y + patch_size, x:x + patch_size].",
           "Assign fresh to the patch; do not add it to what is there."))


# --- 04 Noise levels ---

STRENGTH_TO_START_INDEX = Exercise(
    name="strength_to_start_index", notebook="04", args=("strength", "num_inference_steps"),
    summary="The start index (into the S timesteps) for an SDEdit strength in [0, 1].",
    details="strength 1.0 starts from pure noise (index 0); smaller strengths start later, nearer x_0.\n"
            "Returns round((1 - strength) * S), kept within 0 ... S - 1, as a Python int.",
    about="7 (strength, S) pairs from (1.0, 50) to (0.0, 50)", kind="int", batched=False,
    cases=lambda: [dict(strength=s, num_inference_steps=S)
                   for s, S in ((1.0, 50), (0.0, 50), (0.3, 50), (0.75, 20), (0.3, 7), (0.62, 10), (0.999, 7))],
    reference=lambda strength, S: F.strength_to_start_index(strength, S),
    shows=("src.functions:strength_to_start_index",),
    mistakes=(
        Mistake("strength_for_one_minus", "you used strength where 1 - strength belongs: strength 1.0 must give "
                                          "index 0, pure noise", lambda s, S: min(S - 1, max(0, round(s * S)))),
        Mistake("no_clamp", "you did not keep the index within 0 ... S - 1: strength 0 gives S, one past the last "
                            "index", lambda s, S: round((1 - s) * S)),
        Mistake("truncated", "you cut off the fraction with int(); the course rounds to the nearest index",
                lambda s, S: min(S - 1, max(0, int((1 - s) * S)))),
        Mistake("truncated_no_clamp", "you cut off the fraction with int() (the course rounds to the nearest index) "
                                      "and did not keep the index within 0 ... S - 1 (strength 0 gives S)",
                lambda s, S: int((1 - s) * S))),
    hints=("Strength 1.0 means pure noise, index 0; strength 0 means the last index, S - 1.",
           "round((1 - strength) * num_inference_steps), then min(S - 1, max(0, ...))."))


def _tau(num_inference_steps, alphas_cumprod):
    """The sampler's timesteps for S steps on this schedule (F.ddim_timesteps)."""
    return F.ddim_timesteps(num_inference_steps, len(alphas_cumprod))


NOISE_TO_LEVEL = Exercise(
    name="noise_to_level", notebook="04", args=("x0", "start_index", "num_inference_steps", "alphas_cumprod", "noise"),
    summary="x_0 noised (DDPM Eq. 4) to the timestep tau[start_index] a sampler starts from.",
    details="x0, noise: (B, C, H, W); start_index: an int index into the S = num_inference_steps timesteps\n"
            "(F.ddim_timesteps(S, T), T = len(alphas_cumprod)). Returns x_t, shaped like x0.",
    about="2 images of 1x5x3 with (start_index, S) = (0, 50), (30, 50), (2, 7)", batched=False,
    cases=lambda: [dict(x0=_images((2, 1, 5, 3), 1), start_index=i, num_inference_steps=S, alphas_cumprod=_schedule(),
                        noise=_noise((2, 1, 5, 3), 2)) for i, S in ((0, 50), (30, 50), (2, 7))],
    reference=lambda x0, i, S, a, noise: F.noise_to_level(x0, i, S, a, noise=noise),
    shows=("src.functions:noise_to_level",),
    mistakes=(
        Mistake("index_as_t", "you used start_index itself as the timestep; it indexes the sampler's timesteps, "
                              "t = F.ddim_timesteps(S, T)[start_index]",
                lambda x0, i, S, a, noise: _jump(x0, a[i], noise)),
        Mistake("ascending", "you counted the timesteps upwards (t = start_index * T // S); the sampler's run "
                             "downwards, so index 0 is the noisiest",
                lambda x0, i, S, a, noise: _jump(x0, a[i * (len(a) // S)], noise)),
        Mistake("next_step", "you took the timestep one sampler step later, timesteps[start_index + 1]",
                lambda x0, i, S, a, noise: _jump(x0, a[_tau(S, a)[i + 1]], noise)),
        Mistake("previous_step", "you took the timestep one sampler step earlier, timesteps[start_index - 1]",
                lambda x0, i, S, a, noise: _jump(x0, a[_tau(S, a)[i - 1]], noise))),
    hints=("t = F.ddim_timesteps(num_inference_steps, len(alphas_cumprod))[start_index].",
           "Then jump: sqrt(abar_t) x0 + sqrt(1 - abar_t) noise (your forward_jump, or F.forward_jump)."))


# --- 05 Guidance and editing ---

CFG = Exercise(
    name="cfg", notebook="05", args=("eps_cond", "eps_uncond", "guidance_scale"),
    summary="Classifier-free guidance: eps-hat = eps_uncond + w (eps_cond - eps_uncond), the course's w.",
    details="eps_cond, eps_uncond: (B, C, H, W) the UNet's predictions with the class and with the null label;\n"
            "guidance_scale: w (w = 1 plain conditional, w = 0 unconditional). Returns eps-hat.",
    about="3 predictions of 1x5x7 with w = 3 and 0.5", batched=False,
    cases=lambda: [dict(eps_cond=_noise((3, 1, 5, 7), 1), eps_uncond=_noise((3, 1, 5, 7), 2), guidance_scale=w)
                   for w in (3.0, 0.5)],
    reference=F.classifier_free_guidance,
    shows=("src.functions:classifier_free_guidance", "src.functions:guided_epsilon"),
    mistakes=(
        Mistake("paper_w", "you used the paper's w: Ho and Salimans write (1 + w) eps_c - w eps_null, and the "
                           "course's w is theirs + 1, so it is eps_null + w (eps_c - eps_null)",
                lambda c, u, w: (1 + w) * c - w * u),
        Mistake("swapped", "you swapped the two predictions: the course's formula starts from eps_uncond and moves "
                           "w times towards eps_cond", lambda c, u, w: c + w * (u - c)),
        Mistake("no_uncond_base", "you left out the eps_uncond + in front of w (eps_cond - eps_uncond)",
                lambda c, u, w: w * (c - u)),
        Mistake("no_difference", "you added w eps_cond instead of w (eps_cond - eps_uncond)",
                lambda c, u, w: u + w * c)),
    hints=("The course's w weighs the conditional prediction: w = 0 gives eps_uncond, w = 1 gives eps_cond.",
           "eps_uncond + w * (eps_cond - eps_uncond). The CFG paper's w is the course's w - 1."))


def _repaint_cases():
    """A sample, an original and a mask, pasted at t' = 380 and after the last step (t' = -1)."""
    mask = torch.zeros(1, 1, 5, 7)
    mask[..., 1:4, 2:6] = 1.0  # 1 = generate here
    return [dict(x=_noise((3, 1, 5, 7), 1), t_prev=t_prev, x0=_images((3, 1, 5, 7), 2), mask=mask,
                 alphas_cumprod=_schedule(), noise=_noise((3, 1, 5, 7), REPLAY_SEED)) for t_prev in (380, -1)]


def _pasted(x, t_prev, x0, mask, alphas_cumprod, noise, flip=False, known=None):
    """A RePaint paste with a usual mistake: the mask's roles swapped, or another known part."""
    if known is None:
        known = x0 if t_prev < 0 else _jump(x0, alphas_cumprod[t_prev], noise)
    keep = 1 - mask if flip else mask
    return keep * x + (1 - keep) * known


REPAINT_PASTE = Exercise(
    name="repaint_paste", notebook="05", args=("x", "t_prev", "x0", "mask", "alphas_cumprod", "noise"),
    summary="RePaint's paste after a step: keep the sample where the mask is 1, the known image elsewhere.",
    details="x: (B, C, H, W) the sample at step t_prev; x0: the original; mask: (1, 1, H, W), 1 = generate here;\n"
            "noise: (B, C, H, W). The known part is x0 noised to t_prev (DDPM Eq. 4); at t_prev = -1 it is x0.\n"
            "Returns mask * x + (1 - mask) * known.",
    about="3 images of 1x5x7 at t' = 380 and t' = -1 (the end)", cases=_repaint_cases, batched=False,
    reference=lambda x, t_prev, x0, mask, alphas_cumprod, noise: editing.repaint_paste(
        x, t_prev, x0, mask, alphas_cumprod, noise=noise),
    shows=("src.editing:repaint_paste",),
    mistakes=(
        Mistake("mask_flipped", "you swapped the mask's roles: mask = 1 marks the part to generate, where x stays",
                lambda *args: _pasted(*args, flip=True)),
        Mistake("clean_x0", "you pasted the clean x_0; the known part must be noised to t' first (Eq. 4) to match x",
                lambda x, t_prev, x0, *rest: _pasted(x, t_prev, x0, *rest, known=x0)),
        Mistake("noisy_at_end", "at t' = -1 you indexed alphas_cumprod[-1], the noisiest abar: after the last step "
                                "the known part is x_0 itself",
                lambda x, t_prev, x0, m, a, noise: _pasted(x, t_prev, x0, m, a, noise,
                                                           known=_jump(x0, a[t_prev], noise))),
        Mistake("nothing_pasted", "you returned x unchanged: nothing of the known image was pasted",
                lambda x, *rest: x)),
    hints=("mask is 1 where new content is generated: keep x there, paste the known image elsewhere.",
           "The known part is x0 noised to t_prev with the given noise (Eq. 4), so it matches x's noise level.",
           "After the last step, t_prev = -1: paste x0 itself (alphas_cumprod[-1] is the last, noisiest abar)."))


RENOISE = Exercise(
    name="renoise", notebook="05", args=("x_prev", "alpha_prod_prev", "alpha_prod_t", "noise"),
    summary="RePaint's jump back up, x_{t'} -> x_t for t > t' (DDPM Eq. 4 between two noise levels).",
    details="x_prev, noise: (B, C, H, W); alpha_prod_prev, alpha_prod_t: (B, 1, 1, 1) abar_t' and abar_t.\n"
            "Returns x_t ~ N(sqrt(abar_t / abar_t') x_prev, (1 - abar_t / abar_t') I), drawn with `noise`.",
    about="3 images of 1x5x7 jumping t' = 0, 300, 900 up to t = 40, 360, 999",
    cases=lambda: [dict(x_prev=_noise((3, 1, 5, 7), 1), alpha_prod_prev=_at(_schedule(), [0, 300, 900]),
                        alpha_prod_t=_at(_schedule(), [40, 360, 999]), noise=_noise((3, 1, 5, 7), REPLAY_SEED))],
    reference=lambda x_prev, alpha_prod_prev, alpha_prod_t, noise: editing.renoise(
        x_prev, alpha_prod_prev, alpha_prod_t, noise=noise),
    shows=("src.editing:renoise",),
    mistakes=(
        Mistake("from_x0", "you used abar_t alone, the jump from x_0; from level t' the ratio abar_t / abar_t' "
                           "belongs", lambda x, p, a, noise: _jump(x, a, noise)),
        Mistake("ratio_no_sqrt", "you used abar_t / abar_t' where its square root belongs, in front of x_prev",
                lambda x, p, a, noise: (a / p) * x + (1 - a / p).sqrt() * noise),
        Mistake("variance_for_std", "you used 1 - abar_t / abar_t' where its square root belongs, in front of the "
                                    "noise", lambda x, p, a, noise: (a / p).sqrt() * x + (1 - a / p) * noise),
        Mistake("noise_sign", "you subtracted the noise term; the jump adds it",
                lambda x, p, a, noise: _jump(x, a / p, -noise))),
    hints=("From t' to t the signal is scaled by sqrt(abar_t / abar_t'): the alphas between the two levels.",
           "r = alpha_prod_t / alpha_prod_prev; x_t = sqrt(r) x_prev + sqrt(1 - r) noise."))


# --- 06 Training ---

_TINY = {}  # the seeded tiny UNet, made on first use; every case gets a deep copy


def _tiny_unet():
    """A small UNet2DModel (8x8, 1 channel, about 40k parameters), the same every time; a fresh copy."""
    if "unet" not in _TINY:
        from diffusers import UNet2DModel

        with torch.random.fork_rng(devices=[]):  # seeded without touching the notebook's random state
            torch.manual_seed(0)
            _TINY["unet"] = UNet2DModel(
                sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
                norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "UpBlock2D"))
    return copy.deepcopy(_TINY["unet"])


def _loss_cases():
    shape = (4, 1, 8, 8)
    return [dict(unet=_tiny_unet(), x0=_images(shape, 1), t=torch.tensor(TIMES), noise=_noise(shape, 2),
                 alphas_cumprod=_schedule())]


def _l_simple(unet, x0, t, noise, alphas_cumprod):
    """L_simple (DDPM Eq. 14) of one batch, its t and noise given: the course's diffusion_loss."""
    from src.train import diffusion_loss

    return diffusion_loss(unet, x0, None, alphas_cumprod, t=t, noise=noise)


def _loss(unet, x0, t, noise, alphas_cumprod, seen=None, target=None, reduce=None):
    """L_simple with a usual mistake: the UNet sees another input, or the loss has another target or reduction."""
    x_t = _jump(x0, _at(alphas_cumprod, t), noise)
    diff = unet(x_t if seen is None else seen(x0, x_t), t).sample - (noise if target is None else target(x0, x_t))
    return (diff**2).mean() if reduce is None else reduce(diff)


L_SIMPLE = Exercise(
    name="l_simple", notebook="06", args=("unet", "x0", "t", "noise", "alphas_cumprod"),
    summary="L_simple of one batch (DDPM Eq. 14): the mean of (eps - eps_theta(x_t, t))^2, x_t from Eq. 4.",
    details="unet: a diffusers UNet2DModel (unet(x_t, t).sample is eps_theta); x0, noise: (B, C, H, W);\n"
            "t: (B,) steps. Returns the loss as a 0-d tensor that loss.backward() can use.",
    about="a tiny UNet and 4 images of 1x8x8 at t = 0, 999, 10, 500", cases=_loss_cases,
    kind="loss", mutates=("unet",), atol=1e-6,
    reference=_l_simple,
    shows=("src.train:diffusion_loss",),
    mistakes=(
        Mistake("target_x0", "you compared eps_theta with x_0; L_simple's target is the noise",
                lambda *args: _loss(*args, target=lambda x0, x_t: x0)),
        Mistake("unet_sees_x0", "you gave the UNet x_0; it must see the noised x_t (Eq. 4)",
                lambda *args: _loss(*args, seen=lambda x0, x_t: x0)),
        Mistake("summed", "you summed the squares; the course's loss is their mean (F.mse_loss)",
                lambda *args: _loss(*args, reduce=lambda d: (d**2).sum())),
        Mistake("summed_per_image", "you summed each image's squares and averaged over the batch; the course's "
                                    "loss is the mean over every value (F.mse_loss)",
                lambda *args: _loss(*args, reduce=lambda d: (d**2).flatten(1).sum(1).mean())),
        Mistake("absolute", "you averaged |eps - eps_theta|; L_simple squares the difference",
                lambda *args: _loss(*args, reduce=lambda d: d.abs().mean()))),
    hints=("x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, with abar_t = alphas_cumprod[t] shaped (B, 1, 1, 1).",
           "eps_theta = unet(x_t, t).sample; the loss is torch.nn.functional.mse_loss(eps_theta, noise)."))


def _step_cases():
    """A step as a training loop sees it: the last step's gradients are still in .grad (zero_grad() clears them)."""
    (case,) = _loss_cases()
    unet = case.pop("unet")
    _l_simple(unet, case["x0"], case["t"].flip(0), _noise(case["x0"].shape, 3), case["alphas_cumprod"]).backward()
    return [dict(unet=unet, optimizer=torch.optim.SGD(unet.parameters(), lr=0.1), **case)]


def _train_step(unet, optimizer, x0, t, noise, alphas_cumprod):
    """One step of train_diffusion's loop (src/train.py), with the batch's t and noise given."""
    from src.train import optimizer_step

    loss = _l_simple(unet, x0, t, noise, alphas_cumprod)
    optimizer_step(unet, optimizer, loss)
    return loss


def _step_without(unet, optimizer, x0, t, noise, alphas_cumprod, zero=True, clip=True, step=True):
    """A training step with one usual part left out."""
    if zero:
        optimizer.zero_grad(set_to_none=True)
    loss = _l_simple(unet, x0, t, noise, alphas_cumprod)
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
    if step:
        optimizer.step()
    return loss


def _parameter_update(case):
    """How far one step moved the UNet's parameters from the tiny UNet's start, as one vector."""
    moved = [(p - p0).detach().flatten() for p, p0 in zip(case["unet"].parameters(), _TINY["unet"].parameters())]
    return (torch.cat(moved).double(),)


TRAIN_STEP = Exercise(
    name="train_step", notebook="06", args=("unet", "optimizer", "x0", "t", "noise", "alphas_cumprod"),
    summary="One training step, as train_diffusion takes it: zero the gradients, L_simple, backward, clip, step.",
    details="unet, optimizer: the model and its torch optimizer; x0, t, noise, alphas_cumprod: as in l_simple.\n"
            "Clip the gradients' norm to 1 before the step. Returns the loss.",
    about="a tiny UNet with SGD, 4 images of 1x8x8 at t = 0, 999, 10, 500", cases=_step_cases,
    kind="step", mutates=("unet", "optimizer"), collect=_parameter_update, rtol=1e-3, atol=1e-7,
    reference=_train_step,
    shows=("src.train:optimizer_step", "src.train:diffusion_loss"),
    mistakes=(
        Mistake("no_zero_grad", "you did not call optimizer.zero_grad() first, so the last step's gradients were "
                                "added to this one's", lambda *args: _step_without(*args, zero=False)),
        Mistake("no_step", "the parameters did not move: optimizer.step() is missing (or zero_grad() runs between "
                           "backward() and step())", lambda *args: _step_without(*args, step=False)),
        Mistake("no_clipping", "the gradients were not clipped: call torch.nn.utils.clip_grad_norm_("
                               "unet.parameters(), 1.0) between backward() and step()",
                lambda *args: _step_without(*args, clip=False))),
    hints=("The order: optimizer.zero_grad(), loss = L_simple, loss.backward(), clip, optimizer.step().",
           "Clip as the course does: torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0), after backward().",
           "Return the loss (a tensor or a float)."))


EXERCISES = {ex.name: ex for ex in (
    FORWARD_JUMP, FORWARD_STEP, LOG_SNR, SNR_CROSSING,  # 01
    PREDICT_X0, POSTERIOR_MEAN_VARIANCE, DDIM_STEP, DDIM_TIMESTEPS,  # 02
    MIX_NOISE, PATCH_NOISE,  # 03
    STRENGTH_TO_START_INDEX, NOISE_TO_LEVEL,  # 04
    CFG, REPAINT_PASTE, RENOISE,  # 05
    L_SIMPLE, TRAIN_STEP,  # 06
)}


# --- 5. For the notebooks: the list, the stubs, hints, solutions and one checker per exercise -----

def list_exercises(notebook=None):
    """The exercises' names in course order, or only those of one notebook ("01" ... "06", or 1 ... 6)."""
    return [name for name, ex in EXERCISES.items() if notebook is None or ex.notebook == f"{int(notebook):02d}"]


def stub_source(name):
    """The source of exercise `name`'s stub, for a notebook cell: def my_<name>(...), docstring, raise."""
    ex = EXERCISES[name]
    doc = "\n".join(("    " + line).rstrip() for line in ("", *ex.details.splitlines()))
    return (f'def my_{ex.name}({", ".join(ex.args)}):\n    """{ex.summary}\n{doc}\n    """\n'
            f'    raise NotImplementedError("{STUB_MESSAGE}")\n')


_hints_given = {}  # exercise -> how many of its hints hint() has printed


def hint(name):
    """Print the next hint for exercise `name`, one more per call; after the last, point to solution()."""
    if name not in EXERCISES:
        print(f"There is no exercise {name!r}: check.list_exercises() lists them.")
        return
    hints, given = EXERCISES[name].hints, _hints_given.get(name, 0)
    if given < len(hints):
        print(f"Hint {given + 1} of {len(hints)}: {hints[given]}")
        _hints_given[name] = given + 1
    else:
        print(f"No more hints for {name}: check.solution({name!r}) shows the course's own code.")


def solution(name):
    """Print the course's own code for exercise `name`: the one source of truth, read from src/."""
    if name not in EXERCISES:
        print(f"There is no exercise {name!r}: check.list_exercises() lists them.")
        return
    for where in EXERCISES[name].shows:
        module, function = where.split(":")
        source = inspect.getsource(getattr(importlib.import_module(module), function))
        print(f"# {module.replace('.', '/')}.py\n{source}")


# One checker per exercise: check.<name>(my_<name>) prints one sentence and returns a Result.

def forward_jump(fn):
    """Check my_forward_jump(x0, t, alphas_cumprod, noise): DDPM Eq. 4 (notebook 01)."""
    return check_answer("forward_jump", fn)


def forward_step(fn):
    """Check my_forward_step(x_prev, t, betas, noise): DDPM Eq. 2 (notebook 01)."""
    return check_answer("forward_step", fn)


def log_snr(fn):
    """Check my_log_snr(alphas_cumprod): log SNR_t (notebook 01)."""
    return check_answer("log_snr", fn)


def snr_crossing(fn):
    """Check my_snr_crossing(alphas_cumprod): the first t with log SNR_t < 0 (notebook 01)."""
    return check_answer("snr_crossing", fn)


def predict_x0(fn):
    """Check my_predict_x0(x_t, pred_epsilon, alpha_prod_t): DDPM Eq. 15 (notebook 02)."""
    return check_answer("predict_x0", fn)


def posterior_mean_variance(fn):
    """Check my_posterior_mean_variance(x_t, x0, alpha_prod_t, alpha_prod_t_prev): DDPM Eq. 6-7 (notebook 02)."""
    return check_answer("posterior_mean_variance", fn)


def ddim_step(fn):
    """Check my_ddim_step(x_t, pred_epsilon, alpha_prod_t, alpha_prod_t_prev, eta, noise): DDIM Eq. 12, 16 (02)."""
    return check_answer("ddim_step", fn)


def ddim_timesteps(fn):
    """Check my_ddim_timesteps(num_inference_steps, num_train_timesteps): the sampler's grid (notebook 02)."""
    return check_answer("ddim_timesteps", fn)


def mix_noise(fn):
    """Check my_mix_noise(noise, s, other): a mix that stays N(0, I) (notebook 03)."""
    return check_answer("mix_noise", fn)


def patch_noise(fn):
    """Check my_patch_noise(noise, patch_size, x, y, fresh): a noise that differs in one patch (notebook 03)."""
    return check_answer("patch_noise", fn)


def strength_to_start_index(fn):
    """Check my_strength_to_start_index(strength, num_inference_steps): SDEdit's start (notebook 04)."""
    return check_answer("strength_to_start_index", fn)


def noise_to_level(fn):
    """Check my_noise_to_level(x0, start_index, num_inference_steps, alphas_cumprod, noise) (notebook 04)."""
    return check_answer("noise_to_level", fn)


def cfg(fn):
    """Check my_cfg(eps_cond, eps_uncond, guidance_scale): classifier-free guidance, the course's w (notebook 05)."""
    return check_answer("cfg", fn)


def repaint_paste(fn):
    """Check my_repaint_paste(x, t_prev, x0, mask, alphas_cumprod, noise): RePaint's paste (notebook 05)."""
    return check_answer("repaint_paste", fn)


def renoise(fn):
    """Check my_renoise(x_prev, alpha_prod_prev, alpha_prod_t, noise): RePaint's jump back (notebook 05)."""
    return check_answer("renoise", fn)


def l_simple(fn):
    """Check my_l_simple(unet, x0, t, noise, alphas_cumprod): DDPM Eq. 14 (notebook 06)."""
    return check_answer("l_simple", fn)


def train_step(fn):
    """Check my_train_step(unet, optimizer, x0, t, noise, alphas_cumprod): one training step (notebook 06)."""
    return check_answer("train_step", fn)
