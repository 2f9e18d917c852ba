# Stand-in for axllent/mailpit: MailDev (npm), a mail catcher with a web inbox and a REST
# API, on Mailpit's ports (SMTP 1025, web 8025) and with Mailpit's health check command
# (`/mailpit readyz`), so deploy/compose.yaml needs no change to use it.
ARG BASE_IMAGE=admissions-local/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update -q \
    && apt-get install -y -q --no-install-recommends nodejs npm curl \
    && NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt npm install -g --omit=dev maildev@2.2.1 \
    && apt-get purge -y -q --auto-remove npm \
    && rm -rf /var/lib/apt/lists/* /root/.npm \
    && groupadd --system --gid 1025 maildev \
    && useradd --system --uid 1025 --gid maildev --no-create-home --shell /usr/sbin/nologin maildev \
    && printf '#!/bin/sh\n# Mailpit'"'"'s health check: /mailpit readyz\nexec curl -fsS -o /dev/null http://127.0.0.1:8025/healthz\n' >/mailpit \
    && chmod 755 /mailpit
ENV MAILDEV_SMTP_PORT=1025 \
    MAILDEV_WEB_PORT=8025 \
    MAILDEV_MAIL_DIRECTORY=/tmp/maildev
USER maildev
EXPOSE 1025 8025
CMD ["maildev"]
