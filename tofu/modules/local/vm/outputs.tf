output "machine_id" {
  value = terraform_data.machine.id
}

output "work_dir" {
  value = var.work_dir
}

output "state" {
  value = terraform_data.power.output
}
