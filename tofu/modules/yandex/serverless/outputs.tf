output "machine_id" {
  value = yandex_serverless_container.runner.id
}

# Where InvokeRunner sends the invocation (with an IAM token).
output "invoke_url" {
  value = yandex_serverless_container.runner.url
}
