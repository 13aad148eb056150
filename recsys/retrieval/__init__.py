"""Retrieval indexes for serving: faiss ANN over bi-encoder embeddings, bm25s over item text, a
typo-tolerant autocomplete, reciprocal rank fusion, and the versioned artifact directory that the
index job writes and the Serve app loads."""
