#!/bin/bash
# What mesh-demo asks of infra/scripts/services.sh (`status`), answered for the compose stack: it runs
# inside a demo container whose working directory is this folder's parent (deploy/containers/demo.sh),
# so the demo finds this script where it looks for the local stack's. A process is "running" when its
# /healthz answers on its published host port. Nothing here starts or stops anything.
set -uo pipefail
[[ "${1:-}" == status ]] || { echo "services.sh (compose stack): only 'status' is answered here" >&2; exit 2; }
code=0
for pair in contract-registry:${CONTRACT_REGISTRY_PORT:-8081} obligation-engine:${OBLIGATION_ENGINE_PORT:-8082} \
            invoice-validator:${INVOICE_VALIDATOR_PORT:-8083} renewal-sync:${RENEWAL_SYNC_PORT:-8084} \
            notifier:${NOTIFIER_PORT:-8085} erp-simulator:${ERP_SIMULATOR_PORT:-8091} \
            crm-simulator:${CRM_SIMULATOR_PORT:-8092} smtp-catcher:${SMTP_CATCHER_PORT:-8093}; do
  name=${pair%%:*} port=${pair##*:}
  if python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
       "http://127.0.0.1:$port/healthz" 2>/dev/null; then
    echo "$name running (container, port $port)"
  else
    echo "$name stopped"; code=1
  fi
done
exit $code
