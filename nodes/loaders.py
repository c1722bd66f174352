"""Loader nodes: AudioX model, VAE, T5 text encoder, CLIP vision, Synchformer, from the model folders
of :mod:`.model_files`.  Weights are loaded straight into the chosen dtype on ComfyUI's offload device
and wrapped for its memory manager; only the nodes that run a network move it to the GPU.
"""
from __future__ import annotations

import logging
import os

from ..audiox_core.acceleration import FP8, loaded_backbone_fp8, model_weight_dtype, t5_weight_dtype
from ..audiox_core.errors import AudioXError, CheckpointError
from . import comfy_compat
from .common import (CATEGORY, CLIP_VISION, DTYPE_OPTIONS, DTYPE_TOOLTIP, MODEL, SYNCHFORMER, T5, VAE, ClipVisionFile,
                     ModelBundle, SynchformerBundle, T5Bundle, VAEBundle, about_input, bool_input, choice_input, expect,
                     int_input, node_error, node_function, outputs, resolve_dtype, socket_input)
from .model_files import (MODEL_KINDS, file_present, list_audiox_files, list_files_of_kind, list_text_encoders,
                          pick_file, pick_weights_file)
from .values import model_parts

log = logging.getLogger(__name__)

MODEL_DTYPE_OPTIONS = DTYPE_OPTIONS + [FP8]
MODEL_DTYPE_TOOLTIP = (DTYPE_TOOLTIP + " fp8_e4m3fn: the transformer blocks' weights are stored in 8 bits (half of "
                       "bf16, for 8 GB cards) and cast per layer to the compute dtype (bf16 on a GPU that supports "
                       "it, else fp16; fp32 on the CPU); slightly less exact; no LoRAs or training on such a model.")
KEEP_TOOLTIP = ("On: after use the weights stay on the GPU until ComfyUI needs the memory for something else "
                "(fast re-runs). Off: they go back to the CPU as soon as the node that used them finishes "
                "(less VRAM, slower). An AudioX model's encoders (CLIP, audio prompt) always leave the GPU after "
                "encoding.")
KEEP_ON_GPU_INPUT = bool_input(True, KEEP_TOOLTIP, label_on="keep on GPU", label_off="offload after use")
ENCODER_KEEP_TOOLTIP = ("Off (default): the encoder leaves the GPU as soon as it has encoded (it runs once per "
                        "prompt or video; the backbone gets its VRAM). On: it stays until ComfyUI needs the memory "
                        "(faster when the prompt changes on every run).")
ENCODER_KEEP_ON_GPU_INPUT = bool_input(False, ENCODER_KEEP_TOOLTIP, label_on="keep on GPU",
                                       label_off="offload after use")
OTHER_LOADER_HINTS = {kind: f" — load it with AudioX {loader} Loader" for kind, loader in (
    ("vae", "VAE"), ("t5", "T5"), ("synchformer", "Synchformer"), ("clip_vision", "CLIP Vision"))}
VAE_HINTS = {"audiox": " — an AudioX checkpoint brings its own VAE: use the 'vae' output of AudioX Model Loader"}
LOAD_ERROR_INPUTS = {"vae": "vae", "missing_vae": "vae", "clip_vision": "clip_vision",
                     "missing_clip_vision": "clip_vision", "checkpoint": "ckpt_name"}
LOAD_ERROR_MESSAGES = {  # for CheckpointError; other errors keep their own message
    "vae": "'{vae}' does not fit '{checkpoint}': {error}", "clip_vision": "does not fit '{checkpoint}': {error}",
    "missing_vae": "is not connected, but '{checkpoint}' has no VAE weights: load vae.ckpt / VAE.ckpt with AudioX "
                   "VAE Loader and connect it",
    "missing_clip_vision": "is not connected, but '{checkpoint}' has no CLIP vision tower: load CLIP ViT-B/32 with "
                           "AudioX CLIP Vision Loader and connect it"}
CKPT_TOOLTIP = ("Checkpoint in models/audiox (.safetensors, or .ckpt/.pth loaded safely with weights_only). The "
                "official model.ckpt / audiox_turbo.ckpt load unchanged.")
CLIP_INPUT_TOOLTIP = ("CLIP ViT-B/32 vision weights (AudioX CLIP Vision Loader), for checkpoints saved without "
                      "the CLIP tower.")
VAE_INPUT_TOOLTIP = ("A separate VAE file (AudioX VAE Loader). Needed for checkpoints saved without their VAE, such "
                     "as the official audiox_turbo.ckpt (vae.ckpt); when given it replaces the checkpoint's own VAE.")


def _offload(keep_on_gpu: bool):
    return None if keep_on_gpu else True


