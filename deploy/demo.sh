#!/usr/bin/env bash
# The demo: builds if needed, then trains a small IResNet on the built-in
# synthetic face set with 2 parameter servers and 2 workers on this machine and
# prints the verification accuracy on held-out identities.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/deploy/build.sh"
exec "$root/deploy/local.sh" -p 2 -w 2 "$root/deploy/configs/demo.conf" "$@"
