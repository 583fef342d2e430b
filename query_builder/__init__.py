"""The read path: hybrid queries (BM25 + one kNN leg per vector field), fused and explained."""
