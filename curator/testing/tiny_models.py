"""Random-weight models written into a model directory in the layout curator reads.

Tests and benchmarks use them to run the real loading code without any download:

    build_open_clip(model_dir)                       # tiny CLIP: open_clip:tiny-test/random
    build_open_clip(model_dir, arch="ViT-B-32")      # ViT-B-32 architecture, random weights
    build_vlm(model_dir)                             # tiny LLaVA: hf:curator-test/tiny-llava
    build_xclip(model_dir)                           # tiny X-CLIP video-text model: hf-video:curator-test/tiny-xclip
"""

from __future__ import annotations

import os
from typing import Any

from curator.models import registry

TINY_CLIP_NAME = "open_clip:tiny-test/random"
TINY_VLM_NAME = "hf:curator-test/tiny-llava"

TINY_CLIP_CFG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def build_open_clip(model_dir: str, arch: str | None = None, tag: str = "random", seed: int = 0,
                    preprocess: dict[str, Any] | None = None) -> str:
    """Save a random-weight open_clip model; returns its model name.

    arch None: the tiny config above (named ``tiny-test``); else a built-in open_clip
    architecture (e.g. "ViT-B-32") created with pretrained=None."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    if arch is None:
        cfg = dict(TINY_CLIP_CFG)
        model = open_clip.CLIP(**cfg)
        name = f"open_clip:tiny-test/{tag}"
    else:
        cfg = open_clip.get_model_config(arch)
        model = open_clip.create_model(arch, pretrained=None)
        name = f"open_clip:{arch}/{tag}"
    dest = registry.model_path(name, model_dir)
    os.makedirs(dest, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              os.path.join(dest, registry.OPEN_CLIP_WEIGHTS[0]))
    registry.write_open_clip_config(dest, cfg, preprocess or {
        "mean": list(open_clip.OPENAI_DATASET_MEAN), "std": list(open_clip.OPENAI_DATASET_STD),
        "interpolation": "bicubic", "resize_mode": "shortest"})
    return name


CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: "
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image> "
    "{% elif c['type'] == 'text' %}{{ c['text'] }} {% endif %}{% endfor %}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)

WORDS = ("the a video shows frame scene camera moves slowly red green blue car person walks street sky tree "
         "water light dark left right and of in on with").split()


def build_vlm(model_dir: str, name: str = TINY_VLM_NAME, seed: int = 0) -> str:
    """Save a tiny random-weight LLaVA (CLIP vision tower + Llama) with its processor,
    tokenizer and chat template, as transformers writes a hub model; returns its name."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    fast = _word_tokenizer(["<unk>", "<pad>", "<s>", "</s>", "<image>"], unk="<unk>", pad="<pad>", bos="<s>",
                           eos="</s>")
    fast.add_special_tokens({"additional_special_tokens": ["<image>"]})
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                              image_size=32, patch_size=16, projection_dim=16)
    text = LlamaConfig(vocab_size=len(fast), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                       pad_token_id=fast.pad_token_id, bos_token_id=fast.bos_token_id,
                       eos_token_id=fast.eos_token_id)
    cfg = LlavaConfig(vision_config=vision, text_config=text, image_token_index=fast.convert_tokens_to_ids("<image>"),
                      vision_feature_select_strategy="default", vision_feature_layer=-1)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(cfg).eval()
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=fast, patch_size=16, vision_feature_select_strategy="default", chat_template=CHAT_TEMPLATE,
        image_token="<image>", num_additional_image_tokens=1)
    _save(model, processor, registry.model_path(name, model_dir))
    return name


TINY_LLM_NAME = "hf:curator-test/tiny-llama"
LLM_CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                     "{% if add_generation_prompt %}assistant: {% endif %}")


