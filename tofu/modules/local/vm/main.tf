# The local provider's VM: a `gosling agent` process on this machine, made and
# destroyed by OpenTofu with built-in resources only. A stopped process
# (SIGSTOP) is a dormant Nadir runner; a running one is Apex.

terraform {
  required_version = ">= 1.6.0"
}

locals {
  work_dir = "${var.state_dir}/machines/${var.runner_id}"
}

resource "terraform_data" "machine" {
  triggers_replace = [var.runner_id]

  input = {
    agent_binary = var.agent_binary
    work_dir     = local.work_dir
  }

  # Launch is idempotent: a retried apply finds the live agent and keeps it.
  provisioner "local-exec" {
    interpreter = [var.agent_binary, "agent", "launch", "--work-dir", local.work_dir, "--config"]
    command     = var.agent_config
  }

  provisioner "local-exec" {
    when        = destroy
    interpreter = [self.input.agent_binary, "agent", "stop", "--work-dir"]
    command     = self.input.work_dir
  }
}

# Resuming writes the agent's configuration first: a promoted runner reports
# ready to whoever promoted it.
resource "terraform_data" "power" {
  triggers_replace = [var.state, var.agent_config]
  input            = var.state
  depends_on       = [terraform_data.machine]

  provisioner "local-exec" {
    interpreter = [var.agent_binary, "agent", "power", "--work-dir", local.work_dir, "--config", var.agent_config, "--state"]
    command     = var.state
  }
}
