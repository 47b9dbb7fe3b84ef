#!/usr/bin/env bash
# Installs the external programs that Gosling's build, tests and checks need
# into bin/ (git-ignored). Idempotent: a tool whose pinned version is already
# installed is skipped. Usage: scripts/tools.sh [tool...]  (default: all)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/bin"
mkdir -p "$bin"

STATICCHECK_VERSION=v0.8.2
TEMPORAL_VERSION=v1.5.1
TOFU_VERSION=v1.10.6
WORKFLOWCHECK_VERSION=v0.6.0
DYNALITE_VERSION=4.0.0
MOTO_VERSION=5.2.6
SCHEMATHESIS_VERSION=4.32.5
# The one GitLab Runner the module proxy serves in buildable form: a 12.8.0
# pre-release of January 2020 (later releases need modules the proxy refuses).
GITLAB_RUNNER_MODULE=gitlab.com/gitlab-org/gitlab-runner
GITLAB_RUNNER_PSEUDO=v1.11.1-0.20200110014830-8e5683f82927
GITLAB_RUNNER_VERSION=12.8.0~pre.8e5683f8

# have NAME VERSION: true when bin/NAME was installed at VERSION.
have() { [ -x "$bin/$1" ] && [ "$(cat "$bin/.$1.version" 2>/dev/null)" = "$2" ]; }
stamp() { echo "$2" > "$bin/.$1.version"; }

install_staticcheck() {
  have staticcheck "$STATICCHECK_VERSION" && return
  echo "tools: installing staticcheck $STATICCHECK_VERSION" >&2
  GOBIN="$bin" go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
  stamp staticcheck "$STATICCHECK_VERSION"
}

install_workflowcheck() {
  have workflowcheck "$WORKFLOWCHECK_VERSION" && return
  echo "tools: installing workflowcheck $WORKFLOWCHECK_VERSION" >&2
  GOBIN="$bin" go install "go.temporal.io/sdk/contrib/tools/workflowcheck@$WORKFLOWCHECK_VERSION"
  stamp workflowcheck "$WORKFLOWCHECK_VERSION"
}

