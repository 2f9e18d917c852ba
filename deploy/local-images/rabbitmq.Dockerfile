# Stand-in for rabbitmq:3-management: Debian's rabbitmq-server (3.10). Without mounts it
# behaves as the official image does (testcontainers uses it so): guest/guest may log in from
# other hosts, the management and prometheus plugins are on; compose mounts its own
# rabbitmq.conf and enabled_plugins over them. The server script is run directly: Debian's
# /usr/sbin wrapper ignores SIGTERM and writes its log to a file; RABBITMQ_LOGS=- sends it to
# the console. compose gives it init: true (a PID 1 that forwards signals).
ARG BASE_IMAGE=admissions-local/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update -q \
    && apt-get install -y -q --no-install-recommends rabbitmq-server \
    && rm -rf /var/lib/apt/lists/* \
    && rm -f /etc/rabbitmq/rabbitmq-env.conf \
    && chmod 1777 /var/log/rabbitmq \
    && mkdir -p /etc/rabbitmq/conf.d \
    && echo 'loopback_users.guest = false' >/etc/rabbitmq/conf.d/10-defaults.conf \
    && echo '[rabbitmq_management,rabbitmq_prometheus].' >/etc/rabbitmq/enabled_plugins
ENV PATH=/usr/lib/rabbitmq/bin:$PATH \
    HOME=/var/lib/rabbitmq \
    RABBITMQ_LOGS=- \
    RABBITMQ_SASL_LOGS=-
VOLUME /var/lib/rabbitmq
USER rabbitmq
EXPOSE 4369 5672 15672 15692 25672
CMD ["rabbitmq-server"]
