# The weightgraph loader image (used by docker-compose.yml's `loader` service).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The project (see .dockerignore: no .venv, no .env, no outputs). queries/ stays in /app.
COPY . /app
RUN pip install .

VOLUME ["/out"]
CMD ["weightgraph", "--help"]
