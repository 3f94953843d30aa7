"""The cross-encoder's model classes, by pooling (recorded as ``funnel_pooling`` in config.json).

- ``"cls"``: `transformers.BertForSequenceClassification` as it is: BERT's pooler on the [CLS] state,
  then the linear head.
- ``"mean"`` (the default for new models): the same weights and head over the mean of the last layer's
  token states, padding excluded. MiniLM was trained as a sentence encoder through mean pooling, so
  its [CLS] state carries little and a [CLS] head starts from near-constant scores; the mean starts
  from features that already vary with the text. On SciFact (2-core CPU, lr 1e-4, head 1e-3) the
  listwise loss left its ln(4) plateau within ~25 steps, against ~75 for [CLS] at lr 3e-5.

Imported only where a cross-encoder is built or loaded (it imports transformers).
"""
from __future__ import annotations

from transformers import BertForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutput

from funnel.core.errors import InputError

POOLING_KEY = "funnel_pooling"
POOLINGS = ("cls", "mean")


class MeanPoolBertForSequenceClassification(BertForSequenceClassification):
    """`BertForSequenceClassification` scoring the masked mean of the last hidden states."""

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, output_attentions=None,
                output_hidden_states=None, **unused) -> SequenceClassifierOutput:
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                        output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        h = out.last_hidden_state  # (batch, seq, hidden)
        if attention_mask is None:
            pooled = h.mean(1)
        else:
            m = attention_mask.unsqueeze(-1).to(h.dtype)  # (batch, seq, 1)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1)
        logits = self.classifier(self.dropout(pooled))  # (batch, num_labels)
        return SequenceClassifierOutput(logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)


def model_class(pooling: str):
    """The class that implements `pooling` ("cls" or "mean")."""
    if pooling == "cls":
        return BertForSequenceClassification
    if pooling == "mean":
        return MeanPoolBertForSequenceClassification
    raise InputError(f"fine.pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")


def head_parameters(model) -> list:
    """The trainable parameters outside BERT's embeddings and encoder layers: the pooler and the
    classifier, which start (partly) random and train at ``fine.head_learning_rate``."""
    return [p for n, p in model.named_parameters() if p.requires_grad
            and not n.startswith(("bert.encoder.", "bert.embeddings."))]


def class_of(config) -> type:
    """The class of a saved cross-encoder's config (models saved before pooling was recorded: "cls")."""
    return model_class(getattr(config, POOLING_KEY, "cls"))
