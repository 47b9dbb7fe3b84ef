# A Compute Cloud instance running gitlab-runner supervised by the gosling
# agent. Its first-boot script (var.user_data) is rendered by
# internal/agent.MachineContract. The instance runs as the egg's runner
# service account (var.service_account_id, made by `gosling deploy`), which
# may read the egg's runner-token secret and nothing else. Its shape
# (platform, cores, core fraction, memory) is fly's (fly.VMShapeFor). The
# provider has no power state: the worker stops the instance for Nadir and
# starts it for Apex through the Compute API, awaiting the operation,
# after this module is applied. Needs `tofu init` with network access; the
# provider authenticates with the worker's own identity, passed per run.

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

data "yandex_compute_image" "ubuntu" {
  family = "ubuntu-2404-lts"
}

resource "yandex_compute_instance" "runner" {
  name                      = "gosling-${var.runner_id}"
  platform_id               = var.platform_id
  service_account_id        = var.service_account_id
  allow_stopping_for_update = true

  resources {
    cores         = var.cores
    core_fraction = var.core_fraction
    memory        = var.memory_gib
  }

  boot_disk {
    initialize_params {
      image_id = data.yandex_compute_image.ubuntu.id
      size     = var.disk_gib
      type     = "network-ssd"
    }
  }

  network_interface {
    subnet_id = var.subnet_id
    nat       = true
  }

  metadata = {
    user-data = var.user_data
  }

  # A preemptible VM: Compute Cloud may stop it at any time (with an ACPI
  # shutdown and 30 seconds' grace, which the agent reports) and does
  # after 24 hours.
  scheduling_policy {
    preemptible = var.capacity == "preemptible"
  }

  labels = {
    gosling-deployment = var.deployment
    gosling-runner     = var.runner_id
    gosling-egg        = var.egg
    gosling-capacity   = var.capacity
  }
}
