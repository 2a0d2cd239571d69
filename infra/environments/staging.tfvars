# terraform plan -var-file=environments/staging.tfvars (the terraform workflow sets github_repository, the VPC and
# the subnets from the repository's staging environment variables).
environment                 = "staging"
region                      = "eu-west-1"
redis_replicas              = 0
create_github_oidc_provider = true
