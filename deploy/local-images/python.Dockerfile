# Stand-in for python:3.11-slim: Debian's Python 3.11 in a virtualenv first on PATH, so that
# `python` and `pip install` behave as in the official image.
ARG BASE_IMAGE=admissions-local/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update -q \
    && apt-get install -y -q --no-install-recommends python3.11 python3.11-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /usr/local/python
ENV PATH=/usr/local/python/bin:$PATH \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
