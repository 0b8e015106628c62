"""What llama.cpp (as vendored by llama-cpp-python 0.3.36) knows about its model architectures,
as tables for :mod:`desktop.core.gguf_checks`: limits, the architecture names it loads, and which
architectures share a property its loader or graph builders assert on (src/llama-arch.cpp,
src/llama-model.cpp, src/llama-hparams.h, src/models/*.cpp)."""

from __future__ import annotations

LLAMA_MAX_LAYERS = 512  # src/llama-hparams.h
LLAMA_MAX_EXPERTS = 1024
# llama-cpp-python's tokenize allocates context_length tokens per call (_internals.py,
# LlamaModel.tokenize): 2**26 is 256 MB per call, above every published model (Llama 4 Scout:
# 10,485,760).
MAX_CONTEXT_LENGTH = 1 << 26

ROPE_SCALING_TYPES = ("none", "linear", "yarn", "longrope")  # LLAMA_ROPE_SCALING_TYPES
# src/llama-arch.cpp, LLM_ARCH_NAMES
ARCHITECTURES = frozenset([
    "clip", "llama", "llama4", "deci", "falcon", "grok", "gpt2", "gptj", "gptneox", "mpt",
    "baichuan", "starcoder", "refact", "bert", "modern-bert", "nomic-bert", "nomic-bert-moe",
    "neo-bert", "jina-bert-v2", "jina-bert-v3", "eurobert", "bloom", "stablelm", "qwen",
    "qwen2", "qwen2moe", "qwen2vl", "qwen3", "qwen3moe", "qwen3next", "qwen3vl", "qwen3vlmoe",
    "qwen35", "qwen35moe", "qwen4exp", "phi2", "phi3", "phimoe", "plamo", "plamo2", "plamo3",
    "codeshell", "orion", "internlm2", "minicpm", "minicpm3", "gemma", "gemma2", "gemma3",
    "gemma3n", "gemma4", "gemma4-assistant", "gemma-embedding", "starcoder2", "mamba",
    "mamba2", "maple", "jamba", "falcon-h1", "xverse", "command-r", "cohere2", "cohere2moe",
    "dbrx", "olmo", "olmo2", "olmoe", "muse-glimmer", "openelm", "arctic", "deepseek",
    "deepseek2", "deepseek2-ocr", "deepseek32", "deepseek4", "chatglm", "glm4", "glm4moe",
    "glm-dsa", "bitnet", "t5", "t5encoder", "jais", "jais2", "nemotron", "nemotron_h",
    "nemotron_h_moe", "exaone", "exaone4", "exaone-moe", "rwkv6", "rwkv6qwen2", "rwkv7",
    "arwkv7", "granite", "granitemoe", "granitehybrid", "graniteswitch", "granite_swa",
    "chameleon", "wavtokenizer-dec", "plm", "bailingmoe", "bailingmoe2", "bailingmoe3",
    "dots1", "dots3note", "arcee", "afmoe", "laguna", "ernie4_5", "ernie4_5-moe",
    "hunyuan-moe", "hunyuan-dense", "hunyuan_vl", "hy_v3", "hy_v4", "smollm3", "gpt-oss",
    "lfm2", "lfm2moe", "dream", "smallthinker", "llada", "llada-moe", "seed_oss", "grovemoe",
    "apertus", "minimax-01", "hrm_text", "minimax-m2", "minimax-m3", "cogvlm", "rnd1",
    "pangu-embedded", "mistral3", "eagle3", "dflash", "mistral4", "paddleocr", "mimo2",
    "step35", "spark2_5", "llama-embed", "maincoder", "kimi-linear", "kimi-k3", "glm5-next",
    "talkie", "mellum", "nanbeige", "qwen3tts", "pockettts",
])

# graph builders that assert n_embd_head_k == n_embd_head_v (GGML_ASSERT(n_embd_head ==
# hparams.n_embd_head_k()) and kin; architectures that borrow another's graph with
# "using graph = ..." in src/models/models.h count too), plus those whose build_qkv takes one head
# size for K and V (gemma*, jamba, bailingmoe, gpt-oss, falcon-h1, lfm2): a mismatch fails a
# reshape assert.
SAME_KV_HEAD = frozenset([
    "llama", "llama4", "llama-embed", "maincoder", "talkie", "deci", "baichuan", "falcon",
    "grok", "starcoder", "refact", "bert", "modern-bert", "neo-bert", "eurobert", "bloom",
    "mpt", "stablelm", "mellum", "nanbeige", "qwen", "qwen2", "dream", "llada", "llada-moe",
    "rnd1", "qwen2vl", "qwen2moe", "qwen3", "qwen3moe", "qwen3vl", "qwen3vlmoe", "qwen3tts",
    "pockettts", "phi2", "phi3", "plamo", "gpt2", "codeshell", "orion", "internlm2",
    "starcoder2", "maple", "xverse", "command-r", "cohere2", "cohere2moe", "dbrx", "olmo",
    "olmo2", "olmoe", "muse-glimmer", "openelm", "gptneox", "arctic", "deepseek", "chatglm",
    "glm4", "glm4moe", "bitnet", "t5", "jais", "jais2", "nemotron", "nemotron_h",
    "nemotron_h_moe", "exaone", "exaone4", "exaone-moe", "granite", "graniteswitch",
    "granitehybrid", "granite_swa", "chameleon", "bailingmoe2", "seed_oss", "dots1", "arcee",
    "afmoe", "laguna", "ernie4_5", "ernie4_5-moe", "paddleocr", "hunyuan-moe", "hunyuan_vl",
    "hunyuan-dense", "hy_v3", "smollm3", "smallthinker", "grovemoe", "apertus", "minimax-01",
    "minimax-m2", "minimax-m3", "cogvlm", "pangu-embedded", "qwen3next", "qwen35", "qwen35moe",
    "qwen4exp", "mistral3", "eagle3", "dflash", "spark2_5", "gemma", "gemma2", "gemma3",
    "gemma3n", "gemma-embedding", "jamba", "bailingmoe", "gpt-oss", "falcon-h1", "lfm2",
    "jina-bert-v2", "jina-bert-v3", "nomic-bert", "nomic-bert-moe", "phimoe", "t5encoder",
    "granitemoe", "minicpm",
])

