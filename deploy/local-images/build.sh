#!/usr/bin/env bash
# Local stand-ins for the Docker Hub images deploy/compose.yaml uses, for machines that reach
# the Debian mirror but not Docker Hub. Everything is built from Debian bookworm packages:
#
#   deploy/local-images/build.sh          build the images that are missing
#   deploy/local-images/build.sh --force  rebuild them all
#
# then run compose with the names of local.env (make compose-up does both by itself when
# the Hub does not answer). Each stand-in keeps the interface compose relies on from the
# official image: its ports, volumes, environment, health-check command and user.
#
#   admissions-local/debian:bookworm   mmdebstrap --variant=minbase, docker import
#   python, rabbitmq, postgres, nginx, maildev   <name>.Dockerfile on top of it
#
# The base image trusts the certificate authorities this machine trusts (a TLS-inspecting
# egress proxy is common where the Hub is blocked), so pip and npm work inside builds.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source-path=SCRIPTDIR source=local.env
source "$HERE/local.env"
BASE_IMAGE=admissions-local/debian:bookworm
FORCE=${1:-}

log() { printf '[local-images] %s\n' "$*"; }
have_image() { [[ -z $FORCE ]] && docker image inspect "$1" >/dev/null 2>&1; }

build_base() {
    have_image "$BASE_IMAGE" && return 0
    command -v mmdebstrap >/dev/null 2>&1 || {
        log "installing mmdebstrap (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mmdebstrap </dev/null
    }
    log "building $BASE_IMAGE (mmdebstrap --variant=minbase bookworm | docker import)"
    local start=$SECONDS
    # policy-rc.d: packages installed in later builds must not try to start services.
    # The hooks are expanded by mmdebstrap ($1: the new root), not here.
    # shellcheck disable=SC2016
    mmdebstrap --variant=minbase --include=ca-certificates \
        --customize-hook='copy-in /etc/ssl/certs/ca-certificates.crt /usr/local/share/ca-certificates/' \
        --customize-hook='mv "$1/usr/local/share/ca-certificates/ca-certificates.crt" "$1/usr/local/share/ca-certificates/host.crt"' \
        --customize-hook='chroot "$1" update-ca-certificates' \
        --customize-hook='printf "#!/bin/sh\nexit 101\n" > "$1/usr/sbin/policy-rc.d"; chmod 755 "$1/usr/sbin/policy-rc.d"' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
        bookworm - 2>"${TMPDIR:-/tmp}/mmdebstrap.log" \
        | docker import --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' - "$BASE_IMAGE" >/dev/null
    log "$BASE_IMAGE built in $((SECONDS - start))s"
}

build_stand_in() {
    local image=$1 dockerfile=$2 start=$SECONDS
    have_image "$image" && return 0
    log "building $image ($dockerfile)"
    docker build -q --build-arg "BASE_IMAGE=$BASE_IMAGE" -f "$HERE/$dockerfile" -t "$image" "$HERE" >/dev/null
    log "$image built in $((SECONDS - start))s"
}

build_base
build_stand_in "$PYTHON_IMAGE" python.Dockerfile
build_stand_in "$RABBITMQ_IMAGE" rabbitmq.Dockerfile
build_stand_in "$POSTGRES_IMAGE" postgres.Dockerfile
build_stand_in "$NGINX_IMAGE" nginx.Dockerfile
build_stand_in "$MAIL_IMAGE" maildev.Dockerfile