def _load_checkpoint(node: str, path, ckpt_name: str, weights_dtype, vae, clip_vision):
    """The model of ``path``; a VAE / CLIP vision file that does not fit is named as that input."""
    from ..audiox_core.checkpoint import load_error_source, load_model
    try:
        return load_model(path, dtype=weights_dtype, device=comfy_compat.unet_offload_device(),
                          vae=getattr(vae, "path", None), clip_vision=getattr(clip_vision, "path", None))
    except AudioXError as e:
        source = load_error_source(e)
        message = LOAD_ERROR_MESSAGES.get(source, "{error}") if isinstance(e, CheckpointError) else "{error}"
        raise node_error(node, LOAD_ERROR_INPUTS[source], message.format(
            error=e, checkpoint=ckpt_name, vae=getattr(vae, "name", ""))) from e


class LoaderNode:
    """What every loader node declares alike."""
    CATEGORY = f"{CATEGORY}/loaders"
    FUNCTION = "load"


class AudioXModelLoader(LoaderNode):
    DISPLAY_NAME = "AudioX Model Loader"
    DESCRIPTION = ("Loads an AudioX checkpoint from models/audiox (or the pack's demo model). The variant — AudioX, "
                   "AudioX-MAF, AudioX-MAF-MMDiT or AudioX-Turbo (student or base) — is detected from the "
                   "file's weights, not its name.")
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs(
        (MODEL, "model", "The AudioX model (backbone, conditioners, MAF)."),
        (VAE, "vae", "The model's own VAE, for AudioX VAE Encode/Decode."),
        ("STRING", "info", "What was detected: variant, sample rate, window, conditions."))

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"ckpt_name": socket_input(list_audiox_files(), CKPT_TOOLTIP),
                             "dtype": choice_input(MODEL_DTYPE_OPTIONS, "auto", MODEL_DTYPE_TOOLTIP),
                             "keep_on_gpu": KEEP_ON_GPU_INPUT},
                "optional": {"vae": socket_input(VAE, VAE_INPUT_TOOLTIP),
                             "clip_vision": socket_input(CLIP_VISION, CLIP_INPUT_TOOLTIP)}}

    @classmethod
    def VALIDATE_INPUTS(cls, ckpt_name):
        return file_present("audiox", ckpt_name)

    @node_function
    def load(self, ckpt_name, dtype="auto", keep_on_gpu=True, vae=None, clip_vision=None):
        node = self.DISPLAY_NAME
        vae = expect(vae, VAEBundle, node, "vae", "an AUDIOX_VAE from AudioX VAE Loader", optional=True)
        if vae is not None and not vae.path:
            raise node_error(node, "vae", "must come from AudioX VAE Loader (a file), not from another model")
        expect(clip_vision, ClipVisionFile, node, "clip_vision", "an AUDIOX_CLIP_VISION", optional=True)
        path, _ = pick_weights_file(node, "ckpt_name", "audiox", ckpt_name, MODEL_KINDS, "an AudioX model",
                                    OTHER_LOADER_HINTS)
        weights_dtype, fp8 = model_weight_dtype(dtype, comfy_compat.get_torch_device())
        model = _load_checkpoint(node, path, ckpt_name, weights_dtype, vae, clip_vision)
        if fp8:
            loaded_backbone_fp8(model, weights_dtype)
        parts = model_parts(model)
        bundle = ModelBundle(model, parts, _offload(keep_on_gpu), name=os.path.basename(ckpt_name))
        vae_out = VAEBundle(model.pretransform, parts["vae"], bundle.sample_rate, bundle.offload_after,
                            name=f"{bundle.name} (VAE)")
        info = bundle.describe()
        log.info("AudioX model loaded:\n%s", info)
        return {"ui": {"text": [info]}, "result": (bundle, vae_out, info)}


class AudioXVAELoader(LoaderNode):
    DISPLAY_NAME = "AudioX VAE Loader"
    DESCRIPTION = ("Loads an Oobleck VAE file (the official VAE.ckpt / vae.ckpt) from models/audiox. Connect it to "
                   "AudioX Model Loader for checkpoints without a VAE (AudioX-Turbo), or use it directly with "
                   "AudioX VAE Encode/Decode.")
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs((VAE, "vae", "The VAE."))

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "vae_name": socket_input(list_files_of_kind("audiox", ("vae",)),
                                     "VAE file in models/audiox (VAE.ckpt, vae.ckpt or a .safetensors conversion)."),
            "sample_rate": int_input(44100, 8000, 192000, "The rate the VAE was trained at (44100 for every released "
                                     "AudioX VAE); a VAE file does not store it.", step=1),
            "keep_on_gpu": KEEP_ON_GPU_INPUT,
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, vae_name):
        return file_present("audiox", vae_name)

    @node_function
    def load(self, vae_name, sample_rate=44100, keep_on_gpu=True):
        from ..audiox_core.checkpoint import load_vae
        node = self.DISPLAY_NAME
        path, _ = pick_weights_file(node, "vae_name", "audiox", vae_name, ("vae",), "a VAE", VAE_HINTS)
        with about_input(node, "vae_name"):
            pretransform = load_vae(path, device=comfy_compat.unet_offload_device())
        return (VAEBundle(pretransform, comfy_compat.wrap_model(pretransform), int(sample_rate), _offload(keep_on_gpu),
                          name=os.path.basename(vae_name), path=str(path)),)


