#!/usr/bin/env bash
# Fault injection for the browser client: serves web/ from the stand-in server in
# tests/web/mock-server.mjs (which can stall, drop, gap, flag and restart the stream on demand, and
# resumes like the server) and drives headless Chromium through tests/web/browser-check.mjs:
# playback, stats, a 700 ms stall, flags, reconnects, resumes across a drop and a restart (and the
# outcomes that rejoin live), the control panel, station switching and codec negotiation, all
# asserted from window.auralis.
# The real server is covered by tests/browser.rs; this covers what is hard to provoke there.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

port=${BROWSER_CHECK_PORT:-18461}
node tests/web/mock-server.mjs --port "$port" --isolated >/dev/null 2>&1 &
mock=$!
trap 'kill "$mock" 2>/dev/null || true' EXIT
wait_http "http://127.0.0.1:${port}/" 50
# The mock offers PCM only: the page asks for it (the negotiation checks at the end load the page
# without ?codec= and with codecs the mock refuses).
node tests/web/browser-check.mjs --url "http://127.0.0.1:${port}/" --mock --query "autoplay=1&codec=pcm_s16le"
