#!/usr/bin/env bash
# Installs Debian's etcd-server and builds the real kube-apiserver used by the
# test/kube scenarios, once per machine (the binary is cached outside the repo
# by ../shared/tools/build-kube-apiserver.sh). Safe to run repeatedly.
set -euo pipefail
VER="${KUBE_APISERVER_VERSION:-v1.36.3}"
here="$(cd "$(dirname "$0")" && pwd)"
tool="${BUILD_KUBE_APISERVER:-$here/../../../shared/tools/build-kube-apiserver.sh}"

if ! command -v etcd >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >&2
  else
    echo "setup.sh: etcd is not on PATH; install Debian's etcd-server (apt-get install -y etcd-server)" >&2
    exit 1
  fi
fi
if [ ! -x "$tool" ]; then
  echo "setup.sh: $tool not found; set BUILD_KUBE_APISERVER to build-kube-apiserver.sh" >&2
  exit 1
fi
# nice: the build takes minutes on a small machine shared with other work.
nice -n 10 "$tool" "$VER"
