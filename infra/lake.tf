# The lake: raw events, Spark feature tables, Feast offline data, model artifacts and SageMaker Data Capture
# (the aws profile's LakeResource and the SageMaker deployer write here).

resource "aws_s3_bucket" "lake" {
  #checkov:skip=CKV_AWS_144:No cross-region replication: every table is rebuilt from the sources and the model registry's artifacts are re-registered by a pipeline run; versioning covers mistakes.
  #checkov:skip=CKV2_AWS_62:Nothing consumes object events: Dagster's sensors read the tables themselves.
  bucket = "${local.name}-lake-${local.account_id}"
}

resource "aws_s3_bucket_versioning" "lake" {
  bucket = aws_s3_bucket.lake.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.data.arn
    }
    bucket_key_enabled = true
  }
}

# Both buckets: no public access of any kind, and objects owned by the bucket's account (ACLs off).
locals {
  buckets = { lake = aws_s3_bucket.lake, access_logs = aws_s3_bucket.access_logs }
}

resource "aws_s3_bucket_public_access_block" "bucket" {
  for_each                = local.buckets
  bucket                  = each.value.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "bucket" {
  for_each = local.buckets
  bucket   = each.value.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id

  rule {
    id     = "old-versions-expire"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.lake_noncurrent_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  rule {
    id     = "data-capture-expires"
    status = "Enabled"
    filter {
      prefix = "${local.capture_prefix}/"
    }
    expiration {
      days = var.capture_retention_days
    }
  }
}

resource "aws_s3_bucket_logging" "lake" {
  bucket        = aws_s3_bucket.lake.id
  target_bucket = aws_s3_bucket.access_logs.id
  target_prefix = "lake/"
}

resource "aws_s3_bucket_policy" "lake" {
  bucket = aws_s3_bucket.lake.id
  policy = data.aws_iam_policy_document.tls_only["lake"].json
}

# Server access logs of the lake. S3 delivers access logs only to a bucket encrypted with SSE-S3, not SSE-KMS.
resource "aws_s3_bucket" "access_logs" {
  #checkov:skip=CKV_AWS_18:This is the access-log target; logging it into itself would loop.
  #checkov:skip=CKV_AWS_144:Access logs are not replicated: they serve audits in the region they were written.
  #checkov:skip=CKV_AWS_145:S3 server access logging delivers only to SSE-S3 buckets (SSE-KMS is not supported).
  #checkov:skip=CKV2_AWS_62:Nothing consumes events of the log bucket.
  #checkov:skip=CKV_AWS_21:Log objects are written once by S3 and never overwritten: versioning would only duplicate them.
  bucket = "${local.name}-access-logs-${local.account_id}"
}

resource "aws_s3_bucket_server_side_encryption_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    id     = "logs-expire"
    status = "Enabled"
    filter {}
    expiration {
      days = 365
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

resource "aws_s3_bucket_policy" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  policy = data.aws_iam_policy_document.access_logs.json
}

# Both buckets refuse plain HTTP.
data "aws_iam_policy_document" "tls_only" {
  for_each = { for name, bucket in local.buckets : name => bucket.arn }

  statement {
    sid       = "DenyPlainHttp"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [each.value, "${each.value}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

data "aws_iam_policy_document" "access_logs" {
  source_policy_documents = [data.aws_iam_policy_document.tls_only["access_logs"].json]

  statement {
    sid       = "S3ServerAccessLogs"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.access_logs.arn}/*"]
    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}
