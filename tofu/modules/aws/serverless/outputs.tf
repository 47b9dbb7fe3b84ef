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

output "cluster" {
  value = var.cluster
}

output "subnets" {
  value = var.subnets
}
