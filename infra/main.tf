# The platform's AWS side for one environment: the lake, image registries, the online store, the event bus, the
# SageMaker role and model registry, GitHub's deploy role and the endpoint alarms. Names follow
# "propensity-<environment>-<part>", the names the aws profile's settings expect.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  name       = "propensity-${var.environment}"
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  tags = {
    project     = "propensity"
    environment = var.environment
    managed_by  = "terraform"
  }
  # Where SageMaker Data Capture writes (serving/control/data_capture.py: CAPTURE_PREFIX); every object the
  # platform writes is under propensity/.
  capture_prefix = "propensity/data-capture"
  # The aws profile's lake of record (PROPENSITY_LAKE_URI) and, beside its tables, Feast's registry.
  lake_prefix   = "propensity/lake"
  registry_path = "${local.lake_prefix}/_feast/registry.pb"
}

# One customer-managed key for the environment's data at rest: lake, images, online store, event bus, secrets.
resource "aws_kms_key" "data" {
  description         = "${local.name}: data at rest"
  enable_key_rotation = true
  policy              = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "data" {
  name          = "alias/${local.name}-data"
  target_key_id = aws_kms_key.data.key_id
}

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:In a key policy Resource "*" is this key, and the account statement is AWS's default: without it the key cannot be managed.
  #checkov:skip=CKV_AWS_111:In a key policy Resource "*" is this key, and the account statement is AWS's default: without it the key cannot be managed.
  #checkov:skip=CKV_AWS_356:In a key policy Resource "*" is this key, and the account statement is AWS's default: without it the key cannot be managed.
  # The account administers the key; services use it through the roles' own grants below.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "CloudWatchLogsEncrypt"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }
  }
}

# What every role of the platform needs (the SageMaker execution role and GitHub's deploy role): an ECR login and
# the environment's data key.
data "aws_iam_policy_document" "image_pull_and_data_key" {
  statement {
    sid       = "EcrToken" # GetAuthorizationToken has no resource-level permission
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid       = "UseDataKey"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [aws_kms_key.data.arn]
  }
}
