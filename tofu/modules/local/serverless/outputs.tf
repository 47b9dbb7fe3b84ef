output "machine_id" {
  value = terraform_data.container.id
}

output "work_dir" {
  value = var.work_dir
}
