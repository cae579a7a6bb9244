"""docs/compressor.md states what the compressor recipe trains: the block is generated from the recipe defaults.

Regenerate after changing the defaults: ``python tests/test_compressor_docs.py``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "compressor.md"
BEGIN = "<!-- generated from the recipe defaults; tests/test_compressor_docs.py fails when they diverge -->"
END = "<!-- end generated -->"


def render_defaults() -> str:
    """The doc block for the current defaults of ``fit compressor``."""
    from hep_keras.training.recipes import compressor, get_recipe, recipe_defaults

    d = recipe_defaults(get_recipe("compressor"))
    widths = d["widths"]
    arch = "-".join(str(w) for w in (4, *widths, d["latent_dim"], *reversed(widths), 4))
    weights = ", ".join(f"{w:g}" for w in d["loss_weights"])
    lr = "off" if not d["reduce_lr_patience"] else f"patience {d['reduce_lr_patience']} (factor 0.5)"
    lines = [
        f"* Architecture {arch}, activation `{d['activation']}` (latent and output linear).",
        f"* Features (log10 pT, η, φ, log10(m + {d['mass_offset']:g} GeV)), normalisation `{d['normalization']}`.",
        f"* Loss: weighted MSE in normalised space, weights (pT, η, φ, m) = ({weights}), φ difference wrapped.",
        f"* Adam, learning rate {d['learning_rate']:g}, batch {d['batch_size']}, up to {d['epochs']} epochs, "
        f"augmentation {'on' if d['augment'] else 'off'} (φ rotation, η → −η).",
        f"* Early stopping on `{compressor.MONITOR}` with patience {d['patience']}; ReduceLROnPlateau {lr}.",
        "",
        "| key | default |",
        "|---|---|",
    ]
    lines += [f"| `{key}` | `{json.dumps(value)}` |" for key, value in compressor.DEFAULTS.items()]
    return "\n".join(lines)


def doc_block(text: str) -> str:
    match = re.search(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), text, re.S)
    assert match, f"{DOC}: generated block markers missing"
    return match.group(1)


def test_doc_states_the_recipe_defaults():
    expected = render_defaults()
    stale = "docs/compressor.md is stale: run python tests/test_compressor_docs.py"
    assert doc_block(DOC.read_text()) == expected, stale
    assert "activation `gelu`" in expected and "patience 20" in expected  # today's defaults, for the reader


if __name__ == "__main__":
    text = DOC.read_text()
    if "{DEFAULTS}" in text:
        text = text.replace("{DEFAULTS}", render_defaults())
    else:
        text = text.replace(doc_block(text), render_defaults())
    DOC.write_text(text)
