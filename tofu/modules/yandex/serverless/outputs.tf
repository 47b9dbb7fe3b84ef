output "machine_id" {
  value = yandex_serverless_container.runner.id
}
