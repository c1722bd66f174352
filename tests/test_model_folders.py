"""audiox_core.model_folders: what the loaders list (by file contents, not names), Hugging Face
text folders, the file-kind check and the missing-file message."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from audiox_core.errors import FieldError
from audiox_core.model_folders import (files_of_kind, is_hf_text_folder, missing_file_message,
                                       needs_outside_tokenizer, text_encoder_choices, weights_file_kind)

VAE_KEYS = {"encoder.layers.0.weight": torch.zeros(2), "decoder.layers.0.weight": torch.zeros(2)}
SYNC_KEYS = {"vfeat_extractor.patch_embed.weight": torch.zeros(2)}


def _save(path: Path, tensors: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tensors, path)
    return path


def _hf_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "spiece.model").write_bytes(b"x")
    _save(folder / "model.pt", {"encoder.block.0.weight": torch.zeros(1), "shared.weight": torch.zeros(1)})
    return folder


def test_files_of_kind_go_by_contents_and_keep_unreadable_files(tmp_path):
    named = [("vae_named_like_a_model.pt", _save(tmp_path / "a.pt", VAE_KEYS)),
             ("model.pt", _save(tmp_path / "b.pt", SYNC_KEYS)),
             ("broken.pt", tmp_path / "broken.pt"),
             ("outside.pt", None)]
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    assert files_of_kind(named, ("vae",)) == ["vae_named_like_a_model.pt", "broken.pt"]
    assert files_of_kind(named, ("synchformer",)) == ["model.pt", "broken.pt"]


def test_text_encoder_choices_list_folders_once_and_skip_a_folder(tmp_path):
    hf = _hf_folder(tmp_path / "t5-base")
    single = _save(tmp_path / "t5_single.pt", {"encoder.block.0.weight": torch.zeros(1)})
    demo = _save(tmp_path / "demo" / "model.pt", VAE_KEYS)
    named = [("t5-base/config.json", hf / "config.json"), ("t5-base/model.pt", hf / "model.pt"),
             ("t5_single.pt", single), ("demo/model.pt", demo), ("gone.pt", None)]
    assert text_encoder_choices(named, tmp_path / "demo") == ["t5-base", "t5_single.pt"]
    assert is_hf_text_folder(hf) and not is_hf_text_folder(tmp_path)
    assert needs_outside_tokenizer(single) and not needs_outside_tokenizer(hf / "model.pt")
    assert not needs_outside_tokenizer(hf)  # a folder brings its own tokenizer


def test_weights_file_kind_names_the_field_and_the_right_loader(tmp_path):
    vae = _save(tmp_path / "vae.pt", VAE_KEYS)
    assert weights_file_kind(vae, "vae.pt", ("vae",), "a VAE").kind == "vae"
    with pytest.raises(FieldError) as err:
        weights_file_kind(vae, "vae.pt", ("audiox",), "an AudioX model", {"vae": " — use the VAE loader"},
                          field="ckpt_name")
    assert err.value.field == "ckpt_name"
    assert str(err.value) == "'vae.pt' is an Oobleck VAE (VAE.ckpt / vae.ckpt), not an AudioX model — use the VAE loader"


def test_missing_file_message_says_where_it_looked(tmp_path):
    message = missing_file_message("audiox", "nothing_here.ckpt", [str(tmp_path), "/elsewhere"])
    assert message.startswith(f"'nothing_here.ckpt' was not found in models/audiox (searched: {tmp_path}, /elsewhere)")
