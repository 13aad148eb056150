"""The Serve application: FastAPI ingress, hybrid retriever, batched reranker, personalizer,
recommender, feedback sink and A/B router, composed with deployment handles and built from typed
args by ``recsys.serving.app:build_app`` (the ``import_path`` of configs/serve/*.yaml)."""
