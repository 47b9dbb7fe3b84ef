# The local provider's serverless runner: a `gosling agent` process that takes
# one job and exits by its deadline (the workflow destroys it at completion or
# deadline, whichever comes first).

terraform {
  required_version = ">= 1.6.0"
}

locals {
  work_dir = "${var.state_dir}/machines/${var.runner_id}"
}

resource "terraform_data" "container" {
  triggers_replace = [var.runner_id]

  input = {
    agent_binary = var.agent_binary
    work_dir     = local.work_dir
  }

  provisioner "local-exec" {
    interpreter = [var.agent_binary, "agent", "launch", "--work-dir", local.work_dir, "--max-run", "${var.max_run_minutes}m", "--config"]
    command     = var.agent_config
  }

  provisioner "local-exec" {
    when        = destroy
    interpreter = [self.input.agent_binary, "agent", "stop", "--work-dir"]
    command     = self.input.work_dir
  }
}
