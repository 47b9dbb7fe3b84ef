# The local provider's serverless runner: a `gosling agent serve` process that
# runs one job per HTTP invocation, as a Yandex Serverless Container does; the
# workflow invokes it (InvokeRunner) and destroys it when the job is done or
# its deadline passed. The command lines come from
# internal/agent.MachineContract, as the cloud modules' do.

terraform {
  required_version = ">= 1.6.0"
}

resource "terraform_data" "container" {
  triggers_replace = [var.runner_id]

  input = {
    stop_command = var.stop_command
    # The container's deadline (its launch command carries it too) and
    # labels, as a cloud's container has them.
    max_run_minutes = var.max_run_minutes
    labels = {
      gosling-deployment = var.deployment
      gosling-egg        = var.egg
      gosling-runner     = var.runner_id
      gosling-capacity   = var.capacity
    }
  }

  provisioner "local-exec" {
    interpreter = slice(var.launch_command, 0, length(var.launch_command) - 1)
    command     = var.launch_command[length(var.launch_command) - 1]
  }

  provisioner "local-exec" {
    when        = destroy
    interpreter = slice(self.input.stop_command, 0, length(self.input.stop_command) - 1)
    command     = self.input.stop_command[length(self.input.stop_command) - 1]
  }
}
