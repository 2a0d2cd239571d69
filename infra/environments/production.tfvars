# terraform plan -var-file=environments/production.tfvars (the terraform workflow sets github_repository, the VPC and
# the subnets from the repository's production environment variables).
environment                 = "production"
region                      = "eu-west-1"
redis_node_type             = "cache.r7g.large"
redis_replicas              = 1
kafka_broker_type           = "kafka.m7g.large"
create_github_oidc_provider = false # staging created the account's one provider
