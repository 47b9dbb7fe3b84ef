output "machine_id" {
  value = aws_ecs_task_definition.runner.arn
}

# What InvokeRunner needs for ECS RunTask.
output "task_definition" {
  value = aws_ecs_task_definition.runner.arn
}

output "cluster" {
  value = var.cluster
}

output "subnets" {
  value = var.subnets
}
