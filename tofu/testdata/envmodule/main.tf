# A module that records the environment OpenTofu gives its provisioners,
# on apply and on destroy, for TestCredentialsOnlyPerRun. It declares the
# outputs of aws/vm, whose place it takes.

variable "out" {
  type = string
}

resource "terraform_data" "env" {
  input = var.out

  provisioner "local-exec" {
    command = "env > ${self.input}.apply"
  }

  provisioner "local-exec" {
    when    = destroy
    command = "env > ${self.input}.destroy"
  }
}

output "machine_id" {
  value = terraform_data.env.id
}

output "state" {
  value = "running"
}