def build_text_llm(model_dir: str, name: str = TINY_LLM_NAME, seed: int = 0) -> str:
    """Save a tiny random-weight Llama causal LM with a word tokenizer and a chat template (the
    caption enhancer's transformers backend); returns its name."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    fast = _word_tokenizer(["<unk>", "<pad>", "<s>", "</s>"], unk="<unk>", pad="<pad>", bos="<s>", eos="</s>")
    fast.chat_template = LLM_CHAT_TEMPLATE
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
                      pad_token_id=fast.pad_token_id, bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id)
    torch.manual_seed(seed)
    _save(LlamaForCausalLM(cfg), fast, registry.dir_path(name, model_dir))
    return name


TINY_TEXT_NAME = "hf:curator-test/tiny-t5"


def build_text_encoder(model_dir: str, name: str = TINY_TEXT_NAME, seed: int = 0) -> str:
    """Save a tiny random-weight T5 (encoder-decoder checkpoint, as T5 ships) and its tokenizer."""
    import torch
    from transformers import T5Config, T5Model

    fast = _word_tokenizer(["<pad>", "</s>", "<unk>"], pad="<pad>", eos="</s>", unk="<unk>")
    # decoder_start_token_id goes through PretrainedConfig's **kwargs, which T5Config's annotations omit
    cfg = T5Config(vocab_size=len(fast), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_decoder_layers=1,  # type: ignore[call-arg]
                   num_heads=2, pad_token_id=fast.pad_token_id, eos_token_id=fast.eos_token_id,
                   decoder_start_token_id=fast.pad_token_id)
    torch.manual_seed(seed)
    _save(T5Model(cfg), fast, registry.model_path(name, model_dir))
    return name


def _save(model: Any, preprocessor: Any, dest: str) -> None:
    """A tiny model (weights already drawn) and its tokenizer or processor, where transformers loads them."""
    os.makedirs(dest, exist_ok=True)
    model.eval().save_pretrained(dest)
    preprocessor.save_pretrained(dest)


def _word_tokenizer(specials: list[str], **roles: str) -> Any:
    """A word-level fast tokenizer over WORDS plus the digits and punctuation the test server writes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    extra = list("0123456789=,x:") + ["codes", "size", "n", "sha", "user", "assistant"]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(specials + list(WORDS) + extra))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=roles["unk"]))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token=roles.get("unk"), pad_token=roles.get("pad"),
                                   bos_token=roles.get("bos"), eos_token=roles.get("eos"))


TINY_XCLIP_NAME = "hf-video:curator-test/tiny-xclip"
XCLIP_WORDS = ("a the video of dog cat car street museum interiors beach person walks red blue green sky "
               "night day water").split()


def clip_bpe_tokenizer(words: tuple[str, ...] | list[str] = XCLIP_WORDS) -> Any:
    """A real CLIPTokenizer (byte-level BPE, CLIP's pre-tokenizer and specials) over a tiny vocabulary:
    every lower-case letter, plus merges that make each of `words` one token."""
    from transformers import CLIPTokenizer

    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab: dict[str, int] = {}
    for c in letters:
        vocab.setdefault(c, len(vocab))
    for c in letters:
        vocab.setdefault(c + "</w>", len(vocab))
    merges: dict[tuple[str, str], None] = {}
    for w in words:
        parts = list(w[:-1]) + [w[-1] + "</w>"]
        while len(parts) > 1:
            merges[(parts[0], parts[1])] = None
            parts = [parts[0] + parts[1]] + parts[2:]
            vocab.setdefault(parts[0], len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab.setdefault(special, len(vocab))
    merge_list: list[Any] = list(merges)
    return CLIPTokenizer(vocab=vocab, merges=merge_list)


def build_xclip(model_dir: str, name: str = TINY_XCLIP_NAME, seed: int = 0, num_frames: int = 4,
                image_size: int = 32) -> str:
    """Save a tiny random-weight X-CLIP (transformers' XCLIPModel: video tower with its cross-frame
    transformer, text tower, projections) with its processor (VideoMAE image processor + CLIP
    tokenizer), as a hub repository holds it; returns its name."""
    import torch
    from transformers import VideoMAEImageProcessor, XCLIPConfig, XCLIPModel, XCLIPProcessor

    tok = clip_bpe_tokenizer()
    cfg = XCLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=32),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=image_size, patch_size=16, num_frames=num_frames, mit_hidden_size=16,
                           mit_intermediate_size=32, mit_num_hidden_layers=1, mit_num_attention_heads=2),
        projection_dim=16, prompt_layers=1, prompt_num_attention_heads=2)
    torch.manual_seed(seed)
    model = XCLIPModel(cfg).eval()
    processor = XCLIPProcessor(
        image_processor=VideoMAEImageProcessor(size={"shortest_edge": image_size},
                                               crop_size={"height": image_size, "width": image_size}),
        tokenizer=tok)
    _save(model, processor, registry.dir_path(name, model_dir))
    return name
