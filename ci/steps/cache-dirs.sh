#!/usr/bin/env bash
# Prints `kernels=DIR` and `saved-vms=DIR`, kmatrix's cache and saved VMs'
# directories (GitHub step outputs, for the cache steps).
set -euo pipefail
echo "kernels=$(kmatrix kernels cache-dir)"
echo "saved-vms=$(kmatrix kernels cache-dir --saved-vms)"
