# The worker image: the project and its models (the packaged MiniLM and the trained image tower).
FROM python:3.11-slim
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
# CPU wheels of torch keep the image small; GPU users swap this index for a CUDA one
RUN pip install torch==2.9.1 torchvision==0.24.1 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY hybrid_core hybrid_core
COPY indexer indexer
COPY query_builder query_builder
COPY hybrid_cli hybrid_cli
COPY tower_training tower_training
RUN pip install .
RUN useradd --create-home worker
USER worker
CMD ["hybrid-search", "worker"]
