# Gosling. `make run` starts the embedded default; `make test` runs every test.
GO      ?= go
BIN     := $(CURDIR)/bin
GOSLING := $(BIN)/gosling
NEST    ?= examples/nest
export PATH := $(BIN):$(PATH)

# Tools the tests need, built into bin/ by scripts/tools.sh.
TEST_TOOLS := temporal tofu git gitlab-runner postgres dynalite moto podman docker shellcheck jq curl
CHECK_TOOLS := staticcheck workflowcheck

.PHONY: all build run test fuzz check check-static check-race bench histories tools tools-test tools-check fmt worktree clean

all: build

build:
	$(GO) build -o $(GOSLING) ./cmd/gosling
	$(GO) build -o $(BIN)/gosling-agent ./cmd/gosling-agent

## run: the whole stack on one machine (Temporal dev server, API, worker, SQLite, local runners).
run: build
	scripts/tools.sh temporal tofu
	$(GOSLING) validate $(NEST)
	$(GOSLING) dev --nest $(NEST) --state-dir .gosling $(if $(wildcard $(BIN)/gitlab-runner),--gitlab-runner $(BIN)/gitlab-runner)

## test: every test, including integration tests and a short fuzz run.
test: tools-test
	$(GO) test -count=1 -timeout 30m ./...
	$(MAKE) fuzz FUZZTIME=15s

FUZZTIME ?= 60s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzLoadEggFile$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./fly
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeWebhook$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./api

## check: the static checks and every test under the race detector.
check: check-static check-race

## check-static: formatting, vet, staticcheck, workflowcheck, comment rules and
## the formatting of the example and Compose Nests; CI runs it after
## `make test` (.ci/run).
check-static: tools-check
	@out=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard -- '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(BIN)/staticcheck ./...
	$(BIN)/workflowcheck ./...
	scripts/check-comments.sh
	$(GO) run ./cmd/gosling fmt --check $(NEST)
	$(GO) run ./cmd/gosling fmt --check deploy/compose/nest

## check-race: every test under the race detector.
check-race: tools-test
	$(GO) test -race -count=1 ./...

## histories: re-record the workflow histories the replay tests use.
histories: tools-test
	GOSLING_UPDATE_HISTORIES=1 $(GO) test -count=1 ./e2e

## bench: the benchmarks named in the issues, with memory figures.
bench: tools-test
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 20x ./fly
	$(GO) test -run '^$$' -bench ProvisionVsRawApply -benchtime 5x ./e2e
	$(GO) test -run '^$$' -bench 'WorkerMemory200InFlight|WebhookLoad|PoolPaths|Pool10kSignals|AnnouncedPipeline' -benchtime 1x ./e2e
	$(GO) test -run '^$$' -bench JobStartPaths -benchtime 1x ./e2e
	$(GO) test -run '^$$' -bench AgentBinary -benchtime 1x ./internal/agent
	$(GO) test -run '^$$' -bench LambdaVsFargateStart -benchtime 1x ./activities
	$(GO) test -run '^$$' -bench HistoryEventsPerJob -benchtime 1x ./e2e
	$(GO) test -run '^$$' -bench SpotInterruptions -benchtime 1x -timeout 30m ./e2e
	$(GO) test -run '^$$' -bench UglyFox -benchmem -benchtime 3x ./e2e
	$(GO) test -run '^$$' -bench 'WebhookLoadServerProcess|IdleRSS|MetricsScrape1000Pools|UnauthenticatedBodies' -benchtime 1x -timeout 60m ./e2e
	$(GO) test -run '^$$' -bench 'Fleet' -benchtime 1x -timeout 60m ./e2e
	$(GO) test -run '^$$' -bench Resolve -benchtime 2s ./internal/secrets
	$(GO) test -run '^$$' -bench PipelineRoundTrip -benchtime 20x ./internal/gitlab/runnerstandin
	$(GO) test -run '^$$' -bench RealRunnerStop -benchtime 2x ./internal/agent
	$(GO) test -run '^$$' -bench Cache -benchtime 5x ./internal/rift/s3
	$(GO) test -run '^$$' -bench SecondPull -benchtime 3x ./internal/rift/mirror
	$(GO) test -run '^$$' -bench 'Plan200Eggs|PlanExampleNest|PlanAWSNest|DeployExampleNest|DeployAWSNest|AWSDeploySequence' -benchtime 3x ./bootstrap
	$(GO) test -run '^$$' -bench SweepPass -benchtime 1x ./mothergoose
	$(GO) test -run '^$$' -bench LostHooks -benchtime 1x ./e2e
	$(GO) test -run '^$$' -bench OutageRecovery -benchtime 1x -timeout 20m ./e2e
	$(GO) test -run '^$$' -bench JobCost -benchtime 500x ./mothergoose

## tools: every external program, installed idempotently into bin/.
tools:
	scripts/tools.sh

tools-test:
	@if [ -n "$(TEST_TOOLS)" ]; then scripts/tools.sh $(TEST_TOOLS); fi

tools-check:
	scripts/tools.sh $(CHECK_TOOLS)

fmt:
	gofmt -w $$(git ls-files --cached --others --exclude-standard -- '*.go')
	$(GO) run ./cmd/gosling fmt $(NEST)

## worktree: a git worktree for feature work on the dev-new-features branch.
worktree:
	@if git worktree list | grep -q '\[dev-new-features\]'; then \
	  echo "worktree dev-new-features exists:"; git worktree list | grep '\[dev-new-features\]'; \
	elif git show-ref --verify --quiet refs/heads/dev-new-features; then \
	  git worktree add ../gosling-dev-new-features dev-new-features; \
	else \
	  git worktree add -b dev-new-features ../gosling-dev-new-features; \
	fi

clean:
	rm -rf $(BIN) .gosling
