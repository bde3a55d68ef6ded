#!/usr/bin/env bash
# Download (Maven Central, via mvn) and unpack the Elasticsearch integ-test-zip used by
# scripts/services.sh, and install the Debian packages the dev services need, without
# starting anything. Prints the unpacked distribution dir on stdout. Useful to warm a
# machine or a CI cache:  bash scripts/es-fetch.sh
# Honours the same variables as services.sh (SOCD_CACHE, SOCD_ES_VERSION, M2_REPO).
set -euo pipefail
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/services.sh" fetch
