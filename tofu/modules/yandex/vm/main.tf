# A Compute Cloud instance running gitlab-runner supervised by the gosling
# agent. Its first-boot script (var.user_data) is rendered by
# internal/agent.MachineContract. The instance is stopped for Nadir and
# started for Apex with the yc CLI (the provider has no power state).
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

data "yandex_compute_image" "ubuntu" {
  family = "ubuntu-2404-lts"
}

resource "yandex_compute_instance" "runner" {
  name                      = "gosling-${var.runner_id}"
  platform_id               = "standard-v3"
  service_account_id        = var.service_account_id
  allow_stopping_for_update = true

  resources {
    cores  = ceil(var.cpu)
    memory = ceil(var.memory_mib / 1024)
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

  labels = {
    gosling-deployment = var.deployment
    gosling-runner     = var.runner_id
    gosling-egg        = var.egg
  }
}

resource "terraform_data" "power" {
  triggers_replace = [var.state, yandex_compute_instance.runner.id]

  provisioner "local-exec" {
    command = var.state == "stopped" ? "yc compute instance stop --id ${yandex_compute_instance.runner.id}" : "yc compute instance start --id ${yandex_compute_instance.runner.id}"
  }
}
