#!/usr/bin/env bash
# Runs the server (or any `auralis` subcommand: arguments go through) from a fresh checkout.
# Building libopus from its bundled source needs cmake, and a C compiler; both are installed
# from Debian's packages when missing. With no arguments: the default station on 127.0.0.1:8080.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (needed to build libopus)" >&2
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
exec cargo run --release -- "$@"
