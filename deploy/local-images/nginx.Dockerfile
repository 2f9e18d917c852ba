# Stand-in for nginx:1.28-alpine: Debian's nginx 1.22, as the same uid (101) and with the
# same log files on stdout/stderr. 1.22 does not know `server ... resolve` in an upstream
# (open source nginx >= 1.27.3), so the mounted configuration is used without it: the api
# replicas are resolved once, when nginx starts.
ARG BASE_IMAGE=admissions-local/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update -q \
    && apt-get install -y -q --no-install-recommends nginx-light wget \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 101 nginx \
    && useradd --system --uid 101 --gid nginx --no-create-home --shell /usr/sbin/nologin nginx \
    && ln -sf /dev/stdout /var/log/nginx/access.log \
    && ln -sf /dev/stderr /var/log/nginx/error.log
USER nginx
EXPOSE 8000
STOPSIGNAL SIGQUIT
CMD ["sh", "-c", "sed 's/ resolve;/;/' /etc/nginx/nginx.conf > /tmp/nginx.conf && exec nginx -c /tmp/nginx.conf -g 'daemon off;'"]
