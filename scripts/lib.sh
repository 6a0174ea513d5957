# Shared by the scripts in scripts/: source it, do not run it.

# wait_http URL [TRIES=100]: polls URL every 0.1 s until it answers 2xx, or gives up quietly (the
# caller's next request then fails with curl's own message).
wait_http() {
  local url=$1 tries=${2:-100}
  for _ in $(seq 1 "$tries"); do
    curl -fsS "$url" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
}
