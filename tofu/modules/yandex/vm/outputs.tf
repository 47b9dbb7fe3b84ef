# The instance's ID: the worker starts and stops it through the Compute API.
output "machine_id" {
  value = yandex_compute_instance.runner.id
}
