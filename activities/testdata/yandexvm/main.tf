# Stands in for the yandex/vm module in tests, with built-in resources
# only (the yandex provider cannot be downloaded here): it declares
# yandex/vm's variables and outputs, and its machine_id is the ID the test
# gave the instance in the Compute stand-in (bootstrap/yctest).

variable "runner_id" {
  type = string
}

variable "egg" {
  type = string
}

variable "deployment" {
  type = string
}

variable "platform_id" {
  type = string
}

variable "cores" {
  type = number
}

variable "core_fraction" {
  type = number
}

variable "memory_gib" {
  type = number
}

variable "disk_gib" {
  type = number
}

variable "user_data" {
  type = string
}

variable "folder_id" {
  type = string
}

variable "zone" {
  type = string
}

variable "subnet_id" {
  type = string
}

variable "service_account_id" {
  type = string
}

variable "capacity" {
  type    = string
  default = "on_demand"
}

resource "terraform_data" "instance" {
  input = {
    name               = "gosling-${var.runner_id}"
    service_account_id = var.service_account_id
    preemptible        = var.capacity == "preemptible"
  }
}

output "machine_id" {
  value = "fhm-${var.runner_id}"
}
