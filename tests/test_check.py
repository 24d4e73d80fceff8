"""The exercise checkers (src/check.py): each accepts the course's answer and a textbook one written here,
names each of its usual mistakes, calls an untouched stub "not attempted", and turns anything else a
student's function does into one sentence: never a traceback."""

import math
import time

import pytest
import torch

from src import check

NAMES = check.list_exercises()
MISTAKES = [(name, m) for name in NAMES for m in check.EXERCISES[name].mistakes]


def run(name, fn):
    return check.check_answer(name, fn, quiet=True)


def assert_one_sentence(result):
    message = result.message
    assert "\n" not in message and "Traceback" not in message, message
    assert message.endswith(".") and not message.endswith(".."), message
    assert len(message) < 400, message


# --- What a student might write: plain torch, no src ---------------------------------------------

def _forward_jump(x0, t, alphas_cumprod, noise):
    abar = alphas_cumprod[t].view(-1, 1, 1, 1)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def _posterior_mean_variance(x_t, x0, alpha_prod_t, alpha_prod_t_prev):
    alpha_t = alpha_prod_t / alpha_prod_t_prev
    beta_t = 1 - alpha_t
    a, a_prev = alpha_prod_t, alpha_prod_t_prev
    mean = (a_prev.sqrt() * beta_t * x0 + alpha_t.sqrt() * (1 - a_prev) * x_t) / (1 - a)
    return mean, (1 - a_prev) / (1 - a) * beta_t


def _ddim_step(x_t, pred_epsilon, alpha_prod_t, alpha_prod_t_prev, eta, noise):
    x0_hat = (x_t - (1 - alpha_prod_t).sqrt() * pred_epsilon) / alpha_prod_t.sqrt()
    sigma = eta * ((1 - alpha_prod_t_prev) / (1 - alpha_prod_t) * (1 - alpha_prod_t / alpha_prod_t_prev)).sqrt()
    return alpha_prod_t_prev.sqrt() * x0_hat + (1 - alpha_prod_t_prev - sigma**2).sqrt() * pred_epsilon + sigma * noise


def _patch_noise(noise, patch_size, x, y, fresh):
    out = noise.clone()
    out[:, :, y:y + patch_size, x:x + patch_size] = fresh
    return out


def _repaint_paste(x, t_prev, x0, mask, alphas_cumprod, noise):
    known = x0 if t_prev < 0 else alphas_cumprod[t_prev].sqrt() * x0 + (1 - alphas_cumprod[t_prev]).sqrt() * noise
    return mask * x + (1 - mask) * known


def _l_simple(unet, x0, t, noise, alphas_cumprod):
    return ((unet(_forward_jump(x0, t, alphas_cumprod, noise), t).sample - noise) ** 2).mean()


def _train_step(unet, optimizer, x0, t, noise, alphas_cumprod):
    optimizer.zero_grad()
    loss = _l_simple(unet, x0, t, noise, alphas_cumprod)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
    optimizer.step()
    return loss.item()


