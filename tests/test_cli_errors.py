"""Commands given an export of the wrong kind end in one error line naming the export and what was expected."""

from __future__ import annotations

import json

import pytest

from hep_keras.commands import run


def fake_export(path, model: str):
    (path / "saved_model").mkdir(parents=True)
    (path / "metadata.json").write_text(json.dumps({"model": model}))
    return path


@pytest.mark.parametrize(
    ("command", "argv", "model", "expected"),
    [
        ("reconstruct", ["--out", "{tmp}/out"], "compressor", "vae or ae or diffusion"),
        ("generate", ["--events", "2", "--out", "{tmp}/x.h5"], "vae", "diffusion"),
        ("compress", ["{data}", "{tmp}/c.hjz", "--codec", "ae"], "vae", "compressor"),
    ],
)
def test_wrong_kind_of_export_is_one_error_line(tmp_path, capsys, command, argv, model, expected):
    import importlib

    from hep_keras.data.sample import SAMPLE_PATH

    export = fake_export(tmp_path / "export", model)
    argv = [a.format(tmp=tmp_path, data=SAMPLE_PATH) for a in argv]
    module = importlib.import_module(f"hep_keras.commands.{command}")
    with pytest.raises(SystemExit) as exit_info:
        run(module.main, [str(export), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert err[-1] == f"error: {export}: is a {model!r} export; this command needs a {expected} export"
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.h5").exists()
