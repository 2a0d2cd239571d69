# The canary's alarms. Variant names carry the model version, so the deployer creates one pair of alarms per new
# variant when it deploys (5XX share and p99 ModelLatency; serving/control/sagemaker.py) and SageMaker's blue/green
# guardrails roll back on them; their thresholds are CanaryPolicy's. Terraform owns what stays: the topic those
# alarms notify (SAGEMAKER_ALARM_TOPIC_ARN) and the deploy role's right to create them (github_oidc.tf).

resource "aws_sns_topic" "alarms" {
  name              = "${local.name}-endpoint-alarms"
  kms_master_key_id = aws_kms_key.data.arn
}

resource "aws_sns_topic_subscription" "alarms_email" {
  count     = var.alarm_email == "" ? 0 : 1
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

data "aws_iam_policy_document" "alarms_topic" {
  statement {
    sid       = "CloudWatchAlarmsPublish"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:cloudwatch:${var.region}:${local.account_id}:alarm:propensity-${var.endpoint_name}-*"]
    }
  }
}

resource "aws_sns_topic_policy" "alarms" {
  arn    = aws_sns_topic.alarms.arn
  policy = data.aws_iam_policy_document.alarms_topic.json
}

# The online store behind the endpoint: when Redis is saturated every score falls back to defaults.
resource "aws_cloudwatch_metric_alarm" "online_store_cpu" {
  alarm_name          = "propensity-${var.endpoint_name}-online-store-cpu"
  alarm_description   = "Redis engine CPU above 80 % for 5 minutes: scores will miss their latency budget"
  namespace           = "AWS/ElastiCache"
  metric_name         = "EngineCPUUtilization"
  dimensions          = { ReplicationGroupId = aws_elasticache_replication_group.online_store.id }
  statistic           = "Average"
  period              = 60
  evaluation_periods  = 5
  threshold           = 80
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}
