# The online store: ElastiCache Redis with TLS in transit, AUTH and encryption at rest. The AUTH token lives in
# Secrets Manager; the aws profile reads it from there (REDIS_URL is built from the endpoint and the secret).

resource "random_password" "redis_auth" {
  length  = 64
  special = false # ElastiCache AUTH tokens allow only printable characters without @, " and /
}

resource "aws_secretsmanager_secret" "redis_auth" {
  #checkov:skip=CKV2_AWS_57:ElastiCache cannot rotate an AUTH token through Secrets Manager's rotation Lambda without downtime handling of its own; rotate with `modify-replication-group --auth-token-update-strategy ROTATE`.
  name       = "${local.name}/redis-auth-token"
  kms_key_id = aws_kms_key.data.arn
}

resource "aws_secretsmanager_secret_version" "redis_auth" {
  secret_id     = aws_secretsmanager_secret.redis_auth.id
  secret_string = random_password.redis_auth.result
}

resource "aws_elasticache_subnet_group" "online_store" {
  name       = "${local.name}-online-store"
  subnet_ids = var.private_subnet_ids
}

resource "aws_security_group" "online_store" {
  name        = "${local.name}-online-store"
  description = "Redis online store: reachable from the platform's clients only"
  # No egress rule: security groups are stateful, so replies need none, and the store opens no connections.
  vpc_id = var.vpc_id

  ingress {
    description = "Redis over TLS from the endpoint, the stream job and Dagster"
    from_port   = 6379
    to_port     = 6379
    protocol    = "tcp"
    cidr_blocks = var.client_cidr_blocks
  }

}

resource "aws_elasticache_replication_group" "online_store" {
  #checkov:skip=CKV2_AWS_50:Failover follows redis_replicas: staging runs one node to save cost, production sets a replica and gets Multi-AZ automatic failover.
  replication_group_id       = "${local.name}-online"
  description                = "Feast online store (session and user features)"
  engine                     = "redis"
  engine_version             = "7.1"
  node_type                  = var.redis_node_type
  num_cache_clusters         = 1 + var.redis_replicas
  automatic_failover_enabled = var.redis_replicas > 0
  multi_az_enabled           = var.redis_replicas > 0
  port                       = 6379
  subnet_group_name          = aws_elasticache_subnet_group.online_store.name
  security_group_ids         = [aws_security_group.online_store.id]
  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.data.arn
  transit_encryption_enabled = true
  transit_encryption_mode    = "required"
  auth_token                 = random_password.redis_auth.result
  snapshot_retention_limit   = 1
  auto_minor_version_upgrade = true
}
