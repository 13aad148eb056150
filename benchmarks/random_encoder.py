"""Write a randomly initialised BERT-family encoder of a named size as a Hugging Face directory.

Throughput, memory and MFU depend on the architecture, not on the weights, so a machine with no
model hub (the lent GPU machine) can benchmark a BERT-base-size encoder from a tokenizer alone.
Never use these weights for quality numbers.

    python benchmarks/random_encoder.py --arch bert-base --tokenizer DIR_WITH_VOCAB --out /tmp/bert-base
"""

from __future__ import annotations

import argparse

# hidden, layers, heads, intermediate (the published shapes)
ARCHS = {
    "minilm-l6": (384, 6, 12, 1536),  # all-MiniLM-L6-v2 / ms-marco-MiniLM-L-6 cross-encoders
    "bert-base": (768, 12, 12, 3072),
    "bert-large": (1024, 24, 16, 4096),
}


def make_random_encoder(arch: str, tokenizer: str, out: str, seed: int = 0) -> str:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    hidden, layers, heads, inter = ARCHS[arch]
    tok = AutoTokenizer.from_pretrained(tokenizer)
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=inter,
        max_position_embeddings=512,
    )
    BertModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=sorted(ARCHS), default="bert-base")
    ap.add_argument(
        "--tokenizer", required=True, help="a directory (or hub id in the cache) holding a BERT tokenizer"
    )
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    print(make_random_encoder(args.arch, args.tokenizer, args.out))


if __name__ == "__main__":
    main()
