# smppengine in a container. Build: docker build -t smppengine .
# Run beside mosquitto: docker compose -f deploy/docker-compose.yml up -d   (docs/operations.md)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY smppengine ./smppengine
RUN pip install ".[fast]" && rm -rf /src

# a fixed, unprivileged user; the store lives on a volume it owns
RUN groupadd --system --gid 10001 smppengine \
 && useradd --system --uid 10001 --gid smppengine --home-dir /var/lib/smppengine --no-create-home \
      --shell /usr/sbin/nologin smppengine \
 && mkdir -p /var/lib/smppengine /etc/smppengine \
 && chown smppengine:smppengine /var/lib/smppengine
VOLUME /var/lib/smppengine
WORKDIR /var/lib/smppengine
USER smppengine

# /metrics and /healthz; set [http] listen = "0.0.0.0:9180" in the config
EXPOSE 9180
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9180/healthz', timeout=2).status == 200 else 1)"]

# SIGTERM (docker stop) drains in-flight submits, unbinds and publishes "offline": give it time
STOPSIGNAL SIGTERM
ENTRYPOINT ["smppengine"]
CMD ["run", "--config", "/etc/smppengine/config.toml"]
