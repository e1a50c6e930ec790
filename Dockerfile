# smppengine in a container. Build: docker build -t smppengine .
# Run beside mosquitto: docker compose -f deploy/docker-compose.yml up -d   (docs/operations.md)
#
# BASE is any image with Python >= 3.11 (`python3` with its venv module) and useradd: the public
# python:3.11-slim by default; scripts/docker-check builds one from Debian bookworm where no public image
# registry is reachable (docker build --build-arg BASE=smppengine-base:bookworm .).
ARG BASE=python:3.11-slim
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/smppengine/bin:$PATH \
    SMPPENGINE_HEALTHZ_URL=http://127.0.0.1:9180/healthz

# its own virtualenv: works on any base (a Debian python3 refuses a system-wide pip install)
WORKDIR /src
COPY pyproject.toml README.md ./
COPY smppengine ./smppengine
RUN python3 -m venv /opt/smppengine \
 && /opt/smppengine/bin/pip install ".[fast]" \
 && rm -rf /src

# a fixed, unprivileged user; the store lives on a volume it owns
RUN groupadd --system --gid 10001 smppengine \
 && useradd --system --uid 10001 --gid smppengine --home-dir /var/lib/smppengine --no-create-home \
      --shell /usr/sbin/nologin smppengine \
 && mkdir -p /var/lib/smppengine /etc/smppengine \
 && chown smppengine:smppengine /var/lib/smppengine
VOLUME /var/lib/smppengine
WORKDIR /var/lib/smppengine
USER smppengine

# /metrics and /healthz; set [http] listen = "0.0.0.0:9180" in the config (another port: set
# SMPPENGINE_HEALTHZ_URL to match)
EXPOSE 9180
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(0 if urllib.request.urlopen(os.environ['SMPPENGINE_HEALTHZ_URL'], timeout=2).status == 200 else 1)"]

# SIGTERM (docker stop) drains in-flight submits, unbinds and publishes "offline": give it time
STOPSIGNAL SIGTERM
ENTRYPOINT ["smppengine"]
CMD ["run", "--config", "/etc/smppengine/config.toml"]
