"""funnel.ranking.models.heads: masking vs slicing heads and FFN neurons, save/load of pruned models, real shrinkage."""
from __future__ import annotations


import pytest

torch = pytest.importorskip("torch")

from funnel.core.errors import InputError  # noqa: E402
from funnel.ranking.models import heads as H  # noqa: E402
from funnel.ranking.models.backbone import load_backbone, tiny_config  # noqa: E402


def _bert(**cfg):
    from transformers import BertModel

    torch.manual_seed(0)
    return BertModel(tiny_config(**cfg), add_pooling_layer=False).eval()


def _classifier(**cfg):
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_config(num_labels=1, **cfg)).eval()


def _inputs(batch=3, seq=17):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1000, 2000, (batch, seq), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[0, 12:] = 0  # padding must be handled the same way
    return {"input_ids": ids, "attention_mask": mask}


def _out(model, inputs):
    with torch.no_grad():
        out = model(**inputs)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


REMOVE = {0: [1, 3], 1: [0]}
REMOVE_FFN = {0: list(range(0, 64, 3)), 1: list(range(10, 40))}


def _masks(model, remove, remove_ffn=None):
    heads = [torch.ones(n) for n in H.heads_per_layer(model)]
    for layer, hs in remove.items():
        heads[layer][hs] = 0
    ffn = None
    if remove_ffn is not None:
        ffn = [torch.ones(n) for n in H.ffn_sizes(model)]
        for layer, ns in remove_ffn.items():
            ffn[layer][ns] = 0
    return heads, ffn


def test_mask_of_ones_changes_nothing_and_zeros_change_output():
    model, x = _bert(), _inputs()
    ref = _out(model, x)
    with H.UnitMask(model, *_masks(model, {})):
        assert torch.equal(_out(model, x), ref)
    with H.UnitMask(model, *_masks(model, REMOVE)):
        assert not torch.allclose(_out(model, x), ref, atol=1e-4)
    assert torch.equal(_out(model, x), ref)  # hooks removed on exit


@pytest.mark.parametrize("build", [_bert, _classifier])
def test_slicing_equals_masking(build):
    model, x = build(), _inputs()
    with H.UnitMask(model, *_masks(model, REMOVE, REMOVE_FFN)):
        masked = _out(model, x)
    H.prune_heads(model, REMOVE)
    H.prune_ffn(model, REMOVE_FFN)
    assert H.heads_per_layer(model) == [2, 3]
    assert H.heads_kept(model) == [[0, 2], [1, 2, 3]]
    assert H.ffn_sizes(model) == [64 - 22, 64 - 30]
    assert model.base_model.encoder.layer[0].attention.self.query.weight.shape == (16, 32)
    assert model.base_model.encoder.layer[0].attention.output.dense.weight.shape == (32, 16)
    torch.testing.assert_close(_out(model, x), masked, atol=1e-5, rtol=1e-5)


def test_pruning_twice_tracks_original_head_indices():
    model, x = _bert(), _inputs()
    with H.UnitMask(model, *_masks(model, {0: [0, 2], 1: [3]})):
        masked = _out(model, x)
    H.prune_heads(model, {0: [0]})  # layer 0 now holds original heads 1, 2, 3
    H.prune_heads(model, {0: [1], 1: [3]})  # current index 1 of layer 0 is original head 2
    assert H.heads_kept(model) == [[1, 3], [0, 1, 2]]
    torch.testing.assert_close(_out(model, x), masked, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("build", [_bert, _classifier])
def test_saved_pruned_model_reloads_identically(build, tmp_path):
    model, x = build(), _inputs()
    H.prune_heads(model, REMOVE)
    H.prune_ffn(model, REMOVE_FFN)
    model.save_pretrained(str(tmp_path), safe_serialization=True)
    assert H.read_structure(tmp_path) == {"heads_kept": [[0, 2], [1, 2, 3]], "ffn_sizes": [42, 34]}
    loaded = H.load_pruned(tmp_path)
    assert type(loaded) is type(model)
    assert H.heads_kept(loaded) == [[0, 2], [1, 2, 3]]
    assert torch.equal(_out(loaded, x), _out(model, x))


def test_unpruned_folder_loads_through_from_pretrained(tmp_path):
    model, x = _classifier(), _inputs()
    model.save_pretrained(str(tmp_path))
    assert torch.equal(_out(H.load_pruned(tmp_path), x), _out(model, x))


def test_bad_inputs_are_refused(tmp_path):
    model = _bert()
    with pytest.raises(ValueError, match="cannot remove all"):
        H.prune_heads(model, {0: [0, 1, 2, 3]})
    with pytest.raises(ValueError, match="out of range"):
        H.prune_heads(model, {1: [7]})
    with pytest.raises(ValueError, match="head mask has shape"):
        H.UnitMask(model, heads=[torch.ones(3), torch.ones(4)])
    with pytest.raises(InputError, match="no config.json"):
        H.load_pruned(tmp_path)
    H.prune_heads(model, {0: [0]})
    model.save_pretrained(str(tmp_path))
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(InputError, match="model.safetensors"):
        H.load_pruned(tmp_path)


def test_the_matrices_really_shrink():
    """Physical removal: every projection loses the rows/columns of the cut heads and neurons, so the
    forward pass does less arithmetic (the speed itself is measured by benchmarks/pruning.py)."""
    import copy

    model = _bert(hidden_size=256, num_attention_heads=8, intermediate_size=1024)
    pruned = copy.deepcopy(model)
    H.prune_heads(pruned, {0: list(range(6)), 1: list(range(6))})
    H.prune_ffn(pruned, {0: list(range(768)), 1: list(range(768))})
    layer_params = 2 * (4 * 256 * 256 + 2 * 256 * 1024)
    # 3/4 of heads and FFN gone: most of the layers' weights are gone.
    assert H.count_parameters(model) - H.count_parameters(pruned) >= 0.7 * layer_params
    for layer in H.encoder_layers(pruned):
        att = layer.attention
        for lin in (att.self.query, att.self.key, att.self.value):
            assert tuple(lin.weight.shape) == (2 * 32, 256)  # 2 heads of 32 dims kept, of 8
        assert tuple(att.output.dense.weight.shape) == (256, 2 * 32)
        assert tuple(layer.intermediate.dense.weight.shape) == (256, 256)
        assert tuple(layer.output.dense.weight.shape) == (256, 256)
    x = {"input_ids": torch.randint(1000, 2000, (2, 16)), "attention_mask": torch.ones(2, 16, dtype=torch.long)}
    with torch.inference_mode():
        assert pruned(**x).last_hidden_state.shape == (2, 16, 256)


def test_minilm_backbone_slices_like_it_masks():
    model = load_backbone("minilm").eval()
    x = _inputs(batch=2, seq=24)
    remove = {0: [0, 5, 11], 3: list(range(8)), 5: [2]}
    with H.UnitMask(model, *_masks(model, remove)):
        masked = _out(model, x)
    H.prune_heads(model, remove)
    assert sum(H.heads_per_layer(model)) == 72 - 12
    torch.testing.assert_close(_out(model, x), masked, atol=1e-4, rtol=1e-4)