# graph builders that assert GGML_ASSERT(n_embd_head == n_rot): RoPE over the whole head
ROT_IS_HEAD = frozenset([
    "llama", "llama4", "llama-embed", "maincoder", "talkie", "deci", "baichuan", "falcon",
    "grok", "mellum", "qwen2", "dream", "llada", "llada-moe", "rnd1", "qwen2vl", "qwen2moe",
    "qwen3", "qwen3moe", "qwen3vl", "qwen3vlmoe", "qwen3tts", "pockettts", "plamo",
    "codeshell", "orion", "internlm2", "starcoder2", "xverse", "cohere2moe", "dbrx", "olmo",
    "olmo2", "olmoe", "arctic", "deepseek", "jais2", "nemotron", "exaone", "exaone4",
    "exaone-moe", "granite", "graniteswitch", "granite_swa", "chameleon", "seed_oss", "dots1",
    "arcee", "ernie4_5", "ernie4_5-moe", "paddleocr", "hunyuan-moe", "hunyuan_vl",
    "hunyuan-dense", "hy_v3", "smollm3", "smallthinker", "grovemoe", "apertus", "minimax-01",
    "minimax-m2", "cogvlm", "pangu-embedded", "mistral3", "granitemoe", "minicpm",
])

# no rotary embedding (llama_model_rope_type -> LLAMA_ROPE_TYPE_NONE); MLA attention keeps its
# own RoPE head size (n_rot is checked against that, not against key_length)
NO_ROPE = frozenset([
    "clip", "gpt2", "gptj", "mpt", "refact", "bloom", "mamba", "mamba2", "jamba",
    "jina-bert-v2", "t5", "t5encoder", "jais", "rwkv6", "rwkv6qwen2", "rwkv7", "arwkv7",
    "wavtokenizer-dec", "nemotron_h", "nemotron_h_moe", "kimi-linear", "kimi-k3", "glm5-next",
])
MLA = frozenset([
    "deepseek2", "deepseek2-ocr", "deepseek32", "deepseek4", "dots3note", "glm-dsa",
    "mistral4", "minicpm3", "plm", "hy_v4", "kimi-linear", "kimi-k3", "glm5-next",
    "bailingmoe3", "mimo2",
])
# M-RoPE: ggml's rope kernel asserts one of the first three sections is > 0
MROPE = frozenset([
    "qwen2vl", "paddleocr", "qwen3vl", "qwen3vlmoe", "qwen35", "qwen35moe", "qwen4exp",
    "qwen3tts",
])

# architectures whose load_arch_tensors follow per-layer head counts (n_head(i), n_head_kv(i),
# n_embd_k_gqa(i)); standard-attention architectures outside this list build every layer with
# layer 0's counts while the KV cache follows the per-layer ones, so their arrays must not vary
PER_LAYER_HEADS = frozenset([
    "deci", "plamo2", "plamo3", "gemma4", "gemma4-assistant", "jamba", "openelm", "dots3note",
    "nemotron_h", "nemotron_h_moe", "granitehybrid", "laguna", "lfm2", "lfm2moe", "mimo2",
    "step35", "spark2_5",
])

# graphs that reshape with each layer's own head count while the tensors keep layer 0's (the
# granite graph, which granitemoe and minicpm borrow; seen failing ggml_reshape's assert)
GRAPH_PER_LAYER_HEADS = frozenset([
    "granite", "granitemoe", "minicpm", "granite_swa", "graniteswitch",
])

# layers without attention heads at all (recurrent): a head count of 0 is theirs to have
RECURRENT = frozenset([
    "mamba", "mamba2", "rwkv6", "rwkv6qwen2", "rwkv7", "arwkv7", "wavtokenizer-dec",
])

# architectures with sliding-window attention layers (swa_type set in load_arch_hparams): always,
# or only when attention.sliding_window is above 0 (exaone4: only its 64-layer model). A
# sliding_window_pattern that leaves no layer sliding-window fails
# GGML_ASSERT(hparams.is_swa_any()) when the KV cache is made.
SWA_ALWAYS = frozenset([
    "cohere2", "cohere2moe", "dots3note", "exaone-moe", "gemma-embedding", "gemma2", "gemma3n",
    "gemma4-assistant", "gemma4", "granite_swa", "maple", "mimo2", "muse-glimmer", "gpt-oss",
    "spark2_5", "step35",
])
SWA_IF_WINDOW = frozenset([
    "afmoe", "gemma3", "laguna", "llama4", "mellum", "modern-bert", "olmo2", "plamo3",
    "smallthinker",
])

# tensor types ggml cannot multiply or look up rows in on the CPU (integers, F64, and Q8_1, which
# only ever holds activations): a weight of such a type crashes the process at the first use
UNUSABLE_WEIGHT_TYPES = {24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 9: "Q8_1"}

# load_arch_tensors: GGML_ASSERT(n_expert > 0 && n_expert_used > 0)
NEEDS_EXPERTS = frozenset([
    "smallthinker", "llada-moe", "bailingmoe2", "grovemoe", "glm4moe",
])
