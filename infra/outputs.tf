# What the aws profile and the deploy workflow are configured with (see the README's "Production on AWS").

output "lake_bucket" {
  description = "SAGEMAKER_BUCKET and the aws profile's lake"
  value       = aws_s3_bucket.lake.bucket
}

output "lake_uri" {
  description = "PROPENSITY_LAKE_URI: the aws profile's lake of record (Feast's registry is <lake_uri>/_feast/registry.pb)"
  value       = "s3://${aws_s3_bucket.lake.bucket}/${local.lake_prefix}"
}

output "image_repositories" {
  description = "ECR repository URLs: serving (SAGEMAKER_IMAGE_URI without its tag) and training"
  value       = { for key, repository in aws_ecr_repository.image : key => repository.repository_url }
}

output "sagemaker_execution_role_arn" {
  description = "SAGEMAKER_EXECUTION_ROLE_ARN"
  value       = aws_iam_role.sagemaker_execution.arn
}

output "model_package_group" {
  description = "The SageMaker Model Registry group the pipeline registers into"
  value       = aws_sagemaker_model_package_group.propensity.model_package_group_name
}

output "github_role_arns" {
  description = "Roles GitHub Actions assume through OIDC: the environments' AWS_DEPLOY_ROLE_ARN, AWS_INFRA_ROLE_ARN and (in <env>-plan) AWS_PLAN_ROLE_ARN"
  value       = { deploy = aws_iam_role.deploy.arn, infra = aws_iam_role.infra.arn, plan = aws_iam_role.plan.arn }
}

output "redis_primary_endpoint" {
  description = "ElastiCache primary endpoint: REDIS_URL=rediss://:<token>@<endpoint>:6379/0"
  value       = aws_elasticache_replication_group.online_store.primary_endpoint_address
}

output "redis_auth_secret_arn" {
  description = "Secrets Manager secret holding the Redis AUTH token"
  value       = aws_secretsmanager_secret.redis_auth.arn
}

output "kafka_bootstrap_brokers" {
  description = "KAFKA_BOOTSTRAP_SERVERS (SASL_SSL with IAM auth)"
  value       = aws_msk_cluster.event_bus.bootstrap_brokers_sasl_iam
}

output "alarm_topic_arn" {
  description = "SAGEMAKER_ALARM_TOPIC_ARN: the topic the canary's alarms notify"
  value       = aws_sns_topic.alarms.arn
}
