# syntax=docker/dockerfile:1
# Dockerfile written by `aibridge init`: a virtualenv built in one stage, copied into a slim runtime
# that runs as an unprivileged user with tini as PID 1 (signals forwarded, zombies reaped).

FROM python:3.12-slim AS builder
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH="/opt/venv/bin:$PATH"
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 1001 app \
 && useradd --system --uid 1001 --gid app --home-dir /app --create-home app \
 && mkdir /data
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
EXPOSE 8080 9091
# No curl in a slim image: probe with the Python standard library.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"]
# A new Fly volume is mounted owned by root, which the app user cannot write. So this image
# starts as root: the entrypoint gives /data to UID 1001 (the mount point only, not recursively:
# what is inside was written by 1001, and walking a full volume would slow every boot), then
# setpriv drops to 1001 for good before exec'ing CMD. /data also exists in the image, so it
# starts without a volume too.
ENTRYPOINT ["tini", "--", "/bin/sh", "-c", "chown 1001:1001 /data && exec setpriv --reuid=1001 --regid=1001 --clear-groups -- \"$@\"", "sh"]
CMD ["aibridge", "serve"]
