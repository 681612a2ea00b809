# Shell helpers shared by the scripts that start `mir local` and the weather device
# (demo.sh, test-console.sh, bench-console.sh). Sourced, not run.

# Polls "$@" every 0.5 s until it succeeds or $1 seconds pass.
wait_for() {
  local secs=$1; shift
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

# hub_endpoint DATA_DIR KEY: one endpoint (http, mqtt, ...) of the endpoints.json that
# `mir local` writes into its data directory.
hub_endpoint() {
  sed -n "s/.*\"$2\": *\"\([^\"]*\)\".*/\1/p" "$1/endpoints.json" | head -n 1
}

# weather_yaml DATA_DIR MQTT [SED_ARGS...]: writes DATA_DIR/weather/device.yaml, the
# example's own device.yaml with the hub's MQTT endpoint and a store under DATA_DIR
# (and any further `-e` edits); fails when the file does not name the endpoint.
weather_yaml() {
  local data=$1 mqtt=$2; shift 2
  mkdir -p "$data/weather" &&
    sed -e "s|^  target: .*|  target: \"$mqtt\"|" \
      -e "s|^    folderPath: .*|    folderPath: \"$data/weather/store\"|" \
      "$@" device-sdk/examples/device.yaml >"$data/weather/device.yaml" &&
    grep -q "target: \"$mqtt\"" "$data/weather/device.yaml"
}
