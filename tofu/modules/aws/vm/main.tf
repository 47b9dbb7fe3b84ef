# An EC2 instance running gitlab-runner supervised by the gosling agent. Its
# first-boot script (var.user_data) is rendered by
# internal/agent.MachineContract: it downloads the gosling agent, checks its
# SHA-256, runs `gosling agent install` and starts the gosling-agent unit.
# The instance runs as the egg's runner identity (var.instance_profile,
# made by `gosling deploy`), which may read the egg's runner token and
# nothing else. Stopping the instance makes a dormant Nadir runner (the
# agent stops gitlab-runner gracefully first); starting it promotes it to
# Apex. The instance type is chosen by fly (fly.VMShapeFor). Needs `tofu
# init` with network access; the AWS provider authenticates with the
# worker's own identity, passed per run.

terraform {
  required_version = ">= 1.6.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 7.0"
    }
  }
}

provider "aws" {
  region = var.region

  dynamic "assume_role" {
    for_each = var.role_arn == "" ? [] : [var.role_arn]
    content {
      role_arn     = assume_role.value
      session_name = "gosling-${var.runner_id}"
    }
  }

  default_tags {
    tags = {
      "gosling:deployment" = var.deployment
      "gosling:runner"     = var.runner_id
      "gosling:egg"        = var.egg
    }
  }
}

data "aws_ssm_parameter" "ubuntu" {
  name = "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
}

data "aws_subnet" "first" {
  id = var.subnets[0]
}

# The runner takes no connection: it only calls out (GitLab, MotherGoose,
# Secrets Manager, registries).
resource "aws_security_group" "runner" {
  name        = "gosling-${var.runner_id}"
  description = "Gosling runner ${var.runner_id}: outbound only"
  vpc_id      = data.aws_subnet.first.vpc_id

  egress {
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_instance" "runner" {
  ami                    = data.aws_ssm_parameter.ubuntu.value
  instance_type          = var.instance_type
  subnet_id              = var.subnets[0]
  vpc_security_group_ids = [aws_security_group.runner.id]
  iam_instance_profile   = var.instance_profile

  root_block_device {
    volume_size = var.disk_gib
    volume_type = "gp3"
    encrypted   = true
  }

  metadata_options {
    http_tokens = "required"
  }

  user_data = var.user_data

  tags = {
    Name = "gosling-${var.runner_id}"
  }

  lifecycle {
    ignore_changes = [ami]
  }
}

resource "aws_ec2_instance_state" "power" {
  instance_id = aws_instance.runner.id
  state       = var.state
}
