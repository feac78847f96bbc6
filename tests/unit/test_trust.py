"""A file describes; it never authorizes. A conversation someone mails you (or a JSON
export brought in with ``--import``) whose reply's snapshot asks for a model with its
own code and ``trust_remote_code`` must not run that code: not on ``--replay``, not
after an import, not through a comparison. Hostile attention names and Hub ids in a
file reach neither the Hub nor the network."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.conftest import evil_marker
from tests.store.helpers import run_cli
from tui.engine import ChatRequest, ModelSpec
from tui.engine.errors import EngineError
from tui.engine.replay import replay
from tui.engine.spec import parse_compare_spec
from tui.engine.trust import from_file
from tui.store import SessionStore

HELLO = [{"role": "user", "content": "Hello there, how are you today?"}]


@pytest.fixture()
def marker(evil_model_dir: Path) -> Path:
    path = evil_marker(evil_model_dir)
    path.unlink(missing_ok=True)
    yield path
    assert not path.exists(), "the model's own code ran"


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every attempt to open a connection is recorded and refused."""
    tried: list[object] = []

    def refuse(self, address, *args, **kwargs):
        tried.append(address)
        raise OSError("the network is off in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return tried


def _mailed(data_dir: str, spec: dict, name: str = "mailed") -> None:
    """A conversation whose reply's snapshot asks for ``spec``."""
    store = SessionStore(data_dir)
    conv = store.new(name=name)
    conv.append("user", HELLO[0]["content"])
    conv.append(
        "assistant",
        "I am fine.",
        provenance={"format": 1, "spec": spec, "settings": {"do_sample": False}},
    )
    store.save(conv)


def test_the_attack_model_runs_its_code_when_trusted(evil_model_dir: Path) -> None:
    """The control: the model folder really does run code when trusted, so the tests
    below that see no marker would see one if the guard were gone."""
    from tui.engine import loader

    path = evil_marker(evil_model_dir)
    path.unlink(missing_ok=True)
    with pytest.raises(EngineError, match="ships its own code"):
        loader.load(ModelSpec(source=str(evil_model_dir)))
    assert not path.exists()
    try:
        loader.load(ModelSpec(source=str(evil_model_dir), trust_remote_code=True))
    except EngineError:
        pass  # the class is not a model; the code ran before that
    assert path.exists()
    path.unlink()


def test_a_recorded_spec_is_made_safe_and_says_what_it_refused() -> None:
    recorded = from_file(
        {
            "source": "./model",
            "dtype": "bf16",
            "trust_remote_code": True,
            "chat_template_file": "/etc/shadow",
            "attn_implementation": "kernels-community/flash-attn3",
        }
    )
    spec = recorded.spec
    assert (spec.source, spec.dtype) == ("./model", "bf16")
    assert spec.trust_remote_code is False
    assert spec.chat_template_file is None
    assert spec.attn_implementation == "auto"
    assert recorded.remote_code
    assert len(recorded.refused) == 3
    assert "trust_remote_code" in recorded.refused[0]
    assert "template file" in recorded.refused[1]
    assert "kernels-community/flash-attn3" in recorded.refused[2]
    assert all("\n" not in s and s.endswith(".") for s in recorded.refused)
    # the local attention implementations are kept
    assert from_file({"source": "m", "attn_implementation": "sdpa"}).spec.attn_implementation == (
        "sdpa"
    )
    for bad in ({"source": "x" * 5000}, {"source": ""}, {"source": 5}, {"spec": 1}, []):
        with pytest.raises(EngineError):
            from_file(bad)


def test_another_model_in_a_comparison_never_inherits_trust(tiny_llama_dir: Path) -> None:
    reference = ModelSpec(source=str(tiny_llama_dir), trust_remote_code=True)
    other = parse_compare_spec("./somewhere-else@bf16").resolve(reference)
    assert other.trust_remote_code is False
    same = parse_compare_spec("@bf16").resolve(reference)
    assert same.trust_remote_code is True  # the user allowed it for this model


def test_replay_never_runs_a_mailed_models_code(
    evil_model_dir: Path, tmp_path: Path, marker: Path
) -> None:
    data = str(tmp_path / "data")
    _mailed(data, {"source": str(evil_model_dir), "trust_remote_code": True})

    # not the model chat-tui starts with, and not named: refused before any loading
    code, out, err = run_cli("--data-dir", data, "--replay", "mailed")
    assert (code, out) == (1, "")
    assert f"--model {evil_model_dir}" in err and len(err.strip().splitlines()) == 1

    # named by the user, but its code was asked for only by the file
    code, out, err = run_cli(
        "--data-dir", data, "--replay", "mailed", "--model", str(evil_model_dir)
    )
    assert (code, out) == (1, "")
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert "trust_remote_code" in lines[0] and "without" in lines[0]
    assert "ships its own code" in lines[1]

    # the same conversation mailed as a JSON export and imported
    code, exported, err = run_cli("--data-dir", data, "--export", "mailed", "--format", "json")
    assert code == 0, err
    mailed = tmp_path / "mailed.json"
    mailed.write_text(exported)
    other = str(tmp_path / "other")
    code, _out, err = run_cli("--data-dir", other, "--import", str(mailed))
    assert code == 0, err
    (imported,) = SessionStore(other).list()
    assert imported.id
    snapshot = SessionStore(other).load(imported.id).transcript[-1].provenance
    assert snapshot["spec"]["trust_remote_code"] is True  # stored as received
    code, out, err = run_cli("--data-dir", other, "--replay", imported.id)
    assert code == 1 and "--model" in err
    code, out, err = run_cli(
        "--data-dir", other, "--replay", imported.id, "--model", str(evil_model_dir)
    )
    assert code == 1 and "ships its own code" in err


def test_replay_in_the_engine_drops_what_the_file_asked(
    evil_model_dir: Path, llama_engine, marker: Path
) -> None:
    snapshot = {"spec": {"source": str(evil_model_dir), "trust_remote_code": True}}
    with pytest.raises(EngineError, match="ships its own code"):
        replay(HELLO, "x", snapshot, engine=llama_engine)
    with pytest.raises(EngineError, match="ships its own code"):
        replay(HELLO, "x", snapshot)


def test_hostile_attention_and_template_file_are_refused_and_the_replay_goes_on(
    llama_engine, tiny_llama_dir: Path, tmp_path: Path, no_network: list
) -> None:
    from tui.engine import GenerationSettings

    settings = GenerationSettings()
    settings.update(["do_sample=false", "max_new_tokens=6"])
    first = llama_engine.chat(ChatRequest(HELLO, settings=settings))
    snapshot = first.stats.provenance.to_dict()
    snapshot["spec"]["attn_implementation"] = "kernels-community/vllm-flash-attn3"
    snapshot["spec"]["chat_template_file"] = "/etc/shadow"
    data = str(tmp_path / "data")
    store = SessionStore(data)
    conv = store.new(name="attn")
    conv.append("user", HELLO[0]["content"])
    conv.append("assistant", first.text, provenance=snapshot)
    store.save(conv)
    code, out, err = run_cli("--data-dir", data, "--replay", "attn", "--model", str(tiny_llama_dir))
    assert (code, out) == (0, "identical\n"), err
    assert "kernels-community/vllm-flash-attn3" in err and "using auto" in err
    assert "template file" in err
    assert no_network == []


def test_a_hub_id_in_a_file_is_not_downloaded(
    llama_engine, tmp_path: Path, no_network: list
) -> None:
    snapshot = {"spec": {"source": "someone/not-on-this-machine"}}
    with pytest.raises(EngineError, match="not on this machine"):
        replay(HELLO, "x", snapshot, engine=llama_engine)
    data = str(tmp_path / "data")
    _mailed(data, {"source": "someone/not-on-this-machine"})
    code, out, err = run_cli("--data-dir", data, "--replay", "mailed")
    assert (code, out) == (1, "") and "--model someone/not-on-this-machine" in err
    assert no_network == []


def test_trust_in_config_or_state_is_not_taken(tmp_path: Path) -> None:
    from tui.cli.model_choice import choose_spec

    configured = {"source": "./mine", "trust_remote_code": True, "chat_template_file": "t.jinja"}
    spec = choose_spec({}, configured)
    assert spec.trust_remote_code is False
    assert spec.chat_template_file == "t.jinja"  # the user's own config may name one
    remembered = {"source": "./last", "trust_remote_code": True, "chat_template_file": "/x"}
    spec = choose_spec({}, None, remembered)
    assert (spec.source, spec.trust_remote_code, spec.chat_template_file) == ("./last", False, None)
    assert choose_spec({"trust_remote_code": True}, configured).trust_remote_code is True
    assert choose_spec({}, {"dtype": "bf16"}).dtype == "bf16"  # no source: the default's


def test_one_shot_compare_with_a_model_that_ships_code(
    tiny_llama_dir: Path, evil_model_dir: Path, tmp_path: Path, marker: Path
) -> None:
    code, _out, err = run_cli(
        "--data-dir",
        str(tmp_path / "data"),
        "--model",
        str(tiny_llama_dir),
        "--trust-remote-code",  # for the reference only
        "--prompt",
        "hi",
        "--compare",
        str(evil_model_dir),
        "max_new_tokens=4",
        "--no-save",
    )
    assert code == 1
    assert "ships its own code" in err


@pytest.mark.parametrize(
    "template",
    [
        "{% include '/etc/passwd' %}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    ],
)
def test_chat_templates_render_in_a_sandbox(tokenizer, template: str) -> None:
    from tui.engine.chat_format import build_prompt
    from tui.engine.errors import TemplateError

    with pytest.raises(TemplateError, match="failed to render"):
        build_prompt(tokenizer, HELLO, template_override=template)


def test_the_bundled_model_replays_without_a_model_argument(tmp_path: Path) -> None:
    """The rule's other side: the model chat-tui starts with needs no --model."""
    data = str(tmp_path / "data")
    _mailed(data, {"source": "default", "trust_remote_code": True, "dtype": "fp32"})
    _code, out, err = run_cli("--data-dir", data, "--replay", "mailed", "max_new_tokens=2")
    assert "--model" not in err
    assert "trust_remote_code" in err.splitlines()[0]
    assert out.startswith(("identical", "diverges", "differs")), err


def test_exported_json_keeps_the_request_as_data(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    _mailed(data, {"source": "./x", "trust_remote_code": True})
    code, out, _err = run_cli("--data-dir", data, "--export", "mailed", "--format", "json")
    assert code == 0
    assert (
        json.loads(out)["chat_tui"]["messages"][-1]["provenance"]["spec"]["trust_remote_code"]
        is True
    )
