"""The fine/coarse fusion weight: the build's choice (fusion.json) unless the config sets one."""
import json
from dataclasses import replace

from funnel.core.config import load_config
from funnel.ranking.serving.fine import DEFAULT_FINE_WEIGHT, fusion_choice
from funnel.ranking.training.fusion import best_weight


def test_the_config_wins_then_the_build_then_the_default(tmp_path):
    config = load_config(None, [f'paths.home="{tmp_path}"'])
    assert fusion_choice(config) == (DEFAULT_FINE_WEIGHT, True)  # nothing fitted
    config.paths.models.mkdir(parents=True)
    config.paths.fusion.write_text(json.dumps({"format_version": 1, "fine_weight": 4.0, "cpu_fine": False}))
    assert fusion_choice(config) == (4.0, False)
    set_to_zero = replace(config, pipeline=replace(config.pipeline, fine_weight=0.0))
    assert fusion_choice(set_to_zero) == (0.0, True)  # 0 is a weight (the cross-encoder alone), not "unset"
    config.paths.fusion.write_text("{not json")
    assert fusion_choice(config) == (DEFAULT_FINE_WEIGHT, True)


def test_ties_go_to_the_larger_weight():
    assert best_weight({0.0: 0.5, 1.0: 0.7, 8.0: 0.7, 32.0: 0.6}) == 8.0
    assert best_weight({0.0: 0.8, 1.0: 0.7}) == 0.0


def test_a_negative_weight_other_than_minus_one_is_refused(tmp_path):
    import pytest
    from funnel.core.errors import FunnelError

    with pytest.raises(FunnelError, match="fine_weight"):
        load_config(None, [f'paths.home="{tmp_path}"', "pipeline.fine_weight=-2"])
