"""Saving never overwrites and never leaves a half-written file under the final name; what is saved is
the same bytes on every run (figures carry no date, GIFs no randomness)."""

import errno
import os
import stat
import threading

import matplotlib
import pytest
import torch

from src import files

matplotlib.use("Agg")


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_saving_twice_under_one_name_keeps_both(tmp_path):
    first = files.save_output(b"first picture", "grid.png", tmp_path)
    second = files.save_output(b"second picture", "grid.png", tmp_path)
    third = files.save_output(b"third", "grid.png", tmp_path)
    assert (first.name, second.name, third.name) == ("grid.png", "grid_1.png", "grid_2.png")
    assert first.read_bytes() == b"first picture" and second.read_bytes() == b"second picture"
    assert listing(tmp_path) == ["grid.png", "grid_1.png", "grid_2.png"], "no temporary file is left behind"


def test_save_figure_and_gif_go_to_course_output_and_never_overwrite(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path / "out"))
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    paths = [files.save_figure(fig, "fig.png"), files.save_figure(fig, "fig.png")]
    plt.close(fig)
    frames = [torch.full((1, 4, 4), v) for v in (-1.0, 0.0, 1.0)]
    paths += [files.save_gif(frames, "anim.gif"), files.save_gif(frames, "anim.gif")]
    assert [p.name for p in paths] == ["fig.png", "fig_1.png", "anim.gif", "anim_1.gif"]
    assert all(p.parent == tmp_path / "out" for p in paths)
    assert paths[0].read_bytes() == paths[1].read_bytes() and paths[0].read_bytes().startswith(b"\x89PNG")
    assert paths[2].read_bytes().startswith(b"GIF89a")


def test_saved_files_are_readable_by_others_like_any_file(tmp_path):
    """mkstemp creates 0600 files; a figure must get the usual permissions (umask applies)."""
    path = files.save_output(b"x", "perm.png", tmp_path)
    umask = os.umask(0o22)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


class Interrupted(BaseException):
    pass


@pytest.mark.parametrize("where", ["while-writing", "while-renaming"])
def test_an_interrupted_save_leaves_nothing_under_the_final_name(tmp_path, monkeypatch, where):
    files.save_output(b"an older figure", "grid.png", tmp_path)
    if where == "while-writing":
        real_fdopen = os.fdopen

        class HalfWriter:
            def __init__(self, f):
                self.f = f

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

            def write(self, data):
                self.f.write(data[: len(data) // 2])
                raise KeyboardInterrupt  # the student pressed Stop in the middle of the write

        monkeypatch.setattr(os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    else:
        def link(src, dst):
            raise KeyboardInterrupt

        monkeypatch.setattr(os, "link", link)
    with pytest.raises(KeyboardInterrupt):
        files.save_output(b"a new figure of many bytes", "grid.png", tmp_path)
    monkeypatch.undo()
    assert listing(tmp_path) == ["grid.png"], "no half-written file, no temporary file"
    assert (tmp_path / "grid.png").read_bytes() == b"an older figure"
    assert files.save_output(b"next", "grid.png", tmp_path).name == "grid_1.png", "the next save works"


def test_a_file_system_without_hard_links_still_never_overwrites(tmp_path, monkeypatch):
    """FAT drives and some network mounts refuse os.link: the save claims the name, then renames onto it."""
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    paths = [files.save_output(f"picture {i}".encode(), "grid.png", tmp_path) for i in range(3)]
    assert [p.name for p in paths] == ["grid.png", "grid_1.png", "grid_2.png"]
    assert [p.read_bytes() for p in paths] == [b"picture 0", b"picture 1", b"picture 2"]
    assert listing(tmp_path) == ["grid.png", "grid_1.png", "grid_2.png"]


def test_concurrent_saves_get_distinct_names(tmp_path):
    """Two notebooks (or threads) saving the same name at once never overwrite each other."""
    paths, barrier = [], threading.Barrier(8)

    def save(i):
        barrier.wait()
        paths.append(files.save_output(f"picture {i}".encode(), "same.png", tmp_path))

    threads = [threading.Thread(target=save, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({p.name for p in paths}) == 8
    assert sorted(p.read_bytes() for p in paths) == sorted(f"picture {i}".encode() for i in range(8))


@pytest.mark.parametrize("name", ["../escape.png", "sub/dir.png", "/tmp/abs.png", "", "..", "a\\b.png"])
def test_names_cannot_leave_the_output_folder(tmp_path, name):
    with pytest.raises(ValueError, match="not a plain file name"):
        files.save_output(b"x", name, tmp_path / "out")
    assert not (tmp_path / "escape.png").exists()


@pytest.mark.parametrize("fmt", ["png", "pdf", "svg", "jpg"])
def test_figure_bytes_are_the_same_on_every_render(fmt):
    """No date, version or random id in the file: reruns give identical bytes (clean diffs, easy checks)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.imshow(torch.linspace(0, 1, 64).reshape(8, 8).numpy(), cmap="gray")
    ax.set_title(r"$\bar\alpha_t$")
    first, second = files.figure_bytes(fig, fmt), files.figure_bytes(fig, fmt)
    plt.close(fig)
    assert first == second and len(first) > 100


def test_gif_bytes_are_deterministic_and_empty_frames_are_refused():
    g = torch.Generator().manual_seed(0)
    frames = [torch.rand(3, 8, 8, generator=g) * 2 - 1 for _ in range(4)]
    assert files.gif_bytes(frames, scale=3) == files.gif_bytes(frames, scale=3)
    with pytest.raises(ValueError, match="at least one frame"):
        files.gif_bytes([])
