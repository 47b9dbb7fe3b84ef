output "machine_id" {
  value = aws_ecs_service.runner.id
}
