"""Model resolution without a hub: packaged alias, local HF directory, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from recsys.models.hub import ModelNotFoundError, load_pretrained, resolve_model_path


def test_packaged_minilm_loads_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = resolve_model_path("all-MiniLM-L6-v2")
    assert (Path(path) / "config.json").is_file()
    assert resolve_model_path("sentence-transformers/all-MiniLM-L6-v2") == path
    model, tok = load_pretrained("all-MiniLM-L6-v2")
    batch = tok(["wireless gaming mouse", "ps4"], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state  # [2, T, 384]
    assert hidden.shape[0] == 2 and hidden.shape[-1] == 384


def test_tiny_random_bert_directory(tiny_bert_dir: Path):
    assert resolve_model_path(str(tiny_bert_dir)) == str(tiny_bert_dir)
    model, tok = load_pretrained(str(tiny_bert_dir))
    assert model.config.hidden_size == 32 and tok is not None


def test_missing_model_error_says_what_was_looked_for(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as exc:
        resolve_model_path("some-org/not-a-cached-model")
    msg = str(exc.value)
    assert "installed aliases" in msg and "local directory" in msg and "HF cache only" in msg
    assert "save_pretrained()" in msg
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="has no config.json"):
        resolve_model_path(str(tmp_path / "empty"))
