# A one-job runner as a Yandex Serverless Container: the workflow invokes it
# with an authenticated HTTPS request (the InvokeRunner activity, an IAM
# token) whose answer comes when the job is done. The container runs
# `gosling agent serve` as the egg's runner service account (made by
# `gosling deploy`); its arguments and environment are rendered by
# internal/agent.MachineContract. The runner token is mounted from Lockbox
# by the platform, with the service account's lockbox.payloadViewer on the
# egg's secret: OpenTofu reads only the secret's metadata (its current
# version's ID), never its payload, so no state holds a token. The
# execution timeout is the egg's job timeout (fly.Runner.ServerlessDeadline);
# over 10 minutes Yandex runs only long-lived containers, a Preview. Needs
# `tofu init` with network access; the provider authenticates with the
# worker's own identity, passed per run.

terraform {
  required_version = ">= 1.6.0"
  required_providers {
    yandex = {
      source  = "yandex-cloud/yandex"
      version = ">= 0.120"
    }
  }
}

provider "yandex" {
  folder_id = var.folder_id
  zone      = var.zone
}

locals {
  # yc-lockbox://{secret-id}/{key}
  token = regex("^yc-lockbox://([a-z0-9]+)/([^/?]+)", var.token_ref)
}

# The secret's metadata: its current version's ID, not its payload.
data "yandex_lockbox_secret" "token" {
  secret_id = local.token[0]
}

resource "yandex_serverless_container" "runner" {
  name               = "gosling-${var.runner_id}"
  memory             = var.memory_mib
  cores              = var.cores
  core_fraction      = var.core_fraction
  concurrency        = 1
  execution_timeout  = "${var.max_run_minutes * 60}s"
  service_account_id = var.service_account_id

  image {
    url         = var.container_image
    args        = var.container_args
    environment = var.container_environment
  }

  secrets {
    id                   = local.token[0]
    version_id           = data.yandex_lockbox_secret.token.current_version[0].id
    key                  = local.token[1]
    environment_variable = "GOSLING_RUNNER_TOKEN"
  }

  labels = {
    gosling-deployment = var.deployment
    gosling-runner     = var.runner_id
    gosling-egg        = var.egg
  }
}
