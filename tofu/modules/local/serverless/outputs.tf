output "machine_id" {
  value = terraform_data.container.id
}

output "work_dir" {
  value = local.work_dir
}
