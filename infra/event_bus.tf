# The event bus: MSK with TLS between clients and brokers and inside the cluster, IAM authentication, encryption
# at rest, and broker logs in CloudWatch. The stream job and the replayer reach it with KAFKA_SECURITY_PROTOCOL=SASL_SSL
# and the AWS_MSK_IAM mechanism.

resource "aws_security_group" "event_bus" {
  name        = "${local.name}-event-bus"
  description = "MSK brokers: reachable from the platform's clients only"
  # No egress rule: security groups are stateful, so replies need none; replication between brokers is MSK's own.
  vpc_id = var.vpc_id

  ingress {
    description = "Kafka over TLS with IAM auth"
    from_port   = 9098
    to_port     = 9098
    protocol    = "tcp"
    cidr_blocks = var.client_cidr_blocks
  }

}

resource "aws_cloudwatch_log_group" "event_bus" {
  name              = "/propensity/${var.environment}/msk"
  retention_in_days = 365
  kms_key_id        = aws_kms_key.data.arn
}

resource "aws_msk_cluster" "event_bus" {
  cluster_name           = "${local.name}-events"
  kafka_version          = var.kafka_version
  number_of_broker_nodes = length(var.private_subnet_ids)

  broker_node_group_info {
    instance_type   = var.kafka_broker_type
    client_subnets  = var.private_subnet_ids
    security_groups = [aws_security_group.event_bus.id]
    storage_info {
      ebs_storage_info {
        volume_size = var.kafka_broker_volume_gb
      }
    }
    connectivity_info {
      public_access {
        type = "DISABLED"
      }
    }
  }

  client_authentication {
    unauthenticated = false
    sasl {
      iam = true
    }
  }

  encryption_info {
    encryption_at_rest_kms_key_arn = aws_kms_key.data.arn
    encryption_in_transit {
      client_broker = "TLS"
      in_cluster    = true
    }
  }

  logging_info {
    broker_logs {
      cloudwatch_logs {
        enabled   = true
        log_group = aws_cloudwatch_log_group.event_bus.name
      }
    }
  }

  enhanced_monitoring = "PER_TOPIC_PER_BROKER"
}
