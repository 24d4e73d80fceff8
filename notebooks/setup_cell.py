# Setup: in Colab, fetch the course and its packages; everywhere, make `src/` importable.
import os, pathlib, subprocess, sys
REPO = "https://github.com/diffusion-course/diffusion-course"  # the course's home: `python -m src.set_home OWNER/REPO` changes it
BRANCH = "main"
COLAB_DIR = pathlib.Path(os.environ.get("COURSE_DIR", "/content/" + REPO.rsplit("/", 1)[-1]))  # where Colab keeps the clone
if "google.colab" in sys.modules and not (COLAB_DIR / "config.yaml").exists():
    subprocess.run(["git", "clone", "--depth", "1", "--branch", BRANCH, os.environ.get("COURSE_REPO_URL", REPO), str(COLAB_DIR)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", str(COLAB_DIR / "requirements-colab.txt")], check=True)
ROOT = next((p for p in [pathlib.Path.cwd(), *pathlib.Path.cwd().parents, COLAB_DIR]
             if (p / "config.yaml").is_file() and (p / "src").is_dir()), None)
if ROOT is None:  # started from elsewhere: the course installed with `pip install -e .` knows where it lives
    import importlib.util
    ROOT = pathlib.Path(importlib.util.find_spec("src").origin).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if "google.colab" in sys.modules:
    print(f"Course files: {ROOT}. To change a setting, open {ROOT / 'config.yaml'} in the Files panel (left), edit it, "
          "save (Ctrl+S), then Runtime > Run all; a slider under a figure changes its setting for that figure only.")
