output "machine_id" {
  value = yandex_compute_instance.runner.id
}
