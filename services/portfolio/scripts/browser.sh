#!/usr/bin/env bash
# Headless Chromium and its WebDriver for the portfolio dashboard's browser test.
#
#   services/portfolio/scripts/browser.sh install|path
#
# Installs Debian's `chromium` and `chromium-driver` only when they are missing (a fresh CI
# machine starts from nothing). `path` prints the two binaries, browser first.
set -euo pipefail

log() { echo "browser: $*" >&2; }

find_browser() { command -v chromium || command -v chromium-browser; }
find_driver() { command -v chromedriver; }

install() {
  if find_browser >/dev/null && find_driver >/dev/null; then return 0; fi
  [[ "$(id -u)" == 0 ]] || { log "chromium missing and not root: apt-get install chromium chromium-driver yourself"; exit 1; }
  log "installing Debian chromium and chromium-driver (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
  find_browser >/dev/null && find_driver >/dev/null || { log "install finished but no chromium/chromedriver found"; exit 1; }
}

case "${1:-install}" in
  install) install ;;
  path) echo "$(find_browser) $(find_driver)" ;;
  *) echo "usage: $0 install|path" >&2; exit 2 ;;
esac
