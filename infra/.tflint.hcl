# tflint with its bundled Terraform ruleset, every rule on. The AWS ruleset is a plugin downloaded from GitHub
# releases, which this project's CI machines cannot reach; checkov covers the AWS-specific checks.
plugin "terraform" {
  enabled = true
  preset  = "all"
}
