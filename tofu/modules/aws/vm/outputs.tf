output "machine_id" {
  value = aws_instance.runner.id
}

output "state" {
  value = aws_ec2_instance_state.power.state
}
