# A one-job runner as a Yandex Serverless Container (execution timeout up to
# 60 minutes): the workflow invokes it with an authenticated HTTPS request
# (the InvokeRunner activity, an IAM token) whose answer comes when the job is
# done. The container runs `gosling agent serve`; its arguments and
# environment are rendered by internal/agent.MachineContract. The runner token
# is mounted from Lockbox by the platform, never passed through OpenTofu.
# Needs `tofu init` with network access.

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

data "yandex_lockbox_secret_version" "token" {
  secret_id = local.token[0]
}

# cpu 0.05, 0.2 or 0.5 is one core at 5, 20 or 50%; 1 to 4 are whole cores
# (fly admits only these).
resource "yandex_serverless_container" "runner" {
  name               = "gosling-${var.runner_id}"
  memory             = var.memory_mib
  cores              = var.cpu < 1 ? 1 : ceil(var.cpu)
  core_fraction      = var.cpu < 1 ? floor(var.cpu * 100 + 0.5) : 100
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
    version_id           = data.yandex_lockbox_secret_version.token.id
    key                  = local.token[1]
    environment_variable = "GOSLING_RUNNER_TOKEN"
  }

  labels = {
    gosling-deployment = var.deployment
    gosling-runner     = var.runner_id
    gosling-egg        = var.egg
  }
}
