# SageMaker: the execution role the training job, the pipeline and the endpoint run as, and the model registry's
# package group the pipeline registers candidates into (approval status gates the deploy workflow).

resource "aws_sagemaker_model_package_group" "propensity" {
  model_package_group_name        = "${local.name}-propensity"
  model_package_group_description = "Calibrated LightGBM purchase-propensity models that passed the quality gates"
}

data "aws_iam_policy_document" "sagemaker_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["sagemaker.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "sagemaker_execution" {
  name                 = "${local.name}-sagemaker-execution"
  assume_role_policy   = data.aws_iam_policy_document.sagemaker_trust.json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "sagemaker_execution" {
  source_policy_documents = [data.aws_iam_policy_document.image_pull_and_data_key.json]

  statement {
    sid       = "LakeReadWrite"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.lake.arn}/propensity/*"]
  }

  statement {
    sid       = "LakeList"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [aws_s3_bucket.lake.arn]
  }

  statement {
    sid       = "PullImages"
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
    resources = [for repository in aws_ecr_repository.image : repository.arn]
  }

  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:/aws/sagemaker/*"]
  }

  statement {
    sid       = "Metrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"] # PutMetricData has no resource-level permission; the namespace condition narrows it
    condition {
      test     = "StringLike"
      variable = "cloudwatch:namespace"
      values   = ["/aws/sagemaker/*", "AWS/SageMaker", "propensity/*"]
    }
  }

  statement {
    sid       = "RedisAuthToken"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.redis_auth.arn]
  }
}

resource "aws_iam_role_policy" "sagemaker_execution" {
  name   = "propensity"
  role   = aws_iam_role.sagemaker_execution.id
  policy = data.aws_iam_policy_document.sagemaker_execution.json
}
