"""The side-by-side demo job: both models stream, in turns, the same tokens
they would produce alone."""

from core.models.loading import load_model
from core.passes.calibration import calibration_windows
from core.passes.prune_mlp import PruneMlpConfig
from core.passes.recipe import Recipe, apply_recipe
from core.runtime.generation import GenerationSummary, TextToken, stream_generation
from core.runtime.side_by_side import COMPRESSED, ORIGINAL, PaneEvent, stream_side_by_side


def test_both_panes_stream_in_turns_and_match_solo_generation(tiny_llama_dir):
    original = load_model(str(tiny_llama_dir))
    calibration = calibration_windows(original.tokenizer, 4, 64, "pydoc")
    recipe = Recipe((PruneMlpConfig(fraction=0.5),))
    compressed = apply_recipe(original, recipe, calibration).loaded
    events = list(stream_side_by_side(original, compressed, "def main():", 6))
    assert all(isinstance(e, PaneEvent) for e in events)
    panes = [e.pane for e in events if isinstance(e.event, TextToken)]
    assert panes[:4] == [ORIGINAL, COMPRESSED, ORIGINAL, COMPRESSED]  # in turns
    for pane, model in ((ORIGINAL, original), (COMPRESSED, compressed)):
        ours = [e.event.token_id for e in events if e.pane == pane and hasattr(e.event, "token_id")]
        solo = [
            e.token_id for e in stream_generation(model, "def main():", 6) if hasattr(e, "token_id")
        ]
        assert ours == solo
        summaries = [
            e.event for e in events if e.pane == pane and isinstance(e.event, GenerationSummary)
        ]
        assert len(summaries) == 1 and summaries[0].new_tokens == len(ours)
