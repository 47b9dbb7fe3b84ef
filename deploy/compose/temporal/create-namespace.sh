#!/bin/sh
# Registers the namespace Gosling uses once the temporal service answers.
set -eu
address=${TEMPORAL_ADDRESS:-temporal:7233}
namespace=${TEMPORAL_NAMESPACE:-default}

until temporal operator cluster health --address "$address"; do sleep 2; done
if temporal operator namespace describe --namespace "$namespace" --address "$address" >/dev/null 2>&1; then
  echo "namespace $namespace exists"
else
  temporal operator namespace create --namespace "$namespace" --retention 72h --address "$address"
fi