TEXTBOOK = {
    "forward_jump": _forward_jump,
    "forward_step": lambda x, t, betas, noise: (1 - betas[t]).sqrt().view(-1, 1, 1, 1) * x
    + betas[t].sqrt().view(-1, 1, 1, 1) * noise,
    "log_snr": lambda a: torch.log(a) - torch.log(1 - a),
    "snr_crossing": lambda a: int((a < 0.5).nonzero()[0]),
    "predict_x0": lambda x_t, eps, a: (x_t - torch.sqrt(1 - a) * eps) / torch.sqrt(a),
    "posterior_mean_variance": _posterior_mean_variance,
    "ddim_step": _ddim_step,
    "ddim_timesteps": lambda S, T: list(range((S - 1) * (T // S), -1, -(T // S))),
    "mix_noise": lambda noise, s, other: math.sqrt(1 - s * s) * noise + s * other,
    "patch_noise": _patch_noise,
    "strength_to_start_index": lambda s, S: max(0, min(S - 1, round((1 - s) * S))),
    "noise_to_level": lambda x0, i, S, a, noise: _forward_jump(x0, torch.tensor([(S - 1 - i) * (len(a) // S)]), a,
                                                               noise),
    "cfg": lambda c, u, w: u + w * (c - u),
    "repaint_paste": _repaint_paste,
    "renoise": lambda x, p, a, noise: (a / p).sqrt() * x + (1 - a / p).sqrt() * noise,
    "l_simple": _l_simple,
    "train_step": _train_step,
}


# --- The list --------------------------------------------------------------------------------------

def test_every_notebook_has_two_to_four_exercises_each_with_a_checker():
    assert set(NAMES) == set(TEXTBOOK)
    for notebook in ("01", "02", "03", "04", "05", "06"):
        assert 2 <= len(check.list_exercises(notebook)) <= 4, notebook
    for name in NAMES:
        assert callable(getattr(check, name)), name
        assert len(check.EXERCISES[name].mistakes) >= 3, name
        assert len(check.EXERCISES[name].hints) >= 2, name


# --- Right answers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_the_course_answer_is_right(name):
    result = run(name, check.EXERCISES[name].reference)
    assert result.status == "right" and result.ok and result, result.message
    assert result.message.startswith("Right:")
    assert_one_sentence(result)


@pytest.mark.parametrize("name", NAMES)
def test_a_textbook_answer_is_right(name):
    """An answer written from the formula alone, in plain torch: it also proves the checker's replayed noise
    (patch_noise, renoise, repaint_paste) and stand-in UNet (cfg) give what the course's functions give."""
    result = run(name, TEXTBOOK[name])
    assert result.status == "right", result.message


def test_the_l_simple_reference_is_diffusion_loss_with_its_own_draws():
    """check._l_simple takes t and noise as arguments; diffusion_loss draws them. With the same draws they agree."""
    from src.train import diffusion_loss

    (case,) = check._loss_cases()
    x0, abar = case["x0"], case["alphas_cumprod"]
    generator = torch.Generator().manual_seed(5)
    noise = torch.randn(x0.shape, generator=generator)  # diffusion_loss draws the noise first, then t
    t = torch.randint(0, len(abar), (len(x0),), generator=generator)
    ours = check._l_simple(case["unet"], x0, t, noise, abar)
    theirs = diffusion_loss(unet=case["unet"], x0=x0, labels=None, alphas_cumprod=abar,
                            generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(ours, theirs)


# --- Known mistakes --------------------------------------------------------------------------------

@pytest.mark.parametrize("name, mistake", MISTAKES, ids=[f"{n}-{m.name}" for n, m in MISTAKES])
def test_each_mistake_is_named(name, mistake):
    result = run(name, mistake.fn)
    assert (result.status, result.mistake) == ("mistake", mistake.name), result.message
    assert mistake.says in result.message and "max error" in result.message
    assert result.max_error > 0
    assert_one_sentence(result)


def test_an_answer_off_in_an_unknown_way_says_where():
    result = run("forward_jump", lambda *args: _forward_jump(*args) + 0.01 * (torch.arange(7) == 3))
    assert result.status == "wrong", result.message
    assert "0.01" in result.message and "check.hint('forward_jump')" in result.message
    assert_one_sentence(result)
    result = run("ddim_timesteps", lambda S, T: TEXTBOOK["ddim_timesteps"](S, T)[:-1] + [1])
    assert result.status == "wrong" and "position" in result.message, result.message


def test_the_paper_w_is_told_apart_from_the_course_w():
    result = run("cfg", lambda eps_cond, eps_uncond, w: (1 + w) * eps_cond - w * eps_uncond)
    assert result.mistake == "paper_w" and "Ho and Salimans" in result.message


# --- Stubs -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_an_untouched_stub_is_not_attempted(name):
    source = check.stub_source(name)
    namespace = {}
    exec(source, namespace)  # noqa: S102 - the stub the notebook cell will hold
    stub = namespace[f"my_{name}"]
    assert list(stub.__code__.co_varnames[:stub.__code__.co_argcount]) == list(check.EXERCISES[name].args)
    assert stub.__doc__.strip().splitlines()[0] == check.EXERCISES[name].summary
    result = run(name, stub)
    assert result.status == "not attempted" and not result, result.message
    assert_one_sentence(result)


def test_a_stub_that_returns_ellipsis_is_not_attempted():
    assert run("forward_jump", lambda *args: ...).status == "not attempted"


def test_a_not_implemented_error_of_its_own_is_a_problem():
    def uses_something_unfinished(*args):
        raise NotImplementedError("the sparse kernel is missing")

    result = run("forward_jump", uses_something_unfinished)
    assert result.status == "problem" and "sparse kernel" in result.message


# --- Anything else: one sentence -------------------------------------------------------------------

def _raises(*args):
    raise ValueError("boom\n  on a second line")


def _exits(*args):
    raise SystemExit(1)


def _nan_like(name):
    """The textbook answer turned to NaN (a NaN loss, for a training step; a float NaN where an int belongs)."""
    ex = check.EXERCISES[name]

    def nan(*args):
        answer = TEXTBOOK[name](*args)
        if ex.kind in ("int", "ints", "step"):
            return math.nan
        if ex.kind == "tensors":
            return tuple(a * math.nan for a in answer)
        return answer * math.nan

    return nan


BAD = {
    "raises": (lambda name: _raises, "ValueError: boom"),
    "exits": (lambda name: _exits, "exit()"),
    "none": (lambda name: lambda *args: None, "None"),
    "wrong shape": (lambda name: lambda *args: torch.zeros(2, 2, 2, 2), "(2, 2, 2, 2)"),
    "nan": (_nan_like, "nan"),
}


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("name", NAMES)
def test_anything_else_becomes_one_sentence(name, bad):
    make, says = BAD[bad]
    result = run(name, make(name))
    assert result.status == "problem", result.message
    assert says.lower() in result.message.lower(), result.message
    assert result.message.startswith("Not yet:")
    assert_one_sentence(result)


def test_a_problem_in_a_later_case_says_which():
    def only_deterministic(x_t, pred_epsilon, alpha_prod_t, alpha_prod_t_prev, eta, noise):
        prev = _ddim_step(x_t, pred_epsilon, alpha_prod_t, alpha_prod_t_prev, eta, noise)
        return prev if eta == 0 else prev[0]

    result = run("ddim_step", only_deterministic)
    assert result.status == "problem" and "with eta = 0.7" in result.message, result.message


def test_a_missing_broadcast_gets_advice():
    result = run("forward_jump", lambda x0, t, a, noise: a[t].sqrt() * x0 + (1 - a[t]).sqrt() * noise)
    assert result.status == "problem" and ".view(-1, 1, 1, 1)" in result.message, result.message
    assert_one_sentence(result)


@pytest.mark.parametrize("returned, says", [
    (lambda *args: _forward_jump(*args).double(), "float64"),
    (lambda *args: _forward_jump(*args).to("meta"), "meta"),
    (lambda *args: _forward_jump(*args).numpy(), "ndarray"),
])
def test_a_wrong_dtype_device_or_type_is_named(returned, says):
    result = run("forward_jump", returned)
    assert result.status == "problem" and says in result.message, result.message


def test_a_changed_input_is_a_problem():
    def in_place(noise, patch_size, x, y, fresh):
        noise[:, :, y:y + patch_size, x:x + patch_size] = fresh
        return noise

    result = run("patch_noise", in_place)
    assert result.status == "problem" and "noise in place" in result.message, result.message


def test_a_loss_without_a_gradient_is_a_problem():
    result = run("l_simple", lambda *args: _l_simple(*args).detach())
    assert result.status == "problem" and "gradient" in result.message, result.message
    assert "loss tensor" in run("l_simple", lambda *args: _l_simple(*args).item()).message


def test_a_slow_answer_is_told(monkeypatch):
    monkeypatch.setattr(check, "SLOW_SECONDS", 0.0)
    result = run("mix_noise", TEXTBOOK["mix_noise"])
    assert result.ok and "it took" in result.message
    assert_one_sentence(result)


def test_not_a_function_and_an_unknown_exercise():
    assert "needs your function itself" in run("forward_jump", None).message
    assert "list_exercises" in run("no_such_exercise", _raises).message


def test_a_broken_course_is_the_checker_s_fault_not_the_student_s(monkeypatch):
    def moved(*args, **kwargs):
        raise AttributeError("module 'src.functions' has no attribute 'forward_jump'")

    monkeypatch.setattr(check.F, "forward_jump", moved)
    result = run("forward_jump", _forward_jump)
    assert result.status == "internal" and "not in your code" in result.message
    assert_one_sentence(result)


def test_a_keyboard_interrupt_still_stops_the_cell():
    def interrupted(*args):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run("forward_jump", interrupted)


def test_the_checker_leaves_the_random_state_alone():
    before = torch.get_rng_state()
    run("train_step", _train_step)
    check._TINY.clear()  # the tiny UNet is made again, under its own seed
    run("l_simple", _l_simple)
    assert torch.equal(before, torch.get_rng_state())


# --- Printing, hints, solutions --------------------------------------------------------------------

def test_a_checker_prints_its_sentence_and_returns_the_result(capsys):
    result = check.forward_jump(_forward_jump)
    assert capsys.readouterr().out == result.message + "\n"
    assert result.ok and result.exercise == "forward_jump"


def test_hints_come_one_at_a_time(capsys, monkeypatch):
    monkeypatch.setattr(check, "_hints_given", {})
    hints = check.EXERCISES["ddim_step"].hints
    for k, text in enumerate(hints):
        check.hint("ddim_step")
        assert capsys.readouterr().out == f"Hint {k + 1} of {len(hints)}: {text}\n"
    check.hint("ddim_step")
    assert "check.solution('ddim_step')" in capsys.readouterr().out


@pytest.mark.parametrize("name", NAMES)
def test_the_solution_is_the_course_s_own_source(name, capsys):
    check.solution(name)
    out = capsys.readouterr().out
    for where in check.EXERCISES[name].shows:
        module, function = where.split(":")
        assert f"# {module.replace('.', '/')}.py\ndef {function}(" in out


def test_each_check_takes_well_under_a_second():
    for name in NAMES:  # the first call imports diffusers and makes the tiny UNet
        run(name, check.EXERCISES[name].reference)
    for name in NAMES:
        start = time.perf_counter()
        run(name, check.EXERCISES[name].mistakes[-1].fn)  # a mistake: every variant runs too
        assert time.perf_counter() - start < 1.0, name
