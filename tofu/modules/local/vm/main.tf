# The local provider's VM: a `gosling agent` process on this machine, which
# supervises gitlab-runner, made and destroyed by OpenTofu with built-in
# resources only. A stopped process group (SIGSTOP, after gitlab-runner
# stopped gracefully) is a dormant Nadir runner; a running one is Apex.
# The command lines come from internal/agent.MachineContract, as the cloud
# modules' do.
#
# The local provider plays a cloud that has no capacity of a type left: while
# the file capacity/refuse-<capacity> exists in the state directory (beside
# machines/), a machine of that capacity type is refused as EC2 refuses one
# (InsufficientInstanceCapacity), before anything is made.

terraform {
  required_version = ">= 1.6.0"
}

locals {
  refusal = "${var.work_dir}/../../capacity/refuse-${var.capacity}"
}

resource "terraform_data" "machine" {
  triggers_replace = [var.runner_id]

  input = {
    stop_command = var.stop_command
    # The machine's labels, as a cloud machine carries them (its
    # processes carry them in their environment).
    labels = {
      gosling-deployment = var.deployment
      gosling-egg        = var.egg
      gosling-runner     = var.runner_id
      gosling-capacity   = var.capacity
    }
  }

  lifecycle {
    precondition {
      condition     = !fileexists(local.refusal)
      error_message = "InsufficientInstanceCapacity: the local provider has no ${var.capacity} capacity now (${local.refusal} exists)."
    }
  }

  # Launch is idempotent: a retried apply finds the live agent and keeps it.
  provisioner "local-exec" {
    interpreter = slice(var.launch_command, 0, length(var.launch_command) - 1)
    command     = var.launch_command[length(var.launch_command) - 1]
  }

  # Stopping waits for a running job: the agent stops gitlab-runner
  # gracefully (SIGQUIT).
  provisioner "local-exec" {
    when        = destroy
    interpreter = slice(self.input.stop_command, 0, length(self.input.stop_command) - 1)
    command     = self.input.stop_command[length(self.input.stop_command) - 1]
  }
}

# Resuming writes the agent's configuration first: a promoted runner reports
# ready to whoever promoted it.
resource "terraform_data" "power" {
  triggers_replace = [var.state, var.power_command]
  input            = var.state
  depends_on       = [terraform_data.machine]

  provisioner "local-exec" {
    interpreter = slice(var.power_command, 0, length(var.power_command) - 1)
    command     = var.power_command[length(var.power_command) - 1]
  }
}