# module_dir MODULE@VERSION: downloads a Go module and prints its directory,
# for tools whose go.mod has replace directives (`go install` refuses them)
# and that are built inside it.
module_dir() {
  local dir
  dir=$(go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  if [ -z "$dir" ]; then
    echo "tools: could not download $1" >&2
    exit 1
  fi
  echo "$dir"
}

# The Temporal CLI carries the dev server and its Web UI (about 4 minutes to
# build the first time).
install_temporal() {
  have temporal "$TEMPORAL_VERSION" && return
  echo "tools: building the Temporal CLI $TEMPORAL_VERSION (a few minutes the first time)" >&2
  GOBIN="$bin" go install "github.com/temporalio/cli/cmd/temporal@$TEMPORAL_VERSION"
  stamp temporal "$TEMPORAL_VERSION"
}

# OpenTofu cannot be installed with `go install` (its go.mod has replace
# directives): build it inside its downloaded module (about 3 minutes).
install_tofu() {
  have tofu "$TOFU_VERSION" && return
  echo "tools: building OpenTofu $TOFU_VERSION (a few minutes the first time)" >&2
  local dir
  dir=$(module_dir "github.com/opentofu/opentofu@$TOFU_VERSION")
  (cd "$dir" && GOFLAGS=-mod=mod go build -o "$bin/tofu" ./cmd/tofu)
  stamp tofu "$TOFU_VERSION"
}

# The real GitLab Runner, which the agent supervises in the e2e tests and the
# differential test runs beside the stand-in. Like OpenTofu it cannot be
# installed with `go install` (replace directives in its go.mod): it is built
# inside its downloaded module (about 5 minutes the first time), with the
# version its release build would stamp.
install_gitlab-runner() {
  have gitlab-runner "$GITLAB_RUNNER_VERSION" && return
  echo "tools: building GitLab Runner $GITLAB_RUNNER_VERSION (about 5 minutes the first time)" >&2
  local dir
  dir=$(module_dir "$GITLAB_RUNNER_MODULE@$GITLAB_RUNNER_PSEUDO")
  (cd "$dir" && GOFLAGS=-mod=mod go build -trimpath \
    -ldflags "-X $GITLAB_RUNNER_MODULE/common.VERSION=$GITLAB_RUNNER_VERSION" \
    -o "$bin/gitlab-runner" .)
  stamp gitlab-runner "$GITLAB_RUNNER_VERSION"
}

# PostgreSQL 15 for the store's PostgreSQL tests: Debian's package, when
# initdb is not already on the machine.
install_postgres() {
  if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    return
  fi
  echo "tools: installing PostgreSQL from Debian's packages" >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
}

# dynalite, a DynamoDB-compatible server on Node.js, for the store's
# DynamoDB and YDB Document API tests: npm's package into bin/node.
install_dynalite() {
  local cli="$bin/node/node_modules/dynalite/cli.js"
  if [ -f "$cli" ] && [ "$(cat "$bin/.dynalite.version" 2>/dev/null)" = "$DYNALITE_VERSION" ]; then
    return
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "tools: installing Node.js and npm from Debian's packages for dynalite" >&2
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >/dev/null
  fi
  echo "tools: installing dynalite $DYNALITE_VERSION" >&2
  # Its LevelDB binding's install script is not needed: the tests keep
  # tables in memory.
  npm install --prefix "$bin/node" --no-audit --no-fund --ignore-scripts --silent "dynalite@$DYNALITE_VERSION"
  stamp dynalite "$DYNALITE_VERSION"
}

# apt_install PACKAGE...: Debian's packages, as root or through sudo.
apt_install() {
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Podman serves its Docker-compatible API for Rift's remote-engine tests
# (`podman system service`); Debian's package, when podman is missing.
install_podman() {
  command -v podman >/dev/null 2>&1 && return
  echo "tools: installing podman from Debian's packages" >&2
  apt_install podman uidmap slirp4netns fuse-overlayfs catatonit
}

# The Docker CLI drives Rift's remote-engine tests (`docker --context`);
# Debian's docker.io, when no docker CLI is on the machine.
install_docker() {
  command -v docker >/dev/null 2>&1 && return
  echo "tools: installing the Docker CLI (docker.io) from Debian's packages" >&2
  apt_install docker.io
}

# Git: the GitLab test server serves its projects' repositories with Git's
# own `git http-backend`, and both gitlab-runner and its stand-in fetch with
# git; Debian's package, when git or its http-backend is missing.
install_git() {
  command -v git >/dev/null 2>&1 && [ -x "$(git --exec-path)/git-http-backend" ] && return
  echo "tools: installing git from Debian's packages" >&2
  apt_install git
}

# shellcheck checks the first-boot scripts the agent's machine contract
# renders for cloud VMs (cli's contract test); Debian's package.
install_shellcheck() {
  command -v shellcheck >/dev/null 2>&1 && return
  echo "tools: installing shellcheck from Debian's packages" >&2
  apt_install shellcheck
}

# moto (AWS services in one server, moto_server) and schemathesis (checks
# an HTTP API against its OpenAPI document) from the Python package index,
# in one virtual environment, bin/pyvenv, made with the machine's python3.
# The stamp names both versions, so a change of either reinstalls.
install_moto() {
  local want="moto[server]==$MOTO_VERSION schemathesis==$SCHEMATHESIS_VERSION"
  if [ -x "$bin/pyvenv/bin/moto_server" ] && [ -x "$bin/pyvenv/bin/schemathesis" ] &&
    [ "$(cat "$bin/.moto.version" 2>/dev/null)" = "$want" ]; then
    return
  fi
  if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    echo "tools: installing python3-venv from Debian's packages for moto" >&2
    apt_install python3-venv
  fi
  echo "tools: installing $want into bin/pyvenv" >&2
  rm -rf "$bin/pyvenv"
  python3 -m venv "$bin/pyvenv"
  "$bin/pyvenv/bin/pip" install --quiet --disable-pip-version-check \
    "moto[server]==$MOTO_VERSION" "schemathesis==$SCHEMATHESIS_VERSION"
  echo "$want" > "$bin/.moto.version"
}

# jq and curl run the README's shell blocks (e2e's TestREADMEShellBlocks
# sends the hand-written hook with them); Debian's packages.
install_jq() {
  command -v jq >/dev/null 2>&1 && return
  echo "tools: installing jq from Debian's packages" >&2
  apt_install jq
}

install_curl() {
  command -v curl >/dev/null 2>&1 && return
  echo "tools: installing curl from Debian's packages" >&2
  apt_install curl ca-certificates
}

tools=("$@")
[ ${#tools[@]} -eq 0 ] && tools=(staticcheck workflowcheck temporal tofu git gitlab-runner postgres dynalite moto podman docker shellcheck jq curl)
for t in "${tools[@]}"; do
  "install_$t"
done
