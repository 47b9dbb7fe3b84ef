output "machine_id" {
  value = local.lambda == 1 ? aws_lambda_function.runner[0].arn : aws_ecs_task_definition.runner[0].arn
}

# How InvokeRunner reaches it: Lambda Invoke, or ECS RunTask.
output "platform" {
  value = var.platform
}

output "function_name" {
  value = local.lambda == 1 ? aws_lambda_function.runner[0].function_name : ""
}

output "task_definition" {
  value = local.fargate == 1 ? aws_ecs_task_definition.runner[0].arn : ""
}

# The capacity provider ECS RunTask starts the task on: FARGATE, or
# FARGATE_SPOT for a runner bought as spot (Lambda has no spot capacity).
output "capacity_provider" {
  value = local.fargate == 1 && var.capacity == "spot" ? "FARGATE_SPOT" : (local.fargate == 1 ? "FARGATE" : "")
}

output "cluster" {
  value = var.cluster
}

output "subnets" {
  value = var.subnets
}