class AudioXT5Loader(LoaderNode):
    DISPLAY_NAME = "AudioX T5 Loader"
    DESCRIPTION = ("Loads the T5 text encoder from models/text_encoders: a Hugging Face folder (config.json, "
                   "model.safetensors, tokenizer) or a single t5-base file such as ComfyUI's t5_base.safetensors "
                   "(its tokenizer then comes with ComfyUI). Every released AudioX model uses t5-base.")
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs((T5, "t5", "The text encoder, for AudioX Text Encoder."))

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "t5_name": socket_input(list_text_encoders(), "A T5 folder or file in models/text_encoders (the demo "
                                                          "model's demo_t5 is listed too)."),
            "dtype": choice_input(DTYPE_OPTIONS, "auto", "Precision of T5. auto: fp16 on a GPU (as the official), "
                                                         "fp32 on the CPU."),
            "keep_on_gpu": ENCODER_KEEP_ON_GPU_INPUT,
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, t5_name):
        return file_present("text_encoders", t5_name)

    @node_function
    def load(self, t5_name, dtype="auto", keep_on_gpu=False):
        from ..audiox_core.conditioning.t5 import T5TextEncoder
        from ..audiox_core.model_folders import needs_outside_tokenizer
        node = self.DISPLAY_NAME
        path = pick_file(node, "t5_name", "text_encoders", t5_name)
        tokenizer = comfy_compat.comfy_t5_tokenizer_dir() if needs_outside_tokenizer(path) else None
        weights_dtype = t5_weight_dtype(dtype, comfy_compat.get_torch_device())
        with about_input(node, "t5_name"):
            encoder = T5TextEncoder.from_local(path, dtype=weights_dtype, device=comfy_compat.unet_offload_device(),
                                               tokenizer_path=tokenizer, expected_dim=None)
        return (T5Bundle(encoder, comfy_compat.wrap_model(encoder.model), _offload(keep_on_gpu), name=t5_name),)


class AudioXCLIPVisionLoader(LoaderNode):
    DISPLAY_NAME = "AudioX CLIP Vision Loader"
    DESCRIPTION = ("Picks CLIP ViT-B/32 vision weights from models/clip_vision (Hugging Face or OpenAI layout) for "
                   "AudioX checkpoints saved without their CLIP tower. Connect it to AudioX Model Loader.")
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs(
        (CLIP_VISION, "clip_vision", "The CLIP vision file, for AudioX Model Loader's clip_vision input."))

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip_name": socket_input(list_files_of_kind("clip_vision", ("clip_vision",)),
                                                       "openai/clip-vit-base-patch32 vision weights (e.g. "
                                                       "clip_vision_b32.safetensors or the full CLIP model file).")}}

    @node_function
    def load(self, clip_name):
        node = self.DISPLAY_NAME
        path, kind = pick_weights_file(node, "clip_name", "clip_vision", clip_name, ("clip_vision",),
                                       "a CLIP vision model")
        return (ClipVisionFile(str(path), kind.description),)


class AudioXSynchformerLoader(LoaderNode):
    DISPLAY_NAME = "AudioX Synchformer Loader"
    DESCRIPTION = ("Loads the Synchformer visual extractor (synchformer_state_dict.pth, the file MMAudio also uses) "
                   "from models/audiox. AudioX-MAF, -MAF-MMDiT and Turbo condition on its sync features when "
                   "given a video.")
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs(
        (SYNCHFORMER, "synchformer", "The Synchformer, for AudioX Video Encoder / AudioX Sync Encoder."))

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "synchformer_name": socket_input(list_files_of_kind("audiox", ("synchformer",)),
                                             "synchformer_state_dict.pth in models/audiox."),
            "dtype": choice_input(DTYPE_OPTIONS, "auto", DTYPE_TOOLTIP),
            "keep_on_gpu": ENCODER_KEEP_ON_GPU_INPUT,
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, synchformer_name):
        return file_present("audiox", synchformer_name)

    @node_function
    def load(self, synchformer_name, dtype="auto", keep_on_gpu=False):
        from ..audiox_core.conditioning.synchformer import Synchformer
        node = self.DISPLAY_NAME
        path = pick_file(node, "synchformer_name", "audiox", synchformer_name)
        with about_input(node, "synchformer_name"):
            module = Synchformer.from_file(path, dtype=resolve_dtype(dtype), device=comfy_compat.unet_offload_device())
        return (SynchformerBundle(module, comfy_compat.wrap_model(module), _offload(keep_on_gpu),
                                  name=synchformer_name),)


NODE_CLASS_MAPPINGS = {cls.__name__: cls for cls in (AudioXModelLoader, AudioXVAELoader, AudioXT5Loader,
                                                      AudioXCLIPVisionLoader, AudioXSynchformerLoader)}
