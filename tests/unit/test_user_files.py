"""The files chat-tui reads besides conversations: config.toml, state.toml and user
themes. Each is read only as a regular file of bounded size (a FIFO or a link to
/dev/zero is refused at once, never read), and a value of the wrong type or shape is
one sentence naming the file and key, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.store.helpers import finishes
from tui.config import AppConfig
from tui.state import AppState


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "config"
    folder.mkdir()
    monkeypatch.setenv("CHAT_TUI_CONFIG_DIR", str(folder))
    monkeypatch.setenv("CHAT_TUI_STATE_DIR", str(tmp_path / "state"))
    return folder


def _hostile(path: Path, kind: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "zero":
        path.symlink_to("/dev/zero")
    elif kind == "folder":
        path.mkdir()
    elif kind == "huge":
        path.write_bytes(b"#" * (2 * 1024 * 1024))


@pytest.mark.parametrize("kind", ["fifo", "zero", "folder", "huge"])
def test_a_config_or_state_that_is_not_a_small_file_is_refused_at_once(
    config_dir: Path, tmp_path: Path, kind: str
) -> None:
    _hostile(config_dir / "config.toml", kind)
    config = finishes(AppConfig.load, 10)
    assert config.problem and str(config_dir / "config.toml") in config.problem
    assert config.theme is None and config.model == {}
    _hostile(tmp_path / "state" / "state.toml", kind)
    state = finishes(lambda: AppState.load(tmp_path / "data"), 10)
    assert state.problem and "state.toml" in state.problem
    assert state.open_tabs == []


@pytest.mark.parametrize("key", ["device", "dtype", "source", "quantization"])
def test_wrong_types_in_model_tables_are_one_sentence_each(
    config_dir: Path, tmp_path: Path, key: str, cli
) -> None:
    (config_dir / "config.toml").write_text(f'[model]\n{key} = 5\nrevision = "main"\n')
    config = AppConfig.load()
    assert config.model == {"revision": "main"}
    (warning,) = config.warnings
    assert str(config_dir / "config.toml") in warning and f"{key} = 5" in warning
    assert warning.endswith("ignored.") and "\n" not in warning

    state_file = tmp_path / "state" / "state.toml"
    state_file.parent.mkdir()
    state_file.write_text(f'[last_model]\n{key} = 5\nrevision = "v1"\n')
    state = AppState.load(tmp_path / "data")
    assert state.last_model == {"revision": "v1"}
    assert len(state.warnings) == 1 and "[last_model]" in state.warnings[0]

    done = cli("--list", "--data-dir", str(tmp_path / "data"))
    assert done.returncode == 0 and "Traceback" not in done.stderr


def test_model_values_that_are_not_valid_are_named(config_dir: Path) -> None:
    (config_dir / "config.toml").write_text(
        '[model]\ndevice = "gpu7"\ndtype = "bf16"\ncolour = "red"\ntrust_remote_code = true\n'
    )
    config = AppConfig.load()
    assert config.model == {"dtype": "bf16"}
    text = " ".join(config.warnings)
    assert "device" in text and "gpu7" in text
    assert "'colour'" in text
    assert "trust_remote_code is not taken from a file" in text


def test_keymap_values_reach_nothing_unless_they_are_key_names(config_dir: Path) -> None:
    (config_dir / "config.toml").write_text(
        "[keymap]\n"
        'new_tab = "ctrl+t"\n'
        'help = "\\u001b]2;owned\\u0007"\n'
        'quit = "ctrl+q,\\u202ex"\n'
        '"bad\\u001b[2J" = "f2"\n'
        "close_tab = 5\n"
    )
    config = AppConfig.load()
    assert config.keymap == {"new_tab": "ctrl+t"}
    assert len(config.warnings) == 4
    assert not any("\x1b" in w or "\u202e" in w for w in config.warnings)


def test_a_theme_name_in_config_must_be_a_name(config_dir: Path) -> None:
    (config_dir / "config.toml").write_text('theme = "dark\\u001b[31m"\n')
    config = AppConfig.load()
    assert config.theme is None and "theme" in config.warnings[0]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ('name = "pretty\\u001b]2;owned\\u0007"\nprimary = "#123456"\n', "letters, digits"),
        ('name = "abc\\u202edef"\nprimary = "#123456"\n', "letters, digits"),
        ('primary = "#123456"\n[variables]\nchat-user = "not a colour"\n', "not a colour"),
        ('primary = "#123456"\n[variables]\n"a b" = "#123456"\n', "variable name"),
        ('primary = "#123456"\n[variables]\nfooter-key-style = "blink-fast"\n', "text style"),
    ],
)
def test_themes_are_checked_before_they_are_registered(tmp_path: Path, body: str, says: str):
    import themes

    folder = tmp_path / "themes"
    folder.mkdir()
    (folder / "mine.toml").write_text(body)
    found, problems = themes.user_themes(folder)
    assert found == []
    (problem,) = problems
    assert says in problem and "\x1b" not in problem and "\u202e" not in problem


@pytest.mark.parametrize("kind", ["fifo", "zero", "huge"])
def test_a_theme_file_that_is_not_a_small_file_is_refused(tmp_path: Path, kind: str) -> None:
    import themes

    folder = tmp_path / "themes"
    (folder / "ok.toml").parent.mkdir()
    (folder / "ok.toml").write_text('primary = "#123456"\n')
    _hostile(folder / "bad.toml", kind)
    found, problems = finishes(lambda: themes.user_themes(folder), 10)
    assert [t.name for t in found] == ["ok"]
    assert len(problems) == 1 and "bad.toml" in problems[0]


def test_a_model_name_longer_than_any_file_name_is_one_sentence(cli, tmp_path: Path) -> None:
    data = ("--data-dir", str(tmp_path))
    for argv in (
        ("--model", "x" * 300, "--prompt", "hi"),
        ("--model", "./" + "y" * 300, "--prompt", "hi"),
        ("--prompt", "hi", "--compare", "z" * 300 + "@bf16"),
        ("--model", "q" * 5000, "--prompt", "hi"),
    ):
        done = cli(*data, *argv)
        assert done.returncode in (1, 2), done.stderr
        assert "Traceback" not in done.stderr and "File name too long" not in done.stderr
        assert done.stderr.strip().splitlines()[-1].startswith("chat-tui: ")


def test_a_seed_too_large_for_torch_in_a_file_is_dropped() -> None:
    from tui.engine.provenance import Provenance

    saved = Provenance.from_dict({"seed": 99999999999999999999, "spec": {"source": "default"}})
    assert saved is not None and saved.seed is None
    assert "seed" not in saved.generation_settings().values


@pytest.mark.parametrize("kind", ["fifo", "zero", "huge"])
def test_a_chat_template_file_that_is_not_a_small_file_is_one_sentence(
    tmp_path: Path, kind: str
) -> None:
    from tui.engine.errors import TemplateError
    from tui.engine.loader import read_chat_template

    path = tmp_path / "template.jinja"
    _hostile(path, kind)
    with pytest.raises(TemplateError, match="Cannot read chat template"):
        finishes(lambda: read_chat_template(str(path)), 10)


def test_the_command_line_says_what_in_the_config_it_ignored(config_dir: Path, tmp_path) -> None:
    """One-shot and --replay name each ignored config key on stderr (the app shows them
    as notices); a listing stays quiet about the model."""
    from tests.support import run_cli

    (config_dir / "config.toml").write_text("[model]\ndevice = 5\nbogus = 1\n")
    code, _, err = run_cli("--data-dir", str(tmp_path), "--replay", "nothing")
    assert "[model] device = 5 should be text in quotes; it is ignored." in err
    assert "has no setting 'bogus'" in err and code == 1
    code, _, err = run_cli("--data-dir", str(tmp_path), "--list")
    assert code == 0 and "device" not in err


def test_the_state_is_written_only_when_it_changes(config_dir: Path, tmp_path: Path) -> None:
    """Each write waits for the disk (fsync, 0.2 s here) on the UI thread: a first start
    with nothing to record writes no file, and recording what is already there leaves
    the file alone."""
    state_file = tmp_path / "state" / "state.toml"
    state = AppState.load(tmp_path / "data")
    state.set_open_tabs([])
    assert not state_file.exists()
    state.set_open_tabs(["20261130-1"])
    written = state_file.stat().st_ino
    AppState.load(tmp_path / "data").set_open_tabs(["20261130-1"])
    assert state_file.stat().st_ino == written  # the same file: not written again
    state.set_open_tabs([], closed=["20261130-1"])
    assert AppState.load(tmp_path / "data").open_tabs == []
