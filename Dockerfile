# huedb server image: the same install and start command as `make run`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

RUN useradd --create-home --uid 10001 huedb \
    && mkdir -p /data \
    && chown huedb:huedb /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY huedb ./huedb
RUN pip install '.[numba]'

USER huedb
VOLUME ["/data"]
EXPOSE 8000

# Tokens come from the environment: HUEDB_AUTH_TOKENS="admin-token:admin,reader-token:read-only"
# (or CHROMA_SERVER_AUTH_CREDENTIALS=token). Binding 0.0.0.0 without a token is refused.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/api/v2/heartbeat', timeout=2); sys.exit(0)"

ENTRYPOINT ["huedb", "run", "--path", "/data", "--host", "0.0.0.0", "--port", "8000"]
