"""The ``unmask`` command end to end, in-process (``rl.cli.main``) and as the installed script."""
import importlib.metadata
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import FIXTURES, LLADA_TINY
from unmask.rl.cli import main

COMMANDS = ("train", "sft", "eval", "score", "merge", "bench", "generate", "demo", "compare", "dpo", "smoke")

REPO = Path(__file__).resolve().parents[1]


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in COMMANDS:
        assert cmd in out


def test_version_and_every_help_answer_without_loading_torch():
    """``unmask --version`` and each subcommand's ``--help`` import neither torch nor transformers (that is what
    keeps them instant; the subcommands load their dependencies when they run)."""
    code = ("import sys\n"
            "from unmask.rl.cli import main\n"
            f"commands = [None, *{COMMANDS!r}]\n"
            "for command in commands:\n"
            "    try:\n"
            "        main([command, '--help'] if command else ['--version'])\n"
            "    except SystemExit as exit:\n"
            "        assert exit.code == 0, command\n"
            "loaded = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules]\n"
            "assert not loaded, loaded\n"
            "print(len(commands))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[0] == f"unmask {importlib.metadata.version('unmask')}"
    assert int(result.stdout.split()[-1]) == len(COMMANDS) + 1


def test_generate_on_the_bundled_tiny_model(capsys):
    rc = main(["generate", "--model", str(LLADA_TINY), "--tokenizer", "bytes", "--prompt", "2+2=", "--prompt",
               "a longer prompt", "--max-completion-length", "16", "--diffusion-steps", "8", "--block-length", "8",
               "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0 and out.startswith("[0] ") and "\n[1] " in out and "llada: 32 tokens" in out


def test_generate_with_prompt_ids_is_exactly_the_golden_sampler(capsys):
    from safetensors.torch import load_file
    g = load_file(LLADA_TINY / "golden.safetensors")
    prompts = [",".join(map(str, row.tolist())) for row in g["gen_prompt"]]
    rc = main(["generate", "--model", str(LLADA_TINY), "--prompt-ids", prompts[0], "--prompt-ids", prompts[1],
               "--max-completion-length", "32", "--diffusion-steps", "16", "--block-length", "8", "--device", "cpu"])
    lines = capsys.readouterr().out.splitlines()
    assert rc == 0
    for i in range(2):
        assert lines[i] == f"[{i}] " + " ".join(map(str, g["gen_s16_l32_b8"][i, 8:].tolist()))


@pytest.mark.parametrize("argv, message", [
    (["generate", "--model", "nowhere/at-all-x", "--prompt", "x"], "could not fetch 'nowhere/at-all-x'"),
    (["generate", "--model", str(LLADA_TINY), "--prompt", "x"], "ships no tokenizer"),
    (["generate", "--model", str(LLADA_TINY), "--prompt-ids", "1,x"], "comma-separated integers"),
    (["generate", "--model", str(LLADA_TINY), "--prompt-ids", "1,2", "--block-length", "5"],
     "multiple of block_length"),
    (["train", str(FIXTURES / "nope.yaml")], "nope.yaml"),
])
def test_bad_input_exits_2_with_a_clear_message(argv, message, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_eval_rejects_unknown_benchmarks_by_name(capsys):
    assert main(["eval", "--model", "x/y", "--benchmark", "gsm8", "--limit", "1"]) == 2
    assert "--benchmark 'gsm8' is not a registered benchmark; did you mean 'gsm8k'" in capsys.readouterr().err


def test_train_prints_the_resolved_recipe_with_overrides_anywhere(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("rollout:\n  block_length: 32\n")
    assert main(["train", str(recipe), "--print-config", "rollout.block_length=64", "training.max_steps=3"]) == 0
    out = capsys.readouterr().out
    assert "block_length: 64" in out and "max_steps: 3" in out
    assert main(["train", str(recipe), "rollout.blok_length=64"]) == 2
    assert "did you mean 'rollout.block_length'" in capsys.readouterr().err
    assert main(["train", str(recipe), f"model.name_or_path={tmp_path / 'no-model'}"]) == 2
    assert f"no such directory: {tmp_path / 'no-model'}" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["eval", "--model", "out/nope", "--benchmark", "gsm8k"],
    ["generate", "--model", "out/nope", "--prompt", "x"],
    ["merge", "--model", "out/nope", "--adapter", "out", "--out", "merged"],
    ["train", str(REPO / "recipes" / "tiny-cpu.yaml"), "model.name_or_path=out/nope"],
    ["sft", str(REPO / "recipes" / "sft" / "tiny-cpu-sft.yaml"), "model.name_or_path=out/nope"],
], ids=lambda argv: argv[0])
def test_every_command_that_loads_a_model_says_no_such_directory_before_any_download(argv, tmp_path, monkeypatch,
                                                                                     capsys):
    def refuse(*args, **kwargs):
        raise AssertionError("downloaded something for a local path")
    monkeypatch.setattr("huggingface_hub.snapshot_download", refuse)
    monkeypatch.setattr("unmask.tasks.benchmark.Benchmark.load", refuse)  # eval checks --model before loading data
    (tmp_path / "out").mkdir()  # so out/nope reads as a path under ./out, not as the Hub id of org 'out'
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert "no such directory: out/nope" in capsys.readouterr().err


def test_override_words_without_equals_are_malformed_wherever_they_stand(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("rollout:\n  block_length: 32\n")
    for argv in (["train", str(recipe), "rollout.block_length", "--print-config"],
                 ["train", str(recipe), "--print-config", "rollout.block_length"]):
        assert main(argv) == 2
        assert "malformed override 'rollout.block_length': expected KEY=VALUE" in capsys.readouterr().err


def _console_script() -> str:
    """The `unmask` command installed by pyproject's [project.scripts] next to this interpreter."""
    script = Path(sys.executable).parent / "unmask"
    found = str(script) if script.is_file() else shutil.which("unmask")
    assert found, "the `unmask` console script is not installed (pip install -e '.[dev]')"
    return found


def test_installed_console_script_runs_the_smoke_run(tmp_path):
    done = subprocess.run([_console_script(), "smoke", "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "llada:" in done.stdout and "dream:" in done.stdout
    assert (tmp_path / "tiny-llada" / "model.safetensors").is_file()


README_OFFLINE_COMMANDS = [
    'unmask generate --model tests/fixtures/llada-tiny --tokenizer bytes --prompt "2+2="',
    "unmask train recipes/example.yaml --print-config rollout.block_length=64 training.max_steps=10",
]


@pytest.mark.parametrize("command", README_OFFLINE_COMMANDS)
def test_readme_offline_commands_work_as_written(command):
    assert command in (REPO / "README.md").read_text()
    argv = [_console_script(), *shlex.split(command)[1:]]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    if "generate" in command:
        assert done.stdout.startswith("[0] ") and "# llada: 64 tokens" in done.stdout
    else:
        assert "  block_length: 64\n" in done.stdout and "  max_steps: 10\n" in done.stdout
